//! The audit log's statements: [`AuditLog`] for [`SqliteStore`]. The rows
//! and the anchor live in two tables; the chain itself (hashes, the walk,
//! retention) is `helsemelding_store::audit::chain`'s. Triggers of the
//! schema refuse edits of rows and deletions of young ones, so that even
//! SQL beside the store cannot quietly rewrite the log.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use helsemelding_store::audit::{
    check_retention, AuditEvent, AuditFilter, AuditKind, AuditRecord, ChainAnchor, ChainWalk,
    VerifyReport,
};
use helsemelding_store::{AuditLog, Result};
use rusqlite::{params, params_from_iter, Connection, OptionalExtension, Row};

use crate::error::Inner;
use crate::time::{from_ms, to_ms};
use crate::SqliteStore;

#[async_trait]
impl AuditLog for SqliteStore {
    async fn append(&self, at: DateTime<Utc>, event: &AuditEvent) -> Result<AuditRecord> {
        let event = event.clone();
        self.write("audit append", move |connection| {
            insert_audit(connection, at, &event)
        })
        .await
    }

    async fn list(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>> {
        let mut sql = format!("{SELECT} WHERE 1 = 1");
        let mut values: Vec<rusqlite::types::Value> = Vec::new();
        if let Some(since) = filter.since {
            sql.push_str(" AND at_ms >= ?");
            values.push(to_ms(since).into());
        }
        if let Some(her_id) = filter.her_id {
            sql.push_str(" AND counterpart = ?");
            values.push(i64::from(her_id).into());
        }
        if let Some(message_id) = &filter.message_id {
            sql.push_str(" AND message_id = ?");
            values.push(message_id.clone().into());
        }
        sql.push_str(" ORDER BY seq");
        if let Some(limit) = filter.limit {
            sql.push_str(&format!(" LIMIT {limit}"));
        }
        self.read("audit list", move |connection| {
            let mut statement = connection.prepare(&sql)?;
            let rows = statement.query_map(params_from_iter(values), record_from_row)?;
            let mut records = Vec::new();
            for row in rows {
                // A row of unknown kind is reported by `verify`; listing skips it.
                if let Ok(record) = row? {
                    records.push(record);
                }
            }
            Ok(records)
        })
        .await
    }

    async fn verify(&self) -> Result<VerifyReport> {
        self.read("audit verify", |connection| {
            let anchor = read_anchor(connection)?;
            let mut statement = connection.prepare(&format!("{SELECT} ORDER BY seq"))?;
            let mut rows = statement.query([])?;
            let mut walk = ChainWalk::new(&anchor);
            while let Some(row) = rows.next()? {
                match record_from_row(row)? {
                    Ok(record) => walk.step(record),
                    Err(seq) => walk.unknown_kind(seq),
                }
            }
            Ok(walk.finish(&anchor))
        })
        .await
    }

    async fn prune(
        &self,
        now: DateTime<Utc>,
        before: DateTime<Utc>,
        retention_days: i64,
    ) -> Result<usize> {
        check_retention(now, before, retention_days)?;
        self.write("audit prune", move |connection| {
            let tx = connection.savepoint()?;
            // Only a prefix of the chain can go, or it would have a hole.
            let first_kept: Option<i64> = tx.query_row(
                "SELECT MIN(seq) FROM audit WHERE at_ms >= ?1",
                [to_ms(before)],
                |row| row.get(0),
            )?;
            let last_pruned = match first_kept {
                Some(seq) => seq - 1,
                None => tx.query_row("SELECT COALESCE(MAX(seq), 0) FROM audit", [], |row| {
                    row.get(0)
                })?,
            };
            let new_start: Option<String> = tx
                .query_row(
                    "SELECT hash FROM audit WHERE seq = ?1",
                    [last_pruned],
                    |row| row.get(0),
                )
                .optional()?;
            let Some(start_hash) = new_start else {
                return Ok(0);
            };
            let removed = tx.execute("DELETE FROM audit WHERE seq <= ?1", [last_pruned])?;
            tx.execute(
                "UPDATE audit_anchor SET start_seq = ?1, start_hash = ?2 WHERE id = 1",
                params![last_pruned, start_hash],
            )?;
            tx.commit()?;
            Ok(removed)
        })
        .await
    }
}

const SELECT: &str = "SELECT seq, at_ms, kind, actor, counterpart, message_id, function, outcome, reason, prev_hash, hash FROM audit";

/// Appends an event at `at` to the chain, in the caller's transaction (a
/// unit of work writes it beside the change it records).
pub(crate) fn insert_audit(
    connection: &mut Connection,
    at: DateTime<Utc>,
    event: &AuditEvent,
) -> Inner<AuditRecord> {
    // The batch began IMMEDIATE: two processes on one database cannot
    // both extend the same head.
    let tx = connection.savepoint()?;
    let anchor = read_anchor(&tx)?;
    let record = anchor.next(at, event);
    tx.execute(
        "INSERT INTO audit (seq, at_ms, kind, actor, counterpart, message_id, function, outcome,
                            reason, prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        params![
            record.seq,
            to_ms(record.at),
            event.kind.as_str(),
            event.actor,
            event.counterpart_her_id,
            event.message_id,
            event.function,
            event.outcome,
            event.reason,
            record.prev_hash,
            record.hash
        ],
    )?;
    tx.execute(
        "UPDATE audit_anchor SET head_seq = ?1, head_hash = ?2 WHERE id = 1",
        params![record.seq, record.hash],
    )?;
    tx.commit()?;
    Ok(record)
}

/// A row, or its sequence number when its kind is unknown.
fn record_from_row(row: &Row<'_>) -> rusqlite::Result<std::result::Result<AuditRecord, i64>> {
    let seq: i64 = row.get(0)?;
    let kind: String = row.get(2)?;
    let Some(kind) = AuditKind::parse(&kind) else {
        return Ok(Err(seq));
    };
    Ok(Ok(AuditRecord {
        seq,
        at: from_ms(row.get(1)?),
        event: AuditEvent {
            kind,
            actor: row.get(3)?,
            counterpart_her_id: row.get(4)?,
            message_id: row.get(5)?,
            function: row.get(6)?,
            outcome: row.get(7)?,
            reason: row.get(8)?,
        },
        prev_hash: row.get(9)?,
        hash: row.get(10)?,
    }))
}

/// The anchor row, made at genesis the first time it is needed.
fn read_anchor(connection: &Connection) -> Inner<ChainAnchor> {
    let anchor = connection
        .query_row(
            "SELECT start_seq, start_hash, head_seq, head_hash FROM audit_anchor WHERE id = 1",
            [],
            |row| {
                Ok(ChainAnchor {
                    start_seq: row.get(0)?,
                    start_hash: row.get(1)?,
                    head_seq: row.get(2)?,
                    head_hash: row.get(3)?,
                })
            },
        )
        .optional()?;
    match anchor {
        Some(anchor) => Ok(anchor),
        None => {
            let genesis = ChainAnchor::genesis();
            connection.execute(
                "INSERT INTO audit_anchor (id, start_seq, start_hash, head_seq, head_hash) VALUES (1, 0, ?1, 0, ?1)",
                [&genesis.head_hash],
            )?;
            Ok(genesis)
        }
    }
}
