//! The handle of running receive pipelines: started by the receive driver
//! ([`Listener::start`]), stopped here with or without a drain bound.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::error::{Error, Result};
use crate::outage::OutageLog;

/// Running receive pipelines; [`Listener::stop`] lets each worker finish
/// (and settle) its delivery, then detaches.
pub struct Listener {
    shutdown: watch::Sender<bool>,
    workers: Vec<JoinHandle<()>>,
    outage: Arc<OutageLog>,
}

/// Whether a listener's receive links work, for a readiness probe; it
/// outlives the listener (then it says what was last seen).
#[derive(Clone)]
pub struct ReceiveHealth {
    outage: Arc<OutageLog>,
}

impl ReceiveHealth {
    /// How long the receive links have been failing, `None` while they work.
    pub fn down_for(&self) -> Option<Duration> {
        self.outage.lasting(tokio::time::Instant::now())
    }
}

impl Listener {
    /// The handle of workers that watch `shutdown` and share `outage`.
    pub(crate) fn new(
        shutdown: watch::Sender<bool>,
        workers: Vec<JoinHandle<()>>,
        outage: Arc<OutageLog>,
    ) -> Listener {
        Listener {
            shutdown,
            workers,
            outage,
        }
    }

    /// A view of whether the receive links work.
    pub fn health(&self) -> ReceiveHealth {
        ReceiveHealth {
            outage: self.outage.clone(),
        }
    }

    /// Stops the workers after their current delivery and waits for them.
    pub async fn stop(self) -> Result<()> {
        let _ = self.shutdown.send(true);
        for worker in self.workers {
            worker.await.map_err(|e| Error::Task(e.to_string()))?;
        }
        Ok(())
    }

    /// Drains: no worker takes a new delivery; each finishes (and settles)
    /// the one in hand and releases its parked ones, within `bound`. A
    /// worker still busy then is cut short: its delivery stays unsettled
    /// and the broker gives it back once our link or connection closes
    /// (the next consumer sees it as a redelivery). Returns how many
    /// workers were cut short.
    pub async fn stop_within(self, bound: Duration) -> Result<usize> {
        self.stop_unless(tokio::time::sleep(bound)).await
    }

    /// As [`Listener::stop_within`], cutting the drain short when `cut`
    /// completes (a bound, a second stop signal).
    pub async fn stop_unless(self, cut: impl std::future::Future<Output = ()>) -> Result<usize> {
        let _ = self.shutdown.send(true);
        tokio::pin!(cut);
        let mut cut_short = 0;
        let mut cutting = false;
        for mut worker in self.workers {
            if !cutting {
                tokio::select! {
                    joined = &mut worker => {
                        joined.map_err(|e| Error::Task(e.to_string()))?;
                        continue;
                    }
                    () = &mut cut => cutting = true,
                }
            }
            if worker.is_finished() {
                worker.await.map_err(|e| Error::Task(e.to_string()))?;
            } else {
                worker.abort();
                let _ = worker.await;
                cut_short += 1;
            }
        }
        Ok(cut_short)
    }
}
