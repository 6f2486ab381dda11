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
//! - [`parked`]: messages kept instead of dead-lettered where the broker
//!   would drop them (no dead-letter path) or nobody can be told of them.
//! - [`audit`]: the append-only, hash-chained audit log of approvals and
//!   rejections, kept at least two years and never holding payloads.
//!
//! The API is synchronous; callers on an async runtime use `spawn_blocking`.
//!
//! Writes are group-committed: every write runs in a savepoint of a shared
//! transaction, and the last writer to arrive commits it for all who are
//! waiting, so that concurrent writers share one fsync (the database is
//! `synchronous = FULL`; a commit costs a disk flush). A write returns only
//! after the transaction holding it is committed.
//!
//! ```
//! let store = helsemelding_store::Store::open_in_memory().unwrap();
//! assert!(store.audit().verify().unwrap().is_intact());
//! ```

pub mod audit;
mod error;
pub mod inbox;
pub mod outbox;
pub mod parked;
pub mod receipts;
mod schema;
mod time;

use std::collections::VecDeque;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::Connection;

pub use error::Error;
use error::{Fault, Inner};

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A handle to the store; cheap to clone, safe to share between threads.
#[derive(Clone)]
pub struct Store {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    /// Signalled when a batch is committed (or failed).
    committed: Condvar,
    /// Writers that want the connection to add their write to the batch.
    arriving: AtomicUsize,
}

struct State {
    connection: Connection,
    /// The batch whose transaction is open, if any.
    open_batch: Option<u64>,
    next_batch: u64,
    /// Every batch up to this one is committed or failed.
    completed: u64,
    /// Recent batches whose commit failed, with the reason.
    failed: VecDeque<(u64, String)>,
}

/// How many failed batches are remembered for their waiters.
const FAILED_BATCHES_KEPT: usize = 64;
/// How often a waiting writer checks that someone will commit its batch.
const COMMIT_CHECK: Duration = Duration::from_millis(20);

/// The connection, locked (no batch is committed while it is held).
pub(crate) struct Locked<'a>(MutexGuard<'a, State>);

impl std::ops::Deref for Locked<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        &self.0.connection
    }
}

impl std::ops::DerefMut for Locked<'_> {
    fn deref_mut(&mut self) -> &mut Connection {
        &mut self.0.connection
    }
}

impl Store {
    /// Opens (creating if needed) the database at `path` and brings its schema
    /// up to date.
    pub fn open(path: &Path) -> Result<Self> {
        let connection = Connection::open(path).map_err(|source| Error::Open {
            path: path.display().to_string(),
            reason: source.to_string(),
        })?;
        Self::init(connection)
    }

    /// A private in-memory store, for tests and one-shot commands.
    pub fn open_in_memory() -> Result<Self> {
        Self::init(Connection::open_in_memory().map_err(|source| Error::Open {
            path: ":memory:".into(),
            reason: source.to_string(),
        })?)
    }

    fn init(connection: Connection) -> Result<Self> {
        schema::prepare(&connection).map_err(|fault| fault.during("prepare the schema"))?;
        Ok(Store {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    connection,
                    open_batch: None,
                    next_batch: 1,
                    completed: 0,
                    failed: VecDeque::new(),
                }),
                committed: Condvar::new(),
                arriving: AtomicUsize::new(0),
            }),
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

    /// Messages kept instead of dead-lettered.
    pub fn parked(&self) -> parked::Parked<'_> {
        parked::Parked::new(self)
    }

    /// Application receipts expected for sent messages.
    pub fn receipts(&self) -> receipts::Receipts<'_> {
        receipts::Receipts::new(self)
    }

    /// The hash-chained audit log.
    pub fn audit(&self) -> audit::AuditLog<'_> {
        audit::AuditLog::new(self)
    }

    /// The connection for reading (it may see writes of a batch not yet
    /// committed, which only this process can have made).
    pub(crate) fn lock(&self) -> Locked<'_> {
        Locked(self.lock_state())
    }

    /// Runs the read `operation` on the connection.
    pub(crate) fn read<T>(
        &self,
        operation: &'static str,
        read: impl FnOnce(&Connection) -> Inner<T>,
    ) -> Result<T> {
        let connection = self.lock();
        read(&connection).map_err(|fault| fault.during(operation))
    }

    fn lock_state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave SQLite inconsistent
        // (every write is a savepoint of a transaction), so a poisoned lock
        // is still usable.
        self.shared.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `write` atomically (a savepoint: on `Err` its changes are rolled
    /// back) in the current batch, and returns once the batch is committed.
    /// A SQLite failure is reported as [`Error::Backend`] of `operation`.
    pub(crate) fn write<T>(
        &self,
        operation: &'static str,
        write: impl FnOnce(&mut Connection) -> Inner<T>,
    ) -> Result<T> {
        self.shared.arriving.fetch_add(1, Ordering::SeqCst);
        let mut state = self.lock_state();
        self.shared.arriving.fetch_sub(1, Ordering::SeqCst);
        let batch = match state.open_batch {
            Some(batch) => batch,
            None => {
                state
                    .connection
                    .execute_batch("BEGIN IMMEDIATE")
                    .map_err(|error| Fault::from(error).during(operation))?;
                let batch = state.next_batch;
                state.next_batch += 1;
                state.open_batch = Some(batch);
                batch
            }
        };
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            in_savepoint(&mut state.connection, write)
        }));
        // The last writer in commits for everyone; the others wait for it.
        if self.shared.arriving.load(Ordering::SeqCst) == 0 {
            self.commit(&mut state);
        }
        while state.completed < batch {
            let (next, _) = self
                .shared
                .committed
                .wait_timeout(state, COMMIT_CHECK)
                .unwrap_or_else(|p| p.into_inner());
            state = next;
            // Nobody else is coming to commit it (a writer gave up early).
            if state.open_batch == Some(batch) && self.shared.arriving.load(Ordering::SeqCst) == 0 {
                self.commit(&mut state);
            }
        }
        if let Some((_, reason)) = state.failed.iter().find(|(b, _)| *b == batch) {
            return Err(Error::Commit {
                reason: reason.clone(),
            });
        }
        drop(state);
        match outcome {
            Ok(result) => result.map_err(|fault| fault.during(operation)),
            Err(panic) => resume_unwind(panic),
        }
    }

    /// Commits the open batch and wakes its writers.
    fn commit(&self, state: &mut State) {
        let Some(batch) = state.open_batch.take() else {
            return;
        };
        if let Err(error) = state.connection.execute_batch("COMMIT") {
            let _ = state.connection.execute_batch("ROLLBACK");
            if state.failed.len() == FAILED_BATCHES_KEPT {
                state.failed.pop_front();
            }
            state.failed.push_back((batch, error.to_string()));
        }
        state.completed = batch;
        self.shared.committed.notify_all();
    }
}

/// Runs `write` in a savepoint, rolled back if it fails.
fn in_savepoint<T>(
    connection: &mut Connection,
    write: impl FnOnce(&mut Connection) -> Inner<T>,
) -> Inner<T> {
    connection.execute_batch("SAVEPOINT write")?;
    let result = write(connection);
    let end = if result.is_ok() {
        "RELEASE write"
    } else {
        "ROLLBACK TO write; RELEASE write"
    };
    connection.execute_batch(end)?;
    result
}

/// The units of work: each is one transaction, so a failure of its last
/// part (the audit row, made to fail here by a trigger) leaves no trace of
/// its first.
#[cfg(test)]
mod unit_of_work_tests {
    use chrono::{DateTime, TimeZone, Utc};

    use super::*;
    use crate::audit::{AuditEvent, AuditFilter, AuditKind};
    use crate::inbox::{DeliveryKey, HandOverRecord, MessageKey};
    use crate::outbox::{OutboxState, OutgoingMessage};

    fn at(seconds: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + seconds, 0).unwrap()
    }

    fn message(id: &str) -> OutgoingMessage {
        OutgoingMessage {
            message_id: id.into(),
            to_her_id: 93252,
            queue: "93252_async".into(),
            function: "DIALOG_INNBYGGER_EKONTAKT".into(),
            envelope: b"{}".to_vec(),
            body: vec![0x30, 0x80, 1, 2, 3],
            created_at: at(0),
            expires_at: None,
        }
    }

    fn event(kind: AuditKind, id: &str) -> AuditEvent {
        AuditEvent {
            message_id: Some(id.into()),
            counterpart_her_id: Some(93252),
            ..AuditEvent::new(kind, "herid:8141705@test", "ok")
        }
    }

    /// From now on every audit row fails to be written.
    fn break_the_audit_log(store: &Store) {
        store
            .lock()
            .execute_batch(
                "CREATE TEMP TRIGGER no_audit BEFORE INSERT ON audit
                 BEGIN SELECT RAISE(ABORT, 'audit refused (test)'); END;",
            )
            .unwrap();
    }

    fn audit_rows(store: &Store) -> usize {
        store.audit().list(&AuditFilter::default()).unwrap().len()
    }

    #[test]
    fn marking_sent_with_its_audit_row_is_one_unit() {
        let store = Store::open_in_memory().unwrap();
        store.outbox().enqueue(&message("a")).unwrap();
        store.outbox().enqueue(&message("b")).unwrap();
        let record = store
            .outbox()
            .mark_sent_audited("a", at(1), &event(AuditKind::Sent, "a"))
            .unwrap();
        assert_eq!(record.event.message_id.as_deref(), Some("a"));
        assert_eq!(
            store.outbox().state("a").unwrap(),
            Some(OutboxState::Sent { at: at(1) })
        );
        assert_eq!(audit_rows(&store), 1);

        // An unknown message: no audit row either.
        let unknown =
            store
                .outbox()
                .mark_sent_audited("nope", at(2), &event(AuditKind::Sent, "nope"));
        assert!(matches!(unknown, Err(Error::UnknownMessage { .. })));
        assert_eq!(audit_rows(&store), 1);

        // The audit row fails: the entry stays pending, bytes and all.
        break_the_audit_log(&store);
        let failed = store
            .outbox()
            .mark_sent_audited("b", at(3), &event(AuditKind::Sent, "b"));
        assert!(
            matches!(&failed, Err(Error::Backend { operation, reason })
                if *operation == "outbox mark sent audited" && reason.contains("audit refused")),
            "{failed:?}"
        );
        assert!(matches!(
            store.outbox().state("b").unwrap(),
            Some(OutboxState::Pending { .. })
        ));
        assert_eq!(store.outbox().pending(10).unwrap(), vec![message("b")]);
        assert_eq!(audit_rows(&store), 1);
        assert!(store.audit().verify().unwrap().is_intact());
    }

    #[test]
    fn a_hand_over_with_its_audit_row_and_forgotten_count_is_one_unit() {
        let store = Store::open_in_memory().unwrap();
        let inbox = store.inbox();
        let delivery = DeliveryKey {
            queue: "8141705_async",
            message_id: "m1",
        };
        let key = MessageKey {
            ours: 8141705,
            sender: 91462,
            message_id: "m1",
        };
        let count = || {
            inbox
                .count_delivery(delivery.queue, delivery.message_id, at(0))
                .unwrap()
                .redeliveries
        };
        let unknown_since = || {
            inbox
                .revocation_unknown_since(delivery.queue, delivery.message_id, at(9))
                .unwrap()
        };
        assert_eq!(count(), 1);
        assert_eq!(unknown_since(), at(9));
        let accepted = event(AuditKind::Accepted, "m1");
        let record = |outcome| HandOverRecord {
            key,
            at: at(1),
            outcome,
            answer: None,
            delivery: Some(delivery),
            audit: &accepted,
        };

        // The audit row fails: no hand-over, the count and mark are kept.
        break_the_audit_log(&store);
        assert!(matches!(
            inbox.record_hand_over_audited(&record("accepted")),
            Err(Error::Backend { .. })
        ));
        assert!(inbox.hand_over(key).unwrap().is_none());
        assert_eq!(count(), 2, "the count was kept");
        // (The mark's first time was kept too.)
        assert_eq!(
            inbox
                .revocation_unknown_since(delivery.queue, delivery.message_id, at(99))
                .unwrap(),
            at(9)
        );
        assert_eq!(audit_rows(&store), 0);

        // The audit log works again: all three parts happen.
        store.lock().execute_batch("DROP TRIGGER no_audit").unwrap();
        assert!(inbox.record_hand_over_audited(&record("accepted")).unwrap());
        assert_eq!(inbox.hand_over(key).unwrap().unwrap().outcome, "accepted");
        assert_eq!(count(), 1, "the count was forgotten");
        assert_eq!(
            inbox
                .revocation_unknown_since(delivery.queue, delivery.message_id, at(50))
                .unwrap(),
            at(50),
            "the mark was forgotten"
        );
        assert_eq!(audit_rows(&store), 1);
        // A second record is refused as a repeat (its audit row is written).
        assert!(!inbox.record_hand_over_audited(&record("again")).unwrap());
        assert_eq!(inbox.hand_over(key).unwrap().unwrap().outcome, "accepted");
        assert!(store.audit().verify().unwrap().is_intact());
    }

    #[test]
    fn an_enqueue_with_its_audit_row_is_one_unit() {
        let store = Store::open_in_memory().unwrap();
        let outbox = store.outbox();
        outbox
            .enqueue_audited(&message("a"), &event(AuditKind::Sent, "a"))
            .unwrap();
        assert_eq!(outbox.pending(10).unwrap(), vec![message("a")]);
        assert_eq!(audit_rows(&store), 1);

        // A duplicate id: no second audit row.
        assert!(matches!(
            outbox.enqueue_audited(&message("a"), &event(AuditKind::Sent, "a")),
            Err(Error::DuplicateMessageId { .. })
        ));
        assert_eq!(audit_rows(&store), 1);

        // The audit row fails: nothing is enqueued.
        break_the_audit_log(&store);
        assert!(matches!(
            outbox.enqueue_audited(&message("b"), &event(AuditKind::Sent, "b")),
            Err(Error::Backend { .. })
        ));
        assert_eq!(outbox.entry("b").unwrap(), None);
        assert_eq!(audit_rows(&store), 1);
    }
}
