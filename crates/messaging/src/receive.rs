//! The receive pipelines: N workers per queue, each taking one delivery at
//! a time through the steps of PROFILE.md "Receiving" (count, header
//! checks, de-duplication, sender profile, decrypt and verify, certificate,
//! XML and MsgHead, CPA, hand-over) and settling it by the [`engine`]'s
//! decision. Messages on our error queue go to the error callback.
//!
//! [`engine`]: crate::engine

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use helsemelding_protect::{unprotect, Certificate, UnprotectOptions, Usage};
use helsemelding_registry::resolve::resolve_by_cpa_id;
use helsemelding_registry::{resolve, Direction, WorkingProfile};
use helsemelding_store::audit::{AuditEvent, AuditKind};
use helsemelding_transport::{Delivery, Receiver};
use helsemelding_wire::envelope::{names, Envelope, IncomingHeaders};
use helsemelding_wire::error_report::{build_error_report, ErrorReport, ReceivedErrorReport};
use helsemelding_wire::msghead::MsgHead;
use helsemelding_wire::queue::QueueKind;
use helsemelding_wire::{metadata, HerId};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::answer;
use crate::convert;
use crate::engine::{self, Decision, HandlerError, RegistryFailure, UnprotectFailure};
use crate::error::{Error, Result};
use crate::in_flight::{Claim, InFlight};
use crate::messenger::Messenger;

/// A message that passed every check, as the application receives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received {
    /// The sender's HER-id (`fromHerId`, verified against the signer).
    pub from: HerId,
    /// Our HER-id (`toHerId`).
    pub to: HerId,
    /// The message function (AMQP subject).
    pub function: String,
    /// The message-id.
    pub message_id: String,
    /// The correlation-id, when present.
    pub correlation_id: Option<String>,
    /// The CPA id the sender named, when any.
    pub cpa_id: Option<Uuid>,
    /// The payload exactly as it was signed (never re-serialised).
    pub payload: Vec<u8>,
    /// Payload metadata (the `X-MessageInfo-*` keys), read from the payload.
    pub metadata: BTreeMap<String, String>,
    /// The sender's `applicationTimeStamp`.
    pub application_time: DateTime<Utc>,
    /// `enqueuedTimeUtc`, when the sender set it.
    pub enqueued_time: Option<DateTime<Utc>>,
    /// When we took the delivery.
    pub received_at: DateTime<Utc>,
    /// The queue it came from.
    pub queue: String,
}

/// The application's answer to a synchronous request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The reply's message function; `None`: the request's.
    pub function: Option<String>,
    /// The reply payload (XML), signed and encrypted for the requester.
    pub payload: Vec<u8>,
}

impl Reply {
    /// A reply with the request's message function.
    pub fn new(payload: impl Into<Vec<u8>>) -> Reply {
        Reply {
            function: None,
            payload: payload.into(),
        }
    }
}

/// The application's side of the async and sync pipelines.
#[async_trait]
pub trait Handler: Send + Sync {
    /// Takes a checked message from our async queue. The delivery is
    /// accepted only after this returned `Ok`: keep what must survive
    /// before returning. A MsgHead that asks for a receipt is then answered
    /// with an AppRec (status OK, or rejected on
    /// [`HandlerError::RejectContent`]).
    async fn handle(&self, message: &Received) -> std::result::Result<(), HandlerError>;

    /// Answers a checked synchronous request (our sync queue). The default
    /// refuses: the requester hears `transport:unsupported-message` on its
    /// error queue. Communication tests are answered without this.
    async fn answer(&self, message: &Received) -> std::result::Result<Reply, HandlerError> {
        Err(HandlerError::Reject {
            condition: helsemelding_wire::error_report::ErrorCondition::UnsupportedMessage,
            description: format!(
                "HER-id {} does not answer synchronous {} requests",
                message.to, message.function
            ),
        })
    }
}

/// The application's side of our error queue.
#[async_trait]
pub trait ErrorHandler: Send + Sync {
    /// Takes an error report about a message we sent. `Err(Retry)` releases
    /// it for later; `Err(Reject)` dead-letters it (never answered).
    async fn handle_error(
        &self,
        report: &ReceivedErrorReport,
    ) -> std::result::Result<(), HandlerError>;
}

/// How the pipelines run.
#[derive(Clone, Debug)]
pub struct ListenerOptions {
    /// Concurrent workers per queue.
    pub workers: usize,
    /// Whether to consume our error queue too.
    pub error_queue: bool,
    /// Whether to consume our sync queue too (answering requests through
    /// [`Handler::answer`] and communication tests).
    pub sync_queue: bool,
    /// How long one receive call waits before checking for shutdown.
    pub poll: Duration,
}

impl Default for ListenerOptions {
    fn default() -> Self {
        ListenerOptions {
            workers: 4,
            error_queue: true,
            sync_queue: true,
            poll: Duration::from_millis(500),
        }
    }
}

/// Running receive pipelines; [`Listener::stop`] lets each worker finish
/// (and settle) its delivery, then detaches.
pub struct Listener {
    shutdown: watch::Sender<bool>,
    workers: Vec<JoinHandle<()>>,
}

impl Listener {
    /// Starts `options.workers` workers on our async queue (and as many on
    /// our error queue when `options.error_queue`).
    pub async fn start(
        messenger: &Messenger,
        handler: Arc<dyn Handler>,
        error_handler: Arc<dyn ErrorHandler>,
        options: ListenerOptions,
    ) -> Result<Listener> {
        let mut queues = vec![(QueueKind::Async, messenger.our_queue(QueueKind::Async))];
        if options.sync_queue {
            queues.push((QueueKind::Sync, messenger.our_queue(QueueKind::Sync)));
        }
        if options.error_queue {
            queues.push((QueueKind::Error, messenger.our_queue(QueueKind::Error)));
        }
        Self::start_on(messenger, handler, error_handler, &queues, &options).await
    }

    /// The one consumer of a messenger's sync reply queue: replies go
    /// through the same checks as any message, then to the waiting caller.
    pub(crate) async fn start_reply_consumer(
        messenger: &Messenger,
        queue: &str,
    ) -> Result<Listener> {
        let nobody = Arc::new(NoApplication);
        let options = ListenerOptions {
            workers: 2,
            ..ListenerOptions::default()
        };
        let queues = [(QueueKind::SyncReply, queue.to_owned())];
        Self::start_on(messenger, nobody.clone(), nobody, &queues, &options).await
    }

    async fn start_on(
        messenger: &Messenger,
        handler: Arc<dyn Handler>,
        error_handler: Arc<dyn ErrorHandler>,
        queues: &[(QueueKind, String)],
        options: &ListenerOptions,
    ) -> Result<Listener> {
        let (shutdown, watching) = watch::channel(false);
        let in_flight = Arc::new(InFlight::default());
        let mut workers = Vec::new();
        for (kind, queue) in queues {
            let kind = *kind;
            for _ in 0..options.workers.max(1) {
                let receiver = messenger.inner.transport.receiver(queue, 1).await?;
                let worker = Worker {
                    messenger: messenger.clone(),
                    handler: handler.clone(),
                    error_handler: error_handler.clone(),
                    kind,
                    poll: options.poll,
                    shutdown: watching.clone(),
                    in_flight: in_flight.clone(),
                };
                workers.push(tokio::spawn(worker.run(receiver)));
            }
        }
        Ok(Listener { shutdown, workers })
    }

    /// Stops the workers after their current delivery and waits for them.
    pub async fn stop(self) -> Result<()> {
        let _ = self.shutdown.send(true);
        for worker in self.workers {
            worker.await.map_err(|e| Error::Task(e.to_string()))?;
        }
        Ok(())
    }
}

/// The application of the reply consumer: replies never reach it.
struct NoApplication;

#[async_trait]
impl Handler for NoApplication {
    async fn handle(&self, _: &Received) -> std::result::Result<(), HandlerError> {
        Err(HandlerError::Retry {
            reason: "no application on the reply queue".into(),
        })
    }
}

#[async_trait]
impl ErrorHandler for NoApplication {
    async fn handle_error(&self, _: &ReceivedErrorReport) -> std::result::Result<(), HandlerError> {
        Ok(())
    }
}

/// Whether the broker says this is the message's first delivery.
fn is_first_delivery(delivery: &Delivery) -> bool {
    delivery.first_acquirer && delivery.delivery_count == 0
}

struct Worker {
    messenger: Messenger,
    handler: Arc<dyn Handler>,
    error_handler: Arc<dyn ErrorHandler>,
    kind: QueueKind,
    poll: Duration,
    shutdown: watch::Receiver<bool>,
    in_flight: Arc<InFlight>,
}

/// What the checks left for the settling step.
struct Judged {
    decision: Decision,
    attempt: u32,
    envelope: Envelope,
    sender: Option<HerId>,
    received: Option<Received>,
    /// Held until the delivery is settled, so no other worker hands over a copy.
    claim: Option<Claim>,
}

impl Worker {
    async fn run(mut self, mut receiver: Box<dyn Receiver>) {
        while !*self.shutdown.borrow() {
            let delivery = tokio::select! {
                delivery = receiver.receive(self.poll) => delivery,
                _ = self.shutdown.changed() => break,
            };
            match delivery {
                Ok(Some(delivery)) => match self.kind {
                    QueueKind::Error => self.process_error_report(&mut *receiver, delivery).await,
                    _ => self.process(&mut *receiver, delivery).await,
                },
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(%error, "receive failed; backing off");
                    tokio::time::sleep(self.poll).await;
                }
            }
        }
        if let Err(error) = receiver.close().await {
            tracing::warn!(%error, "closing receiver");
        }
    }

    async fn process(&mut self, receiver: &mut dyn Receiver, delivery: Delivery) {
        let judged = self.judge(&delivery).await;
        self.settle(receiver, &delivery, judged).await;
    }

    fn policy(&self) -> engine::RetryPolicy {
        self.messenger.inner.config.retry
    }

    /// Runs the checks of PROFILE.md "Receiving" and decides.
    async fn judge(&self, delivery: &Delivery) -> Judged {
        let envelope = convert::to_envelope(&delivery.message);
        let ours = self.messenger.her_id();
        let now = Utc::now();
        let message_id = delivery.message.message_id.clone().unwrap_or_default();
        let mut judged = Judged {
            decision: Decision::HandOver,
            attempt: 1,
            sender: envelope.her_id(names::FROM_HER_ID).ok(),
            envelope,
            received: None,
            claim: None,
        };
        judged.attempt = match self.attempt(delivery, &message_id, now).await {
            Ok(attempt) => attempt,
            Err(error) => {
                tracing::error!(%error, "store unavailable; releasing");
                judged.decision = self.policy().on_outage(1);
                return judged;
            }
        };
        if let Some(decision) = self.policy().on_delivery(judged.attempt) {
            judged.decision = decision;
            return judged;
        }
        let headers = match judged.envelope.check_incoming(ours) {
            Ok(headers) => headers,
            Err(error) => {
                judged.decision = engine::on_header_error(&error, judged.sender.is_some());
                return judged;
            }
        };
        judged.claim = self
            .in_flight
            .claim(headers.from.get(), &headers.message_id);
        if judged.claim.is_none() {
            // Another worker has a copy: see again once it is settled.
            judged.decision = self.policy().on_outage(judged.attempt);
            return judged;
        }
        let (from, id) = (headers.from.get(), headers.message_id.clone());
        match self
            .messenger
            .with_store(move |s| s.inbox().hand_over(from, &id))
            .await
        {
            Ok(Some(_)) => {
                judged.decision = Decision::AcceptDuplicate;
                return judged;
            }
            Ok(None) => {}
            Err(_) => {
                judged.decision = self.policy().on_outage(judged.attempt);
                return judged;
            }
        }
        match self
            .check_message(delivery, &headers, judged.attempt, now)
            .await
        {
            Ok(received) => judged.received = Some(received),
            Err(decision) => judged.decision = decision,
        }
        judged
    }

    async fn check_message(
        &self,
        delivery: &Delivery,
        headers: &IncomingHeaders,
        attempt: u32,
        now: DateTime<Utc>,
    ) -> std::result::Result<Received, Decision> {
        let policy = self.policy();
        let profile = self.sender_profile(headers, attempt).await?;
        if !headers.protected {
            // Ours: an unprotected message has no signer to check the sender by.
            return Err(Decision::ReportError(ErrorReport {
                condition: helsemelding_wire::error_report::ErrorCondition::UnsupportedMessage,
                description: "unprotected messages are not accepted".into(),
                data: vec![headers.content_type.clone().unwrap_or_default()],
            }));
        }
        if profile.signing_certificates.is_empty() {
            return Err(engine::on_no_signing_certificate(headers.from.get()));
        }
        let (payload, signer) = self
            .decrypt_and_verify(&delivery.message.body, &profile.signing_certificates)
            .await
            .map_err(|failure| engine::on_unprotect_failure(&failure, headers.from.get()))?;
        let report = self.messenger.judge(&signer, Usage::Signing, now).await;
        if let Some(decision) = engine::on_certificate_check(
            &report,
            &signer.subject(),
            &signer.thumbprint_sha1(),
            &policy,
            attempt,
        ) {
            return Err(decision);
        }
        let metadata = metadata::extract(&payload).map_err(|e| engine::on_payload_error(&e))?;
        match MsgHead::parse(&payload) {
            Ok(head) => head
                .check_parties(headers.from, headers.to)
                .map_err(|e| engine::on_payload_error(&e))?,
            // Not every payload is a MsgHead (an AppRec, say): nothing to compare.
            Err(helsemelding_wire::Error::UnexpectedDocument { .. }) => {}
            Err(error) => return Err(engine::on_payload_error(&error)),
        }
        // A sync reply answers our own request: the request was the check.
        if self.kind != QueueKind::SyncReply
            && !profile.allows(&headers.function, Direction::Receive)
        {
            return Err(engine::on_function_not_allowed(
                &headers.function,
                headers.from.get(),
            ));
        }
        Ok(Received {
            from: headers.from,
            to: headers.to,
            function: headers.function.clone(),
            message_id: headers.message_id.clone(),
            correlation_id: headers.correlation_id.clone(),
            cpa_id: headers.cpa_id,
            payload,
            metadata,
            application_time: headers.application_time,
            enqueued_time: headers.enqueued_time,
            received_at: now,
            queue: delivery.queue.clone(),
        })
    }

    /// The sender's working profile: the CPA the message names, else the
    /// CPA for the pair, the CPP or the address record.
    async fn sender_profile(
        &self,
        headers: &IncomingHeaders,
        attempt: u32,
    ) -> std::result::Result<WorkingProfile, Decision> {
        let registry = self.messenger.inner.registry.clone();
        let ours = self.messenger.her_id().get();
        let theirs = headers.from.get();
        let result = match headers.cpa_id {
            Some(cpa_id) => {
                resolve_by_cpa_id(&*registry, &cpa_id.hyphenated().to_string(), ours, theirs).await
            }
            None => resolve(&*registry, ours, theirs).await,
        };
        result.map_err(|error| {
            use helsemelding_registry::Error as R;
            let failure = match &error {
                R::NotFound { .. } | R::EmptyDocument { .. } => RegistryFailure::NotFound,
                R::Http { .. } | R::Timeout { .. } | R::Auth { .. } => RegistryFailure::Unreachable,
                _ => RegistryFailure::Broken,
            };
            tracing::warn!(%error, sender = theirs, "sender profile look-up failed");
            engine::on_registry_failure(failure, &error.to_string(), &self.policy(), attempt)
        })
    }

    /// Decrypts with our identity (or the legacy one) and verifies the
    /// signature by each accepted signer certificate in turn.
    async fn decrypt_and_verify(
        &self,
        body: &[u8],
        signers: &[Certificate],
    ) -> std::result::Result<(Vec<u8>, Certificate), UnprotectFailure> {
        let config = &self.messenger.inner.config;
        let (decryption, legacy) = (config.decryption.clone(), config.legacy_decryption.clone());
        let (body, signers) = (body.to_vec(), signers.to_vec());
        let outcome = tokio::task::spawn_blocking(move || {
            let mut wrong_signer = None;
            for signer in signers {
                match unprotect(
                    &body,
                    &decryption,
                    legacy.as_ref(),
                    &signer,
                    &UnprotectOptions::default(),
                ) {
                    Ok(payload) => return Ok((payload, signer)),
                    Err(helsemelding_protect::Error::WrongSigner { actual_serial, .. }) => {
                        wrong_signer = Some(actual_serial)
                    }
                    Err(helsemelding_protect::Error::RefusedCipher { algorithm }) => {
                        return Err(UnprotectFailure::RefusedCipher(algorithm))
                    }
                    Err(other) => return Err(UnprotectFailure::Invalid(other.to_string())),
                }
            }
            Err(UnprotectFailure::WrongSigner {
                actual_serial: wrong_signer.unwrap_or_default(),
            })
        })
        .await;
        outcome.unwrap_or_else(|e| Err(UnprotectFailure::Invalid(e.to_string())))
    }

    /// Carries out a decision; every path settles the delivery.
    async fn settle(&mut self, receiver: &mut dyn Receiver, delivery: &Delivery, judged: Judged) {
        let Judged {
            mut decision,
            attempt,
            envelope,
            sender,
            received,
            claim: _claim,
        } = judged;
        let message_id = delivery.message.message_id.clone().unwrap_or_default();
        let function = delivery.message.subject.clone();
        let event = |kind, outcome: &str, reason: Option<String>| AuditEvent {
            counterpart_her_id: sender.map(HerId::get),
            message_id: Some(message_id.clone()),
            function: function.clone(),
            reason,
            ..AuditEvent::new(kind, self.messenger.actor(), outcome)
        };
        let audit_received = self
            .messenger
            .audit(event(AuditKind::Received, "received", None));
        let taken = if let (Decision::HandOver, Some(received)) = (&decision, &received) {
            let reply_to = envelope.properties.reply_to.clone();
            // The application need not wait for the audit log's commit.
            let ((), taken) = tokio::join!(
                audit_received,
                answer::take(
                    &self.messenger,
                    &self.handler,
                    self.kind,
                    received,
                    reply_to.as_deref(),
                )
            );
            Some(taken)
        } else {
            audit_received.await;
            None
        };
        if let Some(taken) = taken {
            decision = match taken {
                Ok(outcome) => {
                    self.remember(sender, &message_id, "accepted").await;
                    self.accept(receiver, delivery).await;
                    self.messenger
                        .audit(event(AuditKind::Accepted, &outcome, None))
                        .await;
                    return;
                }
                Err(error) => engine::on_handler_error(&error, &self.policy(), attempt),
            };
        }
        if let Decision::ReportError(report) = &decision {
            match self.report_error(&envelope, report).await {
                Ok(()) => {
                    let outcome = format!("error-reported:{}", report.condition.as_str());
                    self.remember(sender, &message_id, &outcome).await;
                    self.accept(receiver, delivery).await;
                    self.messenger
                        .audit(event(
                            AuditKind::ErrorReported,
                            report.condition.as_str(),
                            Some(report.description.clone()),
                        ))
                        .await;
                    return;
                }
                Err(error) => {
                    tracing::warn!(%error, message_id, "error report not sent; retrying the original");
                    decision = engine::on_report_send_failure(&self.policy(), attempt);
                }
            }
        }
        match decision {
            Decision::AcceptDuplicate => {
                self.accept(receiver, delivery).await;
                self.messenger
                    .audit(event(AuditKind::Accepted, "duplicate", None))
                    .await;
            }
            Decision::Retry {
                after,
                spend_attempt,
            } => {
                if !spend_attempt {
                    let (queue, id) = (delivery.queue.clone(), message_id.clone());
                    let _ = self
                        .messenger
                        .with_store(move |s| s.inbox().uncount_delivery(&queue, &id))
                        .await;
                }
                self.hold(after).await;
                if let Err(error) = receiver.release(delivery).await {
                    tracing::warn!(%error, message_id, "release failed; the broker redelivers");
                }
            }
            Decision::DeadLetter { reason } => {
                if let Err(error) = receiver.reject(delivery, &reason).await {
                    tracing::warn!(%error, message_id, "reject failed; the broker redelivers");
                }
                self.forget(delivery, &message_id).await;
                self.messenger
                    .audit(event(AuditKind::Rejected, "dead-lettered", Some(reason)))
                    .await;
            }
            Decision::HandOver | Decision::ReportError(_) => {
                // Handled above; unreachable unless a hand-over had no message.
                let _ = receiver.release(delivery).await;
            }
        }
    }

    /// Waits before a release, but not past shutdown.
    async fn hold(&mut self, after: Duration) {
        tokio::select! {
            _ = tokio::time::sleep(after) => {}
            _ = self.shutdown.changed() => {}
        }
    }

    async fn accept(&self, receiver: &mut dyn Receiver, delivery: &Delivery) {
        let message_id = delivery.message.message_id.clone().unwrap_or_default();
        if let Err(error) = receiver.accept(delivery).await {
            // It comes again and is then accepted as a duplicate.
            tracing::warn!(%error, message_id, "accept failed; the broker redelivers");
        }
        self.forget(delivery, &message_id).await;
    }

    /// The delivery's attempt number, 1 for the first. Only redeliveries
    /// are written down (brokers that do not count deliveries, such as
    /// RabbitMQ 3.10, still say when one may have been delivered before):
    /// the common path then costs no store writes for counting.
    async fn attempt(
        &self,
        delivery: &Delivery,
        message_id: &str,
        now: DateTime<Utc>,
    ) -> Result<u32> {
        if is_first_delivery(delivery) {
            return Ok(1);
        }
        let (queue, id) = (delivery.queue.clone(), message_id.to_owned());
        let redeliveries = self
            .messenger
            .with_store(move |s| s.inbox().count_delivery(&queue, &id, now))
            .await?;
        Ok(redeliveries.max(delivery.delivery_count) + 1)
    }

    async fn forget(&self, delivery: &Delivery, message_id: &str) {
        if is_first_delivery(delivery) {
            return;
        }
        let (queue, id) = (delivery.queue.clone(), message_id.to_owned());
        let _ = self
            .messenger
            .with_store(move |s| s.inbox().forget_deliveries(&queue, &id))
            .await;
    }

    async fn remember(&self, sender: Option<HerId>, message_id: &str, outcome: &str) {
        let Some(sender) = sender else { return };
        if message_id.is_empty() {
            return;
        }
        let (id, outcome) = (message_id.to_owned(), outcome.to_owned());
        if let Err(error) = self
            .messenger
            .with_store(move |s| {
                s.inbox()
                    .record_hand_over(sender.get(), &id, Utc::now(), &outcome)
            })
            .await
        {
            tracing::error!(%error, message_id, "recording the hand-over failed");
        }
    }

    /// Sends a fresh error report to the original sender's error queue.
    async fn report_error(&self, original: &Envelope, report: &ErrorReport) -> Result<()> {
        let report_id = Uuid::new_v4().hyphenated().to_string();
        let (envelope, queue) = build_error_report(
            original,
            self.messenger.her_id(),
            report,
            &report_id,
            Utc::now(),
        )
        .map_err(Error::Payload)?;
        self.messenger
            .send_to_queue(&queue, convert::to_message(&envelope, Vec::new()))
            .await
    }

    async fn process_error_report(&mut self, receiver: &mut dyn Receiver, delivery: Delivery) {
        let envelope = convert::to_envelope(&delivery.message);
        let report = ReceivedErrorReport::from_envelope(&envelope);
        let message_id = delivery.message.message_id.clone().unwrap_or_default();
        let event = |outcome: &str| AuditEvent {
            counterpart_her_id: report.from.map(HerId::get),
            message_id: Some(message_id.clone()),
            function: report.function.clone(),
            reason: report.condition_text.clone(),
            ..AuditEvent::new(AuditKind::ErrorReceived, self.messenger.actor(), outcome)
        };
        let attempt = self
            .attempt(&delivery, &message_id, Utc::now())
            .await
            .unwrap_or(1);
        if let Some(Decision::DeadLetter { reason }) = self.policy().on_delivery(attempt) {
            let _ = receiver.reject(&delivery, &reason).await;
            self.forget(&delivery, &message_id).await;
            self.messenger.audit(event("dead-lettered")).await;
            return;
        }
        // Never answered: an error about an error would loop between parties.
        match self.error_handler.handle_error(&report).await {
            Ok(()) => {
                self.accept(receiver, &delivery).await;
                self.messenger.audit(event("ok")).await;
            }
            Err(HandlerError::Retry { reason }) => {
                tracing::warn!(reason, message_id, "error callback asked to retry");
                self.hold(self.policy().backoff(attempt)).await;
                let _ = receiver.release(&delivery).await;
            }
            Err(refused @ (HandlerError::Reject { .. } | HandlerError::RejectContent { .. })) => {
                let _ = receiver.reject(&delivery, &refused.to_string()).await;
                self.forget(&delivery, &message_id).await;
                self.messenger.audit(event("rejected")).await;
            }
        }
    }
}
