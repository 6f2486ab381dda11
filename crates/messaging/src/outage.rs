//! One line per outage, not one per failed receive: while the broker is
//! away every worker's receive fails every poll (a 35 s outage once wrote
//! 793 warning lines). The first failure of an outage is said, the rest
//! are counted, and the first receive that works again says how long it
//! lasted and how many failures were not printed. The state only; the
//! driver logs. Shared by the workers of one listener.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// The receive outage of one listener, if one is on.
#[derive(Debug, Default)]
pub(crate) struct OutageLog {
    state: Mutex<Option<(Instant, u64)>>,
}

/// An outage that ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Over {
    pub(crate) lasted: Duration,
    pub(crate) failures: u64,
}

impl OutageLog {
    fn state(&self) -> std::sync::MutexGuard<'_, Option<(Instant, u64)>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A receive failed at `now`: `true` when this begins an outage (say
    /// it), `false` when one is on (count it).
    pub(crate) fn failed(&self, now: Instant) -> bool {
        let mut state = self.state();
        match state.as_mut() {
            None => {
                *state = Some((now, 1));
                true
            }
            Some((_, failures)) => {
                *failures += 1;
                false
            }
        }
    }

    /// How long the outage that is on has lasted at `now`, if one is.
    pub(crate) fn lasting(&self, now: Instant) -> Option<Duration> {
        self.state()
            .as_ref()
            .map(|(since, _)| now.saturating_duration_since(*since))
    }

    /// A receive worked at `now`: the outage that was on, if any, is over.
    pub(crate) fn worked(&self, now: Instant) -> Option<Over> {
        let mut state = self.state();
        let (since, failures) = state.take()?;
        Some(Over {
            lasted: now.saturating_duration_since(since),
            failures,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_is_said_once_and_its_failures_counted_until_a_receive_works() {
        let log = OutageLog::default();
        let t0 = Instant::now();
        assert_eq!(log.worked(t0), None);
        assert_eq!(log.lasting(t0), None);
        assert!(log.failed(t0));
        for n in 1..=792 {
            assert!(!log.failed(t0 + Duration::from_millis(n * 44)));
        }
        assert_eq!(
            log.lasting(t0 + Duration::from_secs(5)),
            Some(Duration::from_secs(5))
        );
        let over = log.worked(t0 + Duration::from_secs(35)).unwrap();
        assert_eq!(over.failures, 793);
        assert_eq!(over.lasted, Duration::from_secs(35));
        assert_eq!(log.worked(t0), None);
        assert!(log.failed(t0), "the next outage is said again");
    }
}
