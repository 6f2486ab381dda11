//! The decisions of reconnecting, kept pure (no clock, no randomness, no
//! I/O: the caller passes the time and the jitter) so that they are tested
//! without a broker:
//!
//! - [`Backoff`]: how long to wait after a run of failed attempts;
//! - [`Attempts`]: the connection's run of failed attempts (reset by a
//!   success), which the backoff grows with;
//! - [`Health`]: one receiver's state, `Up` or `Down` since a first failed
//!   attempt, and when a `Down` has lasted long enough to be reported as
//!   [`Error::Unavailable`] instead of looking like an idle queue;
//! - [`SendBudget`]: whether a sender tries again after a failure;
//! - [`is_final`]: which failures no retry can mend.

use std::time::{Duration, SystemTime};

use helsemelding_transport::Error;
use tokio::time::Instant;

/// Capped exponential backoff with jitter.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Backoff {
    /// The first delay.
    pub min: Duration,
    /// The cap.
    pub max: Duration,
}

impl Backoff {
    /// The delay after `failures` failed attempts in a row: `min` doubled
    /// per failure, capped at `max`, then scaled by `jitter` (0..=1) to
    /// between half and all of that, so that many clients that lost the
    /// broker together do not come back in step.
    pub fn delay(&self, failures: u32, jitter: f64) -> Duration {
        let capped = self
            .min
            .saturating_mul(1u32 << failures.min(20))
            .min(self.max);
        capped.mul_f64(0.5 + jitter.clamp(0.0, 1.0) / 2.0)
    }
}

/// Failed connection attempts in a row, shared by every link of a
/// connection: one success (a session begun, a link attached) resets it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Attempts {
    failures: u32,
}

impl Attempts {
    /// An attempt got through.
    pub fn succeeded(&mut self) {
        self.failures = 0;
    }

    /// An attempt failed.
    pub fn failed(&mut self) {
        self.failures = self.failures.saturating_add(1);
    }

    /// How long to wait before the next attempt.
    pub fn delay(&self, backoff: Backoff, jitter: f64) -> Duration {
        backoff.delay(self.failures, jitter)
    }
}

/// One receiver's view of the broker.
#[derive(Debug)]
pub(crate) struct Health {
    state: State,
    unavailable_after: Duration,
}

#[derive(Debug)]
enum State {
    Up,
    /// Failing since the first failed attempt of the run.
    Down {
        started: Instant,
        since: SystemTime,
    },
}

impl Health {
    /// Up, reporting an outage once it has lasted `unavailable_after`.
    pub fn new(unavailable_after: Duration) -> Health {
        Health {
            state: State::Up,
            unavailable_after,
        }
    }

    /// The link is attached again: a later failure starts a new outage.
    pub fn recovered(&mut self) {
        self.state = State::Up;
    }

    /// Whether the link is up (no outage is on): the first failure of an
    /// outage is worth a warning, the ones after it are not (a 35 s outage
    /// once wrote a line per attempt per receiver).
    pub fn is_up(&self) -> bool {
        matches!(self.state, State::Up)
    }

    /// Notes a failed attempt at `now` (`wall` is the same moment by the
    /// wall clock, for the report); the [`Error::Unavailable`] to report
    /// when the outage has lasted long enough, else `None` (keep quiet, try
    /// again).
    pub fn failed(
        &mut self,
        queue: &str,
        error: &Error,
        now: Instant,
        wall: SystemTime,
    ) -> Option<Error> {
        let (started, since) = match self.state {
            State::Down { started, since } => (started, since),
            State::Up => {
                self.state = State::Down {
                    started: now,
                    since: wall,
                };
                (now, wall)
            }
        };
        let down_for = now.saturating_duration_since(started);
        (down_for >= self.unavailable_after).then(|| Error::Unavailable {
            queue: queue.to_owned(),
            since,
            down_for,
            last_error: error.to_string(),
        })
    }
}

/// How long a sender keeps trying through an outage.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SendBudget {
    give_up: Instant,
}

impl SendBudget {
    /// A budget of `retry_for` from `now`.
    pub fn new(now: Instant, retry_for: Duration) -> SendBudget {
        SendBudget {
            give_up: now + retry_for,
        }
    }

    /// Whether to try again after `error` at `now`: not when no retry can
    /// mend it ([`is_final`]), the budget is spent, or the transport is
    /// closed.
    pub fn retry(&self, error: &Error, now: Instant, closed: bool) -> bool {
        !is_final(error) && now < self.give_up && !closed
    }

    /// When the last attempt is due: a pause between attempts never runs past it.
    pub fn give_up_at(&self) -> Instant {
        self.give_up
    }
}

/// Failures that come back the same however often they are retried: the
/// queue or exchange is not there or not ours to use, or the broker refused
/// our credentials.
pub(crate) fn is_final(error: &Error) -> bool {
    matches!(
        error,
        Error::Attach { .. } | Error::NoSuchQueue { .. } | Error::AuthenticationFailed { .. }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(10);

    fn connect_error() -> Error {
        Error::Connect {
            endpoint: "h:5672".into(),
            reason: "refused".into(),
        }
    }

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let backoff = Backoff { min: MIN, max: MAX };
        for failures in 0..40 {
            let full = MIN.saturating_mul(1 << failures.min(20)).min(MAX);
            assert_eq!(backoff.delay(failures, 0.0), full / 2, "{failures}");
            assert_eq!(backoff.delay(failures, 1.0), full, "{failures}");
            let d = backoff.delay(failures, fastrand::f64());
            assert!(d >= full / 2 && d <= full, "{failures}: {d:?} vs {full:?}");
        }
        assert_eq!(backoff.delay(30, 7.0), MAX);
    }

    #[test]
    fn attempts_grow_the_backoff_until_one_succeeds() {
        let backoff = Backoff { min: MIN, max: MAX };
        let mut attempts = Attempts::default();
        assert_eq!(attempts.delay(backoff, 1.0), MIN);
        attempts.failed();
        attempts.failed();
        assert_eq!(attempts.delay(backoff, 1.0), MIN * 4);
        attempts.succeeded();
        assert_eq!(attempts.delay(backoff, 1.0), MIN);
    }

    #[test]
    fn an_outage_is_reported_once_it_has_lasted_and_forgotten_on_recovery() {
        let t0 = Instant::now();
        let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut health = Health::new(Duration::from_secs(15));
        let error = connect_error();
        assert!(health.failed("q", &error, t0, wall).is_none());
        let later = wall + Duration::from_secs(9);
        assert!(health
            .failed("q", &error, t0 + Duration::from_secs(9), later)
            .is_none());
        match health.failed("q", &error, t0 + Duration::from_secs(15), later) {
            Some(Error::Unavailable {
                queue,
                since,
                down_for,
                last_error,
            }) => {
                assert_eq!(queue, "q");
                assert_eq!(since, wall, "the outage began at the first failure");
                assert_eq!(down_for, Duration::from_secs(15));
                assert_eq!(last_error, error.to_string());
            }
            other => panic!("expected Unavailable, got {other:?}"),
        }
        health.recovered();
        let t1 = t0 + Duration::from_secs(60);
        assert!(health.failed("q", &error, t1, later).is_none());
    }

    #[test]
    fn with_no_grace_the_first_failure_is_reported() {
        let mut health = Health::new(Duration::ZERO);
        let now = Instant::now();
        assert!(matches!(
            health.failed("q", &connect_error(), now, SystemTime::now()),
            Some(Error::Unavailable { .. })
        ));
    }

    #[test]
    fn a_sender_retries_passing_failures_within_its_budget_only() {
        let t0 = Instant::now();
        let budget = SendBudget::new(t0, Duration::from_secs(60));
        assert_eq!(budget.give_up_at(), t0 + Duration::from_secs(60));
        let passing = [
            connect_error(),
            Error::Send {
                queue: "q".into(),
                reason: "link detached".into(),
            },
            Error::Timeout {
                operation: "send",
                queue: "q".into(),
                seconds: 15,
            },
        ];
        for error in &passing {
            assert!(budget.retry(error, t0, false), "{error}");
            assert!(!budget.retry(error, t0 + Duration::from_secs(60), false));
            assert!(!budget.retry(error, t0, true), "closed");
        }
        let finals = [
            Error::NoSuchQueue {
                queue: "q".into(),
                reason: "not-found".into(),
            },
            Error::Attach {
                queue: "q".into(),
                reason: "access refused".into(),
            },
            Error::AuthenticationFailed {
                endpoint: "h:5672".into(),
                user: "her".into(),
            },
        ];
        for error in &finals {
            assert!(is_final(error));
            assert!(!budget.retry(error, t0, false), "{error}");
        }
    }
}
