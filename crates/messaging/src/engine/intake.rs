//! The receive pipeline of one delivery as a state machine, with no I/O,
//! no clock and no async: [`Intake::next_step`] says what the driver must do
//! next ([`Step`]), the driver does it and hands the outcome back with
//! [`Intake::answer`], until the step is [`Step::Settle`]. The order of the
//! steps and every decision are PROFILE.md "Receiving":
//!
//! 1. count the delivery (only redeliveries are written down) and give up
//!    past the delivery limit;
//! 2. header checks ([`Envelope::check_incoming`]);
//! 3. claim the (sender, message-id) against the other workers;
//! 4. an earlier hand-over makes it a duplicate;
//! 5. the sender's profile (the CPA named, else the pair's, the CPP, the
//!    record);
//! 6. open the body (decrypt and verify against the profile's signers; a
//!    signer none of them matches makes us look the sender up once more,
//!    past the cache), then judge the signer's certificate, retrying an
//!    unknown revocation status for a bounded time;
//! 7. payload checks (XML and metadata, MsgHead parties, function vs
//!    profile);
//! 8. hand over, remember, settle; or report, or retry, or give up.
//!
//! The driver (the receive driver) only executes; the paths are unit tests
//! here, in the style of quinn-proto's.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use helsemelding_protect::{Certificate, CheckReport};
use helsemelding_store::audit::AuditKind;
use helsemelding_store::inbox::{Answer as StoredAnswer, DeliveryCount, HandOver};
use helsemelding_wire::envelope::{names, Envelope, IncomingHeaders};
use helsemelding_wire::error_report::ErrorReport;
use helsemelding_wire::msghead::MsgHead;
use helsemelding_wire::queue::QueueKind;
use helsemelding_wire::{metadata, HerId};
use uuid::Uuid;

use super::{
    dead_letter_route, on_certificate_check, on_function_outside_profile, on_handler_error,
    on_header_error, on_no_signing_certificate, on_payload_error, on_registry_failure,
    on_report_send_failure, on_revocation_unknown, on_store_failure, on_unprotect_failure,
    on_unprotected, DeadLetters, Decision, HandlerError, ReceivePolicy, RegistryFailure,
    RetryPolicy, UnprotectFailure,
};
use crate::api::Received;

/// What the driver knows of a delivery before any step.
#[derive(Debug, Clone)]
pub struct DeliveryFacts {
    /// The queue it came from.
    pub queue: String,
    /// Which of our queues that is.
    pub kind: QueueKind,
    /// The broker says it was not delivered before.
    pub first_delivery: bool,
    /// Earlier deliveries as the broker counts them (0 where it does not).
    pub broker_count: u32,
    /// Its header, as read from the transport message.
    pub envelope: Envelope,
    /// When it was taken.
    pub now: DateTime<Utc>,
}

/// How the pipeline judges: our HER-ids, the retry and receive policies,
/// and where a message given up on this queue goes.
#[derive(Debug, Clone)]
pub struct Rules {
    /// Our HER-ids: `toHerId` must be one of them.
    pub ours: Vec<HerId>,
    /// Delivery limit and backoff.
    pub retry: RetryPolicy,
    /// How strictly messages are judged.
    pub receive: ReceivePolicy,
    /// Where a message given up on this queue goes.
    pub dead_letters: DeadLetters,
}

/// The sender's profile, as far as the pipeline needs it.
#[derive(Debug, Clone)]
pub struct SenderProfile {
    /// The signing certificates accepted from the sender.
    pub signing_certificates: Vec<Certificate>,
    /// Whether the profile allows the message's function on receive.
    pub allows_function: bool,
    /// Which source the profile came from (for the audit), e.g. `Cpa`.
    pub source: String,
}

/// An opened body.
#[derive(Debug, Clone)]
pub struct Opened {
    /// The payload exactly as it was signed (or the body, unprotected).
    pub payload: Vec<u8>,
    /// Who signed it (`None`: unprotected, allowed by policy).
    pub signer: Option<Certificate>,
    /// Intermediates the signer embedded (they help build its chain).
    pub embedded: Vec<Certificate>,
}

/// What the application's side said when given the message: the audit
/// outcome and the answer a repeat gets again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taken {
    /// For the audit log, e.g. `ok; apprec ok sent`.
    pub outcome: String,
    /// The answer it got (an AppRec), kept for a repeat.
    pub answer: Option<StoredAnswer>,
}

/// What the driver must do next.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Count this redelivery in the store: answer [`Answer::Counted`].
    CountDelivery,
    /// Claim (sender, message-id) against the other workers of this
    /// process: answer [`Answer::Claimed`].
    Claim {
        /// The sender.
        sender: HerId,
        /// The message-id.
        message_id: String,
    },
    /// Whether (ours, sender, message-id) was handed over before: answer
    /// [`Answer::Earlier`].
    EarlierHandOver {
        /// The one of ours it is addressed to.
        ours: HerId,
        /// The sender.
        sender: HerId,
        /// The message-id.
        message_id: String,
    },
    /// The sender's profile: answer [`Answer::Profile`]. `fresh`: past the
    /// registry's cache (the signer matched none of the cached ones).
    SenderProfile {
        /// The one of ours it is addressed to.
        ours: HerId,
        /// The sender.
        sender: HerId,
        /// The CPA the message names.
        cpa_id: Option<Uuid>,
        /// Fetch the sender's record again first, past the cache.
        fresh: bool,
    },
    /// Open the body: decrypt and verify it against `signers` when
    /// `protected`, else take it as it is. Answer [`Answer::Opened`].
    Open {
        /// The body is CMS.
        protected: bool,
        /// The signer certificates accepted from the sender.
        signers: Vec<Certificate>,
    },
    /// Judge the signer's certificate at the delivery's time: answer
    /// [`Answer::Judged`].
    JudgeSigner {
        /// The certificate that signed.
        signer: Certificate,
        /// Intermediates the sender embedded.
        embedded: Vec<Certificate>,
    },
    /// Since when the revocation status of this message's sender has been
    /// unknown (the store remembers the first time): answer
    /// [`Answer::UnknownSince`].
    RevocationUnknownSince,
    /// Hand [`Intake::received`] to the application (or the waiting
    /// caller): answer [`Answer::Taken`]. Write the pending audit notes
    /// meanwhile.
    HandOver,
    /// Remember the hand-over with the answer it got, so a repeat is not
    /// handed over again, in one unit of work with its audit note and the
    /// forgetting of the delivery's count: answer [`Answer::Done`].
    Remember {
        /// The answer the message got.
        answer: Option<StoredAnswer>,
        /// The hand-over's audit note (`accepted`), written with it.
        audit: AuditNote,
    },
    /// Send the sender's repeat the answer the first copy got: answer
    /// [`Answer::Done`].
    AnswerAgain {
        /// The answer to send again.
        answer: StoredAnswer,
    },
    /// Send this error report to the sender's error queue: answer
    /// [`Answer::Reported`].
    Report(ErrorReport),
    /// The end: settle the delivery so.
    Settle(Settlement),
}

/// The outcome of a step, handed back to [`Intake::answer`].
#[derive(Debug, Clone)]
pub enum Answer {
    /// The store's count, or why it could not be had.
    Counted(Result<DeliveryCount, String>),
    /// Whether the claim was had (false: another worker has a copy).
    Claimed(bool),
    /// The earlier hand-over, if any, or why the store could not say.
    Earlier(Result<Option<HandOver>, String>),
    /// The sender's profile, or what the registry said.
    Profile(Result<SenderProfile, (RegistryFailure, String)>),
    /// The opened body, or why it could not be opened.
    Opened(Result<Opened, UnprotectFailure>),
    /// The certificate check's report.
    Judged(CheckReport),
    /// Since when the revocation status has been unknown.
    UnknownSince(DateTime<Utc>),
    /// What taking the message came to.
    Taken(Result<Taken, HandlerError>),
    /// Whether the report was sent (`Err`: why not).
    Reported(Result<(), String>),
    /// The step is done.
    Done,
}

/// How to settle the delivery, and what to write in the audit log.
#[derive(Debug, Clone, PartialEq)]
pub struct Settlement {
    /// What to do with the delivery.
    pub action: Action,
    /// Audit notes not yet written (the driver adds who, what, when).
    pub audit: Vec<AuditNote>,
    /// A hand-over went through: a fault of ours, if one was on, is over.
    pub went_through: bool,
}

/// What to do with the delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Accept it (and forget its delivery count).
    Accept,
    /// Release it after `after`; `free`: this delivery is no attempt.
    Release {
        /// How long to hold it back first.
        after: Duration,
        /// Whether it does not count against the delivery limit.
        free: bool,
    },
    /// Give it up: rejected to the broker's dead-letter path, or kept in
    /// the store, by `route`.
    GiveUp {
        /// Where it goes.
        route: DeadLetters,
        /// Why.
        reason: String,
    },
    /// A fault of ours: release it at once, free, and pause.
    Pause {
        /// What failed.
        reason: String,
    },
}

/// One audit event, without who, what and when (the driver adds them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditNote {
    /// The kind of event.
    pub kind: AuditKind,
    /// Its outcome.
    pub outcome: String,
    /// Why, when there is more to say.
    pub reason: Option<String>,
}

impl AuditNote {
    fn new(kind: AuditKind, outcome: impl Into<String>, reason: Option<String>) -> AuditNote {
        AuditNote {
            kind,
            outcome: outcome.into(),
            reason,
        }
    }
}

#[derive(Debug, Clone)]
enum State {
    Start,
    Counting,
    Claiming,
    LookingForEarlier,
    FindingProfile {
        fresh: bool,
    },
    Opening {
        profile: SenderProfile,
        refreshed: bool,
    },
    Judging {
        opened: Opened,
        profile: SenderProfile,
    },
    RevocationUnknown,
    CheckingPayload {
        opened: Opened,
        profile: SenderProfile,
    },
    HandingOver,
    Remembering {
        taken: Taken,
    },
    AnsweringAgain {
        answer: Option<StoredAnswer>,
        answered: bool,
    },
    Decided(Decision),
    Reporting(ErrorReport),
    Settling(Settlement),
    Finished,
}

/// The receive pipeline of one delivery. See the module docs.
#[derive(Debug, Clone)]
pub struct Intake {
    facts: DeliveryFacts,
    rules: Rules,
    state: State,
    attempt: u32,
    sender: Option<HerId>,
    headers: Option<IncomingHeaders>,
    received: Option<Received>,
    audit: Vec<AuditNote>,
}

impl Intake {
    /// The pipeline for a delivery, before any step.
    pub fn new(facts: DeliveryFacts, rules: Rules) -> Intake {
        let sender = facts.envelope.her_id(names::FROM_HER_ID).ok();
        Intake {
            facts,
            rules,
            state: State::Start,
            attempt: 1,
            sender,
            headers: None,
            received: None,
            audit: vec![AuditNote::new(AuditKind::Received, "received", None)],
        }
    }

    /// The delivery's attempt number, once counted (1 for the first).
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The sender, when `fromHerId` is readable.
    pub fn sender(&self) -> Option<HerId> {
        self.sender
    }

    /// The message as handed over (payload empty for a duplicate).
    pub fn received(&self) -> Option<&Received> {
        self.received.as_ref()
    }

    /// The header of the delivery.
    pub fn envelope(&self) -> &Envelope {
        &self.facts.envelope
    }

    /// The audit notes not yet written; the driver writes them while the
    /// application takes the message.
    pub fn take_audit(&mut self) -> Vec<AuditNote> {
        std::mem::take(&mut self.audit)
    }

    /// What the driver must do next. Hand its outcome to
    /// [`Intake::answer`], except after [`Step::Settle`], which ends it.
    pub fn next_step(&mut self) -> Step {
        loop {
            let state = std::mem::replace(&mut self.state, State::Finished);
            match self.advance(state) {
                Ok(step) => return step,
                Err(next) => self.state = next,
            }
        }
    }

    /// The outcome of the step [`Intake::next_step`] returned last.
    pub fn answer(&mut self, answer: Answer) {
        let state = std::mem::replace(&mut self.state, State::Finished);
        self.state = match (state, answer) {
            (State::Counting, Answer::Counted(count)) => self.counted(count),
            (State::Claiming, Answer::Claimed(claimed)) => self.claimed(claimed),
            (State::LookingForEarlier, Answer::Earlier(earlier)) => self.looked_up(earlier),
            (State::FindingProfile { fresh }, Answer::Profile(profile)) => {
                self.found_profile(profile, fresh)
            }
            (State::Opening { profile, refreshed }, Answer::Opened(opened)) => {
                self.opened(opened, profile, refreshed)
            }
            (State::Judging { opened, profile }, Answer::Judged(report)) => {
                self.judged(opened, profile, &report)
            }
            (State::RevocationUnknown, Answer::UnknownSince(since)) => self.unknown_since(since),
            (State::HandingOver, Answer::Taken(taken)) => self.taken(taken),
            (State::Remembering { .. }, Answer::Done) => {
                State::Settling(self.settlement(Action::Accept, true))
            }
            (State::AnsweringAgain { .. }, Answer::Done) => State::AnsweringAgain {
                answer: None,
                answered: true,
            },
            (State::Reporting(report), Answer::Reported(sent)) => self.reported(report, sent),
            (state, answer) => {
                // A driver bug: never lose the message over it.
                debug_assert!(false, "answer {answer:?} in state {state:?}");
                State::Decided(self.rules.retry.on_outage(self.attempt))
            }
        };
    }

    /// One move: a step for the driver (the state is kept), or the next
    /// state when this one needs no I/O.
    fn advance(&mut self, state: State) -> Result<Step, State> {
        let step = match &state {
            State::Start => {
                return Err(if self.facts.first_delivery {
                    self.after_count()
                } else {
                    State::Counting
                })
            }
            State::Counting => Step::CountDelivery,
            State::Claiming => {
                let headers = self.checked();
                Step::Claim {
                    sender: headers.from,
                    message_id: headers.message_id.clone(),
                }
            }
            State::LookingForEarlier => {
                let headers = self.checked();
                Step::EarlierHandOver {
                    ours: headers.to,
                    sender: headers.from,
                    message_id: headers.message_id.clone(),
                }
            }
            State::FindingProfile { fresh } => {
                let headers = self.checked();
                Step::SenderProfile {
                    ours: headers.to,
                    sender: headers.from,
                    cpa_id: headers.cpa_id,
                    fresh: *fresh,
                }
            }
            State::Opening { profile, .. } => Step::Open {
                protected: self.checked().protected,
                signers: profile.signing_certificates.clone(),
            },
            State::Judging { opened, profile } => match &opened.signer {
                Some(signer) => Step::JudgeSigner {
                    signer: signer.clone(),
                    embedded: opened.embedded.clone(),
                },
                // Unprotected (allowed by policy): no signer to judge.
                None => {
                    return Err(State::CheckingPayload {
                        opened: opened.clone(),
                        profile: profile.clone(),
                    })
                }
            },
            State::RevocationUnknown => Step::RevocationUnknownSince,
            State::CheckingPayload { .. } => {
                let State::CheckingPayload { opened, profile } = state else {
                    unreachable!()
                };
                return Err(self.check_payload(opened, &profile));
            }
            State::HandingOver => Step::HandOver,
            State::Remembering { taken } => Step::Remember {
                answer: taken.answer.clone(),
                audit: AuditNote::new(AuditKind::Accepted, taken.outcome.clone(), None),
            },
            State::AnsweringAgain {
                answer: Some(answer),
                ..
            } => Step::AnswerAgain {
                answer: answer.clone(),
            },
            State::AnsweringAgain {
                answer: None,
                answered,
            } => {
                let outcome = if *answered {
                    "duplicate; answered again"
                } else {
                    "duplicate"
                };
                self.audit
                    .push(AuditNote::new(AuditKind::Accepted, outcome, None));
                return Err(State::Settling(self.settlement(Action::Accept, false)));
            }
            State::Decided(decision) => return Err(self.carry_out(decision.clone())),
            State::Reporting(report) => Step::Report(report.clone()),
            State::Settling(settlement) => {
                let mut settlement = settlement.clone();
                settlement.audit.splice(0..0, self.take_audit());
                self.state = State::Finished;
                return Ok(Step::Settle(settlement));
            }
            State::Finished => {
                debug_assert!(false, "next() after the settlement");
                Step::Settle(self.settlement(
                    Action::Release {
                        after: Duration::ZERO,
                        free: true,
                    },
                    false,
                ))
            }
        };
        self.state = state;
        Ok(step)
    }

    /// The headers, once the header checks passed.
    fn checked(&self) -> &IncomingHeaders {
        self.headers
            .as_ref()
            .expect("a step after the header checks")
    }

    fn settlement(&mut self, action: Action, went_through: bool) -> Settlement {
        Settlement {
            action,
            audit: self.take_audit(),
            went_through,
        }
    }

    /// A decision becomes a report to send or a settlement.
    fn carry_out(&mut self, decision: Decision) -> State {
        let action = match decision {
            Decision::ReportError(report) => return State::Reporting(report),
            Decision::Retry {
                after,
                spend_attempt,
            } => Action::Release {
                after,
                free: !spend_attempt,
            },
            Decision::DeadLetter { reason } => Action::GiveUp {
                route: dead_letter_route(self.rules.dead_letters, self.sender.is_some()),
                reason,
            },
            Decision::Pause { reason } => Action::Pause { reason },
            // Not decisions the pipeline makes through `Decided`.
            Decision::HandOver | Decision::AcceptDuplicate => Action::Accept,
        };
        State::Settling(self.settlement(action, false))
    }

    fn counted(&mut self, count: Result<DeliveryCount, String>) -> State {
        match count {
            Ok(count) => {
                self.attempt = count.attempt(self.facts.broker_count);
                self.after_count()
            }
            Err(error) => State::Decided(on_store_failure(&error)),
        }
    }

    fn after_count(&mut self) -> State {
        if let Some(give_up) = self.rules.retry.on_delivery(self.attempt) {
            return State::Decided(give_up);
        }
        match self.facts.envelope.check_incoming(&self.rules.ours) {
            Ok(headers) => {
                self.headers = Some(headers);
                State::Claiming
            }
            Err(error) => State::Decided(on_header_error(&error, self.sender.is_some())),
        }
    }

    fn claimed(&mut self, claimed: bool) -> State {
        if claimed {
            State::LookingForEarlier
        } else {
            // Another worker has a copy: see again once it is settled.
            State::Decided(self.rules.retry.on_outage(self.attempt))
        }
    }

    fn looked_up(&mut self, earlier: Result<Option<HandOver>, String>) -> State {
        match earlier {
            Ok(Some(earlier)) => {
                self.received = Some(self.unchecked_received());
                // A redelivery of what we took is our own repeat (a crash
                // or a lost accept): its answer is in the outbox already.
                // A first delivery is the sender's repeat: answered again.
                let answer = earlier.answer.filter(|_| self.facts.first_delivery);
                State::AnsweringAgain {
                    answer,
                    answered: false,
                }
            }
            Ok(None) => State::FindingProfile { fresh: false },
            Err(error) => State::Decided(on_store_failure(&error)),
        }
    }

    fn found_profile(
        &mut self,
        profile: Result<SenderProfile, (RegistryFailure, String)>,
        fresh: bool,
    ) -> State {
        let profile = match profile {
            Ok(profile) => profile,
            Err((failure, description)) => {
                return State::Decided(on_registry_failure(
                    failure,
                    &description,
                    &self.rules.retry,
                    self.attempt,
                ))
            }
        };
        let headers = self.checked();
        if headers.protected && profile.signing_certificates.is_empty() {
            return State::Decided(on_no_signing_certificate(headers.from.get()));
        }
        if !headers.protected {
            if let Some(refused) =
                on_unprotected(headers.content_type.as_deref(), &self.rules.receive)
            {
                return State::Decided(refused);
            }
        }
        State::Opening {
            profile,
            refreshed: fresh,
        }
    }

    fn opened(
        &mut self,
        opened: Result<Opened, UnprotectFailure>,
        profile: SenderProfile,
        refreshed: bool,
    ) -> State {
        match opened {
            Ok(opened) => State::Judging { opened, profile },
            // A rotation the registry's cache has not seen must not be
            // called an attack: look the sender up once more, past it.
            Err(UnprotectFailure::WrongSigner { .. }) if !refreshed => {
                State::FindingProfile { fresh: true }
            }
            Err(failure) => {
                State::Decided(on_unprotect_failure(&failure, self.checked().from.get()))
            }
        }
    }

    fn judged(&mut self, opened: Opened, profile: SenderProfile, report: &CheckReport) -> State {
        if report.only_revocation_unknown() {
            return State::RevocationUnknown;
        }
        let signer = opened.signer.as_ref().expect("judged a signer");
        match on_certificate_check(
            report,
            &signer.subject(),
            &signer.thumbprint_sha1(),
            &self.rules.retry,
            self.attempt,
        ) {
            Some(decision) => State::Decided(decision),
            None => State::CheckingPayload { opened, profile },
        }
    }

    fn unknown_since(&mut self, since: DateTime<Utc>) -> State {
        let unknown_for = (self.facts.now - since).to_std().unwrap_or_default();
        State::Decided(on_revocation_unknown(
            unknown_for,
            &self.rules.receive,
            &self.rules.retry,
            self.attempt,
        ))
    }

    /// XML and metadata, the MsgHead parties, the function vs the profile.
    fn check_payload(&mut self, opened: Opened, profile: &SenderProfile) -> State {
        let payload = opened.payload;
        let metadata = match metadata::extract(&payload) {
            Ok(metadata) => metadata,
            Err(error) => return State::Decided(on_payload_error(&error)),
        };
        let headers = self.checked();
        if !self.rules.receive.allow_party_mismatch {
            let parties = match MsgHead::parse(&payload) {
                Ok(head) => head.check_parties(headers.from, headers.to),
                // Not every payload is a MsgHead (an AppRec, say): nothing to compare.
                Err(helsemelding_wire::Error::UnexpectedDocument { .. }) => Ok(()),
                Err(error) => Err(error),
            };
            if let Err(error) = parties {
                return State::Decided(on_payload_error(&error));
            }
        }
        // A sync reply answers our own request: the request was the check.
        if self.facts.kind != QueueKind::SyncReply && !profile.allows_function {
            if let Some(refused) = on_function_outside_profile(
                &headers.function,
                headers.from.get(),
                &self.rules.receive,
            ) {
                return State::Decided(refused);
            }
            self.audit.push(AuditNote::new(
                AuditKind::FunctionOutsideProfile,
                "handed-over",
                Some(format!(
                    "not in the sender's {} profile; handed over",
                    profile.source
                )),
            ));
        }
        let mut received = self.unchecked_received();
        received.payload = payload;
        received.metadata = metadata;
        self.received = Some(received);
        State::HandingOver
    }

    fn taken(&mut self, taken: Result<Taken, HandlerError>) -> State {
        match taken {
            Ok(taken) => State::Remembering { taken },
            Err(error) => State::Decided(on_handler_error(&error, &self.rules.retry, self.attempt)),
        }
    }

    fn reported(&mut self, report: ErrorReport, sent: Result<(), String>) -> State {
        match sent {
            Ok(()) => {
                // Not remembered: a repeat is judged afresh (the sender
                // may have fixed its certificate).
                self.audit.push(AuditNote::new(
                    AuditKind::ErrorReported,
                    report.condition.as_str(),
                    Some(report.description),
                ));
                State::Settling(self.settlement(Action::Accept, false))
            }
            Err(_) => State::Decided(on_report_send_failure(&self.rules.retry, self.attempt)),
        }
    }

    /// The message as its header gives it, before any check of the
    /// payload (which stays empty).
    fn unchecked_received(&self) -> Received {
        let headers = self.checked();
        Received {
            from: headers.from,
            to: headers.to,
            function: headers.function.clone(),
            message_id: headers.message_id.clone(),
            correlation_id: headers.correlation_id.clone(),
            cpa_id: headers.cpa_id,
            payload: Vec::new(),
            metadata: BTreeMap::new(),
            application_time: headers.application_time,
            enqueued_time: headers.enqueued_time,
            received_at: self.facts.now,
            queue: self.facts.queue.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;

    use helsemelding_protect::Problem;
    use helsemelding_testkit::pki::{TestPki, Usage};
    use helsemelding_transport::{Message, Value};
    use helsemelding_wire::error_report::ErrorCondition;

    use super::*;

    const OURS: u32 = 8_141_703;
    const THEIRS: u32 = 91_462;
    const FUNCTION: &str = "DIALOG_INNBYGGER_EKONTAKT";

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-12-02T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    /// Two signing certificates of the sender: the registered one and another.
    fn signers() -> &'static (Certificate, Certificate) {
        static SIGNERS: OnceLock<(Certificate, Certificate)> = OnceLock::new();
        SIGNERS.get_or_init(|| {
            let pki = TestPki::new("intake test CA");
            let issue =
                |name: &str| Certificate::from_x509(pki.issue(name, Usage::Signing).cert.clone());
            (issue("91462 signing"), issue("someone else"))
        })
    }

    fn message(from: Option<Value>) -> Message {
        let mut message = Message::new(b"cms".to_vec());
        message.message_id = Some("m-1".into());
        message.subject = Some(FUNCTION.into());
        message.content_type = Some("application/pkcs7-mime; smime-type=enveloped-data".into());
        let properties = &mut message.application_properties;
        properties.insert("toHerId".into(), Value::Long(OURS.into()));
        properties.insert(
            "applicationTimeStamp".into(),
            Value::String("2026-12-02T09:59:00".into()),
        );
        if let Some(from) = from {
            properties.insert("fromHerId".into(), from);
        }
        message
    }

    fn facts(message: &Message, first_delivery: bool, broker_count: u32) -> DeliveryFacts {
        DeliveryFacts {
            queue: format!("{OURS}_async"),
            kind: QueueKind::Async,
            first_delivery,
            broker_count,
            envelope: crate::convert::to_envelope(message),
            now: now(),
        }
    }

    fn rules() -> Rules {
        Rules {
            ours: vec![HerId::new(OURS).unwrap()],
            retry: RetryPolicy::default(),
            receive: ReceivePolicy::default(),
            dead_letters: DeadLetters::Broker,
        }
    }

    fn good() -> Intake {
        Intake::new(
            facts(&message(Some(Value::Long(THEIRS.into()))), true, 0),
            rules(),
        )
    }

    fn msghead(from: u32, to: u32) -> Vec<u8> {
        format!(
            r#"<MsgHead xmlns="http://www.kith.no/xmlstds/msghead/2006-05-24"><MsgInfo><Type V="{FUNCTION}" DN="x"/><MIGversion>v1.2 2006-05-24</MIGversion><GenDate>2026-12-02T10:00:00</GenDate><MsgId>a</MsgId><Sender><Organisation><OrganisationName>A</OrganisationName><Ident><Id>{from}</Id><TypeId V="HER" S="2.16.578.1.12.4.1.1.9051" DN="HER-id"/></Ident></Organisation></Sender><Receiver><Organisation><OrganisationName>B</OrganisationName><Ident><Id>{to}</Id><TypeId V="HER" S="2.16.578.1.12.4.1.1.9051" DN="HER-id"/></Ident></Organisation></Receiver></MsgInfo></MsgHead>"#
        )
        .into_bytes()
    }

    fn profile(allows_function: bool) -> SenderProfile {
        SenderProfile {
            signing_certificates: vec![signers().0.clone()],
            allows_function,
            source: "Cpa".into(),
        }
    }

    fn opened(payload: Vec<u8>) -> Opened {
        Opened {
            payload,
            signer: Some(signers().0.clone()),
            embedded: Vec::new(),
        }
    }

    fn taken() -> Taken {
        Taken {
            outcome: "ok".into(),
            answer: None,
        }
    }

    /// The world a test plays: what every step answers unless the test
    /// says otherwise.
    fn world(step: &Step) -> Answer {
        match step {
            Step::CountDelivery => Answer::Counted(Ok(DeliveryCount {
                redeliveries: 1,
                free: 0,
            })),
            Step::Claim { .. } => Answer::Claimed(true),
            Step::EarlierHandOver { .. } => Answer::Earlier(Ok(None)),
            Step::SenderProfile { .. } => Answer::Profile(Ok(profile(true))),
            Step::Open { .. } => Answer::Opened(Ok(opened(msghead(THEIRS, OURS)))),
            Step::JudgeSigner { .. } => Answer::Judged(CheckReport {
                errors: Vec::new(),
                warnings: Vec::new(),
            }),
            Step::RevocationUnknownSince => Answer::UnknownSince(now()),
            Step::HandOver => Answer::Taken(Ok(taken())),
            Step::Remember { .. } | Step::AnswerAgain { .. } => Answer::Done,
            Step::Report(_) => Answer::Reported(Ok(())),
            Step::Settle(_) => unreachable!("settled"),
        }
    }

    /// Runs the pipeline to its settlement: the steps it asked for (by
    /// name) and the settlement. `play` answers first; `None` leaves the
    /// step to [`world`].
    fn run(
        mut intake: Intake,
        mut play: impl FnMut(&Step) -> Option<Answer>,
    ) -> (Vec<&'static str>, Settlement) {
        let mut names = Vec::new();
        // Written by the driver with the hand-over; listed after the rest.
        let mut remembered = Vec::new();
        for _ in 0..30 {
            let step = intake.next_step();
            if let Step::Settle(mut settlement) = step {
                settlement.audit.append(&mut remembered);
                return (names, settlement);
            }
            if let Step::Remember { audit, .. } = &step {
                remembered.push(audit.clone());
            }
            names.push(name(&step));
            let answer = play(&step).unwrap_or_else(|| world(&step));
            intake.answer(answer);
        }
        panic!("no settlement after 30 steps: {names:?}");
    }

    fn name(step: &Step) -> &'static str {
        match step {
            Step::CountDelivery => "count",
            Step::Claim { .. } => "claim",
            Step::EarlierHandOver { .. } => "earlier",
            Step::SenderProfile { fresh: false, .. } => "profile",
            Step::SenderProfile { fresh: true, .. } => "fresh profile",
            Step::Open { .. } => "open",
            Step::JudgeSigner { .. } => "judge",
            Step::RevocationUnknownSince => "unknown since",
            Step::HandOver => "hand over",
            Step::Remember { .. } => "remember",
            Step::AnswerAgain { .. } => "answer again",
            Step::Report(_) => "report",
            Step::Settle(_) => "settle",
        }
    }

    fn kinds(settlement: &Settlement) -> Vec<&'static str> {
        settlement.audit.iter().map(|n| n.kind.as_str()).collect()
    }

    fn reported(mut intake: Intake, play: impl FnMut(&Step) -> Option<Answer>) -> ErrorCondition {
        let mut condition = None;
        let mut play = play;
        let (_, settlement) = run(intake.clone(), |step| {
            if let Step::Report(report) = step {
                condition = Some(report.condition);
            }
            play(step)
        });
        assert_eq!(settlement.action, Action::Accept);
        intake.take_audit();
        condition.expect("no report")
    }

    #[test]
    fn a_good_first_delivery_goes_through_every_step_and_is_accepted() {
        let (steps, settlement) = run(good(), |_| None);
        assert_eq!(
            steps,
            [
                "claim",
                "earlier",
                "profile",
                "open",
                "judge",
                "hand over",
                "remember"
            ]
        );
        assert_eq!(settlement.action, Action::Accept);
        assert!(settlement.went_through);
        assert_eq!(kinds(&settlement), ["received", "accepted"]);
    }

    #[test]
    fn a_redelivery_is_counted_and_given_up_past_the_limit() {
        let message = message(Some(Value::Long(THEIRS.into())));
        let intake = Intake::new(facts(&message, false, 0), rules());
        let (steps, settlement) = run(intake.clone(), |step| {
            matches!(step, Step::CountDelivery).then(|| {
                Answer::Counted(Ok(DeliveryCount {
                    redeliveries: 10,
                    free: 0,
                }))
            })
        });
        assert_eq!(steps, ["count"]);
        assert!(matches!(
            settlement.action,
            Action::GiveUp { route: DeadLetters::Broker, ref reason } if reason.contains("11 times")
        ));
        // Free deliveries (a full disk, an outage) are no attempts.
        let (steps, settlement) = run(intake, |step| {
            matches!(step, Step::CountDelivery).then(|| {
                Answer::Counted(Ok(DeliveryCount {
                    redeliveries: 40,
                    free: 39,
                }))
            })
        });
        assert_eq!(steps.len(), 8, "{steps:?}");
        assert_eq!(settlement.action, Action::Accept);
    }

    #[test]
    fn a_store_that_cannot_count_pauses_the_pipeline() {
        let message = message(Some(Value::Long(THEIRS.into())));
        let intake = Intake::new(facts(&message, false, 3), rules());
        let (_, settlement) = run(intake, |step| {
            matches!(step, Step::CountDelivery)
                .then(|| Answer::Counted(Err("disk I/O error".into())))
        });
        assert!(matches!(
            settlement.action,
            Action::Pause { ref reason } if reason.contains("disk I/O error")
        ));
    }

    #[test]
    fn an_unreadable_header_is_reported_when_the_sender_is_known_else_kept_in_the_store() {
        let mut bad = message(Some(Value::Long(THEIRS.into())));
        bad.subject = None;
        let intake = Intake::new(facts(&bad, true, 0), rules());
        assert_eq!(
            reported(intake, |_| None),
            ErrorCondition::InvalidFieldValue
        );
        for from in [
            Some(Value::String("abc".into())),
            Some(Value::Long(0)),
            None,
        ] {
            let intake = Intake::new(facts(&message(from.clone()), true, 0), rules());
            let (steps, settlement) = run(intake, |_| None);
            assert!(steps.is_empty(), "{from:?}: {steps:?}");
            assert!(
                matches!(
                    settlement.action,
                    Action::GiveUp {
                        route: DeadLetters::Store,
                        ..
                    }
                ),
                "{from:?}: {settlement:?}"
            );
        }
    }

    #[test]
    fn a_copy_another_worker_holds_is_released_for_free() {
        let (steps, settlement) = run(good(), |step| {
            matches!(step, Step::Claim { .. }).then_some(Answer::Claimed(false))
        });
        assert_eq!(steps, ["claim"]);
        assert!(matches!(
            settlement.action,
            Action::Release { free: true, .. }
        ));
    }

    #[test]
    fn a_repeat_is_answered_again_only_when_the_sender_sent_it_again() {
        let earlier = HandOver {
            at: now(),
            outcome: "accepted".into(),
            answer: Some(StoredAnswer {
                function: "APPREC".into(),
                payload: b"<AppRec/>".to_vec(),
            }),
        };
        let play = |step: &Step| {
            matches!(step, Step::EarlierHandOver { .. })
                .then(|| Answer::Earlier(Ok(Some(earlier.clone()))))
        };
        let (steps, settlement) = run(good(), play);
        assert_eq!(steps, ["claim", "earlier", "answer again"]);
        assert_eq!(settlement.action, Action::Accept);
        assert_eq!(settlement.audit[1].outcome, "duplicate; answered again");

        // Our own redelivery (a crash after the AppRec was queued): not again.
        let message = message(Some(Value::Long(THEIRS.into())));
        let redelivered = Intake::new(facts(&message, false, 1), rules());
        let (steps, settlement) = run(redelivered, play);
        assert_eq!(steps, ["count", "claim", "earlier"]);
        assert_eq!(settlement.audit[1].outcome, "duplicate");
    }

    #[test]
    fn registry_answers_decide_between_report_and_free_retry() {
        let condition = reported(good(), |step| {
            matches!(step, Step::SenderProfile { .. })
                .then(|| Answer::Profile(Err((RegistryFailure::NotFound, "no such party".into()))))
        });
        assert_eq!(condition, ErrorCondition::MissingCertificate);
        let (_, settlement) = run(good(), |step| {
            matches!(step, Step::SenderProfile { .. })
                .then(|| Answer::Profile(Err((RegistryFailure::Unreachable, "timeout".into()))))
        });
        assert!(matches!(
            settlement.action,
            Action::Release { free: true, .. }
        ));
        let condition = reported(good(), |step| {
            matches!(step, Step::SenderProfile { .. }).then(|| {
                Answer::Profile(Ok(SenderProfile {
                    signing_certificates: Vec::new(),
                    ..profile(true)
                }))
            })
        });
        assert_eq!(condition, ErrorCondition::MissingCertificate);
    }

    #[test]
    fn a_signer_not_in_the_cached_profile_is_looked_up_afresh_once_before_spoofing() {
        let wrong = || {
            Answer::Opened(Err(UnprotectFailure::WrongSigner {
                actual_serial: "0BAD".into(),
            }))
        };
        let mut steps = Vec::new();
        let condition = reported(good(), |step| {
            steps.push(name(step));
            matches!(step, Step::Open { .. }).then(wrong)
        });
        assert_eq!(condition, ErrorCondition::SpoofingAttack);
        assert_eq!(
            steps,
            [
                "claim",
                "earlier",
                "profile",
                "open",
                "fresh profile",
                "open",
                "report"
            ]
        );
        // The fresh look-up finds the rotated certificate: handed over.
        let mut opens = 0;
        let (_, settlement) = run(good(), |step| {
            if matches!(step, Step::Open { .. }) {
                opens += 1;
                if opens == 1 {
                    return Some(wrong());
                }
            }
            None
        });
        assert!(settlement.went_through);
    }

    #[test]
    fn an_unknown_revocation_status_is_retried_for_free_then_given_up() {
        let unknown = |step: &Step| {
            matches!(step, Step::JudgeSigner { .. }).then(|| {
                Answer::Judged(CheckReport {
                    errors: vec![Problem::RevocationUnknown],
                    warnings: Vec::new(),
                })
            })
        };
        let (steps, settlement) = run(good(), |step| {
            unknown(step).or_else(|| {
                matches!(step, Step::RevocationUnknownSince)
                    .then(|| Answer::UnknownSince(now() - chrono::Duration::minutes(10)))
            })
        });
        assert_eq!(steps.last(), Some(&"unknown since"));
        assert!(matches!(
            settlement.action,
            Action::Release { free: true, .. }
        ));
        let (_, settlement) = run(good(), |step| {
            unknown(step).or_else(|| {
                matches!(step, Step::RevocationUnknownSince)
                    .then(|| Answer::UnknownSince(now() - chrono::Duration::hours(2)))
            })
        });
        assert!(matches!(settlement.action, Action::GiveUp { .. }));
    }

    #[test]
    fn a_revoked_signer_is_reported() {
        let condition = reported(good(), |step| {
            matches!(step, Step::JudgeSigner { .. }).then(|| {
                Answer::Judged(CheckReport {
                    errors: vec![Problem::Revoked],
                    warnings: Vec::new(),
                })
            })
        });
        assert_eq!(condition, ErrorCondition::RevokedCertificate);
    }

    #[test]
    fn msghead_parties_must_match_the_header_unless_allowed() {
        let spoofed = |step: &Step| {
            matches!(step, Step::Open { .. })
                .then(|| Answer::Opened(Ok(opened(msghead(12_345, OURS)))))
        };
        assert_eq!(reported(good(), spoofed), ErrorCondition::SpoofingAttack);
        let mut lenient = rules();
        lenient.receive.allow_party_mismatch = true;
        let message = message(Some(Value::Long(THEIRS.into())));
        let (_, settlement) = run(Intake::new(facts(&message, true, 0), lenient), spoofed);
        assert!(settlement.went_through);
    }

    #[test]
    fn a_function_outside_the_profile_is_audited_and_handed_over_unless_strict() {
        let outside = |step: &Step| {
            matches!(step, Step::SenderProfile { .. }).then(|| Answer::Profile(Ok(profile(false))))
        };
        let (_, settlement) = run(good(), outside);
        assert!(settlement.went_through);
        assert_eq!(
            kinds(&settlement),
            ["received", "function-outside-profile", "accepted"]
        );
        let mut strict = rules();
        strict.receive.strict_message_functions = true;
        let message = message(Some(Value::Long(THEIRS.into())));
        let intake = Intake::new(facts(&message, true, 0), strict);
        assert_eq!(
            reported(intake, outside),
            ErrorCondition::UnsupportedMessage
        );
    }

    #[test]
    fn unprotected_messages_are_refused_unless_allowed_and_then_have_no_signer_to_judge() {
        let mut plain = message(Some(Value::Long(THEIRS.into())));
        plain.content_type = Some("text/plain".into());
        let intake = Intake::new(facts(&plain, true, 0), rules());
        assert_eq!(
            reported(intake, |_| None),
            ErrorCondition::UnsupportedMessage
        );
        let mut lenient = rules();
        lenient.receive.allow_unprotected = true;
        let (steps, settlement) = run(Intake::new(facts(&plain, true, 0), lenient), |step| {
            if let Step::Open { protected, .. } = step {
                assert!(!protected);
                return Some(Answer::Opened(Ok(Opened {
                    payload: msghead(THEIRS, OURS),
                    signer: None,
                    embedded: Vec::new(),
                })));
            }
            None
        });
        assert!(!steps.contains(&"judge"), "{steps:?}");
        assert!(settlement.went_through);
    }

    #[test]
    fn what_the_application_says_decides_the_settlement() {
        let handler = |error: HandlerError| {
            move |step: &Step| {
                matches!(step, Step::HandOver).then(|| Answer::Taken(Err(error.clone())))
            }
        };
        let (_, settlement) = run(
            good(),
            handler(HandlerError::Unavailable {
                reason: "No space left on device".into(),
            }),
        );
        assert!(matches!(settlement.action, Action::Pause { .. }));
        assert!(!settlement.went_through);
        let (_, settlement) = run(
            good(),
            handler(HandlerError::Retry {
                reason: "db".into(),
            }),
        );
        assert!(matches!(
            settlement.action,
            Action::Release { free: false, .. }
        ));
        let condition = reported(
            good(),
            handler(HandlerError::Reject {
                condition: ErrorCondition::InternalError,
                description: "no".into(),
            }),
        );
        assert_eq!(condition, ErrorCondition::InternalError);
    }

    #[test]
    fn a_report_that_cannot_be_sent_keeps_the_original_and_spends_an_attempt() {
        let mut bad = message(Some(Value::Long(THEIRS.into())));
        bad.subject = None;
        let intake = Intake::new(facts(&bad, true, 0), rules());
        let (steps, settlement) = run(intake, |step| {
            matches!(step, Step::Report(_)).then(|| Answer::Reported(Err("no queue".into())))
        });
        assert_eq!(steps, ["report"]);
        assert!(matches!(
            settlement.action,
            Action::Release { free: false, .. }
        ));
    }
}
