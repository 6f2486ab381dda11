//! How SQLite failures become the store's [`Error`]: inside this crate a
//! failure is a [`Fault`], either a store error or a SQLite one, and it
//! turns into [`Error::Backend`] at the operation's boundary, where the
//! operation is known (no SQLite type reaches the traits).

use helsemelding_store::Error;

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
