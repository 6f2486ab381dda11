//! The gateway's durable memory, in one SQLite database (WAL mode):
//!
//! - [`outbox`]: every message to send is recorded, protected, before it is
//!   transferred, and marked sent only on the broker's Accepted outcome, so a
//!   crash between the two is resent on restart with the same message-id.
//! - [`inbox`]: which (sender HER-id, message-id) pairs were already handed
//!   to the application (de-duplication of redeliveries), and how often each
//!   delivery was attempted (brokers such as RabbitMQ 3.10 do not count).
//! - [`receipts`]: sent messages that expect an application receipt, matched
//!   when it arrives, listed when overdue.
//! - [`audit`]: the append-only, hash-chained audit log of approvals and
//!   rejections, kept at least two years and never holding payloads.
//!
//! The API is synchronous; callers on an async runtime use `spawn_blocking`.
//!
//! ```
//! let store = helsemelding_store::Store::open_in_memory().unwrap();
//! assert!(store.audit().verify().unwrap().is_intact());
//! ```

pub mod audit;
mod error;
pub mod inbox;
pub mod outbox;
pub mod receipts;
mod schema;
mod time;

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use rusqlite::Connection;

pub use error::Error;

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A handle to the store; cheap to clone, safe to share between threads.
#[derive(Clone)]
pub struct Store {
    connection: Arc<Mutex<Connection>>,
}

impl Store {
    /// Opens (creating if needed) the database at `path` and brings its schema
    /// up to date.
    pub fn open(path: &Path) -> Result<Self> {
        let connection = Connection::open(path).map_err(|source| Error::Open {
            path: path.display().to_string(),
            source,
        })?;
        Self::init(connection)
    }

    /// A private in-memory store, for tests and one-shot commands.
    pub fn open_in_memory() -> Result<Self> {
        Self::init(Connection::open_in_memory().map_err(|source| Error::Open {
            path: ":memory:".into(),
            source,
        })?)
    }

    fn init(connection: Connection) -> Result<Self> {
        schema::prepare(&connection)?;
        Ok(Store {
            connection: Arc::new(Mutex::new(connection)),
        })
    }

    /// The outbox of messages to send.
    pub fn outbox(&self) -> outbox::Outbox<'_> {
        outbox::Outbox::new(self)
    }

    /// De-duplication and delivery attempts of received messages.
    pub fn inbox(&self) -> inbox::Inbox<'_> {
        inbox::Inbox::new(self)
    }

    /// Application receipts expected for sent messages.
    pub fn receipts(&self) -> receipts::Receipts<'_> {
        receipts::Receipts::new(self)
    }

    /// The hash-chained audit log.
    pub fn audit(&self) -> audit::AuditLog<'_> {
        audit::AuditLog::new(self)
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite inconsistent
        // (every write is one transaction), so a poisoned lock is still usable.
        self.connection.lock().unwrap_or_else(|p| p.into_inner())
    }
}
