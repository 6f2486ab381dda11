//! The embedded transport: durable queues in one SQLite file (WAL) on this
//! machine, with the broker's semantics: at-least-once (a delivery is
//! leased to one receiver until settled; release, a closed receiver or an
//! expired lease put it back and it counts as a delivery), TTL (expired
//! messages are dead-lettered), reject dead-letters to the queue's
//! dead-letter queue ([`dead_letter_queue`]). Several processes may share
//! the file. URL form `local:PATH`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension};
use tokio::sync::Notify;

// Only the crate's public API, as a transport in another crate would.
use crate::{Capabilities, Delivery, DeliveryToken, Error, Message, Outcome};

/// How long a receiver holds a delivery before it goes back to the queue
/// (like RabbitMQ's consumer timeout, but shorter).
pub const DEFAULT_LEASE: Duration = Duration::from_secs(300);

/// How often a waiting receiver looks for messages other processes stored
/// (messages sent in this process wake it at once).
const POLL_INTERVAL: Duration = Duration::from_millis(50);

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    queue TEXT NOT NULL,
    properties TEXT NOT NULL,
    body BLOB NOT NULL,
    enqueued_ms INTEGER NOT NULL,
    expires_ms INTEGER,
    acquisitions INTEGER NOT NULL DEFAULT 0,
    lease INTEGER,
    lease_until_ms INTEGER
);
CREATE INDEX IF NOT EXISTS messages_by_queue ON messages(queue, id);
";

/// The dead-letter queue of `queue`: `<herid>_dl` for a party queue
/// (`<herid>_async`, `_sync`, `_error`, `_syncreply`), as NHN's broker
/// policy does, else `<queue>_dl`.
pub fn dead_letter_queue(queue: &str) -> String {
    if let Some((her_id, kind)) = queue.split_once('_') {
        let party_queue = matches!(kind, "async" | "sync" | "error" | "syncreply");
        if party_queue && !her_id.is_empty() && her_id.bytes().all(|b| b.is_ascii_digit()) {
            return format!("{her_id}_dl");
        }
    }
    format!("{queue}_dl")
}

/// The embedded transport over one SQLite file.
#[derive(Clone)]
pub struct LocalTransport {
    store: Arc<Store>,
}

struct Store {
    path: PathBuf,
    db: Mutex<Connection>,
    arrivals: Notify,
    lease: Duration,
}

impl LocalTransport {
    /// Opens (creating if needed) the store at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<LocalTransport, Error> {
        Self::open_with_lease(path, DEFAULT_LEASE)
    }

    /// Opens the store; a delivery not settled within `lease` goes back to the queue.
    pub fn open_with_lease(
        path: impl AsRef<Path>,
        lease: Duration,
    ) -> Result<LocalTransport, Error> {
        let path = path.as_ref().to_path_buf();
        let store_error = |e: rusqlite::Error| Error::Store {
            path: path.display().to_string(),
            reason: e.to_string(),
        };
        let db = Connection::open(&path).map_err(store_error)?;
        db.busy_timeout(OPEN_PATIENCE).map_err(store_error)?;
        retry_while_busy(|| prepare(&db)).map_err(store_error)?;
        let store = Store {
            path,
            db: Mutex::new(db),
            arrivals: Notify::new(),
            lease,
        };
        Ok(LocalTransport {
            store: Arc::new(store),
        })
    }

    /// Messages in `queue`, leased or not (for tests and status pages).
    pub async fn message_count(&self, queue: &str) -> Result<u64, Error> {
        let queue = queue.to_owned();
        self.store
            .run(move |db| {
                db.query_row(
                    "SELECT COUNT(*) FROM messages WHERE queue = ?1",
                    [queue],
                    |r| r.get::<_, i64>(0),
                )
            })
            .await
            .map(|n| n as u64)
    }
}

/// How long opening waits for other processes opening or writing the file.
const OPEN_PATIENCE: Duration = Duration::from_secs(10);

/// WAL, durable commits and the schema, made by exactly one of several
/// processes opening a new file at once.
fn prepare(db: &Connection) -> rusqlite::Result<()> {
    let mode: String = db.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
    debug_assert_eq!(mode.to_lowercase(), "wal");
    // FULL: an accepted send survives a power cut, as a broker confirm does.
    db.pragma_update(None, "synchronous", "FULL")?;
    // The write lock first: a statement that reads the schema and then
    // wants to write fails at once when another process wrote meanwhile.
    db.execute_batch(&format!("BEGIN IMMEDIATE; {SCHEMA} COMMIT;"))
        .inspect_err(|_| {
            let _ = db.execute_batch("ROLLBACK");
        })
}

/// Runs `step` again while SQLite answers "busy" or "locked" without having
/// waited: the switch to WAL of a new file takes a lock that the busy
/// timeout does not cover, so another process opening it at the same time
/// gets "database is locked" at once.
fn retry_while_busy(mut step: impl FnMut() -> rusqlite::Result<()>) -> rusqlite::Result<()> {
    let deadline = std::time::Instant::now() + OPEN_PATIENCE;
    loop {
        match step() {
            Err(e) if is_busy(&e) && std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Store {
    /// Runs `f` on the database off the async threads.
    async fn run<T, F>(self: &Arc<Self>, f: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let store = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let mut db = store
                .db
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            f(&mut db).map_err(|e| store.error(e))
        })
        .await
        .map_err(|e| Error::Store {
            path: self.path.display().to_string(),
            reason: e.to_string(),
        })?
    }

    fn error(&self, e: rusqlite::Error) -> Error {
        Error::Store {
            path: self.path.display().to_string(),
            reason: e.to_string(),
        }
    }
}

#[async_trait]
impl crate::Transport for LocalTransport {
    async fn sender(&self, queue: &str) -> Result<Box<dyn crate::Sender>, Error> {
        Ok(Box::new(LocalSender {
            store: Arc::clone(&self.store),
            queue: queue.to_owned(),
        }))
    }

    async fn receiver(&self, queue: &str, credit: u32) -> Result<Box<dyn crate::Receiver>, Error> {
        Ok(Box::new(LocalReceiver {
            store: Arc::clone(&self.store),
            queue: queue.to_owned(),
            credit: credit.max(1) as usize,
            held: HashMap::new(),
        }))
    }

    fn capabilities(&self) -> Capabilities {
        LOCAL_CAPABILITIES
    }

    async fn close(&self) -> Result<(), Error> {
        Ok(())
    }
}

struct LocalSender {
    store: Arc<Store>,
    queue: String,
}

#[async_trait]
impl crate::Sender for LocalSender {
    async fn send(&mut self, message: Message) -> Result<Outcome, Error> {
        let properties = serde_json::to_string(&message).map_err(|e| Error::Send {
            queue: self.queue.clone(),
            reason: e.to_string(),
        })?;
        let queue = self.queue.clone();
        let now = now_ms();
        let expires = message.ttl.map(|ttl| now + ttl.as_millis() as i64);
        self.store
            .run(move |db| {
                db.execute(
                    "INSERT INTO messages (queue, properties, body, enqueued_ms, expires_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![queue, properties, message.body, now, expires],
                )
            })
            .await?;
        self.store.arrivals.notify_waiters();
        Ok(Outcome::Accepted)
    }

    async fn close(self: Box<Self>) -> Result<(), Error> {
        Ok(())
    }
}

struct LocalReceiver {
    store: Arc<Store>,
    queue: String,
    credit: usize,
    /// Deliveries handed out and not settled: row id -> lease.
    held: HashMap<i64, u64>,
}

/// What settles a local delivery: the row, and the lease it was taken
/// under (a stale holder's lease no longer matches).
#[derive(Clone, Copy)]
struct LocalToken {
    row_id: i64,
    lease: u64,
}

impl std::fmt::Debug for LocalToken {
    // Without the lease: it is what lets a holder settle the row.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "local row {}", self.row_id)
    }
}

/// What the embedded store promises on every queue: it counts every
/// acquisition and reject moves the row to the dead-letter queue itself.
const LOCAL_CAPABILITIES: Capabilities = Capabilities::NONE
    .with_delivery_counts()
    .with_redelivery_marks()
    .with_release()
    .with_dead_letter_on_reject();

/// A row taken from the queue under a fresh lease.
struct Acquired {
    row_id: i64,
    lease: u64,
    properties: String,
    body: Vec<u8>,
    acquisitions: i64,
}

/// Dead-letters expired messages of `queue`, then leases its oldest available message.
fn acquire(
    db: &mut Connection,
    queue: &str,
    lease_for: Duration,
) -> rusqlite::Result<Option<Acquired>> {
    let now = now_ms();
    let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    tx.execute(
        "UPDATE messages SET queue = ?2, expires_ms = NULL, acquisitions = 0
         WHERE queue = ?1 AND expires_ms IS NOT NULL AND expires_ms <= ?3
           AND (lease IS NULL OR lease_until_ms <= ?3)",
        params![queue, dead_letter_queue(queue), now],
    )?;
    let row = tx
        .query_row(
            "SELECT id, properties, body, acquisitions FROM messages
             WHERE queue = ?1 AND (lease IS NULL OR lease_until_ms <= ?2)
             ORDER BY id LIMIT 1",
            params![queue, now],
            |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Vec<u8>>(2)?,
                    r.get::<_, i64>(3)?,
                ))
            },
        )
        .optional()?;
    let Some((row_id, properties, body, acquisitions)) = row else {
        tx.commit()?;
        return Ok(None);
    };
    // Lease numbers are random so that a stale holder can never settle a re-leased row.
    let lease = fastrand::u64(1..i64::MAX as u64);
    tx.execute(
        "UPDATE messages SET acquisitions = acquisitions + 1, lease = ?2, lease_until_ms = ?3 WHERE id = ?1",
        params![row_id, lease as i64, now + lease_for.as_millis() as i64],
    )?;
    tx.commit()?;
    Ok(Some(Acquired {
        row_id,
        lease,
        properties,
        body,
        acquisitions: acquisitions + 1,
    }))
}

impl LocalReceiver {
    async fn try_take(&mut self) -> Result<Option<Delivery>, Error> {
        if self.held.len() >= self.credit {
            return Ok(None);
        }
        let queue = self.queue.clone();
        let lease_for = self.store.lease;
        let Some(acquired) = self
            .store
            .run(move |db| acquire(db, &queue, lease_for))
            .await?
        else {
            return Ok(None);
        };
        self.held.insert(acquired.row_id, acquired.lease);
        let mut message: Message =
            serde_json::from_str(&acquired.properties).map_err(|e| Error::Receive {
                queue: self.queue.clone(),
                reason: format!("stored message {} unreadable: {e}", acquired.row_id),
            })?;
        message.body = acquired.body;
        Ok(Some(Delivery::new(
            message,
            (acquired.acquisitions - 1).max(0) as u32,
            acquired.acquisitions == 1,
            self.queue.clone(),
            DeliveryToken::new(LocalToken {
                row_id: acquired.row_id,
                lease: acquired.lease,
            }),
        )))
    }

    /// Applies `sql` (with ?1 = row id, ?2 = lease, ?3 = dead-letter queue) to
    /// the delivery if this receiver still holds its lease.
    async fn settle(&mut self, delivery: &Delivery, sql: &'static str) -> Result<(), Error> {
        let Some(&LocalToken { row_id, lease }) = delivery.token().downcast_ref() else {
            return Err(Error::Receive {
                queue: self.queue.clone(),
                reason: "delivery came from another transport".into(),
            });
        };
        self.held.remove(&row_id);
        let dead_letter = dead_letter_queue(&self.queue);
        let changed = self
            .store
            .run(move |db| db.execute(sql, params![row_id, lease as i64, dead_letter]))
            .await?;
        if changed == 0 {
            return Err(Error::DeliveryLost {
                queue: self.queue.clone(),
            });
        }
        self.store.arrivals.notify_waiters();
        Ok(())
    }
}

const ACCEPT: &str = "DELETE FROM messages WHERE id = ?1 AND lease = ?2 AND ?3 IS NOT NULL";
const RELEASE: &str = "UPDATE messages SET lease = NULL, lease_until_ms = NULL
                       WHERE id = ?1 AND lease = ?2 AND ?3 IS NOT NULL";
const REJECT: &str = "UPDATE messages SET queue = ?3, lease = NULL, lease_until_ms = NULL,
                      expires_ms = NULL, acquisitions = 0 WHERE id = ?1 AND lease = ?2";

#[async_trait]
impl crate::Receiver for LocalReceiver {
    async fn receive(&mut self, within: Duration) -> Result<Option<Delivery>, Error> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            // Register interest before looking, so a send in between is not missed.
            let store = Arc::clone(&self.store);
            let arrival = store.arrivals.notified();
            if let Some(delivery) = self.try_take().await? {
                return Ok(Some(delivery));
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            let nap = POLL_INTERVAL.min(deadline - now);
            let _ = tokio::time::timeout(nap, arrival).await;
        }
    }

    async fn accept(&mut self, delivery: &Delivery) -> Result<(), Error> {
        self.settle(delivery, ACCEPT).await
    }

    async fn release(&mut self, delivery: &Delivery) -> Result<(), Error> {
        self.settle(delivery, RELEASE).await
    }

    async fn reject(&mut self, delivery: &Delivery, reason: &str) -> Result<(), Error> {
        tracing::debug!(queue = %self.queue, reason, "rejecting delivery to the dead-letter queue");
        self.settle(delivery, REJECT).await
    }

    fn capabilities(&self) -> Capabilities {
        LOCAL_CAPABILITIES
    }

    async fn close(mut self: Box<Self>) -> Result<(), Error> {
        let held: Vec<(i64, u64)> = self.held.drain().collect();
        release_all(&self.store, held).await
    }
}

/// Puts deliveries a receiver still holds back on their queue.
async fn release_all(store: &Arc<Store>, held: Vec<(i64, u64)>) -> Result<(), Error> {
    if held.is_empty() {
        return Ok(());
    }
    store
        .run(move |db| {
            for (row_id, lease) in held {
                db.execute(RELEASE, params![row_id, lease as i64, ""])?;
            }
            Ok(())
        })
        .await?;
    store.arrivals.notify_waiters();
    Ok(())
}

impl Drop for LocalReceiver {
    fn drop(&mut self) {
        // A receiver dropped without close: release what it holds right away
        // rather than waiting for the leases to run out.
        let db = self.store.db.lock().unwrap_or_else(|p| p.into_inner());
        for (row_id, lease) in self.held.drain() {
            let _ = db.execute(RELEASE, params![row_id, lease as i64, ""]);
        }
        self.store.arrivals.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn party_queues_dead_letter_to_the_party_dl_queue() {
        assert_eq!(dead_letter_queue("91462_async"), "91462_dl");
        assert_eq!(dead_letter_queue("109989_sync"), "109989_dl");
        assert_eq!(dead_letter_queue("91462_syncreply"), "91462_dl");
        assert_eq!(dead_letter_queue("work-abc"), "work-abc_dl");
        assert_eq!(dead_letter_queue("abc_async"), "abc_async_dl");
        assert_eq!(dead_letter_queue("_async"), "_async_dl");
    }
}
