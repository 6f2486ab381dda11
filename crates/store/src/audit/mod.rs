//! The append-only, hash-chained audit log.
//!
//! This module owns the audit types, the trait [`AuditLog`] that a backend
//! implements, and (in [`chain`], re-exported here) the pure hash chain:
//! how a row is hashed and appended, how a walk along the rows finds what
//! was changed, and which prunes the retention period allows. A backend
//! stores rows and its anchor; it decides nothing about the chain itself.
//!
//! Every approval and rejection is registered (Normen): who, what, when,
//! with whom, the outcome and why; never the payload or key material. Each
//! row carries the hash of the row before it, and an anchor records where
//! the chain starts (after pruning) and where it ends (the head), so that
//! [`AuditLog::verify`] can say which row was changed, removed or inserted,
//! including at the end. Rows younger than the retention period (two years
//! at least) can never be pruned.

pub mod chain;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use chain::{chain_hash, check_retention, ChainAnchor, ChainWalk, GENESIS_HASH};

use crate::Result;

/// The legal minimum retention of audit rows.
pub const MINIMUM_RETENTION_DAYS: i64 = 730;

/// What happened.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuditKind {
    /// A message was sent (the broker accepted it).
    Sent,
    /// A message was received.
    Received,
    /// A received message was handed to the application.
    Accepted,
    /// A received message was refused.
    Rejected,
    /// An error report was sent to a message's sender.
    ErrorReported,
    /// An error report came for one of our messages.
    ErrorReceived,
    /// A certificate was judged.
    CertificateCheck,
    /// An application receipt matched a sent message.
    ReceiptMatched,
    /// An application receipt did not come in time.
    ReceiptOverdue,
    /// A communication test ran.
    Commtest,
    /// The gateway started.
    Start,
    /// The gateway stopped.
    Stop,
    /// A client of ours failed to authenticate.
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
    /// A client of the HTTP API changed something (submitted, retried,
    /// cancelled, leased, acknowledged, answered), under its token's name.
    ApiRequest,
}

impl AuditKind {
    const ALL: [AuditKind; 21] = [
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
        AuditKind::ApiRequest,
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
            AuditKind::ApiRequest => "api-request",
        }
    }

    /// The kind stored as `name` (see [`AuditKind::as_str`]), if this
    /// build knows it.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == name)
    }
}

/// One event to register. Holds identifiers only, never content.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// What happened.
    pub kind: AuditKind,
    /// Who acted: our HER-id and host, a user, or an API client.
    pub actor: String,
    /// The other party's HER-id, where there is one.
    pub counterpart_her_id: Option<u32>,
    /// The message concerned, where there is one.
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
    /// Its place in the chain (1 for the first row ever).
    pub seq: i64,
    /// When it happened, to the millisecond.
    pub at: DateTime<Utc>,
    /// What happened.
    #[serde(flatten)]
    pub event: AuditEvent,
    /// The hash of the row before it.
    pub prev_hash: String,
    /// Its own hash (see [`chain_hash`]).
    pub hash: String,
}

/// Which rows [`AuditLog::list`] returns.
#[derive(Clone, Debug, Default)]
pub struct AuditFilter {
    /// Rows at or after this instant.
    pub since: Option<DateTime<Utc>>,
    /// Rows with this counterpart.
    pub her_id: Option<u32>,
    /// Rows of this message.
    pub message_id: Option<String>,
    /// At most this many.
    pub limit: Option<usize>,
}

/// A break in the chain, naming the rows concerned.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "problem", rename_all = "kebab-case")]
pub enum ChainProblem {
    /// The row's content no longer matches its own hash.
    Changed {
        /// The row.
        seq: i64,
    },
    /// Rows are missing from the chain.
    Removed {
        /// The first missing row.
        from_seq: i64,
        /// The last missing row.
        to_seq: i64,
    },
    /// A row that was not appended through the log sits before `before_seq`.
    Inserted {
        /// The row.
        seq: i64,
    },
    /// The row does not link to the row before it (that row was replaced).
    LinkBroken {
        /// The row whose link is broken.
        seq: i64,
    },
    /// A row whose kind is not one this build knows.
    UnknownKind {
        /// The row.
        seq: i64,
    },
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

/// The outcome of [`AuditLog::verify`] (see [`ChainWalk`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// How many rows were walked.
    pub rows_checked: u64,
    /// Sequence number the chain starts after (0, or the last pruned row).
    pub start_seq: i64,
    /// Sequence number of the last row appended.
    pub head_seq: i64,
    /// Every break found, in chain order.
    pub problems: Vec<ChainProblem>,
}

impl VerifyReport {
    /// True when no problem was found.
    pub fn is_intact(&self) -> bool {
        self.problems.is_empty()
    }
}

/// The hash-chained audit log. Every method is one transaction of the
/// backend.
#[async_trait]
pub trait AuditLog: Send + Sync {
    /// Appends an event at `at` (kept to the millisecond) and returns the
    /// stored row ([`ChainAnchor::next`] makes it).
    async fn append(&self, at: DateTime<Utc>, event: &AuditEvent) -> Result<AuditRecord>;

    /// Rows matching `filter`, oldest first (rows of a kind this build does
    /// not know are left out; [`AuditLog::verify`] names them).
    async fn list(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>>;

    /// Walks the whole chain ([`ChainWalk`]) and reports every break found.
    async fn verify(&self) -> Result<VerifyReport>;

    /// Removes the rows older than `before`, which must lie outside the
    /// retention period ending at `now` ([`check_retention`]); the chain
    /// stays verifiable from the first kept row. Returns how many rows
    /// were removed.
    async fn prune(
        &self,
        now: DateTime<Utc>,
        before: DateTime<Utc>,
        retention_days: i64,
    ) -> Result<usize>;
}
