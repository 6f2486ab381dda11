//! What happened to received messages: de-duplication and attempt counting.
//!
//! Duplicates are normal on the bus (a consumer that outlives the broker's
//! consumer timeout gets its delivery again), so every hand-over to the
//! application is remembered by (sender HER-id, message-id) for at least as
//! long as the longest TTL, and a repeat is accepted without a second
//! hand-over. Brokers that do not count deliveries (RabbitMQ 3.10 classic
//! queues report 0 forever) are counted here instead.

use chrono::{DateTime, Utc};
use rusqlite::{params, OptionalExtension};

use crate::time::{from_ms, to_ms};
use crate::{Result, Store};

/// A hand-over remembered for de-duplication.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandOver {
    pub at: DateTime<Utc>,
    /// What was done with it, e.g. `accepted` or `error-reported:transport:invalid-field-value`,
    /// so that a repeat gets the same answer.
    pub outcome: String,
}

/// The inbox view of a [`Store`].
pub struct Inbox<'a> {
    store: &'a Store,
}

impl<'a> Inbox<'a> {
    pub(crate) fn new(store: &'a Store) -> Self {
        Inbox { store }
    }

    /// Records that the message was handed over (or answered) with `outcome`.
    /// Returns `false` when it was already recorded: the caller must not hand
    /// it over again.
    pub fn record_hand_over(
        &self,
        sender_her_id: u32,
        message_id: &str,
        at: DateTime<Utc>,
        outcome: &str,
    ) -> Result<bool> {
        self.store.write(|connection| {
            let inserted = connection.execute(
                "INSERT INTO handed_over (sender_her_id, message_id, at_ms, outcome)
             VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
                params![sender_her_id, message_id, to_ms(at), outcome],
            )?;
            Ok(inserted == 1)
        })
    }

    /// The earlier hand-over of this message, if any.
    pub fn hand_over(&self, sender_her_id: u32, message_id: &str) -> Result<Option<HandOver>> {
        let connection = self.store.lock();
        Ok(connection
            .query_row(
                "SELECT at_ms, outcome FROM handed_over WHERE sender_her_id = ?1 AND message_id = ?2",
                params![sender_her_id, message_id],
                |row| {
                    Ok(HandOver {
                        at: from_ms(row.get(0)?),
                        outcome: row.get(1)?,
                    })
                },
            )
            .optional()?)
    }

    /// Forgets hand-overs older than `before` (the de-duplication window has
    /// passed); returns how many were removed.
    pub fn forget_hand_overs_before(&self, before: DateTime<Utc>) -> Result<usize> {
        self.store.write(|connection| {
            Ok(connection.execute("DELETE FROM handed_over WHERE at_ms < ?1", [to_ms(before)])?)
        })
    }

    /// Counts one more delivery of `message_id` from `queue` and returns the
    /// total so far, this one included.
    pub fn count_delivery(&self, queue: &str, message_id: &str, at: DateTime<Utc>) -> Result<u32> {
        self.store.write(|connection| {
        Ok(connection.query_row(
            "INSERT INTO delivery_attempts (queue, message_id, attempts, last_ms) VALUES (?1, ?2, 1, ?3)
             ON CONFLICT(queue, message_id) DO UPDATE SET attempts = attempts + 1, last_ms = ?3
             RETURNING attempts",
            params![queue, message_id, to_ms(at)],
            |row| row.get(0),
        )?)
        })
    }

    /// Takes back one counted delivery: the failure was an outage (registry
    /// or revocation service down), which must not spend delivery attempts.
    pub fn uncount_delivery(&self, queue: &str, message_id: &str) -> Result<()> {
        self.store.write(|connection| {
        connection.execute(
            "UPDATE delivery_attempts SET attempts = MAX(attempts - 1, 0) WHERE queue = ?1 AND message_id = ?2",
            params![queue, message_id],
        )?;
        Ok(())
        })
    }

    /// Forgets the attempt count of a message that was settled for good.
    pub fn forget_deliveries(&self, queue: &str, message_id: &str) -> Result<()> {
        self.store.write(|connection| {
            connection.execute(
                "DELETE FROM delivery_attempts WHERE queue = ?1 AND message_id = ?2",
                params![queue, message_id],
            )?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_hand_over_of_the_same_pair_is_refused_and_remembered() {
        let store = Store::open_in_memory().unwrap();
        let inbox = store.inbox();
        assert!(inbox
            .record_hand_over(91462, "m1", from_ms(1000), "accepted")
            .unwrap());
        assert!(!inbox
            .record_hand_over(91462, "m1", from_ms(2000), "accepted")
            .unwrap());
        // The same id from another sender is another message.
        assert!(inbox
            .record_hand_over(109989, "m1", from_ms(2000), "accepted")
            .unwrap());
        assert_eq!(
            inbox.hand_over(91462, "m1").unwrap(),
            Some(HandOver {
                at: from_ms(1000),
                outcome: "accepted".into()
            })
        );
        assert_eq!(inbox.hand_over(91462, "m2").unwrap(), None);
    }

    #[test]
    fn hand_overs_are_forgotten_only_after_the_window() {
        let store = Store::open_in_memory().unwrap();
        let inbox = store.inbox();
        inbox
            .record_hand_over(1, "old", from_ms(1_000), "accepted")
            .unwrap();
        inbox
            .record_hand_over(1, "new", from_ms(9_000), "accepted")
            .unwrap();
        assert_eq!(inbox.forget_hand_overs_before(from_ms(5_000)).unwrap(), 1);
        assert!(inbox.hand_over(1, "old").unwrap().is_none());
        assert!(inbox.hand_over(1, "new").unwrap().is_some());
    }

    #[test]
    fn deliveries_are_counted_per_queue_and_outages_give_them_back() {
        let store = Store::open_in_memory().unwrap();
        let inbox = store.inbox();
        assert_eq!(
            inbox
                .count_delivery("91462_async", "m", from_ms(0))
                .unwrap(),
            1
        );
        assert_eq!(
            inbox
                .count_delivery("91462_async", "m", from_ms(1))
                .unwrap(),
            2
        );
        assert_eq!(
            inbox.count_delivery("91462_sync", "m", from_ms(1)).unwrap(),
            1
        );
        inbox.uncount_delivery("91462_async", "m").unwrap();
        assert_eq!(
            inbox
                .count_delivery("91462_async", "m", from_ms(2))
                .unwrap(),
            2
        );
        inbox.forget_deliveries("91462_async", "m").unwrap();
        assert_eq!(
            inbox
                .count_delivery("91462_async", "m", from_ms(3))
                .unwrap(),
            1
        );
    }
}
