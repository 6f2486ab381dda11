//! The receive engine's decisions, as pure functions: no I/O, no async, no
//! clock. The driver (the receive driver) performs each step's I/O
//! (store, registry, CMS, callback) and asks this module what the outcome
//! means for the delivery; every path ends in one [`Decision`], and every
//! decision settles the delivery.
//!
//! The rules are PROFILE.md's "Receiving": faults the sender should hear
//! about are reported on the sender's error queue and the original is
//! accepted; outages (registry, revocation service) are retried without
//! spending delivery attempts; other failures are retried until the
//! delivery limit and then dead-lettered.

mod conditions;
pub mod intake;
pub mod send;

pub use conditions::Failure;
// The application's types, defined with the rest of the public face.
pub use crate::api::{DeadLetters, HandlerError};
pub use send::{classify_send_failure, OutboxPolicy, OutboxStep, SendFailure};

use std::time::Duration;

use helsemelding_protect::{CheckReport, Problem};
use helsemelding_wire::error_report::ErrorReport;

/// What to do with one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Every check passed: hand the payload to the application, accept only
    /// after it returned success.
    HandOver,
    /// Tell the sender (an error report on its `_error` queue), then accept
    /// the original so it is not retried.
    ReportError(ErrorReport),
    /// Release after `after`; `spend_attempt` is false for outages, which
    /// must not count against the delivery limit.
    Retry {
        /// How long to hold the delivery before releasing it (a plain
        /// release comes straight back on RabbitMQ).
        after: Duration,
        /// Whether this attempt counts against the delivery limit.
        spend_attempt: bool,
    },
    /// Reject: the broker dead-letters it (`<herid>_dl` on NHN's bus).
    DeadLetter {
        /// Why, for the log and the audit.
        reason: String,
    },
    /// Already handed over (or answered) earlier: accept without a second
    /// hand-over.
    AcceptDuplicate,
    /// A fault of ours, not the message's (a full disk, a store that
    /// cannot be written): release at once without spending an attempt,
    /// and take no deliveries until the fault is gone.
    Pause {
        /// What failed, for the log and the audit.
        reason: String,
    },
}

/// Where a message that is given up goes: a message whose sender cannot be
/// read is always kept in the store (nobody can be told, and a broker's
/// dead-letter queue is no place an operator of ours looks first); others
/// go where the queue sends them.
pub fn dead_letter_route(queue: DeadLetters, sender_known: bool) -> DeadLetters {
    if sender_known {
        queue
    } else {
        DeadLetters::Store
    }
}

/// The store could not be read or written: ours, never the message's.
pub fn on_store_failure(error: &str) -> Decision {
    Decision::Pause {
        reason: format!("the store cannot be used: {error}"),
    }
}

/// How retries are paced and bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Deliveries after which a message that keeps failing is dead-lettered
    /// (the reference library's default is 10).
    pub delivery_limit: u32,
    /// Backoff before the first release.
    pub backoff_min: Duration,
    /// Cap of the backoff.
    pub backoff_max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            delivery_limit: helsemelding_wire::queue::DEFAULT_DELIVERY_LIMIT,
            backoff_min: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The backoff before releasing the `attempt`-th delivery (1-based):
    /// doubling from `backoff_min`, capped at `backoff_max`.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(16);
        self.backoff_min
            .saturating_mul(1u32 << doublings)
            .min(self.backoff_max)
    }

    /// A retry of the `attempt`-th delivery.
    pub fn retry(&self, attempt: u32, spend_attempt: bool) -> Decision {
        Decision::Retry {
            after: self.backoff(attempt),
            spend_attempt,
        }
    }

    /// Before any work: a delivery past the limit is dead-lettered.
    /// `attempts` counts this delivery.
    pub fn on_delivery(&self, attempts: u32) -> Option<Decision> {
        (attempts > self.delivery_limit).then(|| Decision::DeadLetter {
            reason: format!(
                "delivered {attempts} times, more than the limit of {}",
                self.delivery_limit
            ),
        })
    }

    /// A failure that is neither the sender's fault nor an outage: retry,
    /// spending an attempt (dead-lettered once the limit is reached).
    pub fn on_local_failure(&self, attempt: u32) -> Decision {
        self.retry(attempt, true)
    }

    /// An outage (registry or revocation service unreachable): retry
    /// without spending an attempt.
    pub fn on_outage(&self, attempt: u32) -> Decision {
        self.retry(attempt, false)
    }
}

/// How strictly the receive pipelines judge a message (PROFILE.md
/// "Receiving"). The defaults follow the reference library where it is
/// safe and are stricter where it is not; every switch that weakens a
/// check says so in its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceivePolicy {
    /// Refuse message functions outside the CPA/CPP with
    /// `transport:unsupported-message` (false: audit and hand over, as the
    /// reference never checks them).
    pub strict_message_functions: bool,
    /// Skip the check that the MsgHead parties name `fromHerId`/`toHerId`.
    pub allow_party_mismatch: bool,
    /// Take unprotected (`text/plain`, `application/soap+xml`) messages,
    /// for test environments only: they have no signer to check.
    pub allow_unprotected: bool,
    /// Accept 3DES-encrypted messages (DES and RC2 are always refused).
    pub allow_3des: bool,
    /// How long a message whose sender's revocation status cannot be
    /// learnt is retried before it is dead-lettered.
    pub revocation_unknown_for: Duration,
}

impl Default for ReceivePolicy {
    fn default() -> Self {
        ReceivePolicy {
            strict_message_functions: false,
            allow_party_mismatch: false,
            allow_unprotected: false,
            allow_3des: false,
            revocation_unknown_for: Duration::from_secs(3600),
        }
    }
}

/// An unprotected message (no signer to check the sender by): refused
/// unless `allow_unprotected`; `None` means go on without decrypting.
pub fn on_unprotected(content_type: Option<&str>, policy: &ReceivePolicy) -> Option<Decision> {
    if policy.allow_unprotected {
        return None;
    }
    report(Failure::Unprotected.report(
        "unprotected messages are not accepted (allow_unprotected is off)",
        vec![content_type.unwrap_or_default().to_string()],
    ))
}

/// The sender's revocation status is still unknown after `unknown_for`
/// (since this message first met an unknown status): retried without
/// spending attempts, until `revocation_unknown_for` has passed; then
/// dead-lettered, as the reference's retries end on the dead-letter queue.
pub fn on_revocation_unknown(
    unknown_for: Duration,
    receive: &ReceivePolicy,
    retry: &RetryPolicy,
    attempt: u32,
) -> Decision {
    if unknown_for >= receive.revocation_unknown_for {
        return Decision::DeadLetter {
            reason: format!(
                "the revocation status of the sender's certificate stayed unknown for {}s (limit {}s)",
                unknown_for.as_secs(),
                receive.revocation_unknown_for.as_secs()
            ),
        };
    }
    retry.on_outage(attempt)
}

/// A message function outside the sender's CPA or CPP: `None` (hand over,
/// the driver audits it) unless `strict_message_functions`.
pub fn on_function_outside_profile(
    function: &str,
    sender: u32,
    receive: &ReceivePolicy,
) -> Option<Decision> {
    receive
        .strict_message_functions
        .then(|| on_function_not_allowed(function, sender))
}

/// A header that failed `check_incoming`: tell the sender when we know who
/// it is, else dead-letter (there is nobody to tell).
pub fn on_header_error(error: &helsemelding_wire::Error, sender_known: bool) -> Decision {
    match ErrorReport::from_error(error) {
        Some(report) if sender_known => Decision::ReportError(report),
        _ => Decision::DeadLetter {
            reason: format!("unreadable header and no sender to tell: {error}"),
        },
    }
}

/// What the registry said about the sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistryFailure {
    /// The registry knows no such party, CPA or certificates.
    NotFound,
    /// The registry could not be reached or did not answer in time.
    Unreachable,
    /// The registry answered with something unusable.
    Broken,
}

/// The sender's profile could not be found.
pub fn on_registry_failure(
    failure: RegistryFailure,
    description: &str,
    policy: &RetryPolicy,
    attempt: u32,
) -> Decision {
    match failure {
        RegistryFailure::NotFound => {
            report(Failure::UnknownSender.report(description, Vec::new())).expect("a report")
        }
        RegistryFailure::Unreachable => policy.on_outage(attempt),
        RegistryFailure::Broken => policy.on_local_failure(attempt),
    }
}

/// The profile has no signing certificate for the sender.
pub fn on_no_signing_certificate(sender: u32) -> Decision {
    report(Failure::UnknownSender.report(
        format!("no signing certificate is registered for HER-id {sender}"),
        Vec::new(),
    ))
    .expect("a report")
}

/// Why unprotecting failed, as far as the decision needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnprotectFailure {
    /// Signed by a certificate that is not one of the claimed sender's.
    WrongSigner {
        /// Serial of the certificate that signed.
        actual_serial: String,
    },
    /// A refused content-encryption algorithm (DES, 3DES when configured).
    RefusedCipher(String),
    /// Not for us, not CMS, undecryptable or a broken signature.
    Invalid(String),
}

/// Unprotecting failed with every accepted signer certificate.
pub fn on_unprotect_failure(failure: &UnprotectFailure, claimed_sender: u32) -> Decision {
    let reported = match failure {
        UnprotectFailure::WrongSigner { actual_serial } => Failure::WrongSigner.report(
            format!(
                "the message claims HER-id {claimed_sender} but was signed by certificate serial {actual_serial}, which is not one of that party's"
            ),
            vec![claimed_sender.to_string(), actual_serial.clone()],
        ),
        UnprotectFailure::RefusedCipher(algorithm) => Failure::RefusedCipher.report(
            format!("refused content-encryption algorithm {algorithm}"),
            Vec::new(),
        ),
        UnprotectFailure::Invalid(reason) => Failure::Unopenable.report(reason.clone(), Vec::new()),
    };
    report(reported).expect("a report")
}

/// The sender's signing certificate was judged: `None` when it may be used.
/// An unknown revocation status alone is an outage of the revocation
/// service: retried, not reported (the driver bounds it with
/// [`on_revocation_unknown`]).
pub fn on_certificate_check(
    report: &CheckReport,
    subject: &str,
    thumbprint_sha1: &str,
    policy: &RetryPolicy,
    attempt: u32,
) -> Option<Decision> {
    if report.is_ok() {
        return None;
    }
    if report.only_revocation_unknown() {
        return Some(policy.on_outage(attempt));
    }
    let condition = Failure::Certificate(&report.errors).condition()?;
    let problems: Vec<&str> = report.errors.iter().map(|p| Problem::as_str(*p)).collect();
    Some(Decision::ReportError(ErrorReport::certificate(
        condition,
        format!(
            "the sender's signing certificate is not usable: {}",
            problems.join(", ")
        ),
        subject,
        thumbprint_sha1,
    )))
}

/// A decision to report, or none when there is nobody to tell.
fn report(report: Option<ErrorReport>) -> Option<Decision> {
    report.map(Decision::ReportError)
}

/// The payload failed the XML or MsgHead checks.
pub fn on_payload_error(error: &helsemelding_wire::Error) -> Decision {
    match ErrorReport::from_error(error) {
        Some(report) => Decision::ReportError(report),
        None => Decision::DeadLetter {
            reason: error.to_string(),
        },
    }
}

/// The CPA (or CPP) does not allow the message function from this sender.
pub fn on_function_not_allowed(function: &str, sender: u32) -> Decision {
    report(Failure::FunctionNotAllowed.report(
        format!(
            "message function {function} from HER-id {sender} is not in the collaboration profile"
        ),
        vec![function.to_string()],
    ))
    .expect("a report")
}

/// The application refused the message.
pub fn on_handler_error(error: &HandlerError, policy: &RetryPolicy, attempt: u32) -> Decision {
    match error {
        HandlerError::Retry { .. } => policy.on_local_failure(attempt),
        HandlerError::Unavailable { reason } => Decision::Pause {
            reason: reason.clone(),
        },
        HandlerError::Reject {
            condition,
            description,
        } => report(Failure::Application(*condition).report(description.clone(), Vec::new()))
            .expect("a report"),
        HandlerError::RejectContent { errors } => report(Failure::ContentRejected.report(
            format!("the receiver rejected the content: {error}"),
            errors.iter().map(|code| code.v.clone()).collect(),
        ))
        .expect("a report"),
    }
}

/// The error report could not be sent: keep the original and try again
/// later (its sender must hear about it), spending an attempt.
pub fn on_report_send_failure(policy: &RetryPolicy, attempt: u32) -> Decision {
    policy.on_local_failure(attempt)
}

#[cfg(test)]
mod tests {
    use helsemelding_wire::error_report::ErrorCondition;

    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            delivery_limit: 10,
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(1),
        }
    }

    fn condition(decision: &Decision) -> ErrorCondition {
        match decision {
            Decision::ReportError(report) => report.condition,
            other => panic!("expected a report, got {other:?}"),
        }
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let p = policy();
        assert_eq!(p.backoff(1), Duration::from_millis(100));
        assert_eq!(p.backoff(2), Duration::from_millis(200));
        assert_eq!(p.backoff(4), Duration::from_millis(800));
        assert_eq!(p.backoff(5), Duration::from_secs(1));
        assert_eq!(p.backoff(1000), Duration::from_secs(1));
        assert_eq!(p.backoff(0), Duration::from_millis(100));
    }

    #[test]
    fn the_delivery_limit_dead_letters_the_eleventh_delivery() {
        let p = policy();
        assert_eq!(p.on_delivery(1), None);
        assert_eq!(p.on_delivery(10), None);
        assert!(matches!(
            p.on_delivery(11),
            Some(Decision::DeadLetter { .. })
        ));
    }

    #[test]
    fn outages_do_not_spend_attempts_local_failures_do() {
        let p = policy();
        assert_eq!(
            p.on_outage(3),
            Decision::Retry {
                after: Duration::from_millis(400),
                spend_attempt: false
            }
        );
        assert_eq!(
            p.on_local_failure(1),
            Decision::Retry {
                after: Duration::from_millis(100),
                spend_attempt: true
            }
        );
    }

    #[test]
    fn missing_headers_are_reported_with_their_names() {
        let error = helsemelding_wire::Error::MissingHeaders {
            fields: vec!["toHerId", "Label"],
        };
        let decision = on_header_error(&error, true);
        assert_eq!(condition(&decision), ErrorCondition::InvalidFieldValue);
        let Decision::ReportError(report) = decision else {
            unreachable!()
        };
        assert_eq!(report.data_on_wire(), "toHerId;Label;");
    }

    #[test]
    fn a_header_error_without_a_sender_is_dead_lettered() {
        let error = helsemelding_wire::Error::MissingHeaders {
            fields: vec!["fromHerId"],
        };
        assert!(matches!(
            on_header_error(&error, false),
            Decision::DeadLetter { .. }
        ));
    }

    #[test]
    fn registry_failures_by_kind() {
        let p = policy();
        assert_eq!(
            condition(&on_registry_failure(RegistryFailure::NotFound, "x", &p, 1)),
            ErrorCondition::MissingCertificate
        );
        assert_eq!(
            on_registry_failure(RegistryFailure::Unreachable, "x", &p, 1),
            Decision::Retry {
                after: Duration::from_millis(100),
                spend_attempt: false
            }
        );
        assert!(matches!(
            on_registry_failure(RegistryFailure::Broken, "x", &p, 2),
            Decision::Retry {
                spend_attempt: true,
                ..
            }
        ));
    }

    #[test]
    fn wrong_signer_is_spoofing_and_other_cms_failures_invalid_certificate() {
        let spoof = on_unprotect_failure(
            &UnprotectFailure::WrongSigner {
                actual_serial: "0a".into(),
            },
            91462,
        );
        assert_eq!(condition(&spoof), ErrorCondition::SpoofingAttack);
        assert_eq!(
            condition(&on_unprotect_failure(
                &UnprotectFailure::Invalid("not CMS".into()),
                91462
            )),
            ErrorCondition::InvalidCertificate
        );
        assert_eq!(
            condition(&on_unprotect_failure(
                &UnprotectFailure::RefusedCipher("1.3.14.3.2.7".into()),
                91462
            )),
            ErrorCondition::UnsupportedMessage
        );
    }

    #[test]
    fn certificate_problems_map_to_conditions_and_unknown_revocation_retries() {
        let p = policy();
        let judge = |errors: Vec<Problem>| {
            on_certificate_check(
                &CheckReport {
                    errors,
                    warnings: vec![],
                },
                "CN=x",
                "ab12",
                &p,
                1,
            )
        };
        assert_eq!(judge(vec![]), None);
        let expired = judge(vec![Problem::Expired]).unwrap();
        assert_eq!(condition(&expired), ErrorCondition::ExpiredCertificate);
        let Decision::ReportError(report) = expired else {
            unreachable!()
        };
        assert_eq!(report.data_on_wire(), "Subject: CN=x;Thumbprint: AB12;");
        assert_eq!(
            condition(&judge(vec![Problem::Revoked]).unwrap()),
            ErrorCondition::RevokedCertificate
        );
        assert_eq!(
            condition(&judge(vec![Problem::Expired, Problem::Untrusted]).unwrap()),
            ErrorCondition::InvalidCertificate
        );
        assert_eq!(
            judge(vec![Problem::RevocationUnknown]),
            Some(Decision::Retry {
                after: Duration::from_millis(100),
                spend_attempt: false
            })
        );
    }

    #[test]
    fn payload_errors_and_functions() {
        let bad_xml = helsemelding_wire::Error::NotWellFormed {
            reason: "line 1".into(),
        };
        assert_eq!(
            condition(&on_payload_error(&bad_xml)),
            ErrorCondition::NotWellFormedXml
        );
        let mismatch = helsemelding_wire::Error::Mismatch {
            what: "MsgHead sender HER-id",
            expected: "91462".into(),
            received: "1".into(),
        };
        assert_eq!(
            condition(&on_payload_error(&mismatch)),
            ErrorCondition::InvalidFieldValue
        );
        assert_eq!(
            condition(&on_function_not_allowed("FOO", 91462)),
            ErrorCondition::UnsupportedMessage
        );
    }

    #[test]
    fn handler_errors() {
        let p = policy();
        assert!(matches!(
            on_handler_error(
                &HandlerError::Retry {
                    reason: "db".into()
                },
                &p,
                1
            ),
            Decision::Retry {
                spend_attempt: true,
                ..
            }
        ));
        assert_eq!(
            condition(&on_handler_error(
                &HandlerError::Reject {
                    condition: ErrorCondition::InternalError,
                    description: "no".into()
                },
                &p,
                1
            )),
            ErrorCondition::InternalError
        );
    }

    #[test]
    fn faults_of_ours_pause_the_pipeline_instead_of_spending_attempts() {
        let p = policy();
        let unavailable = HandlerError::Unavailable {
            reason: "No space left on device".into(),
        };
        // Even on the last attempt: a full disk never dead-letters a message.
        assert_eq!(
            on_handler_error(&unavailable, &p, p.delivery_limit),
            Decision::Pause {
                reason: "No space left on device".into()
            }
        );
        assert!(matches!(
            on_store_failure("disk I/O error"),
            Decision::Pause { reason } if reason.contains("disk I/O error")
        ));
    }

    #[test]
    fn a_message_nobody_can_be_told_of_is_always_kept_in_the_store() {
        use DeadLetters::{Broker, Store};
        assert_eq!(dead_letter_route(Broker, true), Broker);
        assert_eq!(dead_letter_route(Store, true), Store);
        assert_eq!(dead_letter_route(Broker, false), Store);
        assert_eq!(dead_letter_route(Store, false), Store);
    }

    #[test]
    fn unprotected_messages_need_allow_unprotected() {
        let strict = ReceivePolicy::default();
        let decision = on_unprotected(Some("text/plain"), &strict).unwrap();
        assert_eq!(condition(&decision), ErrorCondition::UnsupportedMessage);
        let lenient = ReceivePolicy {
            allow_unprotected: true,
            ..strict
        };
        assert_eq!(on_unprotected(Some("text/plain"), &lenient), None);
    }

    #[test]
    fn unknown_revocation_is_retried_for_a_bounded_time_then_dead_lettered() {
        let receive = ReceivePolicy {
            revocation_unknown_for: Duration::from_secs(60),
            ..ReceivePolicy::default()
        };
        assert_eq!(
            ReceivePolicy::default().revocation_unknown_for,
            Duration::from_secs(3600)
        );
        match on_revocation_unknown(Duration::from_secs(59), &receive, &policy(), 3) {
            Decision::Retry { spend_attempt, .. } => assert!(!spend_attempt),
            other => panic!("expected a retry, got {other:?}"),
        }
        match on_revocation_unknown(Duration::from_secs(60), &receive, &policy(), 3) {
            Decision::DeadLetter { reason } => assert!(reason.contains("unknown"), "{reason}"),
            other => panic!("expected a dead-letter, got {other:?}"),
        }
    }

    #[test]
    fn functions_outside_the_profile_pass_unless_strict() {
        let lenient = ReceivePolicy::default();
        assert_eq!(
            on_function_outside_profile("DIALOG_INNBYGGER_TIMERESERVASJON", 8141705, &lenient),
            None
        );
        let strict = ReceivePolicy {
            strict_message_functions: true,
            ..lenient
        };
        let decision =
            on_function_outside_profile("DIALOG_INNBYGGER_TIMERESERVASJON", 8141705, &strict)
                .unwrap();
        assert_eq!(condition(&decision), ErrorCondition::UnsupportedMessage);
    }

    #[test]
    fn a_msghead_sender_mismatch_is_spoofing_and_a_receiver_mismatch_a_field_error() {
        let spoofed = helsemelding_wire::Error::SenderMismatch {
            header: 8141705,
            payload: "66666".into(),
        };
        assert_eq!(
            condition(&on_payload_error(&spoofed)),
            ErrorCondition::SpoofingAttack
        );
        let receiver = helsemelding_wire::Error::Mismatch {
            what: "MsgHead receiver HER-id",
            expected: "8141705".into(),
            received: "4210".into(),
        };
        assert_eq!(
            condition(&on_payload_error(&receiver)),
            ErrorCondition::InvalidFieldValue
        );
    }

    #[test]
    fn an_outbox_entry_backs_off_on_its_own_and_is_given_up_after_its_attempts() {
        let policy = OutboxPolicy::default();
        assert_eq!(
            policy.after_failed_attempt(1),
            OutboxStep::RetryAfter(Duration::from_secs(1))
        );
        assert_eq!(
            policy.after_failed_attempt(4),
            OutboxStep::RetryAfter(Duration::from_secs(8))
        );
        assert_eq!(
            policy.after_failed_attempt(19),
            OutboxStep::RetryAfter(Duration::from_secs(300))
        );
        assert_eq!(policy.after_failed_attempt(20), OutboxStep::GiveUp);
        let once = OutboxPolicy {
            max_attempts: 0,
            ..policy
        };
        assert_eq!(once.after_failed_attempt(1), OutboxStep::GiveUp);
    }

    #[test]
    fn a_missing_queue_is_the_entry_s_fault_an_unreachable_broker_is_not() {
        use helsemelding_transport::Error as T;
        let queue = || "93252_async".to_string();
        let no_queue = T::NoSuchQueue {
            queue: queue(),
            reason: "not-found".into(),
        };
        assert_eq!(classify_send_failure(&no_queue), SendFailure::Entry);
        let attach = T::Attach {
            queue: queue(),
            reason: "forbidden".into(),
        };
        assert_eq!(classify_send_failure(&attach), SendFailure::Entry);
        let refused = T::Connect {
            endpoint: "localhost:5672".into(),
            reason: "connection refused".into(),
        };
        assert_eq!(classify_send_failure(&refused), SendFailure::Broker);
        assert_eq!(classify_send_failure(&T::Closed), SendFailure::Broker);
    }
}
