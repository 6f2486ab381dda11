//! The SQLite connection and its group commit (WAL mode, `synchronous =
//! FULL`): every write runs in a savepoint of a shared transaction, and the
//! last writer to arrive commits it for all who are waiting, so that
//! concurrent writers share one fsync (a commit costs a disk flush). A
//! write returns only after the transaction holding it is committed. The
//! calls here block; [`crate::SqliteStore`] runs them off the async threads.

use std::collections::VecDeque;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use helsemelding_store::{Error, Result};
use rusqlite::Connection;

use crate::error::{Fault, Inner};
use crate::schema;

/// The connection and its group commit; cheap to clone, safe to share
/// between threads. Its methods block: the async store runs them on
/// tokio's blocking threads.
#[derive(Clone)]
pub(crate) struct Database {
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

impl Database {
    /// Opens (creating if needed) the database at `path` and brings its
    /// schema up to date.
    pub(crate) fn open(path: &Path) -> Result<Self> {
        let connection = Connection::open(path).map_err(|source| Error::Open {
            path: path.display().to_string(),
            reason: source.to_string(),
        })?;
        Self::init(connection)
    }

    /// A private in-memory database.
    pub(crate) fn open_in_memory() -> Result<Self> {
        Self::init(Connection::open_in_memory().map_err(|source| Error::Open {
            path: ":memory:".into(),
            reason: source.to_string(),
        })?)
    }

    fn init(connection: Connection) -> Result<Self> {
        schema::prepare(&connection).map_err(|fault| fault.during("prepare the schema"))?;
        Ok(Database {
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
