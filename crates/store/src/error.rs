//! The one error type of this crate.

/// What went wrong in the store. Variants name the message, party or row
/// concerned, never payload content.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The database file could not be opened.
    #[error("cannot open the store at {path}: {reason}")]
    Open { path: String, reason: String },
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
    /// The backend failed at an operation (a query, a constraint, the
    /// disk): `operation` says which store operation, `reason` is the
    /// backend's own words.
    #[error("store: {operation} failed: {reason}")]
    Backend {
        operation: &'static str,
        reason: String,
    },
}

/// A failure inside the SQLite code: a store error, or a SQLite one that
/// becomes [`Error::Backend`] at the operation's boundary, where the
/// operation is known (no SQLite type reaches the public API).
#[derive(Debug)]
pub(crate) enum Fault {
    Store(Error),
    Sql(rusqlite::Error),
}

impl From<Error> for Fault {
    fn from(error: Error) -> Self {
        Fault::Store(error)
    }
}

impl From<rusqlite::Error> for Fault {
    fn from(error: rusqlite::Error) -> Self {
        Fault::Sql(error)
    }
}

impl Fault {
    /// The public error, naming the operation that failed.
    pub(crate) fn during(self, operation: &'static str) -> Error {
        match self {
            Fault::Store(error) => error,
            Fault::Sql(error) => Error::Backend {
                operation,
                reason: error.to_string(),
            },
        }
    }
}

/// `Result` inside the SQLite code.
pub(crate) type Inner<T> = std::result::Result<T, Fault>;
