//! The inbox's statements: [`Inbox`] for [`SqliteStore`] (hand-overs,
//! revocation-unknown marks and delivery counts).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use helsemelding_store::audit::AuditEvent;
use helsemelding_store::inbox::HandOverRecord;
use helsemelding_store::inbox::{Answer, DeliveryCount, DeliveryKey, HandOver, MessageKey};
use helsemelding_store::{Inbox, Result};
use rusqlite::{params, Connection, OptionalExtension};

use crate::audit::insert_audit;
use crate::error::Inner;
use crate::messages::track_arrival;
use crate::time::{from_ms, to_ms};
use crate::SqliteStore;
use helsemelding_store::messages::{Arrival, MessageState};

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

/// Gives the hand-over of `key` the answer it was given later (an AppRec
/// of the application's), unless it has one.
pub(crate) fn set_answer(
    connection: &Connection,
    key: MessageKey<'_>,
    answer: &Answer,
) -> Inner<()> {
    connection
        .prepare_cached(
            "UPDATE inbox_handed_over SET answer_function = ?4, answer_payload = ?5
             WHERE our_her_id = ?1 AND sender_her_id = ?2 AND message_id = ?3
               AND answer_payload IS NULL",
        )?
        .execute(params![
            key.ours,
            key.sender,
            key.message_id,
            answer.function,
            answer.payload
        ])?;
    Ok(())
}

/// A [`MessageKey`] owned, to move to a blocking thread.
struct OwnedKey {
    ours: u32,
    sender: u32,
    message_id: String,
}

impl OwnedKey {
    fn of(key: MessageKey<'_>) -> Self {
        OwnedKey {
            ours: key.ours,
            sender: key.sender,
            message_id: key.message_id.to_owned(),
        }
    }

    fn key(&self) -> MessageKey<'_> {
        MessageKey {
            ours: self.ours,
            sender: self.sender,
            message_id: &self.message_id,
        }
    }
}

#[async_trait]
impl Inbox for SqliteStore {
    async fn record_hand_over(
        &self,
        key: MessageKey<'_>,
        at: DateTime<Utc>,
        outcome: &str,
        answer: Option<&Answer>,
    ) -> Result<bool> {
        let (key, outcome, answer) = (OwnedKey::of(key), outcome.to_owned(), answer.cloned());
        self.write("inbox record hand over", move |connection| {
            insert_hand_over(connection, key.key(), at, &outcome, answer.as_ref())
        })
        .await
    }

    async fn record_hand_over_audited(&self, record: &HandOverRecord<'_>) -> Result<bool> {
        let key = OwnedKey::of(record.key);
        let (at, outcome, answer) = (record.at, record.outcome.to_owned(), record.answer.cloned());
        let delivery = record
            .delivery
            .map(|d| (d.queue.to_owned(), d.message_id.to_owned()));
        let audit: AuditEvent = record.audit.clone();
        let arrival = record
            .arrival
            .map(|a| (a.msg_id.map(str::to_owned), a.function.to_owned()));
        self.write("inbox record hand over audited", move |connection| {
            let new = insert_hand_over(connection, key.key(), at, &outcome, answer.as_ref())?;
            if let (true, Some((msg_id, function))) = (new, &arrival) {
                let arrival = Arrival {
                    msg_id: msg_id.as_deref(),
                    function,
                };
                track_arrival(
                    connection,
                    key.key(),
                    arrival,
                    MessageState::Available,
                    at,
                    None,
                )?;
            }
            if let Some((queue, message_id)) = &delivery {
                let delivery = DeliveryKey { queue, message_id };
                delete_deliveries(connection, delivery)?;
                delete_revocation_unknown(connection, delivery)?;
            }
            insert_audit(connection, at, &audit)?;
            Ok(new)
        })
        .await
    }

    async fn hand_over(&self, key: MessageKey<'_>) -> Result<Option<HandOver>> {
        let key = OwnedKey::of(key);
        self.read("inbox hand over", move |connection| {
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
        .await
    }

    async fn forget_hand_overs_before(&self, before: DateTime<Utc>) -> Result<usize> {
        self.write("inbox forget hand overs before", move |connection| {
            Ok(connection.execute(
                "DELETE FROM inbox_handed_over WHERE at_ms < ?1",
                [to_ms(before)],
            )?)
        })
        .await
    }

    async fn revocation_unknown_since(
        &self,
        queue: &str,
        message_id: &str,
        now: DateTime<Utc>,
    ) -> Result<DateTime<Utc>> {
        let (queue, message_id) = (queue.to_owned(), message_id.to_owned());
        self.write("inbox revocation unknown since", move |connection| {
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
        .await
    }

    async fn forget_revocation_unknown(&self, queue: &str, message_id: &str) -> Result<()> {
        let (queue, message_id) = (queue.to_owned(), message_id.to_owned());
        self.write("inbox forget revocation unknown", move |connection| {
            delete_revocation_unknown(
                connection,
                DeliveryKey {
                    queue: &queue,
                    message_id: &message_id,
                },
            )
        })
        .await
    }

    async fn count_delivery(
        &self,
        queue: &str,
        message_id: &str,
        at: DateTime<Utc>,
    ) -> Result<DeliveryCount> {
        let (queue, message_id) = (queue.to_owned(), message_id.to_owned());
        self.write("inbox count delivery", move |connection| {
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
        .await
    }

    async fn uncount_delivery(&self, queue: &str, message_id: &str) -> Result<()> {
        let (queue, message_id) = (queue.to_owned(), message_id.to_owned());
        self.write("inbox uncount delivery", move |connection| {
            connection.execute(
                "INSERT INTO delivery_attempts (queue, message_id, attempts, last_ms, free)
                 VALUES (?1, ?2, 0, 0, 1)
                 ON CONFLICT(queue, message_id) DO UPDATE SET free = free + 1",
                params![queue, message_id],
            )?;
            Ok(())
        })
        .await
    }

    async fn forget_deliveries(&self, queue: &str, message_id: &str) -> Result<()> {
        let (queue, message_id) = (queue.to_owned(), message_id.to_owned());
        self.write("inbox forget deliveries", move |connection| {
            delete_deliveries(
                connection,
                DeliveryKey {
                    queue: &queue,
                    message_id: &message_id,
                },
            )
        })
        .await
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
    use helsemelding_store::Store;

    use super::*;

    fn key<'a>(ours: u32, sender: u32, message_id: &'a str) -> MessageKey<'a> {
        MessageKey {
            ours,
            sender,
            message_id,
        }
    }

    #[tokio::test]
    async fn a_second_hand_over_of_the_same_message_is_refused_and_remembered() {
        let store = SqliteStore::open_in_memory().unwrap();
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
            .await
            .unwrap());
        assert!(!inbox
            .record_hand_over(key(8141705, 91462, "m1"), from_ms(2000), "accepted", None)
            .await
            .unwrap());
        // The same id from another sender, or to another of ours, is another message.
        assert!(inbox
            .record_hand_over(key(8141705, 109989, "m1"), from_ms(2000), "accepted", None)
            .await
            .unwrap());
        assert!(inbox
            .hand_over(key(8141703, 91462, "m1"))
            .await
            .unwrap()
            .is_none());
        assert_eq!(
            inbox.hand_over(key(8141705, 91462, "m1")).await.unwrap(),
            Some(HandOver {
                at: from_ms(1000),
                outcome: "accepted".into(),
                answer: Some(apprec),
            })
        );
        assert_eq!(
            inbox.hand_over(key(8141705, 91462, "m2")).await.unwrap(),
            None
        );
    }

    #[tokio::test]
    async fn hand_overs_are_forgotten_only_after_the_window() {
        let store = SqliteStore::open_in_memory().unwrap();
        let inbox = store.inbox();
        inbox
            .record_hand_over(key(2, 1, "old"), from_ms(1_000), "accepted", None)
            .await
            .unwrap();
        inbox
            .record_hand_over(key(2, 1, "new"), from_ms(9_000), "accepted", None)
            .await
            .unwrap();
        assert_eq!(
            inbox
                .forget_hand_overs_before(from_ms(5_000))
                .await
                .unwrap(),
            1
        );
        assert!(inbox.hand_over(key(2, 1, "old")).await.unwrap().is_none());
        assert!(inbox.hand_over(key(2, 1, "new")).await.unwrap().is_some());
    }

    #[tokio::test]
    async fn revocation_unknown_remembers_the_first_time() {
        let store = SqliteStore::open_in_memory().unwrap();
        let inbox = store.inbox();
        let first = inbox
            .revocation_unknown_since("q", "m", from_ms(1_000))
            .await
            .unwrap();
        let later = inbox
            .revocation_unknown_since("q", "m", from_ms(9_000))
            .await
            .unwrap();
        assert_eq!((first, later), (from_ms(1_000), from_ms(1_000)));
        inbox.forget_revocation_unknown("q", "m").await.unwrap();
        assert_eq!(
            inbox
                .revocation_unknown_since("q", "m", from_ms(9_000))
                .await
                .unwrap(),
            from_ms(9_000)
        );
    }

    #[tokio::test]
    async fn deliveries_are_counted_per_queue_and_free_ones_are_not_attempts() {
        let store = SqliteStore::open_in_memory().unwrap();
        let inbox = store.inbox();
        let count = |queue: &'static str, at| async move {
            inbox.count_delivery(queue, "m", from_ms(at)).await.unwrap()
        };
        assert_eq!(count("91462_async", 0).await.attempt(0), 2);
        assert_eq!(count("91462_async", 1).await.attempt(0), 3);
        assert_eq!(count("91462_sync", 1).await.attempt(0), 2);
        inbox.uncount_delivery("91462_async", "m").await.unwrap();
        assert_eq!(count("91462_async", 2).await.attempt(0), 3);
        inbox.forget_deliveries("91462_async", "m").await.unwrap();
        assert_eq!(count("91462_async", 3).await.attempt(0), 2);
    }

    #[tokio::test]
    async fn a_broker_that_counts_deliveries_does_not_spend_the_free_ones() {
        let store = SqliteStore::open_in_memory().unwrap();
        let inbox = store.inbox();
        // The first delivery met a full disk: released for free.
        inbox.uncount_delivery("q", "m").await.unwrap();
        for n in 1..=20u32 {
            // The broker counts every release; we pause on each one.
            let count = inbox
                .count_delivery("q", "m", from_ms(n.into()))
                .await
                .unwrap();
            assert_eq!(count.attempt(n), 1, "delivery {n}");
            inbox.uncount_delivery("q", "m").await.unwrap();
        }
        // A real failure now is the first attempt spent; the next is the second.
        assert_eq!(
            inbox
                .count_delivery("q", "m", from_ms(21))
                .await
                .unwrap()
                .attempt(21),
            1
        );
        assert_eq!(
            inbox
                .count_delivery("q", "m", from_ms(22))
                .await
                .unwrap()
                .attempt(22),
            2
        );
    }
}
