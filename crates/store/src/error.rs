//! The one error type of this crate.

/// What went wrong in the store. Variants name the message, party or row
/// concerned, never payload content.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The database file could not be opened.
    #[error("cannot open the store at {path}: {source}")]
    Open {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    /// The database was written by a newer helsemelding.
    #[error("the store has schema version {found}, newer than this build's {supported}: upgrade helsemelding")]
    SchemaTooNew { found: i64, supported: i64 },
    /// A message id was recorded in the outbox twice.
    #[error("message {message_id} is already in the outbox")]
    DuplicateMessageId { message_id: String },
    /// No outbox entry has this message id.
    #[error("message {message_id} is not in the outbox")]
    UnknownMessage { message_id: String },
    /// An outbox entry is not in the state an operation needs.
    #[error("message {message_id} is {state} in the outbox: cannot {action}")]
    OutboxState {
        message_id: String,
        state: String,
        action: &'static str,
    },
    /// No parked message has this id.
    #[error("no parked message has id {id}")]
    UnknownParked { id: i64 },
    /// A receipt was expected twice for the same message.
    #[error("a receipt for message {message_id} is already expected")]
    DuplicateReceipt { message_id: String },
    /// Pruning would remove audit rows younger than the retention period.
    #[error("refusing to prune audit rows newer than {oldest_allowed}: they are inside the {retention_days}-day retention period")]
    RetentionViolation {
        oldest_allowed: String,
        retention_days: i64,
    },
    /// A retention shorter than the legal minimum (two years) was asked for.
    #[error("audit retention of {days} days is shorter than the minimum of {minimum_days} days")]
    RetentionTooShort { days: i64, minimum_days: i64 },
    /// The transaction holding this write could not be committed (disk
    /// full, I/O error): the write did not happen.
    #[error("store: commit failed: {reason}")]
    Commit { reason: String },
    /// Any other database failure.
    #[error("store: {0}")]
    Sqlite(#[from] rusqlite::Error),
}
