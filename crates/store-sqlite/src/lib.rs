//! The embedded store: [`SqliteStore`] keeps the traits of
//! `helsemelding-store` in one SQLite file (WAL mode, `synchronous = FULL`),
//! for a gateway on one machine.
//!
//! # Layout
//!
//! - [`SqliteStore`] (here): opening, and the bridge from the async traits
//!   to SQLite's blocking calls, which run on tokio's blocking threads
//!   (`spawn_blocking`) so that a disk flush never holds up the async ones.
//! - `database`: the connection and its group commit: concurrent writers
//!   share one transaction and one fsync, and a write returns only once
//!   the transaction holding it is committed.
//! - `schema`: the tables and their migrations, keyed by `user_version`
//!   (version 6; older files are migrated in place, newer ones refused).
//! - `outbox`, `inbox`, `receipts`, `parked`, `audit`, `messages`: each trait's
//!   statements. A unit of work (a message marked sent with its audit row,
//!   say) is one savepoint of one write, so all of it commits or none.
//!   The message records (`messages`) change inside the outbox's, inbox's
//!   and receipts' units of work.
//! - `error`: how SQLite failures become the store's `Error`.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use helsemelding_store::Store;
//! let store = helsemelding_store_sqlite::SqliteStore::open_in_memory().unwrap();
//! assert!(store.audit().verify().await.unwrap().is_intact());
//! # });
//! ```

#![deny(missing_docs)]

mod audit;
mod database;
mod error;
mod inbox;
mod messages;
mod outbox;
mod parked;
mod receipts;
mod schema;
mod time;

use std::path::Path;

use helsemelding_store::{
    AuditLog, Error, Inbox, Messages, Outbox, Parked, Receipts, Result, Store,
};
use rusqlite::Connection;

use database::Database;
use error::Inner;

/// The SQLite store; cheap to clone (clones share the connection), safe to
/// share between tasks and threads.
#[derive(Clone)]
pub struct SqliteStore {
    database: Database,
}

impl SqliteStore {
    /// Opens (creating if needed) the store file at `path` and brings its
    /// schema up to date. This blocks (another process may be creating the
    /// same file): call it at start-up, or off the async threads.
    pub fn open(path: &Path) -> Result<Self> {
        Ok(SqliteStore {
            database: Database::open(path)?,
        })
    }

    /// A private in-memory store, for tests and one-shot commands.
    pub fn open_in_memory() -> Result<Self> {
        Ok(SqliteStore {
            database: Database::open_in_memory()?,
        })
    }

    /// Runs the read `operation` on a blocking thread.
    async fn read<T: Send + 'static>(
        &self,
        operation: &'static str,
        read: impl FnOnce(&Connection) -> Inner<T> + Send + 'static,
    ) -> Result<T> {
        let database = self.database.clone();
        blocking(operation, move || database.read(operation, read)).await
    }

    /// Runs `write` in the current batch on a blocking thread, as
    /// [`Database::write`]: it returns once the batch is committed.
    async fn write<T: Send + 'static>(
        &self,
        operation: &'static str,
        write: impl FnOnce(&mut Connection) -> Inner<T> + Send + 'static,
    ) -> Result<T> {
        let database = self.database.clone();
        blocking(operation, move || database.write(operation, write)).await
    }
}

/// Runs `work` on tokio's blocking threads. A write started there finishes
/// even when its caller stops waiting, as a write must.
async fn blocking<T: Send + 'static>(
    operation: &'static str,
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result,
        Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
        Err(_) => Err(Error::Backend {
            operation,
            reason: "the runtime shut down before the store answered".into(),
        }),
    }
}

impl Store for SqliteStore {
    fn outbox(&self) -> &dyn Outbox {
        self
    }

    fn inbox(&self) -> &dyn Inbox {
        self
    }

    fn receipts(&self) -> &dyn Receipts {
        self
    }

    fn parked(&self) -> &dyn Parked {
        self
    }

    fn audit(&self) -> &dyn AuditLog {
        self
    }

    fn messages(&self) -> &dyn Messages {
        self
    }
}

#[cfg(test)]
mod units_of_work_tests;
