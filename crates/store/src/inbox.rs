//! What happened to received messages: de-duplication and attempt counting.
//!
//! Duplicates are normal on the bus (a consumer that outlives the broker's
//! consumer timeout gets its delivery again), so every hand-over to the
//! application is remembered by (our HER-id, sender HER-id, message-id) for at least as
//! long as the longest TTL, and a repeat is accepted without a second
//! hand-over. Brokers that do not count deliveries (RabbitMQ 3.10 classic
//! queues report 0 forever) are counted here instead.

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension};

use crate::audit::{insert_audit, AuditEvent};
use crate::error::Inner;
use crate::time::{from_ms, to_ms};
use crate::{Result, Store};

/// A hand-over remembered for de-duplication.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandOver {
    pub at: DateTime<Utc>,
    /// What was done with it, e.g. `accepted`.
    pub outcome: String,
    /// The answer it got (an AppRec, say), which a repeat gets again.
    pub answer: Option<Answer>,
}

/// The answer a handed-over message got: its function and unprotected
/// payload. Only answers without health data are kept (AppRecs); they are
/// protected afresh when sent again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub function: String,
    pub payload: Vec<u8>,
}

/// How often a message was delivered before, as far as the store counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeliveryCount {
    /// Redeliveries seen, the current one included (first deliveries are
    /// not written down).
    pub redeliveries: u32,
    /// Deliveries released without spending an attempt (outages, faults
    /// of ours).
    pub free: u32,
}

impl DeliveryCount {
    /// The attempt number of the current delivery (1 for the first), given
    /// the broker's own count of earlier deliveries (0 where the broker
    /// does not count): free deliveries are not attempts.
    pub fn attempt(&self, broker_count: u32) -> u32 {
        (1 + self.redeliveries.max(broker_count))
            .saturating_sub(self.free)
            .max(1)
    }
}

/// Which message: our HER-id it was addressed to, the sender, its id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MessageKey<'a> {
    pub ours: u32,
    pub sender: u32,
    pub message_id: &'a str,
}

/// A delivery as the store counts it: the queue it came from and its
/// message id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeliveryKey<'a> {
    pub queue: &'a str,
    pub message_id: &'a str,
}

/// A hand-over to record as one unit of work
/// ([`Inbox::record_hand_over_audited`]).
#[derive(Clone, Copy, Debug)]
pub struct HandOverRecord<'a> {
    pub key: MessageKey<'a>,
    pub at: DateTime<Utc>,
    /// What was done with it, e.g. `accepted`.
    pub outcome: &'a str,
    pub answer: Option<&'a Answer>,
    /// The delivery whose count (and unknown-revocation mark) is forgotten,
    /// if it was written down (first deliveries are not).
    pub delivery: Option<DeliveryKey<'a>>,
    /// Its audit row, appended at `at`.
    pub audit: &'a AuditEvent,
}

/// Records a hand-over unless one is on record; `true` when it was new.
pub(crate) fn insert_hand_over(
    connection: &Connection,
    key: MessageKey<'_>,
    at: DateTime<Utc>,
    outcome: &str,
    answer: Option<&Answer>,
) -> Inner<bool> {
    let inserted = connection.execute(
        "INSERT INTO inbox_handed_over
         (our_her_id, sender_her_id, message_id, at_ms, outcome, answer_function, answer_payload)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT DO NOTHING",
        params![
            key.ours,
            key.sender,
            key.message_id,
            to_ms(at),
            outcome,
            answer.map(|a| a.function.as_str()),
            answer.map(|a| a.payload.as_slice())
        ],
    )?;
    Ok(inserted == 1)
}

/// The inbox view of a [`Store`].
pub struct Inbox<'a> {
    store: &'a Store,
}

impl<'a> Inbox<'a> {
    pub(crate) fn new(store: &'a Store) -> Self {
        Inbox { store }
    }

    /// Records that the message was handed to the application (or
    /// answered) with `outcome` and the answer it got. Returns `false` when
    /// it was already recorded: the caller must not hand it over again.
    /// Messages refused with an error report are never recorded: a repeat
    /// of one is judged afresh.
    pub fn record_hand_over(
        &self,
        key: MessageKey<'_>,
        at: DateTime<Utc>,
        outcome: &str,
        answer: Option<&Answer>,
    ) -> Result<bool> {
        self.store.write("inbox record hand over", |connection| {
            insert_hand_over(connection, key, at, outcome, answer)
        })
    }

    /// One unit of work: records the hand-over (as
    /// [`Inbox::record_hand_over`]), appends its audit row and forgets the
    /// delivery's count and unknown-revocation mark (as
    /// [`Inbox::forget_deliveries`] and [`Inbox::forget_revocation_unknown`]).
    /// All of it happens or none does. Returns `false` when the hand-over
    /// was already recorded (the audit row and the forgetting happen all
    /// the same).
    pub fn record_hand_over_audited(&self, record: &HandOverRecord<'_>) -> Result<bool> {
        self.store
            .write("inbox record hand over audited", |connection| {
                let new = insert_hand_over(
                    connection,
                    record.key,
                    record.at,
                    record.outcome,
                    record.answer,
                )?;
                if let Some(delivery) = record.delivery {
                    delete_deliveries(connection, delivery)?;
                    delete_revocation_unknown(connection, delivery)?;
                }
                insert_audit(connection, record.at, record.audit)?;
                Ok(new)
            })
    }

    /// The earlier hand-over of this message, if any (rows migrated from a
    /// store without our HER-id count for any of ours).
    pub fn hand_over(&self, key: MessageKey<'_>) -> Result<Option<HandOver>> {
        self.store.read("inbox hand over", |connection| {
            Ok(connection
                .query_row(
                    "SELECT at_ms, outcome, answer_function, answer_payload FROM inbox_handed_over
                 WHERE our_her_id IN (?1, 0) AND sender_her_id = ?2 AND message_id = ?3
                 ORDER BY our_her_id DESC LIMIT 1",
                    params![key.ours, key.sender, key.message_id],
                    |row| {
                        let function: Option<String> = row.get(2)?;
                        let payload: Option<Vec<u8>> = row.get(3)?;
                        Ok(HandOver {
                            at: from_ms(row.get(0)?),
                            outcome: row.get(1)?,
                            answer: function
                                .zip(payload)
                                .map(|(function, payload)| Answer { function, payload }),
                        })
                    },
                )
                .optional()?)
        })
    }

    /// Forgets hand-overs older than `before` (the de-duplication window has
    /// passed); returns how many were removed.
    pub fn forget_hand_overs_before(&self, before: DateTime<Utc>) -> Result<usize> {
        self.store
            .write("inbox forget hand overs before", |connection| {
                Ok(connection.execute(
                    "DELETE FROM inbox_handed_over WHERE at_ms < ?1",
                    [to_ms(before)],
                )?)
            })
    }

    /// Since when the revocation status of this message's sender has been
    /// unknown: the first call records `now`, later ones return it.
    pub fn revocation_unknown_since(
        &self,
        queue: &str,
        message_id: &str,
        now: DateTime<Utc>,
    ) -> Result<DateTime<Utc>> {
        self.store
            .write("inbox revocation unknown since", |connection| {
                connection.execute(
                "INSERT INTO revocation_unknown (queue, message_id, since_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT DO NOTHING",
                params![queue, message_id, to_ms(now)],
            )?;
                Ok(from_ms(connection.query_row(
                    "SELECT since_ms FROM revocation_unknown WHERE queue = ?1 AND message_id = ?2",
                    params![queue, message_id],
                    |row| row.get(0),
                )?))
            })
    }

    /// Forgets that a message's revocation status was unknown (it was
    /// settled, or the status became known).
    pub fn forget_revocation_unknown(&self, queue: &str, message_id: &str) -> Result<()> {
        self.store
            .write("inbox forget revocation unknown", |connection| {
                delete_revocation_unknown(connection, DeliveryKey { queue, message_id })
            })
    }

    /// Counts one more redelivery of `message_id` from `queue`; returns the
    /// redeliveries seen so far (this one included) and how many
    /// deliveries were released without spending an attempt.
    pub fn count_delivery(
        &self,
        queue: &str,
        message_id: &str,
        at: DateTime<Utc>,
    ) -> Result<DeliveryCount> {
        self.store.write("inbox count delivery", |connection| {
            Ok(connection.query_row(
                "INSERT INTO delivery_attempts (queue, message_id, attempts, last_ms) VALUES (?1, ?2, 1, ?3)
                 ON CONFLICT(queue, message_id) DO UPDATE SET attempts = attempts + 1, last_ms = ?3
                 RETURNING attempts, free",
                params![queue, message_id, to_ms(at)],
                |row| {
                    Ok(DeliveryCount {
                        redeliveries: row.get(0)?,
                        free: row.get(1)?,
                    })
                },
            )?)
        })
    }

    /// Marks one delivery as free: it failed for an outage or a fault of
    /// ours (registry or revocation service down, disk full), which must
    /// not spend the message's delivery attempts. Brokers that count
    /// deliveries count it all the same; this count is subtracted.
    pub fn uncount_delivery(&self, queue: &str, message_id: &str) -> Result<()> {
        self.store.write("inbox uncount delivery", |connection| {
            connection.execute(
                "INSERT INTO delivery_attempts (queue, message_id, attempts, last_ms, free)
                 VALUES (?1, ?2, 0, 0, 1)
                 ON CONFLICT(queue, message_id) DO UPDATE SET free = free + 1",
                params![queue, message_id],
            )?;
            Ok(())
        })
    }

    /// Forgets the attempt count of a message that was settled for good.
    pub fn forget_deliveries(&self, queue: &str, message_id: &str) -> Result<()> {
        self.store.write("inbox forget deliveries", |connection| {
            delete_deliveries(connection, DeliveryKey { queue, message_id })
        })
    }
}

fn delete_deliveries(connection: &Connection, delivery: DeliveryKey<'_>) -> Inner<()> {
    connection.execute(
        "DELETE FROM delivery_attempts WHERE queue = ?1 AND message_id = ?2",
        params![delivery.queue, delivery.message_id],
    )?;
    Ok(())
}

fn delete_revocation_unknown(connection: &Connection, delivery: DeliveryKey<'_>) -> Inner<()> {
    connection.execute(
        "DELETE FROM revocation_unknown WHERE queue = ?1 AND message_id = ?2",
        params![delivery.queue, delivery.message_id],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key<'a>(ours: u32, sender: u32, message_id: &'a str) -> MessageKey<'a> {
        MessageKey {
            ours,
            sender,
            message_id,
        }
    }

    #[test]
    fn a_second_hand_over_of_the_same_message_is_refused_and_remembered() {
        let store = Store::open_in_memory().unwrap();
        let inbox = store.inbox();
        let apprec = Answer {
            function: "APPREC".into(),
            payload: b"<AppRec/>".to_vec(),
        };
        assert!(inbox
            .record_hand_over(
                key(8141705, 91462, "m1"),
                from_ms(1000),
                "accepted",
                Some(&apprec)
            )
            .unwrap());
        assert!(!inbox
            .record_hand_over(key(8141705, 91462, "m1"), from_ms(2000), "accepted", None)
            .unwrap());
        // The same id from another sender, or to another of ours, is another message.
        assert!(inbox
            .record_hand_over(key(8141705, 109989, "m1"), from_ms(2000), "accepted", None)
            .unwrap());
        assert!(inbox
            .hand_over(key(8141703, 91462, "m1"))
            .unwrap()
            .is_none());
        assert_eq!(
            inbox.hand_over(key(8141705, 91462, "m1")).unwrap(),
            Some(HandOver {
                at: from_ms(1000),
                outcome: "accepted".into(),
                answer: Some(apprec),
            })
        );
        assert_eq!(inbox.hand_over(key(8141705, 91462, "m2")).unwrap(), None);
    }

    #[test]
    fn hand_overs_are_forgotten_only_after_the_window() {
        let store = Store::open_in_memory().unwrap();
        let inbox = store.inbox();
        inbox
            .record_hand_over(key(2, 1, "old"), from_ms(1_000), "accepted", None)
            .unwrap();
        inbox
            .record_hand_over(key(2, 1, "new"), from_ms(9_000), "accepted", None)
            .unwrap();
        assert_eq!(inbox.forget_hand_overs_before(from_ms(5_000)).unwrap(), 1);
        assert!(inbox.hand_over(key(2, 1, "old")).unwrap().is_none());
        assert!(inbox.hand_over(key(2, 1, "new")).unwrap().is_some());
    }

    #[test]
    fn revocation_unknown_remembers_the_first_time() {
        let store = Store::open_in_memory().unwrap();
        let inbox = store.inbox();
        let first = inbox
            .revocation_unknown_since("q", "m", from_ms(1_000))
            .unwrap();
        let later = inbox
            .revocation_unknown_since("q", "m", from_ms(9_000))
            .unwrap();
        assert_eq!((first, later), (from_ms(1_000), from_ms(1_000)));
        inbox.forget_revocation_unknown("q", "m").unwrap();
        assert_eq!(
            inbox
                .revocation_unknown_since("q", "m", from_ms(9_000))
                .unwrap(),
            from_ms(9_000)
        );
    }

    #[test]
    fn deliveries_are_counted_per_queue_and_free_ones_are_not_attempts() {
        let store = Store::open_in_memory().unwrap();
        let inbox = store.inbox();
        let count = |queue: &str, at| inbox.count_delivery(queue, "m", from_ms(at)).unwrap();
        assert_eq!(count("91462_async", 0).attempt(0), 2);
        assert_eq!(count("91462_async", 1).attempt(0), 3);
        assert_eq!(count("91462_sync", 1).attempt(0), 2);
        inbox.uncount_delivery("91462_async", "m").unwrap();
        assert_eq!(count("91462_async", 2).attempt(0), 3);
        inbox.forget_deliveries("91462_async", "m").unwrap();
        assert_eq!(count("91462_async", 3).attempt(0), 2);
    }

    #[test]
    fn a_broker_that_counts_deliveries_does_not_spend_the_free_ones() {
        let store = Store::open_in_memory().unwrap();
        let inbox = store.inbox();
        // The first delivery met a full disk: released for free.
        inbox.uncount_delivery("q", "m").unwrap();
        for n in 1..=20u32 {
            // The broker counts every release; we pause on each one.
            let count = inbox.count_delivery("q", "m", from_ms(n.into())).unwrap();
            assert_eq!(count.attempt(n), 1, "delivery {n}");
            inbox.uncount_delivery("q", "m").unwrap();
        }
        // A real failure now is the first attempt spent; the next is the second.
        assert_eq!(
            inbox
                .count_delivery("q", "m", from_ms(21))
                .unwrap()
                .attempt(21),
            1
        );
        assert_eq!(
            inbox
                .count_delivery("q", "m", from_ms(22))
                .unwrap()
                .attempt(22),
            2
        );
    }
}
