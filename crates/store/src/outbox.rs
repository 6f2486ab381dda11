//! The durable outbox: record, transfer, mark sent.
//!
//! A message enters as `pending` with its protected bytes and its envelope
//! (serialised by the caller). The sender transfers it and calls
//! [`Outbox::mark_sent`] only on the broker's Accepted outcome; whatever is
//! still pending after a crash or an outage is returned by
//! [`Outbox::pending`] and sent again with the same message-id. Once sent,
//! the protected bytes are dropped: the outbox is no archive of health data.
//!
//! Entries are independent: each pending entry has its own attempt count
//! and next-attempt time ([`Outbox::due`] returns only those whose time has
//! come), so an entry that keeps failing (its queue does not exist, say)
//! delays only itself. The sender gives up on it after its attempts with
//! [`Outbox::mark_failed`]; a failed entry keeps its bytes until an
//! operator puts it back ([`Outbox::retry`]) or removes it
//! ([`Outbox::remove`]).

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension};

use crate::audit::{insert_audit, AuditEvent, AuditRecord};
use crate::error::{Fault, Inner};
use crate::inbox::{Answer, MessageKey};
use crate::time::{from_ms, to_ms};
use crate::{Error, Result, Store};

/// A message waiting to be sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutgoingMessage {
    pub message_id: String,
    pub to_her_id: u32,
    /// The queue it goes to, e.g. `93252_async`.
    pub queue: String,
    /// The message function (AMQP subject).
    pub function: String,
    /// The AMQP envelope as the caller serialises it.
    pub envelope: Vec<u8>,
    /// The protected (CMS) bytes.
    pub body: Vec<u8>,
    pub created_at: DateTime<Utc>,
    /// After this instant the message is not worth sending (its TTL ran out).
    pub expires_at: Option<DateTime<Utc>>,
}

/// Where a message is in the outbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OutboxState {
    Pending {
        /// Failed transfer attempts so far (a broker outage does not count).
        attempts: u32,
        last_error: Option<String>,
        /// Not tried again before this instant.
        next_attempt_at: DateTime<Utc>,
    },
    Sent {
        at: DateTime<Utc>,
    },
    Failed {
        at: DateTime<Utc>,
        attempts: u32,
        reason: String,
    },
}

impl OutboxState {
    /// `pending`, `sent` or `failed`.
    pub fn name(&self) -> &'static str {
        match self {
            OutboxState::Pending { .. } => "pending",
            OutboxState::Sent { .. } => "sent",
            OutboxState::Failed { .. } => "failed",
        }
    }
}

/// An entry as an operator sees it: everything but its bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxEntry {
    pub message_id: String,
    pub to_her_id: u32,
    pub queue: String,
    pub function: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub state: OutboxState,
}

const MESSAGE_COLUMNS: &str =
    "message_id, to_her_id, queue, function, envelope, body, created_ms, expires_ms";

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
                             created_ms, expires_ms, state)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'pending')
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
        ],
    )?;
    if inserted == 0 {
        return Err(Error::DuplicateMessageId {
            message_id: message.message_id.clone(),
        }
        .into());
    }
    Ok(())
}

/// The outbox view of a [`Store`].
pub struct Outbox<'a> {
    store: &'a Store,
}

impl<'a> Outbox<'a> {
    pub(crate) fn new(store: &'a Store) -> Self {
        Outbox { store }
    }

    /// Records a message as pending. The message id must be new.
    pub fn enqueue(&self, message: &OutgoingMessage) -> Result<()> {
        self.store.write("outbox enqueue", |connection| {
            insert_pending(connection, message)
        })
    }

    /// One unit of work: records a message as pending, as
    /// [`Outbox::enqueue`], and appends `audit` at the message's creation
    /// time. Both happen or neither does.
    pub fn enqueue_audited(
        &self,
        message: &OutgoingMessage,
        audit: &AuditEvent,
    ) -> Result<AuditRecord> {
        self.store.write("outbox enqueue audited", |connection| {
            insert_pending(connection, message)?;
            insert_audit(connection, message.created_at, audit)
        })
    }

    /// Records `message`, the answer (an AppRec) to a message handed to
    /// the application, together with that hand-over, in one transaction:
    /// once the answer is queued the hand-over is on record, so a
    /// redelivery after a crash is neither handed over nor answered again.
    pub fn enqueue_answer(
        &self,
        message: &OutgoingMessage,
        answers: MessageKey<'_>,
        answer: &Answer,
    ) -> Result<()> {
        self.store.write("outbox enqueue answer", |connection| {
            insert_pending(connection, message)?;
            crate::inbox::insert_hand_over(
                connection,
                answers,
                message.created_at,
                "accepted",
                Some(answer),
            )?;
            Ok(())
        })
    }

    /// Pending messages, oldest first, at most `limit`, whether due or not.
    pub fn pending(&self, limit: usize) -> Result<Vec<OutgoingMessage>> {
        self.store.read("outbox pending", |connection| {
            let mut statement = connection.prepare_cached(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM outbox WHERE state = 'pending' ORDER BY seq LIMIT ?1"
        ))?;
            let rows = statement.query_map([limit as i64], message_from_row)?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    /// Pending messages whose next attempt is due at `now`, oldest first,
    /// at most `limit`.
    pub fn due(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<OutgoingMessage>> {
        self.store.read("outbox due", |connection| {
            let mut statement = connection.prepare_cached(&format!(
                "SELECT {MESSAGE_COLUMNS} FROM outbox
             WHERE state = 'pending' AND next_attempt_ms <= ?1 ORDER BY seq LIMIT ?2"
            ))?;
            let rows = statement.query_map(params![to_ms(now), limit as i64], message_from_row)?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    /// Pending and failed entries (not the sent ones), oldest first, at
    /// most `limit`, without their bytes.
    pub fn entries(&self, limit: usize) -> Result<Vec<OutboxEntry>> {
        self.store.read("outbox entries", |connection| {
            let mut statement = connection.prepare_cached(&format!(
                "SELECT {ENTRY_COLUMNS} FROM outbox WHERE state IN ('pending', 'failed')
             ORDER BY seq LIMIT ?1"
            ))?;
            let rows =
                statement.query_map([limit.min(i64::MAX as usize) as i64], entry_from_row)?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    /// Counts a failed transfer attempt of this entry; it stays pending and
    /// is not due again before `retry_at(attempts)`, given the attempts so
    /// far (this one included), which are returned.
    pub fn record_attempt_failed(
        &self,
        message_id: &str,
        error: &str,
        retry_at: impl FnOnce(u32) -> DateTime<Utc>,
    ) -> Result<u32> {
        self.store
            .write("outbox record attempt failed", |connection| {
                let attempts: u32 = connection
                    .query_row(
                        "UPDATE outbox SET attempts = attempts + 1, last_error = ?2
                 WHERE message_id = ?1 AND state = 'pending' RETURNING attempts",
                        params![message_id, error],
                        |row| row.get(0),
                    )
                    .optional()?
                    .ok_or_else(|| unknown(message_id))?;
                connection.execute(
                    "UPDATE outbox SET next_attempt_ms = ?2 WHERE message_id = ?1",
                    params![message_id, to_ms(retry_at(attempts))],
                )?;
                Ok(attempts)
            })
    }

    /// Notes why a transfer could not be tried (the broker is down, which
    /// is not the entry's fault): the last error changes, the attempts and
    /// the next-attempt time do not.
    pub fn record_outage(&self, message_id: &str, error: &str) -> Result<()> {
        self.store.write("outbox record outage", |connection| {
            let changed = connection.execute(
                "UPDATE outbox SET last_error = ?2 WHERE message_id = ?1 AND state = 'pending'",
                params![message_id, error],
            )?;
            if changed == 0 {
                return Err(unknown(message_id));
            }
            Ok(())
        })
    }

    /// Puts a failed entry back to pending, due at `now`, with its attempts
    /// counted from zero again.
    pub fn retry(&self, message_id: &str, now: DateTime<Utc>) -> Result<()> {
        self.store.write("outbox retry", |connection| {
            let found: Option<(String, bool)> = connection
                .query_row(
                    "SELECT state, body IS NOT NULL FROM outbox WHERE message_id = ?1",
                    [message_id],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .optional()?;
            match found {
                None => return Err(unknown(message_id)),
                Some((state, _)) if state != "failed" => {
                    return Err(Error::OutboxState {
                        message_id: message_id.to_owned(),
                        state,
                        action: "retry (only a failed entry can be retried)",
                    }
                    .into())
                }
                Some((_, false)) => {
                    return Err(Error::OutboxState {
                        message_id: message_id.to_owned(),
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
            Ok(())
        })
    }

    /// One entry without its bytes, or `None` if the outbox never saw it.
    pub fn entry(&self, message_id: &str) -> Result<Option<OutboxEntry>> {
        self.store.read("outbox entry", |connection| {
            entry_of(connection, message_id)
        })
    }

    /// Removes a pending or failed entry, its bytes with it, and returns
    /// what it was. A sent entry is history and stays.
    pub fn remove(&self, message_id: &str) -> Result<OutboxEntry> {
        self.store.write("outbox remove", |connection| {
            let entry = entry_of(connection, message_id)?.ok_or_else(|| unknown(message_id))?;
            if let OutboxState::Sent { .. } = entry.state {
                return Err(Error::OutboxState {
                    message_id: message_id.to_owned(),
                    state: "sent".into(),
                    action: "drop (a sent message is history)",
                }
                .into());
            }
            connection.execute("DELETE FROM outbox WHERE message_id = ?1", [message_id])?;
            Ok(entry)
        })
    }

    /// Marks a message sent (the broker accepted it) and drops its bytes.
    /// Marking an already sent message again is harmless.
    pub fn mark_sent(&self, message_id: &str, at: DateTime<Utc>) -> Result<()> {
        self.settle(message_id, "sent", at, None)
    }

    /// One unit of work: marks a message sent, as [`Outbox::mark_sent`],
    /// and appends `audit` (its `sent` row) at `at`. Both happen or neither
    /// does.
    pub fn mark_sent_audited(
        &self,
        message_id: &str,
        at: DateTime<Utc>,
        audit: &AuditEvent,
    ) -> Result<AuditRecord> {
        self.store.write("outbox mark sent audited", |connection| {
            settle_row(connection, message_id, "sent", at, None)?;
            insert_audit(connection, at, audit)
        })
    }

    /// Gives up on a message (expired, receiver unknown, refused for good,
    /// out of attempts). Its bytes are kept for [`Outbox::retry`] until the
    /// entry is removed.
    pub fn mark_failed(&self, message_id: &str, at: DateTime<Utc>, reason: &str) -> Result<()> {
        self.settle(message_id, "failed", at, Some(reason))
    }

    fn settle(
        &self,
        message_id: &str,
        state: &str,
        at: DateTime<Utc>,
        reason: Option<&str>,
    ) -> Result<()> {
        self.store.write("outbox settle", |connection| {
            settle_row(connection, message_id, state, at, reason)
        })
    }

    /// Where a message is, or `None` if the outbox never saw it.
    pub fn state(&self, message_id: &str) -> Result<Option<OutboxState>> {
        self.store.read("outbox state", |connection| {
            connection
                .query_row(
                    &format!("SELECT {STATE_COLUMNS} FROM outbox WHERE message_id = ?1"),
                    [message_id],
                    |row| state_from_row(row, 0),
                )
                .optional()
                .map_err(Fault::from)
        })
    }

    /// Number of pending messages (for status and metrics).
    pub fn pending_count(&self) -> Result<u64> {
        self.store.read("outbox pending count", |connection| {
            let count: i64 = connection.query_row(
                "SELECT COUNT(*) FROM outbox WHERE state = 'pending'",
                [],
                |row| row.get(0),
            )?;
            Ok(count.unsigned_abs())
        })
    }
}

const ENTRY_COLUMNS: &str = "message_id, to_her_id, queue, function, created_ms, expires_ms,
     state, attempts, last_error, settled_ms, next_attempt_ms";

fn entry_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<OutboxEntry> {
    Ok(OutboxEntry {
        message_id: row.get(0)?,
        to_her_id: row.get(1)?,
        queue: row.get(2)?,
        function: row.get(3)?,
        created_at: from_ms(row.get(4)?),
        expires_at: row.get::<_, Option<i64>>(5)?.map(from_ms),
        state: state_from_row(row, 6)?,
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

/// Settles a pending entry as `state` (sent or failed) at `at`.
fn settle_row(
    connection: &Connection,
    message_id: &str,
    state: &str,
    at: DateTime<Utc>,
    reason: Option<&str>,
) -> Inner<()> {
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
    Ok(())
}

fn unknown(message_id: &str) -> Fault {
    Fault::Store(Error::UnknownMessage {
        message_id: message_id.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(id: &str) -> OutgoingMessage {
        OutgoingMessage {
            message_id: id.into(),
            to_her_id: 93252,
            queue: "93252_async".into(),
            function: "DIALOG_INNBYGGER_EKONTAKT".into(),
            envelope: b"{}".to_vec(),
            body: vec![0x30, 0x80, 1, 2, 3],
            created_at: from_ms(1_700_000_000_000),
            expires_at: None,
        }
    }

    #[test]
    fn pending_messages_come_back_in_order_until_sent() {
        let store = Store::open_in_memory().unwrap();
        let outbox = store.outbox();
        outbox.enqueue(&message("a")).unwrap();
        outbox.enqueue(&message("b")).unwrap();
        let pending = outbox.pending(10).unwrap();
        assert_eq!(pending, vec![message("a"), message("b")]);

        outbox.mark_sent("a", from_ms(1_700_000_001_000)).unwrap();
        assert_eq!(outbox.pending(10).unwrap(), vec![message("b")]);
        assert_eq!(
            outbox.state("a").unwrap(),
            Some(OutboxState::Sent {
                at: from_ms(1_700_000_001_000)
            })
        );
        assert_eq!(outbox.pending_count().unwrap(), 1);
    }

    #[test]
    fn an_answer_and_the_hand_over_it_answers_are_recorded_together_or_not_at_all() {
        let store = Store::open_in_memory().unwrap();
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
            .enqueue_answer(&message("apprec-1"), key, &answer)
            .unwrap();
        let earlier = store.inbox().hand_over(key).unwrap().unwrap();
        assert_eq!(earlier.answer, Some(answer.clone()));
        assert_eq!(store.outbox().pending_count().unwrap(), 1);

        // A failing enqueue (a message id already queued) leaves no hand-over.
        let other = MessageKey {
            message_id: "incoming-2",
            ..key
        };
        assert!(store
            .outbox()
            .enqueue_answer(&message("apprec-1"), other, &answer)
            .is_err());
        assert_eq!(store.inbox().hand_over(other).unwrap(), None);
    }

    #[test]
    fn a_sent_message_keeps_no_bytes() {
        let store = Store::open_in_memory().unwrap();
        store.outbox().enqueue(&message("a")).unwrap();
        store.outbox().mark_sent("a", from_ms(0)).unwrap();
        let body: Option<Vec<u8>> = store
            .lock()
            .query_row("SELECT body FROM outbox WHERE message_id = 'a'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(body, None);
    }

    #[test]
    fn duplicate_and_unknown_ids_are_named() {
        let store = Store::open_in_memory().unwrap();
        let outbox = store.outbox();
        outbox.enqueue(&message("a")).unwrap();
        let error = outbox.enqueue(&message("a")).unwrap_err();
        assert_eq!(error.to_string(), "message a is already in the outbox");
        let error = outbox.mark_sent("nope", from_ms(0)).unwrap_err();
        assert!(matches!(error, Error::UnknownMessage { message_id } if message_id == "nope"));
    }

    #[test]
    fn failed_attempts_are_counted_and_a_failed_message_is_not_resent() {
        let store = Store::open_in_memory().unwrap();
        let outbox = store.outbox();
        outbox.enqueue(&message("a")).unwrap();
        let later = from_ms(1_700_000_010_000);
        assert_eq!(
            outbox
                .record_attempt_failed("a", "queue 93252_async does not exist", |_| later)
                .unwrap(),
            1
        );
        assert_eq!(
            outbox
                .record_attempt_failed("a", "queue 93252_async does not exist", |_| later)
                .unwrap(),
            2
        );
        assert_eq!(
            outbox.state("a").unwrap(),
            Some(OutboxState::Pending {
                attempts: 2,
                last_error: Some("queue 93252_async does not exist".into()),
                next_attempt_at: later,
            })
        );
        outbox
            .mark_failed("a", from_ms(5), "expired before it could be sent")
            .unwrap();
        assert!(outbox.pending(10).unwrap().is_empty());
        assert!(
            matches!(outbox.state("a").unwrap(), Some(OutboxState::Failed { reason, attempts: 2, .. }) if reason.starts_with("expired"))
        );
        // A failed message cannot be marked sent behind the operator's back.
        assert!(outbox.mark_sent("a", from_ms(6)).is_err());
    }

    #[test]
    fn an_entry_waiting_for_its_next_attempt_does_not_hold_up_the_others() {
        let store = Store::open_in_memory().unwrap();
        let outbox = store.outbox();
        outbox.enqueue(&message("a")).unwrap();
        outbox.enqueue(&message("b")).unwrap();
        let now = from_ms(1_700_000_000_000);
        let retry_at = from_ms(1_700_000_060_000);
        outbox
            .record_attempt_failed("a", "no queue", |n| {
                assert_eq!(n, 1);
                retry_at
            })
            .unwrap();
        let ids =
            |list: Vec<OutgoingMessage>| list.into_iter().map(|m| m.message_id).collect::<Vec<_>>();
        assert_eq!(ids(outbox.due(now, 10).unwrap()), ["b"]);
        assert_eq!(ids(outbox.due(retry_at, 10).unwrap()), ["a", "b"]);
        // Every pending entry, due or not, for `send` to look through.
        assert_eq!(ids(outbox.pending(10).unwrap()), ["a", "b"]);
        // An outage notes the error and moves nothing.
        outbox.record_outage("b", "broker unreachable").unwrap();
        assert_eq!(
            outbox.state("b").unwrap(),
            Some(OutboxState::Pending {
                attempts: 0,
                last_error: Some("broker unreachable".into()),
                next_attempt_at: from_ms(0),
            })
        );
    }

    #[test]
    fn a_failed_entry_can_be_retried_and_a_pending_or_failed_one_dropped() {
        let store = Store::open_in_memory().unwrap();
        let outbox = store.outbox();
        for id in ["a", "b", "c"] {
            outbox.enqueue(&message(id)).unwrap();
        }
        outbox
            .record_attempt_failed("a", "no queue", |_| from_ms(1))
            .unwrap();
        outbox
            .mark_failed("a", from_ms(2), "no queue, after 1 attempt")
            .unwrap();
        outbox.mark_sent("c", from_ms(3)).unwrap();
        let listed: Vec<_> = outbox
            .entries(10)
            .unwrap()
            .into_iter()
            .map(|e| (e.message_id, e.state.name()))
            .collect();
        assert_eq!(
            listed,
            [("a".to_string(), "failed"), ("b".to_string(), "pending")]
        );

        // Only a failed entry goes back, due at once and with its bytes.
        let error = outbox.retry("b", from_ms(4)).unwrap_err();
        assert_eq!(
            error.to_string(),
            "message b is pending in the outbox: cannot retry (only a failed entry can be retried)"
        );
        outbox.retry("a", from_ms(4)).unwrap();
        assert_eq!(
            outbox.state("a").unwrap(),
            Some(OutboxState::Pending {
                attempts: 0,
                last_error: Some("no queue, after 1 attempt".into()),
                next_attempt_at: from_ms(4),
            })
        );
        assert_eq!(outbox.due(from_ms(4), 10).unwrap()[0], message("a"));

        // Dropping removes the row and its bytes; a sent entry is history.
        let dropped = outbox.remove("a").unwrap();
        assert_eq!(
            (dropped.to_her_id, dropped.state.name()),
            (93252, "pending")
        );
        assert_eq!(outbox.state("a").unwrap(), None);
        let rows: i64 = store
            .lock()
            .query_row(
                "SELECT COUNT(*) FROM outbox WHERE message_id = 'a'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(rows, 0);
        assert!(matches!(outbox.remove("c"), Err(Error::OutboxState { .. })));
        assert!(matches!(
            outbox.remove("a"),
            Err(Error::UnknownMessage { .. })
        ));
        assert!(matches!(
            outbox.retry("zz", from_ms(0)),
            Err(Error::UnknownMessage { .. })
        ));
    }
}
