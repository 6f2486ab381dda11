//! The one error type of this crate, shared by every backend: no backend's
//! own types appear in it (a backend's failure is [`Error::Backend`] in
//! its own words).

/// What went wrong in the store. Variants name the message, party or row
/// concerned, never payload content.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The store could not be opened.
    #[error("cannot open the store at {path}: {reason}")]
    Open {
        /// Where the store is (a file, a database URL without credentials).
        path: String,
        /// The backend's own words.
        reason: String,
    },
    /// The store was written by a newer helsemelding.
    #[error("the store has schema version {found}, newer than this build's {supported}: upgrade helsemelding")]
    SchemaTooNew {
        /// The version found.
        found: i64,
        /// The newest version this build knows.
        supported: i64,
    },
    /// A message id was recorded in the outbox twice.
    #[error("message {message_id} is already in the outbox")]
    DuplicateMessageId {
        /// The message id.
        message_id: String,
    },
    /// No outbox entry has this message id.
    #[error("message {message_id} is not in the outbox")]
    UnknownMessage {
        /// The message id.
        message_id: String,
    },
    /// An outbox entry is not in the state an operation needs.
    #[error("message {message_id} is {state} in the outbox: cannot {action}")]
    OutboxState {
        /// The message id.
        message_id: String,
        /// The state it is in.
        state: String,
        /// What could not be done, and what to do instead.
        action: &'static str,
    },
    /// No message record has this number.
    #[error("no message record has number {record}")]
    UnknownRecord {
        /// The record number asked for.
        record: i64,
    },
    /// A message record is not in a state an operation needs (an ack of
    /// a message whose lease ran out and was taken by another client).
    #[error("message record {record} is {state}: cannot {action}")]
    RecordState {
        /// The record number.
        record: i64,
        /// The state it is in.
        state: String,
        /// What could not be done.
        action: &'static str,
    },
    /// No parked message has this id.
    #[error("no parked message has id {id}")]
    UnknownParked {
        /// The id asked for.
        id: i64,
    },
    /// A receipt was expected twice for the same message.
    #[error("a receipt for message {message_id} is already expected")]
    DuplicateReceipt {
        /// The message id.
        message_id: String,
    },
    /// Pruning would remove audit rows younger than the retention period.
    #[error("refusing to prune audit rows newer than {oldest_allowed}: they are inside the {retention_days}-day retention period")]
    RetentionViolation {
        /// The youngest instant a pruned row may have (RFC 3339).
        oldest_allowed: String,
        /// The retention period.
        retention_days: i64,
    },
    /// A retention shorter than the legal minimum (two years) was asked for.
    #[error("audit retention of {days} days is shorter than the minimum of {minimum_days} days")]
    RetentionTooShort {
        /// The retention asked for.
        days: i64,
        /// The legal minimum.
        minimum_days: i64,
    },
    /// The transaction holding this write could not be committed (disk
    /// full, I/O error): the write did not happen.
    #[error("store: commit failed: {reason}")]
    Commit {
        /// The backend's own words.
        reason: String,
    },
    /// The backend failed at an operation (a query, a constraint, the
    /// disk): `operation` says which store operation, `reason` is the
    /// backend's own words.
    #[error("store: {operation} failed: {reason}")]
    Backend {
        /// The store operation, e.g. `outbox enqueue`.
        operation: &'static str,
        /// The backend's own words.
        reason: String,
    },
}
