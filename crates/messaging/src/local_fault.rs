//! Faults of ours: a full disk, a folder or store that cannot be written.
//! Such a fault is no message's fault, so it must never spend delivery
//! attempts (ten redeliveries of a valid message to a full disk would
//! dead-letter it). While one lasts, no worker of a listener takes
//! deliveries; after a pause (1 s, doubling to a cap, 30 s by default) the
//! workers try again, and the first delivery that goes through ends the
//! fault.
//!
//! This module only keeps the state, on a clock the caller passes in; the
//! receive driver logs, audits and waits.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// The first pause after a fault of ours (or the cap, when lower).
const FIRST_PAUSE: Duration = Duration::from_secs(1);

/// The fault state shared by the workers of one listener.
#[derive(Debug)]
pub(crate) struct LocalFault {
    state: Mutex<Option<Fault>>,
    /// The longest pause between tries while a fault lasts.
    longest_pause: Duration,
}

#[derive(Debug, Clone)]
struct Fault {
    reason: String,
    since: Instant,
    resume_at: Instant,
    pause: Duration,
    released: u64,
}

/// A fault that began: say so loudly, once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Began {
    pub(crate) reason: String,
    pub(crate) pause: Duration,
}

/// A fault that ended: how long it lasted, how many deliveries were
/// released meanwhile, and what it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ended {
    pub(crate) reason: String,
    pub(crate) lasted: Duration,
    pub(crate) released: u64,
}

impl LocalFault {
    /// No fault yet; pauses will double up to `longest_pause`.
    pub(crate) fn new(longest_pause: Duration) -> LocalFault {
        LocalFault {
            state: Mutex::new(None),
            longest_pause: longest_pause.max(Duration::from_millis(10)),
        }
    }

    fn first_pause(&self) -> Duration {
        FIRST_PAUSE.min(self.longest_pause)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, Option<Fault>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A delivery was released for a fault of ours at `now`. Returns what
    /// began when no fault was on; a failure after a pause lengthens the
    /// next pause, one while workers are still pausing does not.
    pub(crate) fn failed(&self, reason: &str, now: Instant) -> Option<Began> {
        let mut state = self.state();
        match state.as_mut() {
            None => {
                let pause = self.first_pause();
                *state = Some(Fault {
                    reason: reason.to_owned(),
                    since: now,
                    resume_at: now + pause,
                    pause,
                    released: 1,
                });
                Some(Began {
                    reason: reason.to_owned(),
                    pause,
                })
            }
            Some(fault) => {
                fault.released += 1;
                if now >= fault.resume_at {
                    fault.pause = (fault.pause * 2).min(self.longest_pause);
                    fault.resume_at = now + fault.pause;
                }
                fault.reason = reason.to_owned();
                None
            }
        }
    }

    /// How long workers must still wait before taking a delivery, if a
    /// fault is on.
    pub(crate) fn pause_left(&self, now: Instant) -> Option<Duration> {
        self.state()
            .as_ref()
            .map(|fault| fault.resume_at.saturating_duration_since(now))
            .filter(|left| !left.is_zero())
    }

    /// A delivery went through at `now`: the fault, if one was on, is over.
    pub(crate) fn went_through(&self, now: Instant) -> Option<Ended> {
        self.state().take().map(|fault| Ended {
            reason: fault.reason,
            lasted: now.saturating_duration_since(fault.since),
            released: fault.released,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fault_pauses_with_a_doubling_pause_until_a_delivery_goes_through() {
        let fault = LocalFault::new(Duration::from_secs(30));
        let t0 = Instant::now();
        assert_eq!(fault.pause_left(t0), None);

        let began = fault.failed("No space left on device", t0).unwrap();
        assert_eq!(began.pause, FIRST_PAUSE);
        assert_eq!(fault.pause_left(t0), Some(FIRST_PAUSE));
        // Other workers failing during the same pause neither say it again
        // nor lengthen it.
        assert_eq!(fault.failed("No space left on device", t0), None);
        assert_eq!(fault.pause_left(t0), Some(FIRST_PAUSE));

        // The try after the pause fails too: twice as long now.
        let t1 = t0 + FIRST_PAUSE;
        assert_eq!(fault.pause_left(t1), None);
        assert_eq!(fault.failed("No space left on device", t1), None);
        assert_eq!(fault.pause_left(t1), Some(2 * FIRST_PAUSE));

        let ended = fault.went_through(t1 + Duration::from_secs(5)).unwrap();
        assert_eq!(ended.released, 3);
        assert_eq!(ended.lasted, FIRST_PAUSE + Duration::from_secs(5));
        assert_eq!(fault.pause_left(t1), None);
        assert_eq!(fault.went_through(t1), None);
    }

    #[test]
    fn the_pause_never_grows_past_its_cap() {
        let cap = Duration::from_secs(30);
        let fault = LocalFault::new(cap);
        let mut now = Instant::now();
        fault.failed("disk", now);
        for _ in 0..20 {
            now += fault.pause_left(now).unwrap_or_default();
            fault.failed("disk", now);
        }
        assert_eq!(fault.pause_left(now), Some(cap));
        // A cap below the first pause is the first pause too.
        let quick = LocalFault::new(Duration::from_millis(200));
        let began = quick.failed("disk", now).unwrap();
        assert_eq!(began.pause, Duration::from_millis(200));
    }
}
