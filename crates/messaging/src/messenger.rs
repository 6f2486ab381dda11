//! Sending: resolve the receiver, check both certificates, protect, build
//! the envelope as the reference library does, record it in the durable
//! outbox, transfer it, and mark it sent only on the broker's Accepted
//! outcome. The outbox pump resends what a crash or outage left pending,
//! with the same message-id.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use helsemelding_protect::{
    check_certificate_with_intermediates, protect, Certificate, CheckReport, CheckRequest,
    CrlSource, Identity, ProtectOptions, RevocationPolicy, TrustAnchors, Usage,
};
use helsemelding_registry::{resolve, Direction, QueueAddresses, Registry, WorkingProfile};
use helsemelding_store::audit::{AuditEvent, AuditKind};
use helsemelding_store::inbox::{Answer, MessageKey};
use helsemelding_store::messages::Arrival;
use helsemelding_store::outbox::OutgoingMessage;
use helsemelding_store::receipts::{ExpectedReceipt, ReceiptRecord};
use helsemelding_store::Store;
use helsemelding_transport::{Message, Outcome, Sender, Transport};
use helsemelding_wire::envelope::{Outgoing, Routing};
use helsemelding_wire::queue::QueueKind;
use helsemelding_wire::{metadata, HerId};
use tokio::sync::Mutex;
use uuid::Uuid;

use crate::api::{Answering, Received, SendRequest, Submitted};
use crate::convert;
use crate::engine::send;
use crate::engine::{
    classify_send_failure, OutboxPolicy, OutboxStep, ReceivePolicy, RetryPolicy, SendFailure,
};
use crate::error::{Error, Result};
use crate::listener::Listener;
use crate::receipts::{self, Deadlines};
use crate::waiters::Waiters;

/// A receiver looked up and judged usable.
pub(crate) struct Target {
    to: HerId,
    pub(crate) profile: WorkingProfile,
    encryption: Certificate,
}

impl Target {
    /// The receiver's queue of `kind`, as the registry names it.
    fn queue(&self, kind: QueueKind) -> Result<String> {
        queue_of(&self.profile.queues, self.to, kind)
    }
}

/// A party's queue of `kind` from its registry queues; never derived from
/// the HER-id (NHN often gives a service its parent's queues).
pub(crate) fn queue_of(queues: &QueueAddresses, her_id: HerId, kind: QueueKind) -> Result<String> {
    let (queue, name) = match kind {
        QueueKind::Async => (&queues.async_queue, "async"),
        QueueKind::Sync => (&queues.sync, "sync"),
        QueueKind::Error => (&queues.error, "error"),
        QueueKind::SyncReply => (&queues.syncreply, "syncreply"),
        QueueKind::DeadLetter => (&None, "dead-letter"),
    };
    queue
        .as_deref()
        .map(str::trim)
        .filter(|q| !q.is_empty())
        .map(str::to_owned)
        .ok_or(Error::NoQueue {
            her_id: her_id.get(),
            kind: name,
        })
}

fn new_message_id() -> String {
    Uuid::new_v4().hyphenated().to_string()
}

/// Who we are and how strictly we judge: everything a [`Messenger`] needs
/// besides its transport, registry and store.
#[derive(Clone)]
pub struct MessengerConfig {
    /// Our HER-ids: one installation often serves several (a
    /// municipality's communication parties share queues). The first is
    /// the default sender. Never empty.
    pub her_ids: Vec<HerId>,
    /// Our signing identity (certificate with nonRepudiation, and its key).
    pub signing: Identity,
    /// Our current decryption identity (keyEncipherment).
    pub decryption: Identity,
    /// The previous decryption identity, during a certificate rotation.
    pub legacy_decryption: Option<Identity>,
    /// Anchors every certificate's chain must end in.
    pub trust: TrustAnchors,
    /// Where CRLs come from (a warm cache, or static files).
    pub crls: Arc<dyn CrlSource>,
    /// What an unknown revocation status means.
    pub revocation: RevocationPolicy,
    /// TTL of async messages (none by default, as the reference library).
    pub async_ttl: Option<Duration>,
    /// Retry pacing and the delivery limit of the receive pipelines.
    pub retry: RetryPolicy,
    /// Extra string application properties on every message we send.
    pub extra_properties: Vec<(String, String)>,
    /// Whether the payload metadata keys (`X-MessageInfo-*` etc., clear
    /// text beside the encrypted body) are sent (true, as the reference).
    pub payload_metadata: bool,
    /// How strictly received messages are judged.
    pub receive: ReceivePolicy,
    /// This instance's sync reply queue; `None`: the registry's syncreply
    /// address of our first HER-id.
    pub sync_reply_queue: Option<String>,
    /// How long a sent message may wait for its AppRec before it is overdue.
    pub receipt_deadlines: Deadlines,
    /// Whether the pipelines send AppRecs for received MsgHeads that ask
    /// for one (true).
    pub send_receipts: bool,
    /// Whether the pipelines answer communication tests themselves (true).
    pub answer_communication_tests: bool,
    /// How often and how patiently an outbox entry that fails is tried
    /// again (20 attempts, 1 s doubling to 5 min).
    pub outbox: OutboxPolicy,
}

impl MessengerConfig {
    /// A configuration with the defaults: no async TTL, the default retry
    /// policy, revocation required, no extra properties.
    pub fn new(
        her_id: HerId,
        signing: Identity,
        decryption: Identity,
        trust: TrustAnchors,
        crls: Arc<dyn CrlSource>,
    ) -> Self {
        MessengerConfig {
            her_ids: vec![her_id],
            signing,
            decryption,
            legacy_decryption: None,
            trust,
            crls,
            revocation: RevocationPolicy::Require,
            async_ttl: None,
            retry: RetryPolicy::default(),
            extra_properties: Vec::new(),
            payload_metadata: true,
            receive: ReceivePolicy::default(),
            sync_reply_queue: None,
            receipt_deadlines: Deadlines::default(),
            send_receipts: true,
            answer_communication_tests: true,
            outbox: OutboxPolicy::default(),
        }
    }
}

/// When an outbox entry is recorded and how long it may live.
struct Timing {
    now: DateTime<Utc>,
    ttl: Option<Duration>,
}

/// SHA-256 (hex) of a payload before it is protected.
fn payload_digest(payload: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(payload))
}

/// What one pass over the outbox did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FlushReport {
    /// Entries the broker accepted.
    pub sent: usize,
    /// Entries that failed this attempt and wait for their next one.
    pub retrying: usize,
    /// Entries given up in this pass (out of attempts, expired, refused
    /// for good, unreadable): `failed`, with their reason.
    pub failed: usize,
    /// The broker could not be used at all: the pass stopped here, and no
    /// entry had an attempt counted for it.
    pub outage: Option<String>,
}

/// What an outbox entry is known by besides its message-id.
struct RecordKeys {
    /// See [`OutgoingMessage::payload_digest`].
    payload_digest: Option<String>,
    /// The MsgHead's MsgId.
    msg_id: Option<String>,
}

/// The MsgHead's MsgId of `payload`, when it is a MsgHead.
fn msg_id_of(payload: &[u8]) -> Option<String> {
    helsemelding_wire::msghead::MsgHead::parse(payload)
        .ok()
        .map(|head| head.msg_id)
}

/// The received message an outgoing answer answers, and the answer as
/// kept for a repeat.
struct AnswerOf {
    ours: HerId,
    sender: HerId,
    message_id: String,
    /// The answered message's MsgId and function, for its record.
    msg_id: Option<String>,
    function: String,
    answer: Answer,
}

/// How one transfer of an outbox entry ended.
enum Settled {
    Sent,
    /// Failed; the entry waits for its next attempt.
    WillRetry(Error),
    /// Failed; the entry is given up.
    GaveUp(Error),
    /// The broker is down; the entry is as it was.
    Outage(Error),
}

/// The shared part of a messenger that every pipeline borrows: the
/// configuration, transport, registry, store, the callers waiting for sync
/// replies and the pool of sender links. Workers hold a `Node`, never the
/// [`Messenger`] that owns them, so nothing owns what owns it. Every method
/// of a messenger but the sync calls is here ([`Messenger`] dereferences to
/// its node).
#[derive(Clone)]
pub struct Node {
    pub(crate) inner: Arc<Inner>,
}

/// Sends messages and runs the outbox; cheap to clone (shared state).
#[derive(Clone)]
pub struct Messenger {
    node: Node,
    /// The one consumer of our reply queue, started by the first sync call
    /// and stopped with the last clone of the messenger (or by
    /// [`Messenger::close`]). Its workers hold the node, not this.
    replies: Arc<Mutex<Option<Listener>>>,
}

impl std::ops::Deref for Messenger {
    type Target = Node;
    fn deref(&self) -> &Node {
        &self.node
    }
}

impl Messenger {
    /// A messenger for `config.her_ids` over these transport, registry and
    /// store.
    ///
    /// # Panics
    /// When `config.her_ids` is empty.
    pub fn new(
        config: MessengerConfig,
        transport: Arc<dyn Transport>,
        registry: Arc<dyn Registry>,
        store: Arc<dyn Store>,
    ) -> Self {
        assert!(!config.her_ids.is_empty(), "a messenger needs a HER-id");
        let node = Node {
            inner: Arc::new(Inner {
                config,
                transport,
                registry,
                store,
                waiters: Waiters::default(),
                our_queues: Mutex::new(HashMap::new()),
                overdue_reported: Mutex::new(Default::default()),
                senders: Mutex::new(HashMap::new()),
            }),
        };
        Messenger {
            node,
            replies: Arc::new(Mutex::new(None)),
        }
    }

    /// Sends a synchronous request and waits at most `timeout` for its
    /// reply (PROFILE.md's call timeout is 15 s), which is decrypted,
    /// verified and checked like any message. The waiter is registered
    /// before the request leaves; a reply that comes after `timeout` is
    /// logged and dropped by the reply consumer. Sync requests skip the
    /// outbox: nobody waits for them after the timeout.
    pub async fn send_and_wait(&self, request: SendRequest, timeout: Duration) -> Result<Received> {
        let to = request.to;
        let from = self.sender_for(request.from)?;
        check_payload_parties(&request.payload, from, to)?;
        let target = self.target(from, to, &request.function).await?;
        let queue = target.queue(QueueKind::Sync)?;
        let reply_queue = self.ensure_reply_consumer().await?;
        let message_id = new_message_id();
        let now = Utc::now();
        let message = self
            .build(
                &message_id,
                from,
                &request.function,
                request.payload,
                &target,
                &queue,
                Routing::SyncRequest {
                    reply_to: reply_queue,
                },
                now,
            )
            .await?;
        let waiter = self.inner.waiters.register(message_id.clone());
        let started = std::time::Instant::now();
        self.send_to_queue(&queue, message).await?;
        self.audit(AuditEvent {
            counterpart_her_id: Some(to.get()),
            message_id: Some(message_id.clone()),
            function: Some(request.function.clone()),
            ..AuditEvent::new(AuditKind::Sent, self.actor(), "ok: sync request")
        })
        .await;
        let left = timeout.saturating_sub(started.elapsed());
        match waiter.wait(left).await {
            Some(reply) => Ok(reply),
            None => {
                self.audit(AuditEvent {
                    counterpart_her_id: Some(to.get()),
                    message_id: Some(message_id.clone()),
                    function: Some(request.function),
                    reason: Some(format!("no reply within {timeout:?}")),
                    ..AuditEvent::new(AuditKind::Sent, self.actor(), "sync-timeout")
                })
                .await;
                Err(Error::SyncTimeout {
                    message_id,
                    her_id: to.get(),
                    after: timeout,
                })
            }
        }
    }

    /// Stops the sync reply consumer, if one runs, and waits for its
    /// workers to end (dropping the last clone stops it too, without the
    /// wait).
    pub async fn close(&self) -> Result<()> {
        let consumer = self.replies.lock().await.take();
        match consumer {
            Some(listener) => listener.stop().await,
            None => Ok(()),
        }
    }

    /// Starts the one reply consumer of this messenger (first sync call);
    /// returns the reply queue.
    async fn ensure_reply_consumer(&self) -> Result<String> {
        let mut consumer = self.replies.lock().await;
        let queue = self.reply_queue().await?;
        if consumer.is_none() {
            *consumer = Some(Listener::start_reply_consumer(&self.node, &queue).await?);
        }
        Ok(queue)
    }
}

pub(crate) struct Inner {
    pub(crate) config: MessengerConfig,
    pub(crate) transport: Arc<dyn Transport>,
    pub(crate) registry: Arc<dyn Registry>,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) waiters: Waiters,
    /// Our queues per HER-id, as the registry named them.
    our_queues: Mutex<HashMap<HerId, QueueAddresses>>,
    overdue_reported: Mutex<std::collections::HashSet<String>>,
    /// Idle sender links per queue: a send checks one out (or attaches a
    /// new one) and gives it back after, so concurrent sends pipeline.
    senders: Mutex<HashMap<String, Vec<Box<dyn Sender>>>>,
}

/// Idle links kept per queue; links beyond it (after a burst) are closed.
const IDLE_SENDERS_PER_QUEUE: usize = 16;

impl Node {
    /// Our first HER-id: the default sender.
    pub fn her_id(&self) -> HerId {
        self.inner.config.her_ids[0]
    }

    /// Every HER-id of this installation.
    pub fn her_ids(&self) -> &[HerId] {
        &self.inner.config.her_ids
    }

    /// Whether `her_id` is one of ours.
    pub fn is_ours(&self, her_id: HerId) -> bool {
        self.her_ids().contains(&her_id)
    }

    /// The sending HER-id for `from`: ours, or the first when `None`.
    pub(crate) fn sender_for(&self, from: Option<HerId>) -> Result<HerId> {
        let from = from.unwrap_or_else(|| self.her_id());
        if self.is_ours(from) {
            return Ok(from);
        }
        Err(Error::NotOurs {
            her_id: from.get(),
            ours: self
                .her_ids()
                .iter()
                .map(HerId::to_string)
                .collect::<Vec<_>>()
                .join(","),
        })
    }

    /// The store this messenger records in.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// The queues of one of our HER-ids, as the address registry names
    /// them (read once, then remembered).
    pub async fn our_queues(&self, ours: HerId) -> Result<QueueAddresses> {
        if let Some(queues) = self.inner.our_queues.lock().await.get(&ours) {
            return Ok(queues.clone());
        }
        let queues = self.registry_queues(ours).await?;
        self.inner
            .our_queues
            .lock()
            .await
            .insert(ours, queues.clone());
        Ok(queues)
    }

    /// Our queue of `kind` for one of our HER-ids, from the registry.
    pub async fn our_queue(&self, ours: HerId, kind: QueueKind) -> Result<String> {
        queue_of(&self.our_queues(ours).await?, ours, kind)
    }

    /// Puts `message` back on `queue`, one of our async, sync or error
    /// queues, exactly as it came (an operator's requeue of a message kept
    /// in the store): the listener then judges it afresh.
    pub async fn put_back(&self, queue: &str, message: Message) -> Result<()> {
        let mut ours = Vec::new();
        for kind in [QueueKind::Async, QueueKind::Sync, QueueKind::Error] {
            ours.extend(self.our_distinct_queues(kind).await.unwrap_or_default());
        }
        if !ours.iter().any(|known| known == queue) {
            return Err(Error::NotOurQueue {
                queue: queue.to_owned(),
                ours: ours.join(", "),
            });
        }
        self.send_to_queue(queue, message).await
    }

    /// The distinct queues of `kind` of all our HER-ids: several HER-ids
    /// often share one set of queues.
    pub async fn our_distinct_queues(&self, kind: QueueKind) -> Result<Vec<String>> {
        let mut queues = Vec::new();
        for ours in self.her_ids() {
            let queue = self.our_queue(*ours, kind).await?;
            if !queues.contains(&queue) {
                queues.push(queue);
            }
        }
        Ok(queues)
    }

    /// A party's error queue from the address registry (inherited queues
    /// included), for an error report about its message.
    pub(crate) async fn error_queue_of(&self, her_id: HerId) -> Result<String> {
        if self.is_ours(her_id) {
            return self.our_queue(her_id, QueueKind::Error).await;
        }
        queue_of(
            &self.registry_queues(her_id).await?,
            her_id,
            QueueKind::Error,
        )
    }

    /// A party's queue names from its address record (through the
    /// registry's cache).
    async fn registry_queues(&self, her_id: HerId) -> Result<QueueAddresses> {
        let party = self
            .inner
            .registry
            .communication_party(her_id.get())
            .await
            .map_err(|source| Error::Registry {
                her_id: her_id.get(),
                source,
            })?;
        Ok(party.queues.names())
    }

    /// Sends an async message and returns its message-id once the broker
    /// accepted it. The protected message is in the outbox before it is
    /// transferred: if the transfer fails after that, the error is
    /// [`Error::InOutbox`] with the message-id, and
    /// [`Node::flush_outbox`] sends it later with the same message-id. A MsgHead that asks for an
    /// application receipt is tracked until its AppRec comes.
    ///
    /// Before anything leaves, the same checks the receiver will make:
    /// the function is not empty, and a MsgHead names the sending HER-id
    /// in its Sender and the receiving one in its Receiver.
    pub async fn send(&self, request: SendRequest) -> Result<String> {
        self.send_new(request).await
    }

    /// [`Node::send`], safe to repeat: a request with its own message-id
    /// that was submitted before is not sent again. With the same payload
    /// it is a [`Submitted::Replay`] that says where the first one is; with
    /// another it is [`Error::MessageIdConflict`]. A request without a
    /// message-id is simply sent.
    pub async fn submit(&self, request: SendRequest) -> Result<Submitted> {
        if let Some(earlier) = self.earlier_submission(&request).await? {
            return earlier;
        }
        match self.send_new(request.clone()).await {
            Ok(message_id) => Ok(Submitted::Sent(message_id)),
            // Submitted at the same moment by another caller or gateway.
            Err(Error::Store(helsemelding_store::Error::DuplicateMessageId { .. })) => {
                self.earlier_submission(&request).await?.unwrap_or_else(|| {
                    Err(Error::MessageIdConflict {
                        message_id: request.message_id.clone().unwrap_or_default(),
                    })
                })
            }
            Err(error) => Err(error),
        }
    }

    /// What became of an earlier submission of `request`'s message-id.
    async fn earlier_submission(&self, request: &SendRequest) -> Result<Option<Result<Submitted>>> {
        let Some(message_id) = request.message_id.as_deref() else {
            return Ok(None);
        };
        let Some(entry) = self.store().outbox().entry(message_id).await? else {
            return Ok(None);
        };
        let same =
            entry.payload_digest.as_deref() == Some(payload_digest(&request.payload).as_str());
        Ok(Some(if same {
            Ok(Submitted::Replay {
                message_id: message_id.to_owned(),
                state: entry.state,
            })
        } else {
            Err(Error::MessageIdConflict {
                message_id: message_id.to_owned(),
            })
        }))
    }

    async fn send_new(&self, request: SendRequest) -> Result<String> {
        let from = self.sender_for(request.from)?;
        check_payload_parties(&request.payload, from, request.to)?;
        let target = self.target(from, request.to, &request.function).await?;
        self.send_async(from, request, target, None).await
    }

    /// Sends an answer (an AppRec, a communication-test response) through
    /// the outbox like [`Messenger::send`], without checking the function
    /// against the profile: answers follow what they answer.
    /// `from` is the HER-id the answered message was addressed to.
    pub(crate) async fn send_answer(
        &self,
        from: HerId,
        to: HerId,
        function: &str,
        payload: Vec<u8>,
    ) -> Result<String> {
        let target = self.target_unchecked_function(from, to).await?;
        self.send_async(from, SendRequest::new(to, function, payload), target, None)
            .await
    }

    /// Sends the application's own AppRec `payload` for a message handed
    /// over earlier (`[receipts] automatic = false`): signed, encrypted
    /// and queued to its sender like the automatic one, in one transaction
    /// with the hand-over, which keeps it (a redelivery is answered with
    /// it) and whose record becomes `APPREC_SENT`. `answer_id` is the
    /// AppRec's message-id: the same id again is a replay or a conflict,
    /// never a second AppRec.
    pub async fn send_application_receipt(
        &self,
        answering: &Answering,
        answer_id: &str,
        payload: Vec<u8>,
    ) -> Result<String> {
        let (from, to) = (answering.ours, answering.sender);
        let target = self.target_unchecked_function(from, to).await?;
        let answer = Answer {
            function: receipts::APPREC_FUNCTION.into(),
            payload,
        };
        let request = SendRequest::new(to, &answer.function, answer.payload.clone())
            .with_message_id(answer_id);
        let answers = AnswerOf {
            ours: from,
            sender: to,
            message_id: answering.message_id.clone(),
            msg_id: answering.msg_id.clone(),
            function: answering.function.clone(),
            answer,
        };
        self.send_async(from, request, target, Some(answers)).await
    }

    /// Sends `answer` (an AppRec) to the sender of `received`, recording it
    /// in the outbox in one transaction with the hand-over of `received`:
    /// after a crash, a redelivery of `received` is then known as handed
    /// over and answered, and gets neither a second hand-over nor a second
    /// answer.
    pub(crate) async fn send_answer_recording_hand_over(
        &self,
        received: &Received,
        answer: &Answer,
    ) -> Result<String> {
        let (from, to) = (received.to, received.from);
        let target = self.target_unchecked_function(from, to).await?;
        let request = SendRequest::new(to, &answer.function, answer.payload.clone());
        let answers = AnswerOf {
            ours: received.to,
            sender: received.from,
            message_id: received.message_id.clone(),
            msg_id: msg_id_of(&received.payload),
            function: received.function.clone(),
            answer: answer.clone(),
        };
        self.send_async(from, request, target, Some(answers)).await
    }

    async fn send_async(
        &self,
        from: HerId,
        request: SendRequest,
        target: Target,
        answers: Option<AnswerOf>,
    ) -> Result<String> {
        let to = request.to;
        let queue = target.queue(QueueKind::Async)?;
        // A caller's own id is kept with the payload's digest, so that
        // submitting it again is known as a replay or a reuse.
        let digest = request
            .message_id
            .is_some()
            .then(|| payload_digest(&request.payload));
        let message_id = request.message_id.clone().unwrap_or_else(new_message_id);
        let ttl = self.inner.config.async_ttl;
        let routing = Routing::Async {
            reply_to: self.our_queue(from, QueueKind::Async).await?,
            ttl,
        };
        let now = Utc::now();
        let payload = request.payload;
        let keys = RecordKeys {
            payload_digest: digest,
            msg_id: msg_id_of(&payload),
        };
        let expects_receipt = receipts::expected_receipt(
            &payload,
            to,
            &request.function,
            now,
            &self.inner.config.receipt_deadlines,
        );
        let mut message = self
            .build(
                &message_id,
                from,
                &request.function,
                payload,
                &target,
                &queue,
                routing,
                now,
            )
            .await?;
        let timing = Timing { now, ttl };
        let parties = (from, to);
        self.record_in_outbox(&mut message, parties, &queue, timing, keys, answers)
            .await?;
        if let Some(expected) = expects_receipt {
            self.track_receipt(expected).await;
        }
        match self.transfer(&queue, message, Some(to)).await? {
            Settled::Sent => Ok(message_id),
            Settled::WillRetry(error) | Settled::Outage(error) => Err(Error::InOutbox {
                message_id,
                queue,
                source: Box::new(error),
            }),
            Settled::GaveUp(error) => Err(error),
        }
    }

    /// Sends the reply to a synchronous request: to the request's reply-to
    /// queue, correlated by the request's id, protected for the requester,
    /// from the HER-id the request was addressed to.
    /// Not in the outbox: a reply later than the caller's timeout is useless.
    pub(crate) async fn send_sync_reply(
        &self,
        request: &Received,
        reply_to: &str,
        function: &str,
        payload: Vec<u8>,
    ) -> Result<String> {
        let target = self
            .target_unchecked_function(request.to, request.from)
            .await?;
        let message_id = new_message_id();
        let correlation_id = request
            .correlation_id
            .clone()
            .unwrap_or_else(|| request.message_id.clone());
        let message = self
            .build(
                &message_id,
                request.to,
                function,
                payload,
                &target,
                reply_to,
                Routing::SyncReply { correlation_id },
                Utc::now(),
            )
            .await?;
        self.send_to_queue(reply_to, message).await?;
        self.audit(AuditEvent {
            counterpart_her_id: Some(request.from.get()),
            message_id: Some(message_id.clone()),
            function: Some(function.to_owned()),
            reason: Some(format!("reply to {}", request.message_id)),
            ..AuditEvent::new(AuditKind::Sent, self.actor(), "ok: sync reply")
        })
        .await;
        Ok(message_id)
    }

    /// This instance's reply queue: configured, else the syncreply address
    /// of our first HER-id's registry record.
    pub async fn reply_queue(&self) -> Result<String> {
        if let Some(queue) = &self.inner.config.sync_reply_queue {
            return Ok(queue.clone());
        }
        self.our_queue(self.her_id(), QueueKind::SyncReply).await
    }

    /// Looks the receiver up and checks both certificates; refuses a
    /// disabled transport or a function the profile does not allow.
    async fn target(&self, from: HerId, to: HerId, function: &str) -> Result<Target> {
        send::check_function(function).map_err(|r| refused(r, from, to))?;
        let target = self.target_unchecked_function(from, to).await?;
        if !target.profile.allows(function, Direction::Send) {
            return Err(Error::FunctionNotAllowed {
                her_id: to.get(),
                function: function.to_owned(),
            });
        }
        Ok(target)
    }

    /// [`Messenger::target`] without the function check: answers (sync
    /// replies, receipts) follow the function of what they answer.
    pub(crate) async fn target_unchecked_function(&self, from: HerId, to: HerId) -> Result<Target> {
        let registry = self.inner.registry.clone();
        let profile = resolve(&*registry, from.get(), to.get())
            .await
            .map_err(|source| Error::Registry {
                her_id: to.get(),
                source,
            })?;
        if !profile.amqp_allowed() {
            return Err(Error::TransportDisabled { her_id: to.get() });
        }
        let encryption = profile
            .encryption_certificate
            .clone()
            .ok_or(Error::Incomplete {
                her_id: to.get(),
                what: "encryption certificate",
            })?;
        let now = Utc::now();
        self.require_usable(
            &encryption,
            Usage::Encryption,
            format!("receiver {to} encryption"),
            now,
        )
        .await?;
        let signing = self.inner.config.signing.certificate().clone();
        self.require_usable(&signing, Usage::Signing, "our signing".into(), now)
            .await?;
        self.require_registered_signing(from, &signing).await?;
        Ok(Target {
            to,
            profile,
            encryption,
        })
    }

    /// The receiver checks our signature against the certificates the
    /// registry publishes for the sending HER-id: a signing certificate
    /// that is not among them would be answered `abuse:spoofing-attack`.
    async fn require_registered_signing(&self, from: HerId, signing: &Certificate) -> Result<()> {
        let registered = match self.inner.registry.certificates(from.get()).await {
            Ok(certificates) => certificates.signing,
            Err(helsemelding_registry::Error::NotFound { .. }) => Vec::new(),
            Err(source) => {
                return Err(Error::Registry {
                    her_id: from.get(),
                    source,
                })
            }
        };
        send::check_signing_registered(signing, &registered).map_err(|r| refused(r, from, from))
    }

    /// Protects `payload` for the target and wraps it in the envelope the
    /// reference library would send.
    #[allow(clippy::too_many_arguments)]
    async fn build(
        &self,
        message_id: &str,
        from: HerId,
        function: &str,
        payload: Vec<u8>,
        target: &Target,
        queue: &str,
        routing: Routing,
        now: DateTime<Utc>,
    ) -> Result<Message> {
        let metadata = metadata::extract(&payload).map_err(Error::Payload)?;
        let config = &self.inner.config;
        let metadata = if config.payload_metadata {
            metadata
        } else {
            Default::default()
        };
        let body = self
            .protect(message_id, payload, target.encryption.clone())
            .await?;
        let envelope = Outgoing {
            message_id: message_id.to_owned(),
            from,
            to: target.to,
            to_queue: queue.to_owned(),
            function: function.to_owned(),
            routing,
            protected: true,
            cpa_id: target
                .profile
                .cpa_id
                .as_deref()
                .and_then(|id| Uuid::parse_str(id).ok()),
            sent_at: now,
            extra: metadata
                .into_iter()
                .chain(config.extra_properties.iter().cloned())
                .collect(),
        }
        .into_envelope();
        Ok(convert::to_message(&envelope, body))
    }

    /// Starts tracking a receipt; a failure is logged, never fails the send
    /// (the message itself must still go).
    async fn track_receipt(&self, expected: ExpectedReceipt) {
        let id = expected.message_id.clone();
        if let Err(error) = self.store().receipts().expect(&expected).await {
            tracing::warn!(%error, msg_id = id, "receipt not tracked");
        }
    }

    /// Sends every outbox entry that is due (on start, after a crash or an
    /// outage), oldest first, with its original message-id. An entry that
    /// fails only moves its own next attempt (backoff per
    /// [`MessengerConfig::outbox`]) and is given up after its attempts;
    /// the others go on. A broker that cannot be used at all stops the
    /// pass without counting against the entries. Fails only when the
    /// store does.
    pub async fn flush_outbox(&self) -> Result<FlushReport> {
        self.flush_outbox_older_than(Duration::ZERO).await
    }

    /// Runs [`Node::flush_outbox`] every `interval` for entries at
    /// least `interval` old (younger ones are still being sent by `send`),
    /// until the task is aborted.
    pub fn spawn_outbox_pump(&self, interval: Duration) -> tokio::task::JoinHandle<()> {
        let messenger = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                match messenger.flush_outbox_older_than(interval).await {
                    Ok(report) => {
                        if let Some(outage) = &report.outage {
                            tracing::warn!(
                                outage,
                                "outbox pump: the broker is unavailable, will try again"
                            );
                        }
                    }
                    Err(error) => tracing::warn!(%error, "outbox pump: will try again"),
                }
            }
        })
    }

    async fn flush_outbox_older_than(&self, age: Duration) -> Result<FlushReport> {
        let cutoff = Utc::now() - chrono::Duration::from_std(age).unwrap_or_default();
        let due = self.store().outbox().due(Utc::now(), 1000).await?;
        let mut report = FlushReport::default();
        for entry in due.into_iter().filter(|e| e.created_at <= cutoff) {
            let now = Utc::now();
            let id = entry.message_id.clone();
            if entry.expires_at.is_some_and(|at| at <= now) {
                self.store().outbox().mark_expired(&id, now).await?;
                report.failed += 1;
                continue;
            }
            let message = match serde_json::from_slice::<Message>(&entry.envelope) {
                Ok(mut message) => {
                    message.body = entry.body;
                    message
                }
                Err(error) => {
                    // It can never be sent: give up on it at once.
                    let why = format!("the envelope is unreadable: {error}");
                    tracing::warn!(
                        msg_id = entry.message_id,
                        queue = entry.queue,
                        why,
                        "outbox entry failed"
                    );
                    self.store().outbox().mark_failed(&id, now, &why).await?;
                    report.failed += 1;
                    continue;
                }
            };
            let to = HerId::new(entry.to_her_id);
            match self.transfer(&entry.queue, message, to).await? {
                Settled::Sent => report.sent += 1,
                Settled::WillRetry(_) => report.retrying += 1,
                Settled::GaveUp(_) => report.failed += 1,
                Settled::Outage(error) => {
                    report.outage = Some(error.to_string());
                    break;
                }
            }
        }
        Ok(report)
    }

    async fn record_in_outbox(
        &self,
        message: &mut Message,
        (from, to): (HerId, HerId),
        queue: &str,
        Timing { now, ttl }: Timing,
        RecordKeys {
            payload_digest,
            msg_id,
        }: RecordKeys,
        answers: Option<AnswerOf>,
    ) -> Result<()> {
        let entry = OutgoingMessage {
            message_id: message.message_id.clone().unwrap_or_default(),
            from_her_id: from.get(),
            to_her_id: to.get(),
            msg_id,
            queue: queue.to_owned(),
            function: message.subject.clone().unwrap_or_default(),
            // The body is stored beside the envelope (serde skips it).
            envelope: serde_json::to_vec(&*message).expect("a message serialises"),
            // Lent to the store rather than copied for it, then put back.
            body: std::mem::take(&mut message.body),
            created_at: now,
            expires_at: ttl.and_then(|t| chrono::Duration::from_std(t).ok().map(|t| now + t)),
            payload_digest,
        };
        match &answers {
            None => self.store().outbox().enqueue(&entry).await?,
            Some(of) => {
                let key = MessageKey {
                    ours: of.ours.get(),
                    sender: of.sender.get(),
                    message_id: &of.message_id,
                };
                let arrival = Arrival {
                    msg_id: of.msg_id.as_deref(),
                    function: &of.function,
                };
                self.store()
                    .outbox()
                    .enqueue_answer(&entry, key, arrival, &of.answer)
                    .await?
            }
        }
        message.body = entry.body;
        Ok(())
    }

    /// Sends an outbox entry and settles it by the broker's outcome: sent,
    /// failed for good (rejected, out of attempts), waiting for its next
    /// attempt, or untouched when the broker itself is down. Fails only
    /// when the store does.
    async fn transfer(&self, queue: &str, message: Message, to: Option<HerId>) -> Result<Settled> {
        let message_id = message.message_id.clone().unwrap_or_default();
        let function = message.subject.clone();
        let result = self.send_to_queue(queue, message).await;
        let now = Utc::now();
        let id = message_id.clone();
        let error = match result {
            Ok(()) => {
                // The sent mark and its audit row: one unit of work.
                let sent = AuditEvent {
                    counterpart_her_id: to.map(HerId::get),
                    message_id: Some(message_id),
                    function,
                    ..AuditEvent::new(AuditKind::Sent, self.actor(), "ok")
                };
                self.store()
                    .outbox()
                    .mark_sent_audited(&id, now, &sent)
                    .await?;
                return Ok(Settled::Sent);
            }
            Err(Error::Refused { reason, .. }) if !reason.is_empty() => {
                let why = reason.clone();
                tracing::warn!(
                    msg_id = message_id,
                    queue,
                    reason,
                    "outbox entry refused by the broker"
                );
                self.store().outbox().mark_failed(&id, now, &why).await?;
                return Ok(Settled::GaveUp(Error::Refused {
                    message_id,
                    queue: queue.to_owned(),
                    reason,
                }));
            }
            Err(error) => error,
        };
        let why = error.to_string();
        if let Error::Transport(transport) = &error {
            if classify_send_failure(transport) == SendFailure::Broker {
                self.store().outbox().record_outage(&id, &why).await?;
                return Ok(Settled::Outage(error));
            }
        }
        let policy = self.inner.config.outbox;
        let retry_at = Box::new(move |attempts| {
            now + chrono::Duration::from_std(policy.backoff(attempts)).unwrap_or_default()
        });
        let attempts = self
            .store()
            .outbox()
            .record_attempt_failed(&id, &why, retry_at)
            .await?;
        match policy.after_failed_attempt(attempts) {
            OutboxStep::RetryAfter(wait) => {
                tracing::info!(
                    msg_id = id,
                    queue,
                    attempts,
                    ?wait,
                    reason = why,
                    "outbox entry: will try again"
                );
                Ok(Settled::WillRetry(error))
            }
            OutboxStep::GiveUp => {
                let reason = format!("{why} (given up after {attempts} attempts)");
                tracing::warn!(msg_id = id, queue, reason, "outbox entry failed");
                self.store().outbox().mark_failed(&id, now, &reason).await?;
                Ok(Settled::GaveUp(error))
            }
        }
    }

    /// Sends one message to `queue` on a pooled sender link and returns
    /// only on Accepted. `Refused` with an empty reason means Released
    /// (worth trying again). The link is checked out for this send only,
    /// so concurrent sends each use their own link.
    pub(crate) async fn send_to_queue(&self, queue: &str, message: Message) -> Result<()> {
        let message_id = message.message_id.clone().unwrap_or_default();
        let idle = self
            .inner
            .senders
            .lock()
            .await
            .get_mut(queue)
            .and_then(Vec::pop);
        let mut sender = match idle {
            Some(sender) => sender,
            None => self.inner.transport.sender(queue).await?,
        };
        let refused = |reason: String| Error::Refused {
            message_id: message_id.clone(),
            queue: queue.to_owned(),
            reason,
        };
        let outcome = match sender.send(message).await {
            Ok(outcome) => outcome,
            // A failed link is not reused: the next send attaches a new one.
            Err(error) => return Err(error.into()),
        };
        self.give_back_sender(queue, sender).await;
        match outcome {
            Outcome::Accepted => Ok(()),
            Outcome::Rejected { reason } => Err(refused(if reason.is_empty() {
                "rejected".into()
            } else {
                reason
            })),
            _ => Err(refused(String::new())),
        }
    }

    /// Returns a healthy link to the pool, or closes it if the pool is full.
    async fn give_back_sender(&self, queue: &str, sender: Box<dyn Sender>) {
        let surplus = {
            let mut senders = self.inner.senders.lock().await;
            let idle = senders.entry(queue.to_owned()).or_default();
            if idle.len() < IDLE_SENDERS_PER_QUEUE {
                idle.push(sender);
                None
            } else {
                Some(sender)
            }
        };
        if let Some(sender) = surplus {
            if let Err(error) = sender.close().await {
                tracing::debug!(queue, %error, "closing a surplus sender link");
            }
        }
    }

    async fn protect(
        &self,
        message_id: &str,
        payload: Vec<u8>,
        recipient: Certificate,
    ) -> Result<Vec<u8>> {
        let signer = self.inner.config.signing.clone();
        tokio::task::spawn_blocking(move || {
            protect(&payload, &signer, &recipient, &ProtectOptions::default())
        })
        .await
        .map_err(|e| Error::Task(e.to_string()))?
        .map_err(|source| Error::Protect {
            message_id: message_id.to_owned(),
            source,
        })
    }

    /// Judges a certificate for `usage` at `at` with the configured anchors,
    /// CRLs and policy.
    pub(crate) async fn judge(
        &self,
        certificate: &Certificate,
        usage: Usage,
        at: DateTime<Utc>,
    ) -> CheckReport {
        self.judge_with(certificate, usage, at, &[]).await
    }

    /// [`Messenger::judge`] with untrusted `intermediates` (those a sender
    /// embedded in its SignedData) to build the chain with.
    pub(crate) async fn judge_with(
        &self,
        certificate: &Certificate,
        usage: Usage,
        at: DateTime<Utc>,
        intermediates: &[Certificate],
    ) -> CheckReport {
        let config = &self.inner.config;
        let crls = if config.revocation == RevocationPolicy::Off {
            Vec::new()
        } else {
            config.crls.crls_for(certificate).await
        };
        check_certificate_with_intermediates(
            certificate,
            &CheckRequest {
                usage,
                at,
                trust: &config.trust,
                crls: &crls,
                revocation: config.revocation,
            },
            intermediates,
        )
    }

    async fn require_usable(
        &self,
        certificate: &Certificate,
        usage: Usage,
        role: String,
        at: DateTime<Utc>,
    ) -> Result<()> {
        let report = self.judge(certificate, usage, at).await;
        for warning in &report.warnings {
            tracing::warn!(role, serial = certificate.serial_hex(), %warning, "certificate warning");
        }
        if report.is_ok() {
            return Ok(());
        }
        let problems = report
            .errors
            .iter()
            .map(|p| p.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        self.audit(AuditEvent {
            reason: Some(format!(
                "{role} certificate serial {}: {problems}",
                certificate.serial_hex()
            )),
            ..AuditEvent::new(AuditKind::CertificateCheck, self.actor(), "failed")
        })
        .await;
        Err(Error::Certificate {
            role,
            serial: certificate.serial_hex(),
            problems,
        })
    }

    /// Judges our own decryption certificates (current and legacy) and logs
    /// and audits their problems, as the reference's MUG-000015..19 do: the
    /// listener still starts (senders may still encrypt to a certificate we
    /// can decrypt with), but an operator must hear of it.
    pub async fn check_own_decryption_certificates(&self) {
        let config = &self.inner.config;
        let identities = std::iter::once(("current", &config.decryption))
            .chain(config.legacy_decryption.iter().map(|l| ("legacy", l)));
        for (which, identity) in identities {
            let certificate = identity.certificate();
            let report = self.judge(certificate, Usage::Encryption, Utc::now()).await;
            for warning in &report.warnings {
                tracing::warn!(which, serial = certificate.serial_hex(), %warning, "our decryption certificate");
            }
            if report.is_ok() {
                continue;
            }
            let problems = report
                .errors
                .iter()
                .map(|p| p.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            tracing::error!(
                which,
                serial = certificate.serial_hex(),
                problems,
                "our decryption certificate is not usable: senders checking it will refuse to send to us"
            );
            self.audit(AuditEvent {
                reason: Some(format!(
                    "our {which} decryption certificate serial {}: {problems}",
                    certificate.serial_hex()
                )),
                ..AuditEvent::new(AuditKind::CertificateCheck, self.actor(), "failed")
            })
            .await;
        }
    }

    /// Audits, once per messenger, each sent message whose AppRec is
    /// overdue at `now`; returns the newly overdue ones.
    pub async fn audit_overdue_receipts(&self, now: DateTime<Utc>) -> Result<Vec<ReceiptRecord>> {
        let overdue = self.store().receipts().overdue(now).await?;
        let mut reported = self.inner.overdue_reported.lock().await;
        let mut fresh = Vec::new();
        for record in overdue {
            if !reported.insert(record.expected.message_id.clone()) {
                continue;
            }
            let (msg_id, peer) = (&record.expected.message_id, record.expected.to_her_id);
            if let Err(error) = self.store().messages().mark_overdue(msg_id, peer).await {
                tracing::warn!(%error, msg_id, "flagging the message overdue failed");
            }
            self.audit(AuditEvent {
                counterpart_her_id: Some(record.expected.to_her_id),
                message_id: Some(record.expected.message_id.clone()),
                function: Some(record.expected.function.clone()),
                reason: Some(format!("due {}", record.expected.due_at.to_rfc3339())),
                ..AuditEvent::new(AuditKind::ReceiptOverdue, self.actor(), "overdue")
            })
            .await;
            fresh.push(record);
        }
        Ok(fresh)
    }

    /// Appends to the audit log; a failure is logged, never stops a flow
    /// (the message must still be settled).
    pub async fn audit(&self, event: AuditEvent) {
        let kind = event.kind;
        if let Err(error) = self.store().audit().append(Utc::now(), &event).await {
            tracing::error!(%error, kind = kind.as_str(), "audit append failed");
        }
    }

    /// Who acts in this messenger's audit events:
    /// `herid:<our HER-id>@<host>`.
    pub fn actor(&self) -> String {
        format!("herid:{}@{}", self.her_id(), host_name())
    }
}

/// The checks a receiver makes of a MsgHead's parties, made before sending
/// so that an EHR's mistake is caught here rather than on the receiver's
/// error queue. Payloads that are not MsgHeads are not checked.
fn check_payload_parties(payload: &[u8], from: HerId, to: HerId) -> Result<()> {
    send::check_msghead_parties(payload, from, to).map_err(|r| refused(r, from, to))
}

/// The error for a message the send rules refuse, from `from` to `to`.
fn refused(refusal: send::Refusal, from: HerId, to: HerId) -> Error {
    let joined = |ids: Vec<String>| ids.join(", ");
    match refusal {
        send::Refusal::EmptyFunction => Error::FunctionNotAllowed {
            her_id: to.get(),
            function: String::new(),
        },
        send::Refusal::MsgHeadParty {
            role,
            direction,
            in_envelope,
            in_msghead,
        } => Error::MsgHeadParty {
            role,
            direction,
            in_envelope: in_envelope.get(),
            in_msghead: if in_msghead.is_empty() {
                "none".into()
            } else {
                in_msghead
                    .iter()
                    .map(HerId::to_string)
                    .collect::<Vec<_>>()
                    .join("/")
            },
        },
        send::Refusal::SigningNotRegistered { serial, registered } => Error::SigningNotRegistered {
            her_id: from.get(),
            serial,
            registered: joined(registered),
        },
    }
}

/// This machine's name, for the audit log's actor (read once).
fn host_name() -> &'static str {
    static HOST: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HOST.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .or_else(|| std::env::var("COMPUTERNAME").ok())
            .map(|name| name.trim().to_owned())
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| "unknown-host".into())
    })
}
