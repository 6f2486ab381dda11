//! The append-only, hash-chained audit log.
//!
//! Every approval and rejection is registered (Normen): who, what, when,
//! with whom, the outcome and why; never the payload or key material. Each
//! row carries the hash of the row before it, and an anchor row records
//! where the chain starts (after pruning) and where it ends (the head), so
//! that [`AuditLog::verify`] can say which row was changed, removed or
//! inserted, including at the end. Rows younger than the retention period
//! (two years at least) can never be pruned; the database refuses it too.

use chrono::{DateTime, Duration, Utc};
use rusqlite::{params, params_from_iter, Connection, OptionalExtension, Row};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::Inner;
use crate::time::{from_ms, to_ms};
use crate::{Error, Result, Store};

/// The legal minimum retention of audit rows.
pub const MINIMUM_RETENTION_DAYS: i64 = 730;

const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What happened.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuditKind {
    Sent,
    Received,
    Accepted,
    Rejected,
    ErrorReported,
    ErrorReceived,
    CertificateCheck,
    ReceiptMatched,
    ReceiptOverdue,
    Commtest,
    Start,
    Stop,
    AuthenticationFailed,
    /// A received message function outside the sender's CPA or CPP
    /// (handed over unless `strict_message_functions`).
    FunctionOutsideProfile,
    /// An operator removed an outbox entry before it was sent.
    OutboxDropped,
    /// An operator put a failed outbox entry back to pending.
    OutboxRetried,
    /// A fault of ours (a full disk, a store that cannot be written): the
    /// listener stopped taking deliveries.
    LocalFault,
    /// The fault of ours is gone: the listener takes deliveries again.
    LocalFaultCleared,
    /// A message that could not be dead-lettered safely (no dead-letter
    /// path, or nobody to report it to) was kept in the store.
    Parked,
    /// An operator removed a parked message (dropped or put back on its queue).
    ParkedRemoved,
}

impl AuditKind {
    const ALL: [AuditKind; 20] = [
        AuditKind::Sent,
        AuditKind::Received,
        AuditKind::Accepted,
        AuditKind::Rejected,
        AuditKind::ErrorReported,
        AuditKind::ErrorReceived,
        AuditKind::CertificateCheck,
        AuditKind::ReceiptMatched,
        AuditKind::ReceiptOverdue,
        AuditKind::Commtest,
        AuditKind::Start,
        AuditKind::Stop,
        AuditKind::AuthenticationFailed,
        AuditKind::FunctionOutsideProfile,
        AuditKind::OutboxDropped,
        AuditKind::OutboxRetried,
        AuditKind::LocalFault,
        AuditKind::LocalFaultCleared,
        AuditKind::Parked,
        AuditKind::ParkedRemoved,
    ];

    /// The stored name, e.g. `error-reported`.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditKind::Sent => "sent",
            AuditKind::Received => "received",
            AuditKind::Accepted => "accepted",
            AuditKind::Rejected => "rejected",
            AuditKind::ErrorReported => "error-reported",
            AuditKind::ErrorReceived => "error-received",
            AuditKind::CertificateCheck => "certificate-check",
            AuditKind::ReceiptMatched => "receipt-matched",
            AuditKind::ReceiptOverdue => "receipt-overdue",
            AuditKind::Commtest => "commtest",
            AuditKind::Start => "start",
            AuditKind::Stop => "stop",
            AuditKind::AuthenticationFailed => "authentication-failed",
            AuditKind::FunctionOutsideProfile => "function-outside-profile",
            AuditKind::OutboxDropped => "outbox-dropped",
            AuditKind::OutboxRetried => "outbox-retried",
            AuditKind::LocalFault => "local-fault",
            AuditKind::LocalFaultCleared => "local-fault-cleared",
            AuditKind::Parked => "parked",
            AuditKind::ParkedRemoved => "parked-removed",
        }
    }

    fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == name)
    }
}

/// One event to register. Holds identifiers only, never content.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    pub kind: AuditKind,
    /// Who acted: our HER-id and host, a user, or an API client.
    pub actor: String,
    /// The other party's HER-id, where there is one.
    pub counterpart_her_id: Option<u32>,
    pub message_id: Option<String>,
    /// The message function (AMQP subject), where there is one.
    pub function: Option<String>,
    /// E.g. `ok`, `rejected`, `transport:invalid-certificate`.
    pub outcome: String,
    /// Why, in words an operator can act on.
    pub reason: Option<String>,
}

impl AuditEvent {
    /// An event with only kind, actor and outcome set.
    pub fn new(kind: AuditKind, actor: impl Into<String>, outcome: impl Into<String>) -> Self {
        AuditEvent {
            kind,
            actor: actor.into(),
            counterpart_her_id: None,
            message_id: None,
            function: None,
            outcome: outcome.into(),
            reason: None,
        }
    }
}

/// A stored row of the log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AuditRecord {
    pub seq: i64,
    pub at: DateTime<Utc>,
    #[serde(flatten)]
    pub event: AuditEvent,
    pub prev_hash: String,
    pub hash: String,
}

/// Which rows [`AuditLog::list`] returns.
#[derive(Clone, Debug, Default)]
pub struct AuditFilter {
    pub since: Option<DateTime<Utc>>,
    pub her_id: Option<u32>,
    pub message_id: Option<String>,
    pub limit: Option<usize>,
}

/// A break in the chain, naming the rows concerned.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "problem", rename_all = "kebab-case")]
pub enum ChainProblem {
    /// The row's content no longer matches its own hash.
    Changed { seq: i64 },
    /// Rows are missing from the chain.
    Removed { from_seq: i64, to_seq: i64 },
    /// A row that was not appended through the log sits before `before_seq`.
    Inserted { seq: i64 },
    /// The row does not link to the row before it (that row was replaced).
    LinkBroken { seq: i64 },
    /// A row whose kind is not one this build knows.
    UnknownKind { seq: i64 },
}

impl std::fmt::Display for ChainProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChainProblem::Changed { seq } => write!(f, "row {seq} was changed"),
            ChainProblem::Removed { from_seq, to_seq } if from_seq == to_seq => {
                write!(f, "row {from_seq} was removed")
            }
            ChainProblem::Removed { from_seq, to_seq } => {
                write!(f, "rows {from_seq} to {to_seq} were removed")
            }
            ChainProblem::Inserted { seq } => write!(f, "row {seq} was inserted"),
            ChainProblem::LinkBroken { seq } => {
                write!(
                    f,
                    "row {seq} does not follow the row before it (that row was replaced)"
                )
            }
            ChainProblem::UnknownKind { seq } => write!(f, "row {seq} has an unknown kind"),
        }
    }
}

/// The outcome of [`AuditLog::verify`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    pub rows_checked: u64,
    /// Sequence number the chain starts after (0, or the last pruned row).
    pub start_seq: i64,
    pub head_seq: i64,
    pub problems: Vec<ChainProblem>,
}

impl VerifyReport {
    /// True when no problem was found.
    pub fn is_intact(&self) -> bool {
        self.problems.is_empty()
    }
}

/// The audit view of a [`Store`].
pub struct AuditLog<'a> {
    store: &'a Store,
}

struct Anchor {
    start_seq: i64,
    start_hash: String,
    head_seq: i64,
    head_hash: String,
}

impl<'a> AuditLog<'a> {
    pub(crate) fn new(store: &'a Store) -> Self {
        AuditLog { store }
    }

    /// Appends an event at `at` and returns the stored row.
    pub fn append(&self, at: DateTime<Utc>, event: &AuditEvent) -> Result<AuditRecord> {
        self.store.write("audit append", |connection| {
            insert_audit(connection, at, event)
        })
    }

    /// Rows matching `filter`, oldest first.
    pub fn list(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>> {
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
        self.store.read("audit list", |connection| {
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
    }

    /// Walks the whole chain and reports every break found.
    pub fn verify(&self) -> Result<VerifyReport> {
        self.store.read("audit verify", |connection| {
            let anchor = read_anchor(connection)?;
            let mut statement = connection.prepare(&format!("{SELECT} ORDER BY seq"))?;
            let mut rows = statement.query([])?;
            let mut walk = ChainWalk::new(&anchor);
            while let Some(row) = rows.next()? {
                walk.step(record_from_row(row)?);
            }
            Ok(walk.finish(&anchor))
        })
    }

    /// Removes the rows older than `before`, which must lie outside the
    /// retention period ending at `now`; the chain stays verifiable from the
    /// first kept row. Returns how many rows were removed.
    pub fn prune(
        &self,
        now: DateTime<Utc>,
        before: DateTime<Utc>,
        retention_days: i64,
    ) -> Result<usize> {
        if retention_days < MINIMUM_RETENTION_DAYS {
            return Err(Error::RetentionTooShort {
                days: retention_days,
                minimum_days: MINIMUM_RETENTION_DAYS,
            });
        }
        let oldest_allowed = now - Duration::days(retention_days);
        if before > oldest_allowed {
            return Err(Error::RetentionViolation {
                oldest_allowed: oldest_allowed.to_rfc3339(),
                retention_days,
            });
        }
        self.store.write("audit prune", |connection| {
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
    }
}

/// The state of a walk along the chain in [`AuditLog::verify`].
struct ChainWalk {
    prev_seq: i64,
    prev_hash: String,
    /// Hash of the row before the previous one: if a row links to it, the
    /// previous row was slipped in.
    before_prev_hash: Option<String>,
    rows_checked: u64,
    problems: Vec<ChainProblem>,
}

impl ChainWalk {
    fn new(anchor: &Anchor) -> Self {
        ChainWalk {
            prev_seq: anchor.start_seq,
            prev_hash: anchor.start_hash.clone(),
            before_prev_hash: None,
            rows_checked: 0,
            problems: Vec::new(),
        }
    }

    fn step(&mut self, record: std::result::Result<AuditRecord, i64>) {
        self.rows_checked += 1;
        let record = match record {
            Ok(record) => record,
            Err(seq) => {
                self.problems.push(ChainProblem::UnknownKind { seq });
                return;
            }
        };
        let gap = record.seq > self.prev_seq + 1;
        if gap {
            self.problems.push(ChainProblem::Removed {
                from_seq: self.prev_seq + 1,
                to_seq: record.seq - 1,
            });
        }
        if chain_hash(&record.prev_hash, record.seq, record.at, &record.event) != record.hash {
            self.problems
                .push(ChainProblem::Changed { seq: record.seq });
        } else if record.prev_hash != self.prev_hash && !gap {
            let previous_was_slipped_in =
                self.before_prev_hash.as_deref() == Some(&record.prev_hash);
            self.problems.push(if previous_was_slipped_in {
                ChainProblem::Inserted { seq: self.prev_seq }
            } else {
                ChainProblem::LinkBroken { seq: record.seq }
            });
        }
        self.before_prev_hash = Some(std::mem::replace(&mut self.prev_hash, record.hash));
        self.prev_seq = record.seq;
    }

    fn finish(mut self, anchor: &Anchor) -> VerifyReport {
        if self.prev_seq < anchor.head_seq {
            self.problems.push(ChainProblem::Removed {
                from_seq: self.prev_seq + 1,
                to_seq: anchor.head_seq,
            });
        } else if self.prev_seq > anchor.head_seq {
            for seq in anchor.head_seq + 1..=self.prev_seq {
                self.problems.push(ChainProblem::Inserted { seq });
            }
        } else if self.prev_hash != anchor.head_hash && self.problems.is_empty() {
            self.problems.push(ChainProblem::Changed {
                seq: anchor.head_seq,
            });
        }
        VerifyReport {
            rows_checked: self.rows_checked,
            start_seq: anchor.start_seq,
            head_seq: anchor.head_seq,
            problems: self.problems,
        }
    }
}

const SELECT: &str = "SELECT seq, at_ms, kind, actor, counterpart, message_id, function, outcome, reason, prev_hash, hash FROM audit";

/// A row, or its sequence number when its kind is unknown.
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
    let seq = anchor.head_seq + 1;
    let at = from_ms(to_ms(at));
    let hash = chain_hash(&anchor.head_hash, seq, at, event);
    tx.execute(
        "INSERT INTO audit (seq, at_ms, kind, actor, counterpart, message_id, function, outcome,
                            reason, prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        params![
            seq,
            to_ms(at),
            event.kind.as_str(),
            event.actor,
            event.counterpart_her_id,
            event.message_id,
            event.function,
            event.outcome,
            event.reason,
            anchor.head_hash,
            hash
        ],
    )?;
    tx.execute(
        "UPDATE audit_anchor SET head_seq = ?1, head_hash = ?2 WHERE id = 1",
        params![seq, hash],
    )?;
    tx.commit()?;
    Ok(AuditRecord {
        seq,
        at,
        event: event.clone(),
        prev_hash: anchor.head_hash,
        hash,
    })
}

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

fn read_anchor(connection: &rusqlite::Connection) -> Inner<Anchor> {
    let anchor = connection
        .query_row(
            "SELECT start_seq, start_hash, head_seq, head_hash FROM audit_anchor WHERE id = 1",
            [],
            |row| {
                Ok(Anchor {
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
            connection.execute(
                "INSERT INTO audit_anchor (id, start_seq, start_hash, head_seq, head_hash) VALUES (1, 0, ?1, 0, ?1)",
                [GENESIS_HASH],
            )?;
            Ok(Anchor {
                start_seq: 0,
                start_hash: GENESIS_HASH.into(),
                head_seq: 0,
                head_hash: GENESIS_HASH.into(),
            })
        }
    }
}

/// SHA-256 over the previous hash and every field, each length-prefixed so
/// that no two different rows encode alike.
fn chain_hash(prev_hash: &str, seq: i64, at: DateTime<Utc>, event: &AuditEvent) -> String {
    let mut hasher = Sha256::new();
    let mut field = |value: Option<&[u8]>| match value {
        Some(bytes) => {
            hasher.update((bytes.len() as u64).to_be_bytes());
            hasher.update(bytes);
        }
        None => hasher.update(u64::MAX.to_be_bytes()),
    };
    field(Some(prev_hash.as_bytes()));
    field(Some(&seq.to_be_bytes()));
    field(Some(&to_ms(at).to_be_bytes()));
    field(Some(event.kind.as_str().as_bytes()));
    field(Some(event.actor.as_bytes()));
    field(
        event
            .counterpart_her_id
            .map(|id| id.to_be_bytes())
            .as_ref()
            .map(|b| &b[..]),
    );
    field(event.message_id.as_deref().map(str::as_bytes));
    field(event.function.as_deref().map(str::as_bytes));
    field(Some(event.outcome.as_bytes()));
    field(event.reason.as_deref().map(str::as_bytes));
    hex::encode(hasher.finalize())
}
