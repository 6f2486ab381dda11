//! The outbox's statements: [`Outbox`] for [`SqliteStore`].

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use helsemelding_store::audit::{AuditEvent, AuditRecord};
use helsemelding_store::inbox::{Answer, MessageKey};
use helsemelding_store::outbox::{OutboxEntry, OutboxState, OutgoingMessage, RetryAt};
use helsemelding_store::{Error, Outbox, Result};
use rusqlite::{params, Connection, OptionalExtension};

use crate::audit::insert_audit;
use crate::error::{Fault, Inner};
use crate::inbox::insert_hand_over;
use crate::messages::{track_arrival, track_enqueued, track_outgoing};
use crate::time::{from_ms, to_ms};
use crate::SqliteStore;
use helsemelding_store::messages::{Arrival, MessageState};

const MESSAGE_COLUMNS: &str = "message_id, to_her_id, queue, function, envelope, body, created_ms,
     expires_ms, payload_digest, from_her_id, msg_id";

fn message_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<OutgoingMessage> {
    Ok(OutgoingMessage {
        message_id: row.get(0)?,
        to_her_id: row.get(1)?,
        queue: row.get(2)?,
        function: row.get(3)?,
        envelope: row.get(4)?,
        body: row.get::<_, Option<Vec<u8>>>(5)?.unwrap_or_default(),
        created_at: from_ms(row.get(6)?),
        expires_at: row.get::<_, Option<i64>>(7)?.map(from_ms),
        payload_digest: row.get(8)?,
        from_her_id: row.get(9)?,
        msg_id: row.get(10)?,
    })
}

const STATE_COLUMNS: &str = "state, attempts, last_error, settled_ms, next_attempt_ms";

/// The state from the [`STATE_COLUMNS`] starting at column `first`.
fn state_from_row(row: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<OutboxState> {
    let state: String = row.get(first)?;
    let attempts: u32 = row.get(first + 1)?;
    let last_error: Option<String> = row.get(first + 2)?;
    let settled: Option<i64> = row.get(first + 3)?;
    let next: i64 = row.get(first + 4)?;
    let at = from_ms(settled.unwrap_or_default());
    Ok(match state.as_str() {
        "pending" => OutboxState::Pending {
            attempts,
            last_error,
            next_attempt_at: from_ms(next),
        },
        "sent" => OutboxState::Sent { at },
        _ => OutboxState::Failed {
            at,
            attempts,
            reason: last_error.unwrap_or_default(),
        },
    })
}

fn insert_pending(connection: &Connection, message: &OutgoingMessage) -> Inner<()> {
    let inserted = connection.execute(
        "INSERT INTO outbox (message_id, to_her_id, queue, function, envelope, body,
                             created_ms, expires_ms, payload_digest, from_her_id, msg_id, state)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, 'pending')
         ON CONFLICT(message_id) DO NOTHING",
        params![
            message.message_id,
            message.to_her_id,
            message.queue,
            message.function,
            message.envelope,
            message.body,
            to_ms(message.created_at),
            message.expires_at.map(to_ms),
            message.payload_digest,
            message.from_her_id,
            message.msg_id,
        ],
    )?;
    if inserted == 0 {
        return Err(Error::DuplicateMessageId {
            message_id: message.message_id.clone(),
        }
        .into());
    }
    track_enqueued(connection, message)
}

#[async_trait]
impl Outbox for SqliteStore {
    async fn enqueue(&self, message: &OutgoingMessage) -> Result<()> {
        let message = message.clone();
        self.write("outbox enqueue", move |connection| {
            insert_pending(connection, &message)
        })
        .await
    }

    async fn enqueue_audited(
        &self,
        message: &OutgoingMessage,
        audit: &AuditEvent,
    ) -> Result<AuditRecord> {
        let (message, audit) = (message.clone(), audit.clone());
        self.write("outbox enqueue audited", move |connection| {
            insert_pending(connection, &message)?;
            insert_audit(connection, message.created_at, &audit)
        })
        .await
    }

    async fn enqueue_answer(
        &self,
        message: &OutgoingMessage,
        answers: MessageKey<'_>,
        arrival: Arrival<'_>,
        answer: &Answer,
    ) -> Result<()> {
        let (message, answer) = (message.clone(), answer.clone());
        let (ours, sender, answered_id) =
            (answers.ours, answers.sender, answers.message_id.to_owned());
        let (msg_id, function) = (
            arrival.msg_id.map(str::to_owned),
            arrival.function.to_owned(),
        );
        self.write("outbox enqueue answer", move |connection| {
            insert_pending(connection, &message)?;
            let answers = MessageKey {
                ours,
                sender,
                message_id: &answered_id,
            };
            let at = message.created_at;
            if insert_hand_over(connection, answers, at, "accepted", Some(&answer))? {
                // Answered as it is handed over (automatic receipts): it
                // is still the EHR's to take, so it stays AVAILABLE.
                let arrival = Arrival {
                    msg_id: msg_id.as_deref(),
                    function: &function,
                };
                track_arrival(
                    connection,
                    answers,
                    arrival,
                    MessageState::Available,
                    at,
                    None,
                )?;
                return Ok(());
            }
            // Handed over before and answered now by the application: a
            // redelivery from here on is answered with this answer.
            crate::inbox::set_answer(connection, answers, &answer)?;
            let record = crate::messages::record_of(connection, answers)?;
            let detail = format!("answered by {}", message.message_id);
            crate::messages::change(
                connection,
                record,
                MessageState::AppRecSent,
                at,
                Some(&detail),
            )
        })
        .await
    }

    async fn pending(&self, limit: usize) -> Result<Vec<OutgoingMessage>> {
        self.read("outbox pending", move |connection| {
            let mut statement = connection.prepare_cached(&format!(
                "SELECT {MESSAGE_COLUMNS} FROM outbox WHERE state = 'pending' ORDER BY seq LIMIT ?1"
            ))?;
            let rows = statement.query_map([limit as i64], message_from_row)?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn due(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<OutgoingMessage>> {
        self.read("outbox due", move |connection| {
            let mut statement = connection.prepare_cached(&format!(
                "SELECT {MESSAGE_COLUMNS} FROM outbox
                 WHERE state = 'pending' AND next_attempt_ms <= ?1 ORDER BY seq LIMIT ?2"
            ))?;
            let rows = statement.query_map(params![to_ms(now), limit as i64], message_from_row)?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn entries(&self, limit: usize) -> Result<Vec<OutboxEntry>> {
        self.read("outbox entries", move |connection| {
            let mut statement = connection.prepare_cached(&format!(
                "SELECT {ENTRY_COLUMNS} FROM outbox WHERE state IN ('pending', 'failed')
                 ORDER BY seq LIMIT ?1"
            ))?;
            let rows =
                statement.query_map([limit.min(i64::MAX as usize) as i64], entry_from_row)?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn record_attempt_failed(
        &self,
        message_id: &str,
        error: &str,
        retry_at: RetryAt,
    ) -> Result<u32> {
        let (message_id, error) = (message_id.to_owned(), error.to_owned());
        self.write("outbox record attempt failed", move |connection| {
            let attempts: u32 = connection
                .query_row(
                    "UPDATE outbox SET attempts = attempts + 1, last_error = ?2
                     WHERE message_id = ?1 AND state = 'pending' RETURNING attempts",
                    params![message_id, error],
                    |row| row.get(0),
                )
                .optional()?
                .ok_or_else(|| unknown(&message_id))?;
            let next = retry_at(attempts);
            connection.execute(
                "UPDATE outbox SET next_attempt_ms = ?2 WHERE message_id = ?1",
                params![message_id, to_ms(next)],
            )?;
            let (state, now) = (MessageState::RetryWait, Utc::now());
            track_outgoing(
                connection,
                &message_id,
                state,
                now,
                Some(&error),
                Some(attempts),
            )?;
            Ok(attempts)
        })
        .await
    }

    async fn record_outage(&self, message_id: &str, error: &str) -> Result<()> {
        let (message_id, error) = (message_id.to_owned(), error.to_owned());
        self.write("outbox record outage", move |connection| {
            let changed = connection.execute(
                "UPDATE outbox SET last_error = ?2 WHERE message_id = ?1 AND state = 'pending'",
                params![message_id, error],
            )?;
            if changed == 0 {
                return Err(unknown(&message_id));
            }
            Ok(())
        })
        .await
    }

    async fn retry(&self, message_id: &str, now: DateTime<Utc>) -> Result<()> {
        let message_id = message_id.to_owned();
        self.write("outbox retry", move |connection| {
            let found: Option<(String, bool)> = connection
                .query_row(
                    "SELECT state, body IS NOT NULL FROM outbox WHERE message_id = ?1",
                    [&message_id],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .optional()?;
            match found {
                None => return Err(unknown(&message_id)),
                Some((state, _)) if state != "failed" => {
                    return Err(Error::OutboxState {
                        message_id,
                        state,
                        action: "retry (only a failed entry can be retried)",
                    }
                    .into())
                }
                Some((_, false)) => {
                    return Err(Error::OutboxState {
                        message_id,
                        state: "failed without its bytes (given up before this version kept them)"
                            .into(),
                        action: "retry: drop it and send the message again",
                    }
                    .into())
                }
                Some(_) => {}
            }
            connection.execute(
                "UPDATE outbox SET state = 'pending', attempts = 0, settled_ms = NULL,
                                   next_attempt_ms = ?2
                 WHERE message_id = ?1",
                params![message_id, to_ms(now)],
            )?;
            track_outgoing(
                connection,
                &message_id,
                MessageState::Accepted,
                now,
                None,
                Some(0),
            )
        })
        .await
    }

    async fn entry(&self, message_id: &str) -> Result<Option<OutboxEntry>> {
        let message_id = message_id.to_owned();
        self.read("outbox entry", move |connection| {
            entry_of(connection, &message_id)
        })
        .await
    }

    async fn remove(&self, message_id: &str) -> Result<OutboxEntry> {
        let message_id = message_id.to_owned();
        self.write("outbox remove", move |connection| {
            let entry = entry_of(connection, &message_id)?.ok_or_else(|| unknown(&message_id))?;
            if let OutboxState::Sent { .. } = entry.state {
                return Err(Error::OutboxState {
                    message_id,
                    state: "sent".into(),
                    action: "drop (a sent message is history)",
                }
                .into());
            }
            connection.execute("DELETE FROM outbox WHERE message_id = ?1", [&message_id])?;
            let (state, now) = (MessageState::Cancelled, Utc::now());
            track_outgoing(connection, &message_id, state, now, None, None)?;
            Ok(entry)
        })
        .await
    }

    async fn mark_sent(&self, message_id: &str, at: DateTime<Utc>) -> Result<()> {
        self.settle(message_id, "sent", at, None).await
    }

    async fn mark_sent_audited(
        &self,
        message_id: &str,
        at: DateTime<Utc>,
        audit: &AuditEvent,
    ) -> Result<AuditRecord> {
        let (message_id, audit) = (message_id.to_owned(), audit.clone());
        self.write("outbox mark sent audited", move |connection| {
            settle_row(connection, &message_id, "sent", at, None)?;
            insert_audit(connection, at, &audit)
        })
        .await
    }

    async fn mark_failed(&self, message_id: &str, at: DateTime<Utc>, reason: &str) -> Result<()> {
        self.settle(message_id, "failed", at, Some(reason)).await
    }

    async fn mark_expired(&self, message_id: &str, at: DateTime<Utc>) -> Result<()> {
        self.settle(message_id, "expired", at, Some("expired in the outbox"))
            .await
    }

    async fn state(&self, message_id: &str) -> Result<Option<OutboxState>> {
        let message_id = message_id.to_owned();
        self.read("outbox state", move |connection| {
            connection
                .query_row(
                    &format!("SELECT {STATE_COLUMNS} FROM outbox WHERE message_id = ?1"),
                    [&message_id],
                    |row| state_from_row(row, 0),
                )
                .optional()
                .map_err(Fault::from)
        })
        .await
    }

    async fn pending_count(&self) -> Result<u64> {
        self.read("outbox pending count", |connection| {
            let count: i64 = connection.query_row(
                "SELECT COUNT(*) FROM outbox WHERE state = 'pending'",
                [],
                |row| row.get(0),
            )?;
            Ok(count.unsigned_abs())
        })
        .await
    }
}

impl SqliteStore {
    /// Settles a pending entry as `state` (sent or failed) at `at`.
    async fn settle(
        &self,
        message_id: &str,
        state: &'static str,
        at: DateTime<Utc>,
        reason: Option<&str>,
    ) -> Result<()> {
        let (message_id, reason) = (message_id.to_owned(), reason.map(str::to_owned));
        self.write("outbox settle", move |connection| {
            settle_row(connection, &message_id, state, at, reason.as_deref())
        })
        .await
    }
}

const ENTRY_COLUMNS: &str = "message_id, to_her_id, queue, function, created_ms, expires_ms,
     payload_digest, state, attempts, last_error, settled_ms, next_attempt_ms";

fn entry_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<OutboxEntry> {
    Ok(OutboxEntry {
        message_id: row.get(0)?,
        to_her_id: row.get(1)?,
        queue: row.get(2)?,
        function: row.get(3)?,
        created_at: from_ms(row.get(4)?),
        expires_at: row.get::<_, Option<i64>>(5)?.map(from_ms),
        payload_digest: row.get(6)?,
        state: state_from_row(row, 7)?,
    })
}

fn entry_of(connection: &rusqlite::Connection, message_id: &str) -> Inner<Option<OutboxEntry>> {
    connection
        .query_row(
            &format!("SELECT {ENTRY_COLUMNS} FROM outbox WHERE message_id = ?1"),
            [message_id],
            entry_from_row,
        )
        .optional()
        .map_err(Fault::from)
}

/// Settles a pending entry as `state` (sent, failed, or expired: failed
/// with its TTL passed) at `at`.
fn settle_row(
    connection: &Connection,
    message_id: &str,
    state: &str,
    at: DateTime<Utc>,
    reason: Option<&str>,
) -> Inner<()> {
    let (state, tracked) = match state {
        "sent" => ("sent", MessageState::Sent),
        "expired" => ("failed", MessageState::Expired),
        _ => ("failed", MessageState::Failed),
    };
    let changed = connection.execute(
        "UPDATE outbox SET state = ?2, settled_ms = ?3,
                           body = CASE WHEN ?2 = 'sent' THEN NULL ELSE body END,
                           last_error = COALESCE(?4, last_error)
         WHERE message_id = ?1 AND (state = 'pending' OR state = ?2)",
        params![message_id, state, to_ms(at), reason],
    )?;
    if changed == 0 {
        return Err(unknown(message_id));
    }
    track_outgoing(connection, message_id, tracked, at, reason, None)
}

fn unknown(message_id: &str) -> Fault {
    Fault::Store(Error::UnknownMessage {
        message_id: message_id.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use helsemelding_store::Store;

    use super::*;

    fn message(id: &str) -> OutgoingMessage {
        OutgoingMessage {
            message_id: id.into(),
            from_her_id: 8094866,
            to_her_id: 93252,
            msg_id: None,
            queue: "93252_async".into(),
            function: "DIALOG_INNBYGGER_EKONTAKT".into(),
            envelope: b"{}".to_vec(),
            body: vec![0x30, 0x80, 1, 2, 3],
            created_at: from_ms(1_700_000_000_000),
            expires_at: None,
            payload_digest: None,
        }
    }

    #[tokio::test]
    async fn pending_messages_come_back_in_order_until_sent() {
        let store = SqliteStore::open_in_memory().unwrap();
        let outbox = store.outbox();
        outbox.enqueue(&message("a")).await.unwrap();
        outbox.enqueue(&message("b")).await.unwrap();
        let pending = outbox.pending(10).await.unwrap();
        assert_eq!(pending, vec![message("a"), message("b")]);

        outbox
            .mark_sent("a", from_ms(1_700_000_001_000))
            .await
            .unwrap();
        assert_eq!(outbox.pending(10).await.unwrap(), vec![message("b")]);
        assert_eq!(
            outbox.state("a").await.unwrap(),
            Some(OutboxState::Sent {
                at: from_ms(1_700_000_001_000)
            })
        );
        assert_eq!(outbox.pending_count().await.unwrap(), 1);
    }

    #[tokio::test]
    async fn an_answer_and_the_hand_over_it_answers_are_recorded_together_or_not_at_all() {
        let store = SqliteStore::open_in_memory().unwrap();
        let arrival = || Arrival {
            msg_id: Some("msg-1"),
            function: "DIALOG_INNBYGGER_EKONTAKT",
        };
        let key = MessageKey {
            ours: 93252,
            sender: 91462,
            message_id: "incoming-1",
        };
        let answer = Answer {
            function: "APPREC".into(),
            payload: b"<AppRec/>".to_vec(),
        };
        store
            .outbox()
            .enqueue_answer(&message("apprec-1"), key, arrival(), &answer)
            .await
            .unwrap();
        let earlier = store.inbox().hand_over(key).await.unwrap().unwrap();
        assert_eq!(earlier.answer, Some(answer.clone()));
        assert_eq!(store.outbox().pending_count().await.unwrap(), 1);

        // A failing enqueue (a message id already queued) leaves no hand-over.
        let other = MessageKey {
            message_id: "incoming-2",
            ..key
        };
        assert!(store
            .outbox()
            .enqueue_answer(&message("apprec-1"), other, arrival(), &answer)
            .await
            .is_err());
        assert_eq!(store.inbox().hand_over(other).await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_sent_message_keeps_no_bytes() {
        let store = SqliteStore::open_in_memory().unwrap();
        store.outbox().enqueue(&message("a")).await.unwrap();
        store.outbox().mark_sent("a", from_ms(0)).await.unwrap();
        let body: Option<Vec<u8>> = store
            .database
            .lock()
            .query_row("SELECT body FROM outbox WHERE message_id = 'a'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(body, None);
    }

    #[tokio::test]
    async fn duplicate_and_unknown_ids_are_named() {
        let store = SqliteStore::open_in_memory().unwrap();
        let outbox = store.outbox();
        outbox.enqueue(&message("a")).await.unwrap();
        let error = outbox.enqueue(&message("a")).await.unwrap_err();
        assert_eq!(error.to_string(), "message a is already in the outbox");
        let error = outbox.mark_sent("nope", from_ms(0)).await.unwrap_err();
        assert!(matches!(error, Error::UnknownMessage { message_id } if message_id == "nope"));
    }

    #[tokio::test]
    async fn failed_attempts_are_counted_and_a_failed_message_is_not_resent() {
        let store = SqliteStore::open_in_memory().unwrap();
        let outbox = store.outbox();
        outbox.enqueue(&message("a")).await.unwrap();
        let later = from_ms(1_700_000_010_000);
        assert_eq!(
            outbox
                .record_attempt_failed(
                    "a",
                    "queue 93252_async does not exist",
                    Box::new(move |_| later)
                )
                .await
                .unwrap(),
            1
        );
        assert_eq!(
            outbox
                .record_attempt_failed(
                    "a",
                    "queue 93252_async does not exist",
                    Box::new(move |_| later)
                )
                .await
                .unwrap(),
            2
        );
        assert_eq!(
            outbox.state("a").await.unwrap(),
            Some(OutboxState::Pending {
                attempts: 2,
                last_error: Some("queue 93252_async does not exist".into()),
                next_attempt_at: later,
            })
        );
        outbox
            .mark_failed("a", from_ms(5), "expired before it could be sent")
            .await
            .unwrap();
        assert!(outbox.pending(10).await.unwrap().is_empty());
        assert!(
            matches!(outbox.state("a").await.unwrap(), Some(OutboxState::Failed { reason, attempts: 2, .. }) if reason.starts_with("expired"))
        );
        // A failed message cannot be marked sent behind the operator's back.
        assert!(outbox.mark_sent("a", from_ms(6)).await.is_err());
    }

    #[tokio::test]
    async fn an_entry_waiting_for_its_next_attempt_does_not_hold_up_the_others() {
        let store = SqliteStore::open_in_memory().unwrap();
        let outbox = store.outbox();
        outbox.enqueue(&message("a")).await.unwrap();
        outbox.enqueue(&message("b")).await.unwrap();
        let now = from_ms(1_700_000_000_000);
        let retry_at = from_ms(1_700_000_060_000);
        outbox
            .record_attempt_failed(
                "a",
                "no queue",
                Box::new(move |n| {
                    assert_eq!(n, 1);
                    retry_at
                }),
            )
            .await
            .unwrap();
        let ids =
            |list: Vec<OutgoingMessage>| list.into_iter().map(|m| m.message_id).collect::<Vec<_>>();
        assert_eq!(ids(outbox.due(now, 10).await.unwrap()), ["b"]);
        assert_eq!(ids(outbox.due(retry_at, 10).await.unwrap()), ["a", "b"]);
        // Every pending entry, due or not, for `send` to look through.
        assert_eq!(ids(outbox.pending(10).await.unwrap()), ["a", "b"]);
        // An outage notes the error and moves nothing.
        outbox
            .record_outage("b", "broker unreachable")
            .await
            .unwrap();
        assert_eq!(
            outbox.state("b").await.unwrap(),
            Some(OutboxState::Pending {
                attempts: 0,
                last_error: Some("broker unreachable".into()),
                next_attempt_at: from_ms(0),
            })
        );
    }

    #[tokio::test]
    async fn a_failed_entry_can_be_retried_and_a_pending_or_failed_one_dropped() {
        let store = SqliteStore::open_in_memory().unwrap();
        let outbox = store.outbox();
        for id in ["a", "b", "c"] {
            outbox.enqueue(&message(id)).await.unwrap();
        }
        outbox
            .record_attempt_failed("a", "no queue", Box::new(|_| from_ms(1)))
            .await
            .unwrap();
        outbox
            .mark_failed("a", from_ms(2), "no queue, after 1 attempt")
            .await
            .unwrap();
        outbox.mark_sent("c", from_ms(3)).await.unwrap();
        let listed: Vec<_> = outbox
            .entries(10)
            .await
            .unwrap()
            .into_iter()
            .map(|e| (e.message_id, e.state.name()))
            .collect();
        assert_eq!(
            listed,
            [("a".to_string(), "failed"), ("b".to_string(), "pending")]
        );

        // Only a failed entry goes back, due at once and with its bytes.
        let error = outbox.retry("b", from_ms(4)).await.unwrap_err();
        assert_eq!(
            error.to_string(),
            "message b is pending in the outbox: cannot retry (only a failed entry can be retried)"
        );
        outbox.retry("a", from_ms(4)).await.unwrap();
        assert_eq!(
            outbox.state("a").await.unwrap(),
            Some(OutboxState::Pending {
                attempts: 0,
                last_error: Some("no queue, after 1 attempt".into()),
                next_attempt_at: from_ms(4),
            })
        );
        assert_eq!(outbox.due(from_ms(4), 10).await.unwrap()[0], message("a"));

        // Dropping removes the row and its bytes; a sent entry is history.
        let dropped = outbox.remove("a").await.unwrap();
        assert_eq!(
            (dropped.to_her_id, dropped.state.name()),
            (93252, "pending")
        );
        assert_eq!(outbox.state("a").await.unwrap(), None);
        let rows: i64 = store
            .database
            .lock()
            .query_row(
                "SELECT COUNT(*) FROM outbox WHERE message_id = 'a'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(rows, 0);
        assert!(matches!(
            outbox.remove("c").await,
            Err(Error::OutboxState { .. })
        ));
        assert!(matches!(
            outbox.remove("a").await,
            Err(Error::UnknownMessage { .. })
        ));
        assert!(matches!(
            outbox.retry("zz", from_ms(0)).await,
            Err(Error::UnknownMessage { .. })
        ));
    }
}
