//! The parked messages' statements: [`Parked`] for [`SqliteStore`].

use async_trait::async_trait;
use helsemelding_store::parked::{ParkedMessage, ParkedSummary};
use helsemelding_store::{Error, Parked, Result};
use rusqlite::{params, OptionalExtension, Row};

use crate::time::{from_ms, to_ms};
use crate::SqliteStore;

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

#[async_trait]
impl Parked for SqliteStore {
    async fn park(&self, message: &ParkedMessage) -> Result<i64> {
        let message = message.clone();
        self.write("parked park", move |connection| {
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
        .await
    }

    async fn list(&self, limit: usize) -> Result<Vec<ParkedSummary>> {
        self.read("parked list", move |connection| {
            let mut statement = connection.prepare_cached(&format!(
                "SELECT {SUMMARY_COLUMNS} FROM parked ORDER BY id LIMIT ?1"
            ))?;
            let rows = statement.query_map([limit as i64], summary_from_row)?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn count(&self) -> Result<u64> {
        self.read("parked count", |connection| {
            let count: i64 =
                connection.query_row("SELECT count(*) FROM parked", [], |r| r.get(0))?;
            Ok(count.max(0) as u64)
        })
        .await
    }

    async fn get(&self, id: i64) -> Result<Option<(ParkedSummary, Vec<u8>)>> {
        self.read("parked get", move |connection| {
            Ok(connection
                .query_row(
                    &format!("SELECT {SUMMARY_COLUMNS}, body FROM parked WHERE id = ?1"),
                    [id],
                    |row| Ok((summary_from_row(row)?, row.get(7)?)),
                )
                .optional()?)
        })
        .await
    }

    async fn remove(&self, id: i64) -> Result<()> {
        self.write("parked remove", move |connection| {
            match connection.execute("DELETE FROM parked WHERE id = ?1", [id])? {
                0 => Err(Error::UnknownParked { id }.into()),
                _ => Ok(()),
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use helsemelding_store::Store;

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

    #[tokio::test]
    async fn parked_messages_are_listed_in_order_and_kept_whole_until_removed() {
        let store = SqliteStore::open_in_memory().unwrap();
        let parked = store.parked();
        let mut ids = Vec::new();
        for n in 0..3 {
            ids.push(parked.park(&message(n)).await.unwrap());
        }
        let listed = parked.list(10).await.unwrap();
        assert_eq!(listed.iter().map(|p| p.id).collect::<Vec<_>>(), ids);
        assert_eq!(listed[1].message_id, None);
        assert_eq!(listed[2].body_len, 102);
        assert_eq!(listed[0].parked_at, message(0).parked_at);
        let (summary, body) = parked.get(ids[2]).await.unwrap().unwrap();
        assert_eq!(summary.reason, "reason 2");
        assert_eq!(body, message(2).body);
        parked.remove(ids[1]).await.unwrap();
        assert_eq!(parked.count().await.unwrap(), 2);
        assert!(parked.get(ids[1]).await.unwrap().is_none());
        assert!(matches!(
            parked.remove(ids[1]).await,
            Err(Error::UnknownParked { id }) if id == ids[1]
        ));
    }
}
