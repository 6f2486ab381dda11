//! The receive pipelines: N workers per queue, each taking one delivery at
//! a time through the steps of PROFILE.md "Receiving" (count, header
//! checks, de-duplication, sender profile, decrypt and verify, certificate,
//! XML and MsgHead, CPA, hand-over) and settling it by the [`engine`]'s
//! decision. Messages on our error queue go to the error callback. A
//! delivery is processed only once its body fits in the listener's
//! [`budget`] of payload bytes in flight.
//!
//! [`engine`]: crate::engine
//! [`budget`]: crate::budget

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use helsemelding_protect::{unprotect_detailed, Certificate, UnprotectOptions, Unprotected, Usage};
use helsemelding_registry::resolve::resolve_by_cpa_id;
use helsemelding_registry::{resolve, Direction, WorkingProfile};
use helsemelding_store::audit::{AuditEvent, AuditKind};
use helsemelding_store::inbox::{Answer, HandOver, MessageKey};
use helsemelding_transport::{Delivery, Receiver};
use helsemelding_wire::envelope::{names, Envelope, IncomingHeaders};
use helsemelding_wire::error_report::{
    build_error_report, report_recipient, ErrorReport, ReceivedErrorReport,
};
use helsemelding_wire::msghead::MsgHead;
use helsemelding_wire::queue::QueueKind;
use helsemelding_wire::{metadata, HerId};
use tokio::sync::{watch, OwnedSemaphorePermit};
use uuid::Uuid;

use crate::answer;
use crate::api::{ErrorHandler, Handler, ListenerOptions, Received};
use crate::budget::Budget;
use crate::convert;
use crate::engine::{self, Decision, HandlerError, RegistryFailure, UnprotectFailure};
use crate::error::{Error, Result};
use crate::in_flight::{Claim, InFlight};
use crate::listener::Listener;
use crate::messenger::Messenger;

impl Listener {
    /// Starts `options.workers` workers on each distinct async queue of our
    /// HER-ids, as the registry names them (and as many on the sync and
    /// error queues when `options` say so). Several HER-ids often share one
    /// set of queues: each queue is consumed once.
    pub async fn start(
        messenger: &Messenger,
        handler: Arc<dyn Handler>,
        error_handler: Arc<dyn ErrorHandler>,
        options: ListenerOptions,
    ) -> Result<Listener> {
        let mut kinds = vec![QueueKind::Async];
        if options.sync_queue {
            kinds.push(QueueKind::Sync);
        }
        if options.error_queue {
            kinds.push(QueueKind::Error);
        }
        messenger.check_own_decryption_certificates().await;
        let mut queues = Vec::new();
        for kind in kinds {
            for queue in messenger.our_distinct_queues(kind).await? {
                queues.push((kind, queue));
            }
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
        let budget = Budget::new(options.max_bytes_in_flight);
        let mut workers = Vec::new();
        for (kind, queue) in queues {
            let kind = *kind;
            for _ in 0..options.workers.max(1) {
                // Credit for the delivery in hand and the parked ones.
                let credit = 1 + options.parked_per_worker as u32;
                let receiver = messenger.inner.transport.receiver(queue, credit).await?;
                let worker = Worker {
                    messenger: messenger.clone(),
                    handler: handler.clone(),
                    error_handler: error_handler.clone(),
                    kind,
                    poll: options.poll,
                    shutdown: watching.clone(),
                    in_flight: in_flight.clone(),
                    budget: budget.clone(),
                    parked: Vec::new(),
                    max_parked: options.parked_per_worker,
                };
                workers.push(tokio::spawn(worker.run(receiver)));
            }
        }
        Ok(Listener::new(shutdown, workers))
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
    budget: Budget,
    /// Deliveries waiting out a retry backoff, released when due.
    parked: Vec<(Instant, Delivery)>,
    max_parked: usize,
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
    /// The earlier hand-over, when this is a repeat.
    earlier: Option<HandOver>,
}

impl Worker {
    async fn run(mut self, mut receiver: Box<dyn Receiver>) {
        while !*self.shutdown.borrow() {
            self.release_due(&mut *receiver).await;
            let wait = self.next_wait();
            if self.parked.len() >= self.max_parked {
                // No credit left for more: wait for the first parked one.
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = self.shutdown.changed() => break,
                }
                continue;
            }
            let delivery = tokio::select! {
                delivery = receiver.receive(wait) => delivery,
                _ = self.shutdown.changed() => break,
            };
            match delivery {
                Ok(Some(delivery)) => {
                    let Some(_share) = self.share_for(&mut *receiver, &delivery).await else {
                        break;
                    };
                    match self.kind {
                        QueueKind::Error => {
                            self.process_error_report(&mut *receiver, delivery).await
                        }
                        _ => self.process(&mut *receiver, delivery).await,
                    }
                }
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(%error, "receive failed; backing off");
                    tokio::time::sleep(self.poll).await;
                }
            }
        }
        for (_, delivery) in std::mem::take(&mut self.parked) {
            let _ = receiver.release(&delivery).await;
        }
        if let Err(error) = receiver.close().await {
            tracing::warn!(%error, "closing receiver");
        }
    }

    /// Waits until the body of `delivery` fits in the listener's budget.
    /// `None` when a stop comes first: the delivery was never in hand, so
    /// it goes back to the queue at once rather than delay the drain.
    async fn share_for(
        &mut self,
        receiver: &mut dyn Receiver,
        delivery: &Delivery,
    ) -> Option<OwnedSemaphorePermit> {
        tokio::select! {
            share = self.budget.acquire(delivery.message.body.len()) => Some(share),
            _ = self.shutdown.changed() => {
                if let Err(error) = receiver.release(delivery).await {
                    tracing::warn!(%error, "release failed; the broker redelivers");
                }
                None
            }
        }
    }

    /// How long the next receive may wait: the poll interval, or less when
    /// a parked delivery falls due sooner.
    fn next_wait(&self) -> Duration {
        let now = Instant::now();
        self.parked
            .iter()
            .map(|(due, _)| due.saturating_duration_since(now))
            .min()
            .map_or(self.poll, |due| due.min(self.poll))
    }

    /// Releases the parked deliveries whose backoff has passed.
    async fn release_due(&mut self, receiver: &mut dyn Receiver) {
        let now = Instant::now();
        let (due, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.parked)
            .into_iter()
            .partition(|(at, _)| *at <= now);
        self.parked = waiting;
        for (_, delivery) in due {
            if let Err(error) = receiver.release(&delivery).await {
                tracing::warn!(%error, "release failed; the broker redelivers");
            }
        }
    }

    /// Holds `delivery` back for `after` while the worker goes on with
    /// other messages, then releases it for redelivery.
    async fn park(&mut self, receiver: &mut dyn Receiver, delivery: Delivery, after: Duration) {
        if after.is_zero() || *self.shutdown.borrow() {
            if let Err(error) = receiver.release(&delivery).await {
                tracing::warn!(%error, "release failed; the broker redelivers");
            }
            return;
        }
        self.parked.push((Instant::now() + after, delivery));
    }

    async fn process(&mut self, receiver: &mut dyn Receiver, mut delivery: Delivery) {
        let judged = self.judge(&mut delivery).await;
        if let Some(after) = self.settle(receiver, &delivery, judged).await {
            self.park(receiver, delivery, after).await;
        }
    }

    fn policy(&self) -> engine::RetryPolicy {
        self.messenger.inner.config.retry
    }

    /// Runs the checks of PROFILE.md "Receiving" and decides.
    async fn judge(&self, delivery: &mut Delivery) -> Judged {
        let envelope = convert::to_envelope(&delivery.message);
        let ours = self.messenger.her_ids();
        let now = Utc::now();
        let message_id = delivery.message.message_id.clone().unwrap_or_default();
        let mut judged = Judged {
            decision: Decision::HandOver,
            attempt: 1,
            sender: envelope.her_id(names::FROM_HER_ID).ok(),
            envelope,
            received: None,
            claim: None,
            earlier: None,
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
        let (to, from, id) = (
            headers.to.get(),
            headers.from.get(),
            headers.message_id.clone(),
        );
        match self
            .messenger
            .with_store(move |s| {
                s.inbox().hand_over(MessageKey {
                    ours: to,
                    sender: from,
                    message_id: &id,
                })
            })
            .await
        {
            Ok(Some(earlier)) => {
                judged.decision = Decision::AcceptDuplicate;
                judged.earlier = Some(earlier);
                judged.received = Some(self.unchecked_received(delivery, &headers, now));
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
        delivery: &mut Delivery,
        headers: &IncomingHeaders,
        attempt: u32,
        now: DateTime<Utc>,
    ) -> std::result::Result<Received, Decision> {
        let receive = self.messenger.inner.config.receive;
        let profile = self.sender_profile(headers, attempt).await?;
        let payload = if headers.protected {
            self.verified_payload(delivery, headers, &profile, attempt, now)
                .await?
        } else if let Some(refused) =
            engine::on_unprotected(headers.content_type.as_deref(), &receive)
        {
            return Err(refused);
        } else {
            // allow_unprotected (test environments): nothing to decrypt or verify.
            delivery.message.body.clone()
        };
        let metadata = metadata::extract(&payload).map_err(|e| engine::on_payload_error(&e))?;
        if !receive.allow_party_mismatch {
            match MsgHead::parse(&payload) {
                Ok(head) => head
                    .check_parties(headers.from, headers.to)
                    .map_err(|e| engine::on_payload_error(&e))?,
                // Not every payload is a MsgHead (an AppRec, say): nothing to compare.
                Err(helsemelding_wire::Error::UnexpectedDocument { .. }) => {}
                Err(error) => return Err(engine::on_payload_error(&error)),
            }
        }
        // A sync reply answers our own request: the request was the check.
        if self.kind != QueueKind::SyncReply
            && !profile.allows(&headers.function, Direction::Receive)
        {
            if let Some(refused) =
                engine::on_function_outside_profile(&headers.function, headers.from.get(), &receive)
            {
                return Err(refused);
            }
            self.audit_function_outside_profile(headers, &profile).await;
        }
        let mut received = self.unchecked_received(delivery, headers, now);
        received.payload = payload;
        received.metadata = metadata;
        Ok(received)
    }

    /// The fields of a message as its header gives them, before any check
    /// of the payload (which stays empty).
    fn unchecked_received(
        &self,
        delivery: &Delivery,
        headers: &IncomingHeaders,
        now: DateTime<Utc>,
    ) -> Received {
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
            received_at: now,
            queue: delivery.queue.clone(),
        }
    }

    /// Decrypts, verifies the signer against the sender's profile and
    /// judges the signer's certificate.
    async fn verified_payload(
        &self,
        delivery: &mut Delivery,
        headers: &IncomingHeaders,
        profile: &WorkingProfile,
        attempt: u32,
        now: DateTime<Utc>,
    ) -> std::result::Result<Vec<u8>, Decision> {
        let policy = self.policy();
        if profile.signing_certificates.is_empty() {
            return Err(engine::on_no_signing_certificate(headers.from.get()));
        }
        // Lent to the blocking decryption rather than copied for it (a copy
        // per message is what large messages add up by), then put back.
        let body = Arc::new(std::mem::take(&mut delivery.message.body));
        let verified = self
            .verify_with_fresh_look_up(&body, headers, profile, attempt)
            .await;
        delivery.message.body = Arc::try_unwrap(body).unwrap_or_else(|body| body.to_vec());
        let Unprotected {
            payload,
            signer,
            embedded,
            ..
        } = verified?;
        // Intermediates the sender embedded help build its chain; they are
        // not trusted themselves (the anchors are).
        let report = self
            .messenger
            .judge_with(&signer, Usage::Signing, now, &embedded)
            .await;
        if report.only_revocation_unknown() {
            return Err(self
                .revocation_unknown(delivery, headers, attempt, now)
                .await);
        }
        if let Some(decision) = engine::on_certificate_check(
            &report,
            &signer.subject(),
            &signer.thumbprint_sha1(),
            &policy,
            attempt,
        ) {
            return Err(decision);
        }
        Ok(payload)
    }

    /// The sender's revocation status could not be learnt: retried without
    /// spending attempts for `revocation_unknown_for`, then dead-lettered.
    async fn revocation_unknown(
        &self,
        delivery: &Delivery,
        headers: &IncomingHeaders,
        attempt: u32,
        now: DateTime<Utc>,
    ) -> Decision {
        let (queue, id) = (delivery.queue.clone(), headers.message_id.clone());
        let since = self
            .messenger
            .with_store(move |s| s.inbox().revocation_unknown_since(&queue, &id, now))
            .await
            .unwrap_or(now);
        let unknown_for = (now - since).to_std().unwrap_or_default();
        engine::on_revocation_unknown(
            unknown_for,
            &self.messenger.inner.config.receive,
            &self.policy(),
            attempt,
        )
    }

    async fn audit_function_outside_profile(
        &self,
        headers: &IncomingHeaders,
        profile: &WorkingProfile,
    ) {
        tracing::info!(
            function = headers.function,
            from = headers.from.get(),
            source = ?profile.source,
            "message function outside the sender's collaboration profile: handed over (strict_message_functions is off)"
        );
        self.messenger
            .audit(AuditEvent {
                counterpart_her_id: Some(headers.from.get()),
                message_id: Some(headers.message_id.clone()),
                function: Some(headers.function.clone()),
                reason: Some(format!(
                    "not in the sender's {:?} profile; handed over",
                    profile.source
                )),
                ..AuditEvent::new(
                    AuditKind::FunctionOutsideProfile,
                    self.messenger.actor(),
                    "handed-over",
                )
            })
            .await;
    }

    /// The sender's working profile: the CPA the message names, else the
    /// CPA for the pair, the CPP or the address record.
    async fn sender_profile(
        &self,
        headers: &IncomingHeaders,
        attempt: u32,
    ) -> std::result::Result<WorkingProfile, Decision> {
        let registry = self.messenger.inner.registry.clone();
        let ours = headers.to.get();
        let theirs = headers.from.get();
        let named_cpa = match headers.cpa_id {
            Some(cpa_id) => {
                let cpa_id = cpa_id.hyphenated().to_string();
                match resolve_by_cpa_id(&*registry, &cpa_id, ours, theirs).await {
                    Ok(profile) => Some(profile),
                    Err(error) => {
                        // As the reference since #563: carry on as if there
                        // were no cpaId (the pair's CPA, the CPP, the record).
                        tracing::info!(%error, cpa_id, sender = theirs, "the CPA the message names cannot be fetched; falling back");
                        None
                    }
                }
            }
            None => None,
        };
        let result = match named_cpa {
            Some(profile) => Ok(profile),
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
        body: &Arc<Vec<u8>>,
        signers: &[Certificate],
    ) -> std::result::Result<Unprotected, UnprotectFailure> {
        let config = &self.messenger.inner.config;
        let (decryption, legacy) = (config.decryption.clone(), config.legacy_decryption.clone());
        let options = UnprotectOptions {
            allow_3des: config.receive.allow_3des,
        };
        let (body, signers) = (body.clone(), signers.to_vec());
        let outcome = tokio::task::spawn_blocking(move || {
            unprotect_detailed(&body, &decryption, legacy.as_ref(), &signers, &options).map_err(
                |error| match error {
                    helsemelding_protect::Error::WrongSigner { actual_serial, .. } => {
                        UnprotectFailure::WrongSigner { actual_serial }
                    }
                    helsemelding_protect::Error::RefusedCipher { algorithm } => {
                        UnprotectFailure::RefusedCipher(algorithm)
                    }
                    other => UnprotectFailure::Invalid(other.to_string()),
                },
            )
        })
        .await;
        outcome.unwrap_or_else(|e| Err(UnprotectFailure::Invalid(e.to_string())))
    }

    /// Decrypts and verifies against the sender's known signing
    /// certificates; a signer that is none of them makes us fetch the
    /// sender's record once more past the cache (a rotation the cache has
    /// not seen must not be called an attack) before it is spoofing.
    async fn verify_with_fresh_look_up(
        &self,
        body: &Arc<Vec<u8>>,
        headers: &IncomingHeaders,
        profile: &WorkingProfile,
        attempt: u32,
    ) -> std::result::Result<Unprotected, Decision> {
        let sender = headers.from.get();
        match self
            .decrypt_and_verify(body, &profile.signing_certificates)
            .await
        {
            Err(UnprotectFailure::WrongSigner { .. }) => {}
            other => return other.map_err(|f| engine::on_unprotect_failure(&f, sender)),
        }
        if let Err(error) = self.messenger.inner.registry.refresh_party(sender).await {
            tracing::warn!(%error, sender, "refreshing the sender's record past the cache failed");
        }
        let fresh = self.sender_profile(headers, attempt).await?;
        self.decrypt_and_verify(body, &fresh.signing_certificates)
            .await
            .map_err(|failure| engine::on_unprotect_failure(&failure, sender))
    }

    /// Carries out a decision; every path settles the delivery, or returns
    /// how long to park it before it is released for a retry.
    async fn settle(
        &mut self,
        receiver: &mut dyn Receiver,
        delivery: &Delivery,
        judged: Judged,
    ) -> Option<Duration> {
        let Judged {
            mut decision,
            attempt,
            envelope,
            sender,
            received,
            claim: _claim,
            earlier,
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
                Ok(taken) => {
                    if let Some(received) = &received {
                        self.remember(received, taken.answer.as_ref()).await;
                    }
                    self.accept(receiver, delivery).await;
                    self.messenger
                        .audit(event(AuditKind::Accepted, &taken.outcome, None))
                        .await;
                    return None;
                }
                Err(error) => engine::on_handler_error(&error, &self.policy(), attempt),
            };
        }
        if let Decision::ReportError(report) = &decision {
            match self.report_error(&envelope, report).await {
                Ok(()) => {
                    // Not remembered: a repeat is judged afresh (the sender
                    // may have fixed its certificate).
                    self.accept(receiver, delivery).await;
                    self.messenger
                        .audit(event(
                            AuditKind::ErrorReported,
                            report.condition.as_str(),
                            Some(report.description.clone()),
                        ))
                        .await;
                    return None;
                }
                Err(error) => {
                    tracing::warn!(%error, message_id, "error report not sent; retrying the original");
                    decision = engine::on_report_send_failure(&self.policy(), attempt);
                }
            }
        }
        match decision {
            Decision::AcceptDuplicate => {
                let answer = earlier.and_then(|e| e.answer);
                if let (Some(answer), Some(received)) = (&answer, &received) {
                    answer::answer_again(&self.messenger, received, answer).await;
                }
                self.accept(receiver, delivery).await;
                let outcome = if answer.is_some() {
                    "duplicate; answered again"
                } else {
                    "duplicate"
                };
                self.messenger
                    .audit(event(AuditKind::Accepted, outcome, None))
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
                return Some(after);
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
        None
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

    /// The delivery's attempt number on our error queue, by our own count.
    async fn error_report_attempt(
        &self,
        delivery: &Delivery,
        message_id: &str,
        now: DateTime<Utc>,
    ) -> Result<u32> {
        if delivery.first_acquirer && delivery.delivery_count == 0 {
            return Ok(1);
        }
        let (queue, id) = (delivery.queue.clone(), message_id.to_owned());
        self.messenger
            .with_store(move |s| s.inbox().count_delivery(&queue, &id, now))
            .await
    }

    async fn forget(&self, delivery: &Delivery, message_id: &str) {
        if is_first_delivery(delivery) {
            return;
        }
        let (queue, id) = (delivery.queue.clone(), message_id.to_owned());
        let _ = self
            .messenger
            .with_store(move |s| {
                s.inbox().forget_deliveries(&queue, &id)?;
                s.inbox().forget_revocation_unknown(&queue, &id)
            })
            .await;
    }

    /// Remembers a message the application took (with the answer it got),
    /// so that a repeat is not handed over again.
    async fn remember(&self, received: &Received, answer: Option<&Answer>) {
        let (to, from, id) = (
            received.to.get(),
            received.from.get(),
            received.message_id.clone(),
        );
        let answer = answer.cloned();
        if let Err(error) = self
            .messenger
            .with_store(move |s| {
                let key = MessageKey {
                    ours: to,
                    sender: from,
                    message_id: &id,
                };
                s.inbox()
                    .record_hand_over(key, Utc::now(), "accepted", answer.as_ref())
            })
            .await
        {
            tracing::error!(%error, message_id = received.message_id, "recording the hand-over failed");
        }
    }

    /// Sends a fresh error report to the original sender's error queue.
    async fn report_error(&self, original: &Envelope, report: &ErrorReport) -> Result<()> {
        let report_id = Uuid::new_v4().hyphenated().to_string();
        let sender = report_recipient(original).map_err(Error::Payload)?;
        let queue = self.messenger.error_queue_of(sender).await?;
        // From the one of ours it was addressed to (the first when unreadable).
        let ours = original
            .her_id(names::TO_HER_ID)
            .ok()
            .filter(|to| self.messenger.is_ours(*to))
            .unwrap_or_else(|| self.messenger.her_id());
        let envelope = build_error_report(original, ours, report, &report_id, &queue, Utc::now())
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
        // Released .NET peers clone the original's header into their reports,
        // delivery count included: only our own count says how often this
        // report was delivered.
        let attempt = self
            .error_report_attempt(&delivery, &message_id, Utc::now())
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
                let after = self.policy().backoff(attempt);
                self.park(receiver, delivery, after).await;
            }
            Err(refused @ (HandlerError::Reject { .. } | HandlerError::RejectContent { .. })) => {
                let _ = receiver.reject(&delivery, &refused.to_string()).await;
                self.forget(&delivery, &message_id).await;
                self.messenger.audit(event("rejected")).await;
            }
        }
    }
}
