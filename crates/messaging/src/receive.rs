//! The receive driver: N workers per queue, each taking one delivery at a
//! time through the engine's pipeline ([`Intake`]: the steps and decisions
//! of PROFILE.md "Receiving"). The driver only executes what the pipeline
//! asks for (store, registry, CMS, certificate checks, the application,
//! error reports) and settles the delivery as it says: accept, release
//! after a backoff (parked meanwhile, never slept on), give up (to the
//! broker's dead-letter path or our store), or pause on a fault of ours.
//! Messages on our error queue go to the error callback. A delivery is
//! processed only once its body fits in the listener's [`budget`] of
//! payload bytes in flight.
//!
//! [`Intake`]: crate::engine::intake::Intake
//! [`budget`]: crate::budget

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use helsemelding_protect::{unprotect_detailed, Certificate, UnprotectOptions, Unprotected, Usage};
use helsemelding_registry::resolve::resolve_by_cpa_id;
use helsemelding_registry::{resolve, Direction};
use helsemelding_store::audit::{AuditEvent, AuditKind};
use helsemelding_store::inbox::{
    Answer as StoredAnswer, DeliveryCount, DeliveryKey, HandOver, HandOverRecord, MessageKey,
};
use helsemelding_store::messages::Arrival;
use helsemelding_store::parked::ParkedMessage;
use helsemelding_transport::{Capabilities, Delivery, Receiver};
use helsemelding_wire::envelope::{names, Envelope};
use helsemelding_wire::error_report::{
    build_error_report, report_recipient, ErrorReport, ReceivedErrorReport,
};
use helsemelding_wire::queue::QueueKind;
use helsemelding_wire::text::for_display;
use helsemelding_wire::HerId;
use tokio::sync::{watch, OwnedSemaphorePermit};
use uuid::Uuid;

use crate::answer;
use crate::api::{ErrorHandler, Handler, ListenerOptions, Received};
use crate::budget::Budget;
use crate::convert;
use crate::engine::intake::{
    Action, Answer, AuditNote, DeliveryFacts, Intake, Opened, Rules, SenderProfile, Settlement,
    Step, Taken,
};
use crate::engine::{self, DeadLetters, Decision, HandlerError, RegistryFailure, UnprotectFailure};
use crate::error::{Error, Result};
use crate::in_flight::{Claim, InFlight};
use crate::listener::Listener;
use crate::local_fault::LocalFault;
use crate::messenger::Node;
use crate::outage::OutageLog;

impl Listener {
    /// Starts `options.workers` workers on each distinct async queue of our
    /// HER-ids, as the registry names them (and as many on the sync and
    /// error queues when `options` say so). Several HER-ids often share one
    /// set of queues: each queue is consumed once.
    pub async fn start(
        messenger: &Node,
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
    pub(crate) async fn start_reply_consumer(messenger: &Node, queue: &str) -> Result<Listener> {
        let nobody = Arc::new(NoApplication);
        let options = ListenerOptions {
            workers: 2,
            ..ListenerOptions::default()
        };
        let queues = [(QueueKind::SyncReply, queue.to_owned())];
        Self::start_on(messenger, nobody.clone(), nobody, &queues, &options).await
    }

    async fn start_on(
        messenger: &Node,
        handler: Arc<dyn Handler>,
        error_handler: Arc<dyn ErrorHandler>,
        queues: &[(QueueKind, String)],
        options: &ListenerOptions,
    ) -> Result<Listener> {
        let (shutdown, watching) = watch::channel(false);
        let in_flight = Arc::new(InFlight::default());
        let fault = Arc::new(LocalFault::new(options.fault_pause_max));
        let budget = Budget::new(options.max_bytes_in_flight);
        let outage = Arc::new(OutageLog::default());
        let transport_promises = messenger.inner.transport.capabilities();
        let mut workers = Vec::new();
        for (kind, queue) in queues {
            let kind = *kind;
            for _ in 0..options.workers.max(1) {
                // Credit for the delivery in hand and the parked ones.
                let credit = 1 + options.parked_per_worker as u32;
                let receiver = messenger.inner.transport.receiver(queue, credit).await?;
                let promised = union(transport_promises, receiver.capabilities());
                if !promised.releases {
                    // A failing message is tried again by releasing it;
                    // without release it could only be held or given up.
                    let _ = receiver.close().await;
                    return Err(Error::TransportLacks {
                        queue: queue.clone(),
                        capability: "release (putting a delivery back on its queue)",
                        needed_for: "trying a failing message again later",
                    });
                }
                let worker = Worker {
                    messenger: messenger.clone(),
                    handler: handler.clone(),
                    error_handler: error_handler.clone(),
                    kind,
                    poll: options.poll,
                    shutdown: watching.clone(),
                    in_flight: in_flight.clone(),
                    budget: budget.clone(),
                    outage: outage.clone(),
                    parked: Vec::new(),
                    max_parked: options.parked_per_worker,
                    fault: fault.clone(),
                    fault_pause_max: options.fault_pause_max,
                    dead_letters: options.dead_letters_of(queue),
                    promised,
                };
                workers.push(tokio::spawn(worker.run(receiver)));
            }
        }
        Ok(Listener::new(shutdown, workers, outage))
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

fn message_id_of(delivery: &Delivery) -> String {
    delivery.message.message_id.clone().unwrap_or_default()
}

/// Whether the transport vouches that this is the message's first
/// delivery: every signal it promises ([`Capabilities`]) must say so, and
/// a transport that promises none never vouches (the store then counts).
fn is_first_delivery(delivery: &Delivery, promised: Capabilities) -> bool {
    let marked = !promised.marks_redeliveries || delivery.first_acquirer;
    let counted = !promised.counts_deliveries || delivery.delivery_count == 0;
    let vouched = promised.marks_redeliveries || promised.counts_deliveries;
    vouched && marked && counted
}

/// What the transport promises for every queue and what one receiver
/// promises beyond that.
fn union(a: Capabilities, b: Capabilities) -> Capabilities {
    let mut both = Capabilities::NONE;
    if a.counts_deliveries || b.counts_deliveries {
        both = both.with_delivery_counts();
    }
    if a.marks_redeliveries || b.marks_redeliveries {
        both = both.with_redelivery_marks();
    }
    if a.releases || b.releases {
        both = both.with_release();
    }
    if a.rejects_to_dead_letter || b.rejects_to_dead_letter {
        both = both.with_dead_letter_on_reject();
    }
    both
}

/// The transport's count of earlier deliveries, where it keeps one.
fn broker_count(delivery: &Delivery, promised: Capabilities) -> u32 {
    if promised.counts_deliveries {
        delivery.delivery_count
    } else {
        0
    }
}

struct Worker {
    messenger: Node,
    handler: Arc<dyn Handler>,
    error_handler: Arc<dyn ErrorHandler>,
    kind: QueueKind,
    poll: Duration,
    shutdown: watch::Receiver<bool>,
    in_flight: Arc<InFlight>,
    budget: Budget,
    /// Receive failures of the listener's workers, said once an outage.
    outage: Arc<OutageLog>,
    /// Deliveries waiting out a retry backoff, released when due.
    parked: Vec<(Instant, Delivery)>,
    max_parked: usize,
    /// A fault of ours, shared by the listener's workers: while it lasts
    /// none of them takes deliveries.
    fault: Arc<LocalFault>,
    fault_pause_max: Duration,
    /// Where a message given up on this worker's queue goes.
    dead_letters: DeadLetters,
    /// What the transport promises of its deliveries.
    promised: Capabilities,
}

impl Worker {
    async fn run(mut self, mut receiver: Box<dyn Receiver>) {
        while !*self.shutdown.borrow() {
            self.release_due(&mut *receiver).await;
            let wait = self.next_wait();
            if let Some(left) = self.fault.pause_left(Instant::now()) {
                // A fault of ours: take nothing until the pause is over.
                tokio::select! {
                    _ = tokio::time::sleep(left.min(wait)) => {}
                    _ = self.shutdown.changed() => break,
                }
                continue;
            }
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
                    self.receive_worked();
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
                Ok(None) => self.receive_worked(),
                Err(error) => {
                    if self.outage.failed(Instant::now()) {
                        tracing::warn!(
                            %error,
                            "receive failed; backing off (further failures are counted, not logged, until a receive works)"
                        );
                    }
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

    /// A receive worked: an outage, if one was on, is over (said once).
    fn receive_worked(&self) {
        if let Some(over) = self.outage.worked(Instant::now()) {
            tracing::warn!(
                "receiving again after {} s ({} failed receives not logged)",
                over.lasted.as_secs(),
                over.failures.saturating_sub(1)
            );
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

    /// Runs the engine's pipeline for one delivery ([`Intake`]): each step
    /// it asks for is done here, its outcome handed back, until it says
    /// how to settle.
    async fn process(&mut self, receiver: &mut dyn Receiver, mut delivery: Delivery) {
        let mut intake = Intake::new(self.facts(&delivery), self.rules());
        // Held until the delivery is settled, so no other worker hands over a copy.
        let mut _claim: Option<Claim> = None;
        // The hand-over was recorded with its delivery count forgotten.
        let mut forgotten = false;
        loop {
            let answer = match intake.next_step() {
                Step::Settle(settlement) => {
                    return self
                        .settle(receiver, delivery, &intake, settlement, forgotten)
                        .await
                }
                Step::CountDelivery => Answer::Counted(self.count(&delivery).await),
                Step::Claim { sender, message_id } => {
                    _claim = self.in_flight.claim(sender.get(), &message_id);
                    Answer::Claimed(_claim.is_some())
                }
                Step::EarlierHandOver {
                    ours,
                    sender,
                    message_id,
                } => Answer::Earlier(self.earlier(ours, sender, message_id).await),
                Step::SenderProfile {
                    ours,
                    sender,
                    cpa_id,
                    fresh,
                } => {
                    let function = delivery.message.subject.clone().unwrap_or_default();
                    Answer::Profile(
                        self.sender_profile(ours, sender, cpa_id, fresh, &function)
                            .await,
                    )
                }
                Step::Open { protected, signers } => {
                    Answer::Opened(self.open(&mut delivery, protected, &signers).await)
                }
                Step::JudgeSigner { signer, embedded } => Answer::Judged(
                    self.messenger
                        .judge_with(&signer, Usage::Signing, Utc::now(), &embedded)
                        .await,
                ),
                Step::RevocationUnknownSince => {
                    Answer::UnknownSince(self.revocation_unknown_since(&delivery).await)
                }
                Step::HandOver => Answer::Taken(self.hand_over(&mut intake, &delivery).await),
                Step::Remember { answer, audit } => {
                    if let Some(received) = intake.received() {
                        forgotten = self
                            .remember(&delivery, intake.sender(), received, answer.as_ref(), audit)
                            .await;
                    }
                    Answer::Done
                }
                Step::AnswerAgain { answer } => {
                    if let Some(received) = intake.received() {
                        answer::answer_again(&self.messenger, received, &answer).await;
                    }
                    Answer::Done
                }
                Step::Report(report) => {
                    let sent = self.report_error(intake.envelope(), &report).await;
                    if sent.is_ok() {
                        self.record_rejected(intake.envelope(), &report).await;
                    }
                    Answer::Reported(sent.map_err(|error| {
                        tracing::warn!(%error, "error report not sent; retrying the original");
                        error.to_string()
                    }))
                }
            };
            intake.answer(answer);
        }
    }

    fn facts(&self, delivery: &Delivery) -> DeliveryFacts {
        DeliveryFacts {
            queue: delivery.queue.clone(),
            kind: self.kind,
            first_delivery: is_first_delivery(delivery, self.promised),
            broker_count: broker_count(delivery, self.promised),
            envelope: convert::to_envelope(&delivery.message),
            now: Utc::now(),
        }
    }

    fn rules(&self) -> Rules {
        Rules {
            ours: self.messenger.her_ids().to_vec(),
            retry: self.policy(),
            receive: self.messenger.inner.config.receive,
            dead_letters: self.dead_letters,
        }
    }

    fn policy(&self) -> engine::RetryPolicy {
        self.messenger.inner.config.retry
    }

    /// Counts a redelivery (first deliveries are not written down: the
    /// common path then costs no store writes for counting).
    async fn count(&self, delivery: &Delivery) -> std::result::Result<DeliveryCount, String> {
        let (queue, id) = (delivery.queue.clone(), message_id_of(delivery));
        let now = Utc::now();
        self.messenger
            .store()
            .inbox()
            .count_delivery(&queue, &id, now)
            .await
            .map_err(|e| e.to_string())
    }

    async fn earlier(
        &self,
        ours: HerId,
        sender: HerId,
        message_id: String,
    ) -> std::result::Result<Option<HandOver>, String> {
        self.messenger
            .store()
            .inbox()
            .hand_over(MessageKey {
                ours: ours.get(),
                sender: sender.get(),
                message_id: &message_id,
            })
            .await
            .map_err(|e| e.to_string())
    }

    /// Opens the body: decrypts and verifies it when it is protected, else
    /// takes it as it is (`allow_unprotected`).
    async fn open(
        &self,
        delivery: &mut Delivery,
        protected: bool,
        signers: &[Certificate],
    ) -> std::result::Result<Opened, UnprotectFailure> {
        if !protected {
            return Ok(Opened {
                payload: delivery.message.body.clone(),
                signer: None,
                embedded: Vec::new(),
            });
        }
        // Lent to the decryption (no copy per attempt), then put back: the
        // body may still be parked in the store or released.
        let body = Arc::new(std::mem::take(&mut delivery.message.body));
        let opened = self.decrypt_and_verify(&body, signers).await;
        delivery.message.body = Arc::try_unwrap(body).unwrap_or_else(|body| body.to_vec());
        let Unprotected {
            payload,
            signer,
            embedded,
            ..
        } = opened?;
        Ok(Opened {
            payload,
            signer: Some(signer),
            embedded,
        })
    }

    async fn revocation_unknown_since(&self, delivery: &Delivery) -> DateTime<Utc> {
        let (queue, id) = (delivery.queue.clone(), message_id_of(delivery));
        let now = Utc::now();
        self.messenger
            .store()
            .inbox()
            .revocation_unknown_since(&queue, &id, now)
            .await
            .unwrap_or(now)
    }

    /// The sender's working profile: the CPA the message names, else the
    /// CPA for the pair, the CPP or the address record; `fresh`: the
    /// sender's record is fetched again first, past the cache.
    async fn sender_profile(
        &self,
        ours: HerId,
        sender: HerId,
        cpa_id: Option<Uuid>,
        fresh: bool,
        function: &str,
    ) -> std::result::Result<SenderProfile, (RegistryFailure, String)> {
        let registry = self.messenger.inner.registry.clone();
        let (ours, theirs) = (ours.get(), sender.get());
        if fresh {
            if let Err(error) = registry.refresh_party(theirs).await {
                tracing::warn!(%error, sender = theirs, "refreshing the sender's record past the cache failed");
            }
        }
        let named_cpa = match cpa_id {
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
        let profile = match named_cpa {
            Some(profile) => Ok(profile),
            None => resolve(&*registry, ours, theirs).await,
        };
        let profile = profile.map_err(|error| {
            use helsemelding_registry::Error as R;
            let failure = match &error {
                R::NotFound { .. } | R::EmptyDocument { .. } => RegistryFailure::NotFound,
                R::Http { .. } | R::Timeout { .. } | R::Auth { .. } => RegistryFailure::Unreachable,
                _ => RegistryFailure::Broken,
            };
            tracing::warn!(%error, sender = theirs, "sender profile look-up failed");
            (failure, error.to_string())
        })?;
        Ok(SenderProfile {
            allows_function: profile.allows(function, Direction::Receive),
            source: format!("{:?}", profile.source),
            signing_certificates: profile.signing_certificates,
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

    /// Hands the checked message over; the pending audit notes are written
    /// meanwhile (the application need not wait for the audit log's commit).
    async fn hand_over(
        &self,
        intake: &mut Intake,
        delivery: &Delivery,
    ) -> std::result::Result<Taken, HandlerError> {
        let notes = intake.take_audit();
        let Some(received) = intake.received() else {
            return Err(HandlerError::Retry {
                reason: "nothing to hand over".into(),
            });
        };
        let reply_to = intake.envelope().properties.reply_to.clone();
        let (_, taken) = tokio::join!(
            self.write_audit(delivery, intake.sender(), notes),
            answer::take(
                &self.messenger,
                &self.handler,
                self.kind,
                received,
                reply_to.as_deref(),
            )
        );
        taken
    }

    /// Carries out the engine's settlement.
    async fn settle(
        &mut self,
        receiver: &mut dyn Receiver,
        delivery: Delivery,
        intake: &Intake,
        settlement: Settlement,
        forgotten: bool,
    ) {
        let sender = intake.sender();
        match settlement.action {
            Action::Accept => self.accept(receiver, &delivery, forgotten).await,
            Action::Release { after, free } => {
                if free {
                    let (queue, id) = (delivery.queue.clone(), message_id_of(&delivery));
                    let _ = self
                        .messenger
                        .store()
                        .inbox()
                        .uncount_delivery(&queue, &id)
                        .await;
                }
                self.write_audit(&delivery, sender, settlement.audit).await;
                return self.park(receiver, delivery, after).await;
            }
            Action::GiveUp { route, reason } => {
                self.give_up(receiver, &delivery, sender, route, reason)
                    .await
            }
            Action::Pause { reason } => self.pause(receiver, &delivery, &reason).await,
        }
        self.write_audit(&delivery, sender, settlement.audit).await;
        if settlement.went_through {
            self.went_through().await;
        }
    }

    /// Writes the engine's audit notes about `delivery`.
    async fn write_audit(&self, delivery: &Delivery, sender: Option<HerId>, notes: Vec<AuditNote>) {
        for note in notes {
            self.messenger
                .audit(AuditEvent {
                    counterpart_her_id: sender.map(HerId::get),
                    message_id: delivery.message.message_id.clone(),
                    function: delivery.message.subject.clone(),
                    reason: note.reason,
                    ..AuditEvent::new(note.kind, self.messenger.actor(), &note.outcome)
                })
                .await;
        }
    }

    /// A fault of ours: the delivery goes back at once without spending an
    /// attempt, and the listener's workers pause; said loudly once a fault.
    async fn pause(&self, receiver: &mut dyn Receiver, delivery: &Delivery, reason: &str) {
        let (queue, id) = (
            delivery.queue.clone(),
            delivery.message.message_id.clone().unwrap_or_default(),
        );
        // Best effort: the store may be the fault.
        let _ = self
            .messenger
            .store()
            .inbox()
            .uncount_delivery(&queue, &id)
            .await;
        if let Err(error) = receiver.release(delivery).await {
            tracing::warn!(%error, "release failed; the broker redelivers");
        }
        let Some(began) = self.fault.failed(reason, Instant::now()) else {
            return;
        };
        tracing::error!(
            queue = delivery.queue,
            "NOT TAKING MESSAGES: a fault of ours, not the messages' ({}); they stay on the \
             queue and spend no delivery attempts; trying again after {} ms, then less and less \
             often (at most every {} s) until one goes through",
            began.reason,
            began.pause.as_millis(),
            self.fault_pause_max.as_secs()
        );
        self.messenger
            .audit(AuditEvent {
                reason: Some(began.reason),
                ..AuditEvent::new(AuditKind::LocalFault, self.messenger.actor(), "paused")
            })
            .await;
    }

    /// A delivery went through: a fault of ours, if one was on, is over.
    async fn went_through(&self) {
        let Some(ended) = self.fault.went_through(Instant::now()) else {
            return;
        };
        tracing::warn!(
            "taking messages again after {} s ({} deliveries released meanwhile); the fault was: {}",
            ended.lasted.as_secs(),
            ended.released,
            ended.reason
        );
        self.messenger
            .audit(AuditEvent {
                reason: Some(format!(
                    "after {} s and {} released deliveries; the fault was: {}",
                    ended.lasted.as_secs(),
                    ended.released,
                    ended.reason
                )),
                ..AuditEvent::new(
                    AuditKind::LocalFaultCleared,
                    self.messenger.actor(),
                    "resumed",
                )
            })
            .await;
    }

    /// Gives a message up: rejected to the broker's dead-letter path, or
    /// kept in the store where rejecting would delete it. A message that
    /// cannot be kept is released (a fault of ours), never dropped.
    async fn give_up(
        &self,
        receiver: &mut dyn Receiver,
        delivery: &Delivery,
        sender: Option<HerId>,
        route: DeadLetters,
        reason: String,
    ) {
        let message_id = delivery.message.message_id.clone();
        let event = |kind, outcome: String, reason: String| AuditEvent {
            counterpart_her_id: sender.map(HerId::get),
            message_id: message_id.clone(),
            function: delivery.message.subject.clone(),
            reason: Some(reason),
            ..AuditEvent::new(kind, self.messenger.actor(), &outcome)
        };
        if route == DeadLetters::Broker {
            if let Err(error) = receiver.reject(delivery, &reason).await {
                tracing::warn!(%error, "reject failed; the broker redelivers");
            }
            self.forget(delivery, message_id.as_deref().unwrap_or_default())
                .await;
            self.messenger
                .audit(event(AuditKind::Rejected, "dead-lettered".into(), reason))
                .await;
            return;
        }
        let reason = format!("{reason}; header: {}", header_summary(&delivery.message));
        match self.park_in_store(delivery, &reason).await {
            Ok(id) => {
                tracing::warn!(
                    id,
                    queue = delivery.queue,
                    "message kept in the store instead of dead-lettered (see `parked list`): {}",
                    for_display(&reason, 300)
                );
                self.accept(receiver, delivery, false).await;
                self.messenger
                    .audit(event(AuditKind::Parked, format!("parked as {id}"), reason))
                    .await;
            }
            Err(error) => {
                let why = format!("a message to keep could not be stored: {error}");
                self.pause(receiver, delivery, &why).await;
            }
        }
    }

    async fn park_in_store(&self, delivery: &Delivery, reason: &str) -> Result<i64> {
        let parked = ParkedMessage {
            queue: delivery.queue.clone(),
            message_id: delivery.message.message_id.clone(),
            reason: reason.to_owned(),
            parked_at: Utc::now(),
            // The body is kept beside the header (serde skips it).
            envelope: serde_json::to_vec(&delivery.message).unwrap_or_default(),
            body: delivery.message.body.clone(),
        };
        Ok(self.messenger.store().parked().park(&parked).await?)
    }

    /// Accepts the delivery and forgets its count, unless that was done
    /// with its hand-over (`forgotten`).
    async fn accept(&self, receiver: &mut dyn Receiver, delivery: &Delivery, forgotten: bool) {
        let message_id = delivery.message.message_id.clone().unwrap_or_default();
        if let Err(error) = receiver.accept(delivery).await {
            // It comes again and is then accepted as a duplicate.
            tracing::warn!(%error, message_id, "accept failed; the broker redelivers");
        }
        if !forgotten {
            self.forget(delivery, &message_id).await;
        }
    }

    /// The delivery's attempt number on our error queue, by our own count.
    async fn error_report_attempt(
        &self,
        delivery: &Delivery,
        message_id: &str,
        now: DateTime<Utc>,
    ) -> Result<u32> {
        if is_first_delivery(delivery, self.promised) {
            return Ok(1);
        }
        let (queue, id) = (delivery.queue.clone(), message_id.to_owned());
        let count = self
            .messenger
            .store()
            .inbox()
            .count_delivery(&queue, &id, now)
            .await?;
        Ok(count.attempt(0))
    }

    async fn forget(&self, delivery: &Delivery, message_id: &str) {
        if is_first_delivery(delivery, self.promised) {
            return;
        }
        let inbox = self.messenger.store().inbox();
        if inbox
            .forget_deliveries(&delivery.queue, message_id)
            .await
            .is_ok()
        {
            let _ = inbox
                .forget_revocation_unknown(&delivery.queue, message_id)
                .await;
        }
    }

    /// Remembers a message the application took (with the answer it got),
    /// so that a repeat is not handed over again: one unit of work with its
    /// audit row and the forgetting of the delivery's count. Returns whether
    /// it was done; if not, the audit row is written on its own and the
    /// count is forgotten once accepted, as before.
    async fn remember(
        &self,
        delivery: &Delivery,
        sender: Option<HerId>,
        received: &Received,
        answer: Option<&StoredAnswer>,
        note: AuditNote,
    ) -> bool {
        let (to, from, id) = (
            received.to.get(),
            received.from.get(),
            received.message_id.clone(),
        );
        let answer = answer.cloned();
        let event = AuditEvent {
            counterpart_her_id: sender.map(HerId::get),
            message_id: delivery.message.message_id.clone(),
            function: delivery.message.subject.clone(),
            reason: note.reason,
            ..AuditEvent::new(note.kind, self.messenger.actor(), &note.outcome)
        };
        let counted = (!is_first_delivery(delivery, self.promised))
            .then(|| (delivery.queue.clone(), message_id_of(delivery)));
        let audit = event.clone();
        let msg_id = helsemelding_wire::msghead::MsgHead::parse(&received.payload)
            .ok()
            .map(|head| head.msg_id);
        let recorded = self
            .messenger
            .store()
            .inbox()
            .record_hand_over_audited(&HandOverRecord {
                key: MessageKey {
                    ours: to,
                    sender: from,
                    message_id: &id,
                },
                at: Utc::now(),
                outcome: "accepted",
                answer: answer.as_ref(),
                delivery: counted
                    .as_ref()
                    .map(|(queue, message_id)| DeliveryKey { queue, message_id }),
                audit: &audit,
                arrival: Some(Arrival {
                    msg_id: msg_id.as_deref(),
                    function: &received.function,
                }),
            })
            .await;
        match recorded {
            Ok(_) => true,
            Err(error) => {
                tracing::error!(%error, message_id = received.message_id, "recording the hand-over failed");
                self.messenger.audit(event).await;
                false
            }
        }
    }

    /// Records an incoming message refused with `report` as `REJECTED`,
    /// when its parties are readable (a message without them has no record
    /// to keep: it is audited and parked or reported as it is).
    async fn record_rejected(&self, original: &Envelope, report: &ErrorReport) {
        let (Ok(from), Ok(to)) = (
            original.her_id(names::FROM_HER_ID),
            original.her_id(names::TO_HER_ID),
        ) else {
            return;
        };
        let message_id = original
            .properties
            .message_id
            .as_ref()
            .and_then(|id| id.as_text())
            .unwrap_or_default();
        let function = original.properties.subject.clone().unwrap_or_default();
        let key = MessageKey {
            ours: to.get(),
            sender: from.get(),
            message_id: &message_id,
        };
        let arrival = Arrival {
            msg_id: None,
            function: &function,
        };
        let reason = format!("{}: {}", report.condition, report.description);
        let recorded = self
            .messenger
            .store()
            .messages()
            .record_rejected(key, arrival, Utc::now(), &reason)
            .await;
        if let Err(error) = recorded {
            tracing::warn!(%error, message_id, "recording the rejection's state failed");
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
            let route = self.dead_letters;
            self.give_up(receiver, &delivery, report.from, route, reason)
                .await;
            return;
        }
        // Never answered: an error about an error would loop between parties.
        match self.error_handler.handle_error(&report).await {
            Ok(()) => {
                self.accept(receiver, &delivery, false).await;
                self.messenger.audit(event("ok")).await;
            }
            Err(HandlerError::Retry { reason }) => {
                tracing::warn!(reason, message_id, "error callback asked to retry");
                let after = self.policy().backoff(attempt);
                self.park(receiver, delivery, after).await;
            }
            Err(HandlerError::Unavailable { reason }) => {
                self.pause(receiver, &delivery, &reason).await;
            }
            Err(refused @ (HandlerError::Reject { .. } | HandlerError::RejectContent { .. })) => {
                let route = self.dead_letters;
                self.give_up(receiver, &delivery, report.from, route, refused.to_string())
                    .await;
                self.messenger.audit(event("rejected")).await;
            }
        }
    }
}

/// The identifying header fields of a message, for the audit of one that
/// is kept: the peer's text, escaped and bounded.
fn header_summary(message: &helsemelding_transport::Message) -> String {
    let property = |name: &str| {
        message
            .application_properties
            .get(name)
            .map_or_else(|| "(missing)".to_owned(), value_text)
    };
    let shown = |value: Option<&str>| for_display(value.unwrap_or("(missing)"), 80);
    format!(
        "message-id {}, subject {}, {} {}, {} {}, content-type {}",
        shown(message.message_id.as_deref()),
        shown(message.subject.as_deref()),
        names::FROM_HER_ID,
        for_display(&property(names::FROM_HER_ID), 40),
        names::TO_HER_ID,
        for_display(&property(names::TO_HER_ID), 40),
        shown(message.content_type.as_deref()),
    )
}

fn value_text(value: &helsemelding_transport::Value) -> String {
    use helsemelding_transport::Value;
    match value {
        Value::String(text) => text.clone(),
        Value::Int(n) => n.to_string(),
        Value::Long(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Timestamp(ms) => format!("timestamp {ms}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use helsemelding_transport::{DeliveryToken, Message};

    fn delivery(delivery_count: u32, first_acquirer: bool) -> Delivery {
        let token = DeliveryToken::new(());
        Delivery::new(
            Message::new(b"x".to_vec()),
            delivery_count,
            first_acquirer,
            "q",
            token,
        )
    }

    fn promising(marks_redeliveries: bool, counts_deliveries: bool) -> Capabilities {
        let mut promised = Capabilities::NONE;
        if marks_redeliveries {
            promised = promised.with_redelivery_marks();
        }
        if counts_deliveries {
            promised = promised.with_delivery_counts();
        }
        promised
    }

    #[test]
    fn a_first_delivery_is_vouched_for_only_by_what_the_transport_promises() {
        // Both promised (the local transport, quorum queues): both must agree.
        let both = promising(true, true);
        assert!(is_first_delivery(&delivery(0, true), both));
        assert!(!is_first_delivery(&delivery(1, true), both));
        assert!(!is_first_delivery(&delivery(0, false), both));
        // RabbitMQ classic queues: the count stays 0, the mark is kept.
        let marks = promising(true, false);
        assert!(is_first_delivery(&delivery(0, true), marks));
        assert!(!is_first_delivery(&delivery(0, false), marks));
        let counts = promising(false, true);
        assert!(is_first_delivery(&delivery(0, false), counts));
        assert!(!is_first_delivery(&delivery(2, true), counts));
        // Nothing promised: never first, whatever the fields say.
        assert!(!is_first_delivery(&delivery(0, true), Capabilities::NONE));
    }

    #[test]
    fn a_delivery_count_the_transport_does_not_promise_is_not_used() {
        assert_eq!(broker_count(&delivery(7, false), promising(true, true)), 7);
        assert_eq!(broker_count(&delivery(7, false), promising(true, false)), 0);
    }
}
