//! Messages kept instead of dead-lettered.
//!
//! A broker without a dead-letter path for our queue (RabbitMQ's default)
//! deletes a rejected message, and a message whose sender cannot be read
//! cannot be reported to anybody. Neither may vanish: the receive pipeline
//! parks such a message here (its AMQP header as JSON, its body as it came)
//! and accepts the delivery; an operator lists, drops or requeues it.
//!
//! ```
//! use helsemelding_store::parked::ParkedMessage;
//! let store = helsemelding_store::Store::open_in_memory().unwrap();
//! let id = store
//!     .parked()
//!     .park(&ParkedMessage {
//!         queue: "8141703_async".into(),
//!         message_id: Some("m-1".into()),
//!         reason: "fromHerId is missing".into(),
//!         parked_at: chrono::Utc::now(),
//!         envelope: b"{}".to_vec(),
//!         body: b"...".to_vec(),
//!     })
//!     .unwrap();
//! assert_eq!(store.parked().list(10).unwrap()[0].id, id);
//! ```

use chrono::{DateTime, Utc};
use rusqlite::{params, OptionalExtension, Row};

use crate::time::{from_ms, to_ms};
use crate::{Error, Result, Store};

/// A message to park: where it came from, why, and what it was.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParkedMessage {
    /// The queue it was taken from.
    pub queue: String,
    /// Its message-id, when it had one.
    pub message_id: Option<String>,
    /// Why it was not handed over (for the operator; no payload content).
    pub reason: String,
    /// When it was parked.
    pub parked_at: DateTime<Utc>,
    /// Its AMQP properties and application properties, as JSON.
    pub envelope: Vec<u8>,
    /// Its body, exactly as it came (usually still encrypted).
    pub body: Vec<u8>,
}

/// A parked message as listed: everything but the body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParkedSummary {
    /// The row id operators name it by.
    pub id: i64,
    /// The queue it was taken from.
    pub queue: String,
    /// Its message-id, when it had one.
    pub message_id: Option<String>,
    /// Why it was parked.
    pub reason: String,
    /// When it was parked.
    pub parked_at: DateTime<Utc>,
    /// Its AMQP header, as JSON.
    pub envelope: Vec<u8>,
    /// The size of its body in bytes.
    pub body_len: u64,
}

/// The parked-message view of a [`Store`].
pub struct Parked<'a> {
    store: &'a Store,
}

const SUMMARY_COLUMNS: &str = "id, queue, message_id, reason, parked_ms, envelope, length(body)";

fn summary_from_row(row: &Row<'_>) -> rusqlite::Result<ParkedSummary> {
    Ok(ParkedSummary {
        id: row.get(0)?,
        queue: row.get(1)?,
        message_id: row.get(2)?,
        reason: row.get(3)?,
        parked_at: from_ms(row.get(4)?),
        envelope: row.get(5)?,
        body_len: row.get::<_, i64>(6)?.max(0) as u64,
    })
}

impl<'a> Parked<'a> {
    pub(crate) fn new(store: &'a Store) -> Self {
        Parked { store }
    }

    /// Keeps `message`; returns the id it is listed under.
    pub fn park(&self, message: &ParkedMessage) -> Result<i64> {
        self.store.write("parked park", |connection| {
            connection.execute(
                "INSERT INTO parked (queue, message_id, reason, parked_ms, envelope, body)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    message.queue,
                    message.message_id,
                    message.reason,
                    to_ms(message.parked_at),
                    message.envelope,
                    message.body,
                ],
            )?;
            Ok(connection.last_insert_rowid())
        })
    }

    /// The parked messages, oldest first, at most `limit`.
    pub fn list(&self, limit: usize) -> Result<Vec<ParkedSummary>> {
        self.store.read("parked list", |connection| {
            let mut statement = connection.prepare_cached(&format!(
                "SELECT {SUMMARY_COLUMNS} FROM parked ORDER BY id LIMIT ?1"
            ))?;
            let rows = statement.query_map([limit as i64], summary_from_row)?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    /// How many messages are parked.
    pub fn count(&self) -> Result<u64> {
        self.store.read("parked count", |connection| {
            let count: i64 =
                connection.query_row("SELECT count(*) FROM parked", [], |r| r.get(0))?;
            Ok(count.max(0) as u64)
        })
    }

    /// One parked message, body included.
    pub fn get(&self, id: i64) -> Result<Option<(ParkedSummary, Vec<u8>)>> {
        self.store.read("parked get", |connection| {
            Ok(connection
                .query_row(
                    &format!("SELECT {SUMMARY_COLUMNS}, body FROM parked WHERE id = ?1"),
                    [id],
                    |row| Ok((summary_from_row(row)?, row.get(7)?)),
                )
                .optional()?)
        })
    }

    /// Removes a parked message (dropped, or put back on its queue).
    pub fn remove(&self, id: i64) -> Result<()> {
        self.store.write("parked remove", |connection| {
            match connection.execute("DELETE FROM parked WHERE id = ?1", [id])? {
                0 => Err(Error::UnknownParked { id }.into()),
                _ => Ok(()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(n: u8) -> ParkedMessage {
        ParkedMessage {
            queue: "8141703_async".into(),
            message_id: n.is_multiple_of(2).then(|| format!("m-{n}")),
            reason: format!("reason {n}"),
            parked_at: from_ms(1_700_000_000_000 + i64::from(n)),
            envelope: format!("{{\"n\":{n}}}").into_bytes(),
            body: vec![n; 100 + usize::from(n)],
        }
    }

    #[test]
    fn parked_messages_are_listed_in_order_and_kept_whole_until_removed() {
        let store = Store::open_in_memory().unwrap();
        let parked = store.parked();
        let ids: Vec<i64> = (0..3).map(|n| parked.park(&message(n)).unwrap()).collect();
        let listed = parked.list(10).unwrap();
        assert_eq!(listed.iter().map(|p| p.id).collect::<Vec<_>>(), ids);
        assert_eq!(listed[1].message_id, None);
        assert_eq!(listed[2].body_len, 102);
        assert_eq!(listed[0].parked_at, message(0).parked_at);
        let (summary, body) = parked.get(ids[2]).unwrap().unwrap();
        assert_eq!(summary.reason, "reason 2");
        assert_eq!(body, message(2).body);
        parked.remove(ids[1]).unwrap();
        assert_eq!(parked.count().unwrap(), 2);
        assert!(parked.get(ids[1]).unwrap().is_none());
        assert!(matches!(
            parked.remove(ids[1]),
            Err(Error::UnknownParked { id }) if id == ids[1]
        ));
    }
}
