//! The durable outbox: record, transfer, mark sent.
//!
//! A message enters as `pending` with its protected bytes and its envelope
//! (serialised by the caller). The sender transfers it and calls
//! [`Outbox::mark_sent`] only on the broker's Accepted outcome; whatever is
//! still pending after a crash or an outage is returned by
//! [`Outbox::pending`] and sent again with the same message-id. Once sent,
//! the protected bytes are dropped: the outbox is no archive of health data.

use chrono::{DateTime, Utc};
use rusqlite::{params, OptionalExtension};

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
        attempts: u32,
        last_error: Option<String>,
    },
    Sent {
        at: DateTime<Utc>,
    },
    Failed {
        at: DateTime<Utc>,
        reason: String,
    },
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
        self.store.write(|connection| {
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
                });
            }
            Ok(())
        })
    }

    /// Pending messages, oldest first, at most `limit`.
    pub fn pending(&self, limit: usize) -> Result<Vec<OutgoingMessage>> {
        let connection = self.store.lock();
        let mut statement = connection.prepare_cached(
            "SELECT message_id, to_her_id, queue, function, envelope, body, created_ms, expires_ms
             FROM outbox WHERE state = 'pending' ORDER BY seq LIMIT ?1",
        )?;
        let rows = statement.query_map([limit as i64], |row| {
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
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Counts a failed transfer attempt; the message stays pending.
    pub fn record_attempt_failed(&self, message_id: &str, error: &str) -> Result<u32> {
        self.store.write(|connection| {
            connection
                .query_row(
                    "UPDATE outbox SET attempts = attempts + 1, last_error = ?2
                 WHERE message_id = ?1 AND state = 'pending' RETURNING attempts",
                    params![message_id, error],
                    |row| row.get(0),
                )
                .optional()?
                .ok_or_else(|| unknown(message_id))
        })
    }

    /// Marks a message sent (the broker accepted it) and drops its bytes.
    /// Marking an already sent message again is harmless.
    pub fn mark_sent(&self, message_id: &str, at: DateTime<Utc>) -> Result<()> {
        self.settle(message_id, "sent", at, None)
    }

    /// Gives up on a message (expired, receiver unknown, refused for good).
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
        self.store.write(|connection| {
            let changed = connection.execute(
                "UPDATE outbox SET state = ?2, settled_ms = ?3, body = NULL,
                               last_error = COALESCE(?4, last_error)
             WHERE message_id = ?1 AND (state = 'pending' OR state = ?2)",
                params![message_id, state, to_ms(at), reason],
            )?;
            if changed == 0 {
                return Err(unknown(message_id));
            }
            Ok(())
        })
    }

    /// Where a message is, or `None` if the outbox never saw it.
    pub fn state(&self, message_id: &str) -> Result<Option<OutboxState>> {
        let connection = self.store.lock();
        connection
            .query_row(
                "SELECT state, attempts, last_error, settled_ms FROM outbox WHERE message_id = ?1",
                [message_id],
                |row| {
                    let state: String = row.get(0)?;
                    let attempts: u32 = row.get(1)?;
                    let last_error: Option<String> = row.get(2)?;
                    let settled: Option<i64> = row.get(3)?;
                    let at = from_ms(settled.unwrap_or_default());
                    Ok(match state.as_str() {
                        "pending" => OutboxState::Pending {
                            attempts,
                            last_error,
                        },
                        "sent" => OutboxState::Sent { at },
                        _ => OutboxState::Failed {
                            at,
                            reason: last_error.unwrap_or_default(),
                        },
                    })
                },
            )
            .optional()
            .map_err(Error::from)
    }

    /// Number of pending messages (for status and metrics).
    pub fn pending_count(&self) -> Result<u64> {
        let connection = self.store.lock();
        let count: i64 = connection.query_row(
            "SELECT COUNT(*) FROM outbox WHERE state = 'pending'",
            [],
            |row| row.get(0),
        )?;
        Ok(count.unsigned_abs())
    }
}

fn unknown(message_id: &str) -> Error {
    Error::UnknownMessage {
        message_id: message_id.to_string(),
    }
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
        assert_eq!(
            outbox
                .record_attempt_failed("a", "broker unreachable")
                .unwrap(),
            1
        );
        assert_eq!(
            outbox
                .record_attempt_failed("a", "broker unreachable")
                .unwrap(),
            2
        );
        assert_eq!(
            outbox.state("a").unwrap(),
            Some(OutboxState::Pending {
                attempts: 2,
                last_error: Some("broker unreachable".into())
            })
        );
        outbox
            .mark_failed("a", from_ms(5), "expired before it could be sent")
            .unwrap();
        assert!(outbox.pending(10).unwrap().is_empty());
        assert!(
            matches!(outbox.state("a").unwrap(), Some(OutboxState::Failed { reason, .. }) if reason.starts_with("expired"))
        );
        // A failed message cannot be marked sent behind the operator's back.
        assert!(outbox.mark_sent("a", from_ms(6)).is_err());
    }
}
