//! Two parties exchanging async messages through the messaging engine, and
//! every error path ending on the sender's error queue: one suite, run on
//! the local transport (fast) and on the private RabbitMQ of scripts/test.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::Utc;
use helsemelding_messaging::{
    convert, CommtestMode, ErrorHandler, Handler, HandlerError, Listener, ListenerOptions,
    Messenger, MessengerConfig, OutboxPolicy, Received, Reply, SendRequest,
};
use helsemelding_protect::{protect, Certificate, ProtectOptions, StaticCrls, TrustAnchors};
use helsemelding_store::audit::{AuditFilter, AuditKind};
use helsemelding_store::outbox::{OutboxState, OutgoingMessage};
use helsemelding_store::Store;
use helsemelding_testkit::broker::{Broker, PartyQueues};
use helsemelding_testkit::party::{OurMessenger, Parties, TestParty};
use helsemelding_testkit::payload;
use helsemelding_testkit::pki::{Issued, LeafOptions, Usage};
use helsemelding_transport::local::LocalTransport;
use helsemelding_transport::{Message, Transport};
use helsemelding_transport_amqp::{AmqpOptions, AmqpTransport};
use helsemelding_wire::envelope::{Outgoing, Routing};
use helsemelding_wire::error_report::{ErrorCondition, ReceivedErrorReport};
use helsemelding_wire::queue::{queue_name, QueueKind};
use helsemelding_wire::HerId;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(20);
const FUNCTION: &str = "DIALOG_INNBYGGER_TEST";

/// Collects what the application callbacks were given.
#[derive(Default)]
struct Inbox {
    received: Mutex<Vec<Received>>,
    errors: Mutex<Vec<ReceivedErrorReport>>,
    /// Whether this application answers sync requests (echoing the request).
    answers_sync: std::sync::atomic::AtomicBool,
    /// Whether this application rejects the content of what it is given.
    rejects_content: std::sync::atomic::AtomicBool,
    /// Whether this application can never take a message (always "retry").
    always_retry: std::sync::atomic::AtomicBool,
}

#[async_trait]
impl Handler for Inbox {
    async fn handle(&self, message: &Received) -> Result<(), HandlerError> {
        self.received.lock().unwrap().push(message.clone());
        if self.always_retry.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(HandlerError::Retry {
                reason: "the database is down".into(),
            });
        }
        if self
            .rejects_content
            .load(std::sync::atomic::Ordering::SeqCst)
        {
            return Err(HandlerError::RejectContent {
                errors: vec![helsemelding_wire::Code::new("E35", "Ugyldig innhold")],
            });
        }
        Ok(())
    }

    async fn answer(&self, message: &Received) -> Result<Reply, HandlerError> {
        self.received.lock().unwrap().push(message.clone());
        if !self.answers_sync.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(HandlerError::Reject {
                condition: ErrorCondition::UnsupportedMessage,
                description: "no sync answers here".into(),
            });
        }
        // The reply carries the request's payload back: each caller can
        // tell its own reply.
        Ok(Reply::new(World::payload_echoing(
            message.to,
            message.from,
            &message.payload,
        )))
    }
}

#[async_trait]
impl ErrorHandler for Inbox {
    async fn handle_error(&self, report: &ReceivedErrorReport) -> Result<(), HandlerError> {
        self.errors.lock().unwrap().push(report.clone());
        Ok(())
    }
}

impl Inbox {
    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    fn errors(&self) -> Vec<ReceivedErrorReport> {
        self.errors.lock().unwrap().clone()
    }
}

async fn eventually<T>(what: &str, mut probe: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Whether `store` audited an event of `kind` with `outcome` (about
/// `message_id`, when given).
async fn audited(
    store: &Arc<dyn Store>,
    message_id: Option<&str>,
    kind: AuditKind,
    outcome: &str,
) -> bool {
    let filter = AuditFilter {
        message_id: message_id.map(str::to_owned),
        ..AuditFilter::default()
    };
    let events = store.audit().list(&filter).await.unwrap();
    events
        .iter()
        .any(|e| e.event.kind == kind && e.event.outcome == outcome)
}

/// Every audit event of `kind` in `store`.
async fn events_of(
    store: &Arc<dyn Store>,
    kind: AuditKind,
) -> Vec<helsemelding_store::audit::AuditRecord> {
    let events = store.audit().list(&AuditFilter::default()).await.unwrap();
    events
        .into_iter()
        .filter(|e| e.event.kind == kind)
        .collect()
}

/// A party's pipelines on all its queues, into `inbox`.
async fn listen(messenger: &Messenger, inbox: &Arc<Inbox>) -> Listener {
    let options = ListenerOptions {
        workers: 2,
        poll: Duration::from_millis(200),
        ..ListenerOptions::default()
    };
    Listener::start(messenger, inbox.clone(), inbox.clone(), options)
        .await
        .unwrap()
}

struct Party {
    her_id: HerId,
    signing: Issued,
    encryption: Issued,
    store: Arc<dyn Store>,
    messenger: Messenger,
    inbox: Arc<Inbox>,
    listener: Option<Listener>,
}

impl Party {
    /// Its HER-id and certificates, as the party set-up takes them.
    fn test_party(&self) -> TestParty {
        TestParty {
            her_id: self.her_id,
            signing: self.signing.clone(),
            encryption: self.encryption.clone(),
        }
    }
}

enum Net {
    Local,
    RabbitMq,
}

struct World {
    parties: Parties,
    transport: Arc<dyn Transport>,
    a: Party,
    b: Party,
    _queues: Vec<PartyQueues>,
}

impl World {
    async fn new(net: Net) -> World {
        World::with(net, |_| {}).await
    }

    /// A world whose messengers' configuration `tweak` adjusts.
    async fn with(net: Net, tweak: impl Fn(&mut MessengerConfig)) -> World {
        let parties = Parties::new("messaging test CA");
        let (transport, her_ids, queues): (Arc<dyn Transport>, [u32; 2], Vec<PartyQueues>) =
            match net {
                Net::Local => (
                    Arc::new(LocalTransport::open(parties.dir().join("queues.db")).unwrap()),
                    [91462, 109989],
                    Vec::new(),
                ),
                Net::RabbitMq => {
                    let broker = Broker::from_env();
                    // Unique HER-ids: error reports go to the real `<sender>_error` names.
                    let base = 800_000_000 + fastrand::u32(0..100_000_000);
                    let ids = [base, base + 1];
                    let queues = ids.iter().map(|id| broker.party_queues(*id)).collect();
                    let url = format!("{}/{}", broker.amqp_url(), broker.exchange());
                    let transport = AmqpTransport::new(&url, AmqpOptions::default()).unwrap();
                    (Arc::new(transport), ids, queues)
                }
            };
        let mut ours = Vec::new();
        for her_id in her_ids {
            let party = parties.party(her_id).register();
            let built = parties
                .messenger(&party)
                .require_revocation()
                .quick_retries()
                .configure(&tweak)
                .build(transport.clone());
            let inbox = Arc::new(Inbox::default());
            let listener = listen(&built.messenger, &inbox).await;
            ours.push(Party {
                her_id: party.her_id,
                signing: party.signing,
                encryption: party.encryption,
                store: built.store,
                messenger: built.messenger,
                inbox,
                listener: Some(listener),
            });
        }
        let b = ours.pop().unwrap();
        let a = ours.pop().unwrap();
        World {
            parties,
            transport,
            a,
            b,
            _queues: queues,
        }
    }

    async fn stop(mut self) {
        for party in [&mut self.a, &mut self.b] {
            if let Some(listener) = party.listener.take() {
                listener.stop().await.unwrap();
            }
            party.messenger.close().await.unwrap();
        }
        self.transport.close().await.unwrap();
    }

    /// A MsgHead from `from` to `to` around a small note.
    fn payload(from: HerId, to: HerId) -> Vec<u8> {
        Self::msghead(from, to, false, "Hei, æøå")
    }

    /// A MsgHead that asks for an AppRec; returns it and its MsgId.
    fn payload_with_ack(from: HerId, to: HerId) -> (Vec<u8>, String) {
        let payload = Self::msghead(from, to, true, "Svar, takk");
        let head = helsemelding_wire::msghead::MsgHead::parse(&payload).unwrap();
        (payload, head.msg_id)
    }

    /// A MsgHead whose note is the MsgId of `request`: an answer its
    /// caller can recognise.
    fn payload_echoing(from: HerId, to: HerId, request: &[u8]) -> Vec<u8> {
        let request = helsemelding_wire::msghead::MsgHead::parse(request).unwrap();
        Self::msghead(from, to, false, &format!("answer to {}", request.msg_id))
    }

    fn msghead(from: HerId, to: HerId, ack: bool, note: &str) -> Vec<u8> {
        let document = payload::msghead(from, to).function(FUNCTION).note(note);
        if ack { document.ack() } else { document }.into_bytes()
    }

    /// A message as a peer might put it on the wire: `payload` signed by
    /// `signer`, encrypted to B, claiming to come from A.
    fn raw_to_b(&self, payload: &[u8], signer: &Issued) -> Message {
        let body = protect(
            payload,
            &signer.identity(),
            &Certificate::from_x509(self.b.encryption.cert.clone()),
            &ProtectOptions::default(),
        )
        .unwrap();
        let envelope = Outgoing {
            message_id: Uuid::new_v4().hyphenated().to_string(),
            from: self.a.her_id,
            to: self.b.her_id,
            to_queue: queue_name(self.b.her_id, QueueKind::Async),
            function: FUNCTION.into(),
            routing: Routing::Async {
                reply_to: queue_name(self.a.her_id, QueueKind::Async),
                ttl: None,
            },
            protected: true,
            cpa_id: None,
            sent_at: Utc::now(),
            extra: Vec::new(),
        }
        .into_envelope();
        convert::to_message(&envelope, body)
    }

    async fn put_to_b(&self, message: Message) {
        let mut sender = self
            .transport
            .sender(&queue_name(self.b.her_id, QueueKind::Async))
            .await
            .unwrap();
        let outcome = sender.send(message).await.unwrap();
        assert_eq!(outcome, helsemelding_transport::Outcome::Accepted);
        sender.close().await.unwrap();
    }

    /// Sends `message` to B as A would not: the report must reach A's error
    /// queue with `condition`, and B's application must see nothing.
    async fn expect_error_report(
        &self,
        message: Message,
        condition: ErrorCondition,
    ) -> ReceivedErrorReport {
        let id = message.message_id.clone().unwrap();
        self.put_to_b(message).await;
        let report = eventually("the error report", async || {
            self.a
                .inbox
                .errors()
                .into_iter()
                .find(|r| r.original_message_id.as_deref() == Some(id.as_str()))
        })
        .await;
        assert_eq!(report.condition, Some(condition), "{report:?}");
        assert_eq!(report.from, Some(self.b.her_id));
        assert_eq!(report.to, Some(self.a.her_id));
        assert_eq!(report.function.as_deref(), Some(FUNCTION));
        assert!(report.receiver_time.is_some());
        assert!(
            self.b.inbox.received().iter().all(|r| r.message_id != id),
            "the refused message was handed to the application"
        );
        // B audits after settling, which may be after A saw the report.
        eventually("the error-reported audit event", async || {
            let kind = AuditKind::ErrorReported;
            audited(&self.b.store, Some(&id), kind, condition.as_str())
                .await
                .then_some(())
        })
        .await;
        report
    }
}

async fn exchange_both_ways(net: Net) {
    let world = World::new(net).await;
    let (a, b) = (&world.a, &world.b);
    let to_b = World::payload(a.her_id, b.her_id);
    let id = a
        .messenger
        .send(SendRequest::new(b.her_id, FUNCTION, to_b.clone()))
        .await
        .unwrap();
    assert!(Uuid::parse_str(&id).is_ok());
    let got = eventually("B's hand-over", async || {
        b.inbox.received().into_iter().next()
    })
    .await;
    assert_eq!(got.payload, to_b, "payload bytes exactly as signed");
    assert_eq!(got.message_id, id);
    assert_eq!(got.correlation_id.as_deref(), Some(id.as_str()));
    assert_eq!((got.from, got.to), (a.her_id, b.her_id));
    assert_eq!(got.function, FUNCTION);
    assert_eq!(got.cpa_id, None);
    assert_eq!(got.metadata["X-MessageInfo-Type"], FUNCTION);
    assert_eq!(got.queue, queue_name(b.her_id, QueueKind::Async));
    assert!(matches!(
        a.store.outbox().state(&id).await.unwrap(),
        Some(OutboxState::Sent { .. })
    ));

    let to_a = World::payload(b.her_id, a.her_id);
    let reply = b
        .messenger
        .send(SendRequest::new(a.her_id, FUNCTION, to_a.clone()))
        .await
        .unwrap();
    let got = eventually("A's hand-over", async || {
        a.inbox.received().into_iter().next()
    })
    .await;
    assert_eq!((got.message_id, got.payload), (reply, to_a));
    assert!(a.inbox.errors().is_empty() && b.inbox.errors().is_empty());
    assert_eq!(b.inbox.received().len(), 1);
    world.stop().await;
}

async fn error_paths_end_on_the_senders_error_queue(net: Net) {
    let world = World::new(net).await;
    let a_signing = world.a.signing.clone();

    // Not XML (but properly signed and encrypted).
    let message = world.raw_to_b(b"<MsgHead><unclosed>", &a_signing);
    world
        .expect_error_report(message, ErrorCondition::NotWellFormedXml)
        .await;

    // Signed by someone else than the claimed sender.
    let mallory = world.parties.pki().issue("mallory signing", Usage::Signing);
    let payload = World::payload(world.a.her_id, world.b.her_id);
    let message = world.raw_to_b(&payload, &mallory);
    world
        .expect_error_report(message, ErrorCondition::SpoofingAttack)
        .await;

    // MsgHead sender differs from fromHerId: someone claims to be A.
    let payload = World::payload(HerId::new(4242).unwrap(), world.b.her_id);
    let message = world.raw_to_b(&payload, &a_signing);
    let report = world
        .expect_error_report(message, ErrorCondition::SpoofingAttack)
        .await;
    assert_eq!(
        report.data,
        vec![world.a.her_id.to_string(), "4242".to_string()]
    );

    // Missing subject (Label) and application timestamp.
    let mut message = world.raw_to_b(&World::payload(world.a.her_id, world.b.her_id), &a_signing);
    message.subject = None;
    message
        .application_properties
        .remove("applicationTimeStamp");
    let id = message.message_id.clone().unwrap();
    world.put_to_b(message).await;
    let report = eventually("the header report", async || {
        world
            .a
            .inbox
            .errors()
            .into_iter()
            .find(|r| r.original_message_id.as_deref() == Some(id.as_str()))
    })
    .await;
    assert_eq!(report.condition, Some(ErrorCondition::InvalidFieldValue));
    assert_eq!(report.data, vec!["Label", "applicationTimeStamp"]);

    // The sender's registered signing certificate has expired.
    let expired = world.parties.pki().issue_with(
        "party a old signing",
        Usage::Signing,
        &LeafOptions::default().valid(
            Utc::now() - chrono::Duration::days(400),
            Utc::now() - chrono::Duration::days(1),
        ),
    );
    world
        .parties
        .registration(world.a.her_id.get(), &expired, &world.a.encryption)
        .name("party a")
        .add();
    let message = world.raw_to_b(&World::payload(world.a.her_id, world.b.her_id), &expired);
    let report = world
        .expect_error_report(message, ErrorCondition::ExpiredCertificate)
        .await;
    let thumbprint = Certificate::from_x509(expired.cert.clone()).thumbprint_sha1();
    assert_eq!(
        report.data.last().unwrap(),
        &format!("Thumbprint: {}", thumbprint.to_ascii_uppercase())
    );

    assert!(world.b.inbox.received().is_empty());
    assert!(
        world.b.inbox.errors().is_empty(),
        "reports are never answered"
    );
    world.stop().await;
}

async fn a_redelivered_message_is_handed_over_once(net: Net) {
    let world = World::new(net).await;
    let message = world.raw_to_b(
        &World::payload(world.a.her_id, world.b.her_id),
        &world.a.signing,
    );
    let id = message.message_id.clone().unwrap();
    world.put_to_b(message.clone()).await;
    eventually("the first hand-over", async || {
        (!world.b.inbox.received().is_empty()).then_some(())
    })
    .await;
    world.put_to_b(message).await;
    eventually("the duplicate accepted", async || {
        audited(&world.b.store, Some(&id), AuditKind::Accepted, "duplicate")
            .await
            .then_some(())
    })
    .await;
    assert_eq!(world.b.inbox.received().len(), 1);
    assert!(world.a.inbox.errors().is_empty());
    world.stop().await;
}

async fn an_outbox_entry_left_by_a_crash_is_sent_once_on_restart(net: Net) {
    let world = World::new(net).await;
    let payload = World::payload(world.a.her_id, world.b.her_id);
    // What `send` records before the transfer; the process "dies" here.
    let message = world.raw_to_b(&payload, &world.a.signing);
    let id = message.message_id.clone().unwrap();
    world
        .a
        .store
        .outbox()
        .enqueue(&OutgoingMessage {
            message_id: id.clone(),
            from_her_id: world.a.her_id.get(),
            to_her_id: world.b.her_id.get(),
            msg_id: None,
            queue: queue_name(world.b.her_id, QueueKind::Async),
            function: FUNCTION.into(),
            envelope: serde_json::to_vec(&message).unwrap(),
            body: message.body.clone(),
            created_at: Utc::now(),
            expires_at: None,
            payload_digest: None,
        })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(world.b.inbox.received().is_empty());

    // A new messenger over the same store, as after a restart.
    let restarted = Messenger::new(
        MessengerConfig::new(
            world.a.her_id,
            world.a.signing.identity(),
            world.a.encryption.identity(),
            TrustAnchors::default(),
            Arc::new(StaticCrls::default()),
        ),
        world.transport.clone(),
        world.parties.registry().clone(),
        world.a.store.clone(),
    );
    assert_eq!(restarted.flush_outbox().await.unwrap().sent, 1);
    assert_eq!(restarted.flush_outbox().await.unwrap().sent, 0, "sent once");
    let got = eventually("the hand-over", async || {
        world.b.inbox.received().into_iter().next()
    })
    .await;
    assert_eq!((got.message_id, got.payload), (id.clone(), payload));
    assert!(matches!(
        world.a.store.outbox().state(&id).await.unwrap(),
        Some(OutboxState::Sent { .. })
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(world.b.inbox.received().len(), 1);
    world.stop().await;
}

async fn sending_refuses_an_unknown_receiver_and_non_xml(net: Net) {
    let world = World::new(net).await;
    let unknown = HerId::new(123).unwrap();
    let error = world
        .a
        .messenger
        .send(SendRequest::new(unknown, FUNCTION, b"<a/>".to_vec()))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("123"), "{error}");
    let error = world
        .a
        .messenger
        .send(SendRequest::new(
            world.b.her_id,
            FUNCTION,
            b"not xml".to_vec(),
        ))
        .await
        .unwrap_err();
    assert!(
        matches!(error, helsemelding_messaging::Error::Payload(_)),
        "{error}"
    );
    assert_eq!(world.a.store.outbox().pending_count().await.unwrap(), 0);

    // A receiver whose encryption certificate expired: refused before
    // anything is signed, and the failed check is in the audit log.
    let expired = world.parties.pki().issue_with(
        "expired encryption",
        Usage::Encryption,
        &LeafOptions::expired(),
    );
    let stale = world.b.her_id.get() + 7;
    world
        .parties
        .registration(stale, &world.b.signing, &expired)
        .name("expired party")
        .add();
    let error = world
        .a
        .messenger
        .send(SendRequest::new(
            HerId::new(stale).unwrap(),
            FUNCTION,
            World::payload(world.a.her_id, HerId::new(stale).unwrap()),
        ))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, helsemelding_messaging::Error::Certificate { problems, .. } if problems.contains("expired")),
        "{error}"
    );
    let checks = events_of(&world.a.store, AuditKind::CertificateCheck).await;
    assert_eq!(checks.len(), 1);
    assert_eq!(checks[0].event.outcome, "failed");
    assert!(checks[0]
        .event
        .reason
        .as_deref()
        .unwrap()
        .contains(&format!("receiver {stale}")));
    assert_eq!(world.a.store.outbox().pending_count().await.unwrap(), 0);
    world.stop().await;
}

fn msg_id_of(payload: &[u8]) -> String {
    helsemelding_wire::msghead::MsgHead::parse(payload)
        .unwrap()
        .msg_id
}

async fn sync_calls_get_their_own_replies(net: Net) {
    let world = World::new(net).await;
    let (a, b) = (&world.a, &world.b);
    b.inbox
        .answers_sync
        .store(true, std::sync::atomic::Ordering::SeqCst);
    // Concurrent callers share the one reply consumer; each gets its reply.
    let calls: Vec<_> = (0..4)
        .map(|_| {
            let payload = World::payload(a.her_id, b.her_id);
            let request = SendRequest::new(b.her_id, FUNCTION, payload.clone());
            let messenger = a.messenger.clone();
            tokio::spawn(async move {
                let reply = messenger
                    .send_and_wait(request, Duration::from_secs(15))
                    .await
                    .unwrap();
                (payload, reply)
            })
        })
        .collect();
    for call in calls {
        let (request, reply) = call.await.unwrap();
        assert_eq!((reply.from, reply.to), (b.her_id, a.her_id));
        let note = String::from_utf8(reply.payload.clone()).unwrap();
        assert!(
            note.contains(&format!("answer to {}", msg_id_of(&request))),
            "{note}"
        );
        assert_eq!(reply.queue, queue_name(a.her_id, QueueKind::SyncReply));
        assert!(reply.correlation_id.is_some());
    }
    // The sync requests reached B's application (through `answer`), not A's.
    assert_eq!(b.inbox.received().len(), 4);
    assert!(a.inbox.received().is_empty());
    // Sync requests do not wait in the outbox.
    assert_eq!(a.store.outbox().pending_count().await.unwrap(), 0);
    world.stop().await;
}

async fn a_refused_sync_request_is_reported_to_the_requester(net: Net) {
    let world = World::new(net).await;
    let (a, b) = (&world.a, &world.b);
    let request = SendRequest::new(b.her_id, FUNCTION, World::payload(a.her_id, b.her_id));
    let started = Instant::now();
    let error = a
        .messenger
        .send_and_wait(request, Duration::from_secs(2))
        .await
        .unwrap_err();
    assert!(
        matches!(error, helsemelding_messaging::Error::SyncTimeout { .. }),
        "{error}"
    );
    assert!(started.elapsed() < Duration::from_secs(4));
    let report = eventually("the error report", async || {
        a.inbox.errors().into_iter().next()
    })
    .await;
    assert_eq!(report.condition, Some(ErrorCondition::UnsupportedMessage));
    assert_eq!(report.from, Some(b.her_id));
    world.stop().await;
}

async fn a_silent_peer_times_out_and_its_late_reply_is_dropped(net: Net) {
    let mut world = World::new(net).await;
    world.b.listener.take().unwrap().stop().await.unwrap();
    world
        .b
        .inbox
        .answers_sync
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let (a, b) = (&world.a, &world.b);
    let started = Instant::now();
    let timeout = Duration::from_millis(1500);
    let error = a
        .messenger
        .send_and_wait(
            SendRequest::new(b.her_id, FUNCTION, World::payload(a.her_id, b.her_id)),
            timeout,
        )
        .await
        .unwrap_err();
    let waited = started.elapsed();
    assert!(
        matches!(error, helsemelding_messaging::Error::SyncTimeout { .. }),
        "{error}"
    );
    assert!(
        waited >= timeout && waited < timeout + Duration::from_secs(2),
        "waited {waited:?} for a {timeout:?} timeout"
    );
    // B wakes up and answers the old request: the reply is late, and must
    // not be taken for the answer to the next call.
    world.b.listener = Some(listen(&world.b.messenger, &world.b.inbox).await);
    let (a, b) = (&world.a, &world.b);
    eventually("the late reply dropped", async || {
        let kind = AuditKind::Accepted;
        audited(&a.store, None, kind, "late sync reply dropped")
            .await
            .then_some(())
    })
    .await;
    let next = World::payload(a.her_id, b.her_id);
    let reply = a
        .messenger
        .send_and_wait(
            SendRequest::new(b.her_id, FUNCTION, next.clone()),
            Duration::from_secs(15),
        )
        .await
        .unwrap();
    let note = String::from_utf8(reply.payload).unwrap();
    assert!(
        note.contains(&format!("answer to {}", msg_id_of(&next))),
        "{note}"
    );
    world.stop().await;
}

async fn apprecs_come_back_and_are_matched(net: Net) {
    let mut world = World::new(net).await;
    // A does not listen yet: its AppRec waits on its queue while we look.
    world.a.listener.take().unwrap().stop().await.unwrap();
    let (a, b) = (&world.a, &world.b);
    let (payload, msg_id) = World::payload_with_ack(a.her_id, b.her_id);
    a.messenger
        .send(SendRequest::new(b.her_id, FUNCTION, payload))
        .await
        .unwrap();
    let tracked = a.store.receipts().get(&msg_id).await.unwrap().unwrap();
    assert_eq!(tracked.expected.to_her_id, b.her_id.get());
    assert!(tracked.received.is_none());
    let a_day_later = Utc::now() + chrono::Duration::hours(25);
    assert_eq!(
        a.store.receipts().overdue(a_day_later).await.unwrap().len(),
        1
    );
    let overdue = a
        .messenger
        .audit_overdue_receipts(a_day_later)
        .await
        .unwrap();
    assert_eq!(overdue[0].expected.message_id, msg_id);
    assert!(
        a.messenger
            .audit_overdue_receipts(a_day_later)
            .await
            .unwrap()
            .is_empty(),
        "audited once"
    );
    assert_eq!(
        events_of(&a.store, AuditKind::ReceiptOverdue).await.len(),
        1
    );
    world.a.listener = Some(listen(&world.a.messenger, &world.a.inbox).await);
    let (a, b) = (&world.a, &world.b);

    let receipt = eventually("the AppRec matched", async || {
        a.store.receipts().get(&msg_id).await.unwrap()?.received
    })
    .await;
    assert_eq!(receipt.status, "1");
    assert!(a
        .store
        .receipts()
        .overdue(a_day_later)
        .await
        .unwrap()
        .is_empty());
    // A's application sees the AppRec too; B's sees the message once.
    let apprec = eventually("A's AppRec hand-over", async || {
        a.inbox.received().into_iter().next()
    })
    .await;
    assert_eq!(apprec.function, "APPREC");
    assert_eq!(b.inbox.received().len(), 1);

    // A content error is answered with a rejecting AppRec, and the message
    // is not retried.
    b.inbox
        .rejects_content
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let (payload, msg_id) = World::payload_with_ack(a.her_id, b.her_id);
    a.messenger
        .send(SendRequest::new(b.her_id, FUNCTION, payload))
        .await
        .unwrap();
    let receipt = eventually("the rejecting AppRec", async || {
        a.store.receipts().get(&msg_id).await.unwrap()?.received
    })
    .await;
    assert_eq!(receipt.status, "2");
    let got = eventually("the rejecting AppRec at A", async || {
        a.inbox
            .received()
            .into_iter()
            .find(|r| r.function == "APPREC" && r.payload.windows(3).any(|w| w == b"E35"))
    })
    .await;
    let apprec = helsemelding_wire::apprec::AppRec::parse(&got.payload).unwrap();
    assert_eq!(apprec.original.id, msg_id);
    assert!(
        a.inbox.errors().is_empty(),
        "a content error is not a transport error"
    );
    assert_eq!(b.inbox.received().len(), 2);
    world.stop().await;
}

async fn communication_tests_are_answered_on_both_paths(net: Net) {
    let world = World::new(net).await;
    let (a, b) = (&world.a, &world.b);
    for mode in [CommtestMode::Sync, CommtestMode::Async] {
        let outcome = a
            .messenger
            .communication_test(b.her_id, mode, Duration::from_secs(5))
            .await
            .unwrap_or_else(|e| panic!("{mode:?}: {e}"));
        assert_eq!(outcome.mode, mode);
        assert!(outcome.round_trip < Duration::from_secs(5));
    }
    // Answered by the responder: neither application saw the tests.
    assert!(b.inbox.received().is_empty(), "{:?}", b.inbox.received());
    assert!(a.inbox.received().is_empty());
    let tests = events_of(&a.store, AuditKind::Commtest).await;
    assert_eq!(tests.iter().filter(|e| e.event.outcome == "ok").count(), 2);
    world.stop().await;
}

/// Gives A NHN's real CPP (with A's test certificates): it may send the
/// DIALOG_INNBYGGER_* functions, not DIALOG_HELSEFAGLIG.
fn give_a_the_real_cpp(world: &World) {
    let a = &world.a;
    world
        .parties
        .registration(a.her_id.get(), &a.signing, &a.encryption)
        .name("party with a CPP")
        .with_nhn_cpp()
        .add();
}

async fn functions_outside_the_senders_cpp_are_handed_over_and_audited(net: Net) {
    let world = World::new(net).await;
    let (a, b) = (&world.a, &world.b);
    give_a_the_real_cpp(&world);
    let outside = a
        .messenger
        .send(SendRequest::new(
            b.her_id,
            "DIALOG_HELSEFAGLIG",
            World::payload(a.her_id, b.her_id),
        ))
        .await
        .unwrap();
    let got = eventually("the message outside the CPP", async || {
        b.inbox.received().into_iter().next()
    })
    .await;
    assert_eq!(got.message_id, outside);
    let audited_outside = eventually("the audit event", async || {
        audited(
            &b.store,
            Some(&outside),
            AuditKind::FunctionOutsideProfile,
            "handed-over",
        )
        .await
        .then_some(())
    })
    .await;
    assert_eq!(audited_outside, ());
    assert!(
        a.inbox.errors().is_empty(),
        "nothing reported to the sender"
    );
    world.stop().await;
}

async fn functions_outside_the_senders_cpp_are_refused_when_strict(net: Net) {
    let world = World::with(net, |config| config.receive.strict_message_functions = true).await;
    let (a, b) = (&world.a, &world.b);
    give_a_the_real_cpp(&world);
    let refused = a
        .messenger
        .send(SendRequest::new(
            b.her_id,
            "DIALOG_HELSEFAGLIG",
            World::payload(a.her_id, b.her_id),
        ))
        .await
        .unwrap();
    let report = eventually("the unsupported-message report", async || {
        a.inbox
            .errors()
            .into_iter()
            .find(|r| r.original_message_id.as_deref() == Some(refused.as_str()))
    })
    .await;
    assert_eq!(report.condition, Some(ErrorCondition::UnsupportedMessage));
    assert_eq!(report.function.as_deref(), Some("DIALOG_HELSEFAGLIG"));
    let allowed = a
        .messenger
        .send(SendRequest::new(
            b.her_id,
            "DIALOG_INNBYGGER_EKONTAKT",
            World::payload(a.her_id, b.her_id),
        ))
        .await
        .unwrap();
    let got = eventually("the allowed message", async || {
        b.inbox.received().into_iter().next()
    })
    .await;
    assert_eq!(got.message_id, allowed);
    assert_eq!(
        b.inbox.received().len(),
        1,
        "the refused one never reached B's application"
    );
    world.stop().await;
}

async fn a_message_that_keeps_failing_is_dead_lettered_after_the_limit(net: Net) {
    let world = World::new(net).await;
    let (a, b) = (&world.a, &world.b);
    b.inbox
        .always_retry
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let id = a
        .messenger
        .send(SendRequest::new(
            b.her_id,
            FUNCTION,
            World::payload(a.her_id, b.her_id),
        ))
        .await
        .unwrap();
    let mut dead = world
        .transport
        .receiver(&queue_name(b.her_id, QueueKind::DeadLetter), 1)
        .await
        .unwrap();
    let Some(delivery) = dead.receive(WAIT).await.unwrap() else {
        let tries = b.inbox.received().len();
        let events: Vec<_> = b
            .store
            .audit()
            .list(&AuditFilter::default())
            .await
            .unwrap()
            .into_iter()
            .map(|e| (e.event.kind, e.event.outcome))
            .collect();
        panic!("not on the dead-letter queue after {tries} hand-overs: {events:?}")
    };
    assert_eq!(delivery.message.message_id.as_deref(), Some(id.as_str()));
    dead.accept(&delivery).await.unwrap();
    dead.close().await.unwrap();
    // Handed to the application once per delivery, up to the limit of 10.
    let tries = b
        .inbox
        .received()
        .iter()
        .filter(|r| r.message_id == id)
        .count();
    assert_eq!(tries, 10);
    // B audits after rejecting, which may be after the dead-letter queue has it.
    eventually("the dead-lettered audit event", async || {
        audited(&b.store, Some(&id), AuditKind::Rejected, "dead-lettered")
            .await
            .then_some(())
    })
    .await;
    assert!(
        a.inbox.errors().is_empty(),
        "a local failure is not the sender's fault"
    );
    world.stop().await;
}

macro_rules! suite {
    ($net:ident, $flavor:meta) => {
        #[allow(non_snake_case)]
        mod $net {
            use super::*;

            #[$flavor]
            async fn exchange_both_ways() {
                super::exchange_both_ways(Net::$net).await;
            }

            #[$flavor]
            async fn error_paths_end_on_the_senders_error_queue() {
                super::error_paths_end_on_the_senders_error_queue(Net::$net).await;
            }

            #[$flavor]
            async fn a_redelivered_message_is_handed_over_once() {
                super::a_redelivered_message_is_handed_over_once(Net::$net).await;
            }

            #[$flavor]
            async fn an_outbox_entry_left_by_a_crash_is_sent_once_on_restart() {
                super::an_outbox_entry_left_by_a_crash_is_sent_once_on_restart(Net::$net).await;
            }

            #[$flavor]
            async fn sync_calls_get_their_own_replies() {
                super::sync_calls_get_their_own_replies(Net::$net).await;
            }

            #[$flavor]
            async fn a_refused_sync_request_is_reported_to_the_requester() {
                super::a_refused_sync_request_is_reported_to_the_requester(Net::$net).await;
            }

            #[$flavor]
            async fn a_silent_peer_times_out_and_its_late_reply_is_dropped() {
                super::a_silent_peer_times_out_and_its_late_reply_is_dropped(Net::$net).await;
            }

            #[$flavor]
            async fn apprecs_come_back_and_are_matched() {
                super::apprecs_come_back_and_are_matched(Net::$net).await;
            }

            #[$flavor]
            async fn communication_tests_are_answered_on_both_paths() {
                super::communication_tests_are_answered_on_both_paths(Net::$net).await;
            }

            #[$flavor]
            async fn functions_outside_the_senders_cpp_are_handed_over_and_audited() {
                super::functions_outside_the_senders_cpp_are_handed_over_and_audited(Net::$net)
                    .await;
            }

            #[$flavor]
            async fn functions_outside_the_senders_cpp_are_refused_when_strict() {
                super::functions_outside_the_senders_cpp_are_refused_when_strict(Net::$net).await;
            }

            #[$flavor]
            async fn a_message_that_keeps_failing_is_dead_lettered_after_the_limit() {
                super::a_message_that_keeps_failing_is_dead_lettered_after_the_limit(Net::$net)
                    .await;
            }

            #[$flavor]
            async fn sending_refuses_an_unknown_receiver_and_non_xml() {
                super::sending_refuses_an_unknown_receiver_and_non_xml(Net::$net).await;
            }
        }
    };
}

suite!(
    Local,
    tokio::test(flavor = "multi_thread", worker_threads = 2)
);
suite!(
    RabbitMq,
    tokio::test(flavor = "multi_thread", worker_threads = 2)
);

/// Counts the sends in flight on the transport and holds each one until
/// `expected` are in flight at once (or `WAIT` passes), so a messenger that
/// serialises its sends shows a peak of 1 however fast the machine is.
struct GatedTransport {
    inner: Arc<dyn Transport>,
    gate: Arc<Gate>,
}

struct Gate {
    expected: usize,
    in_flight: std::sync::atomic::AtomicUsize,
    peak: std::sync::atomic::AtomicUsize,
    changed: tokio::sync::Notify,
}

impl Gate {
    async fn pass(&self) {
        use std::sync::atomic::Ordering::SeqCst;
        let now = self.in_flight.fetch_add(1, SeqCst) + 1;
        self.peak.fetch_max(now, SeqCst);
        self.changed.notify_waiters();
        let _ = tokio::time::timeout(WAIT, async {
            loop {
                let notified = self.changed.notified();
                if self.peak.load(SeqCst) >= self.expected {
                    return;
                }
                notified.await;
            }
        })
        .await;
    }

    fn leave(&self) {
        self.in_flight
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

struct GatedSender {
    inner: Box<dyn helsemelding_transport::Sender>,
    gate: Arc<Gate>,
}

#[async_trait]
impl helsemelding_transport::Sender for GatedSender {
    async fn send(
        &mut self,
        message: Message,
    ) -> Result<helsemelding_transport::Outcome, helsemelding_transport::Error> {
        self.gate.pass().await;
        let outcome = self.inner.send(message).await;
        self.gate.leave();
        outcome
    }

    async fn close(self: Box<Self>) -> Result<(), helsemelding_transport::Error> {
        self.inner.close().await
    }
}

#[async_trait]
impl Transport for GatedTransport {
    async fn sender(
        &self,
        queue: &str,
    ) -> Result<Box<dyn helsemelding_transport::Sender>, helsemelding_transport::Error> {
        Ok(Box::new(GatedSender {
            inner: self.inner.sender(queue).await?,
            gate: self.gate.clone(),
        }))
    }

    async fn check_queue(&self, queue: &str) -> Result<(), helsemelding_transport::Error> {
        self.inner.check_queue(queue).await
    }

    fn capabilities(&self) -> helsemelding_transport::Capabilities {
        self.inner.capabilities()
    }

    async fn receiver(
        &self,
        queue: &str,
        credit: u32,
    ) -> Result<Box<dyn helsemelding_transport::Receiver>, helsemelding_transport::Error> {
        self.inner.receiver(queue, credit).await
    }

    async fn close(&self) -> Result<(), helsemelding_transport::Error> {
        Ok(())
    }
}

/// Concurrent `send` calls through one messenger are on the wire together
/// (one sender link each), and every message arrives once.
async fn concurrent_sends_through_one_messenger_pipeline(net: Net) {
    const SENDS: usize = 8;
    let world = World::new(net).await;
    let (a, b) = (&world.a, &world.b);
    let gate = Arc::new(Gate {
        expected: SENDS,
        in_flight: Default::default(),
        peak: Default::default(),
        changed: tokio::sync::Notify::new(),
    });
    let gated: Arc<dyn Transport> = Arc::new(GatedTransport {
        inner: world.transport.clone(),
        gate: gate.clone(),
    });
    let OurMessenger { messenger, store } = world
        .parties
        .messenger(&a.test_party())
        .store_named("sender")
        .build(gated);

    let started = Instant::now();
    let to = b.her_id;
    let sends = (0..SENDS).map(|_| {
        let messenger = messenger.clone();
        let payload = World::payload(a.her_id, to);
        tokio::spawn(async move {
            messenger
                .send(SendRequest::new(to, FUNCTION, payload))
                .await
        })
    });
    let mut ids = Vec::new();
    for send in sends.collect::<Vec<_>>() {
        ids.push(send.await.unwrap().unwrap());
    }
    let peak = gate.peak.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(
        peak,
        SENDS,
        "sends in flight at once (took {:?})",
        started.elapsed()
    );
    assert_eq!(store.outbox().pending_count().await.unwrap(), 0);
    let received = eventually("every message at B", async || {
        let received = b.inbox.received();
        (received.len() >= SENDS).then_some(received)
    })
    .await;
    let mut got: Vec<String> = received.into_iter().map(|r| r.message_id).collect();
    got.sort();
    ids.sort();
    assert_eq!(got, ids, "each message once");
    world.stop().await;
}

mod pipelined {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn local() {
        concurrent_sends_through_one_messenger_pipeline(Net::Local).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rabbitmq() {
        concurrent_sends_through_one_messenger_pipeline(Net::RabbitMq).await;
    }
}

/// A transport whose `refused` queue does not exist (as a party's queue
/// that was never created on the broker), and that can play a broker that
/// refuses connections.
struct RefusingTransport {
    inner: Arc<dyn Transport>,
    refused: String,
    down: Arc<std::sync::atomic::AtomicBool>,
}

fn connection_refused() -> helsemelding_transport::Error {
    helsemelding_transport::Error::Connect {
        endpoint: "localhost:1".into(),
        reason: "connection refused".into(),
    }
}

struct RefusingSender {
    inner: Box<dyn helsemelding_transport::Sender>,
    down: Arc<std::sync::atomic::AtomicBool>,
}

#[async_trait]
impl helsemelding_transport::Sender for RefusingSender {
    async fn send(
        &mut self,
        message: Message,
    ) -> Result<helsemelding_transport::Outcome, helsemelding_transport::Error> {
        if self.down.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(connection_refused());
        }
        self.inner.send(message).await
    }

    async fn close(self: Box<Self>) -> Result<(), helsemelding_transport::Error> {
        self.inner.close().await
    }
}

#[async_trait]
impl Transport for RefusingTransport {
    async fn sender(
        &self,
        queue: &str,
    ) -> Result<Box<dyn helsemelding_transport::Sender>, helsemelding_transport::Error> {
        if self.down.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(connection_refused());
        }
        if queue == self.refused {
            return Err(helsemelding_transport::Error::NoSuchQueue {
                queue: queue.to_owned(),
                reason: "amqp:not-found: no queue".into(),
            });
        }
        Ok(Box::new(RefusingSender {
            inner: self.inner.sender(queue).await?,
            down: self.down.clone(),
        }))
    }

    async fn check_queue(&self, queue: &str) -> Result<(), helsemelding_transport::Error> {
        self.inner.check_queue(queue).await
    }

    fn capabilities(&self) -> helsemelding_transport::Capabilities {
        self.inner.capabilities()
    }

    async fn receiver(
        &self,
        queue: &str,
        credit: u32,
    ) -> Result<Box<dyn helsemelding_transport::Receiver>, helsemelding_transport::Error> {
        self.inner.receiver(queue, credit).await
    }

    async fn close(&self) -> Result<(), helsemelding_transport::Error> {
        Ok(())
    }
}

/// Issue 12: an outbox entry whose queue does not exist holds up no other
/// entry; it backs off on its own, a broker outage does not count against
/// it, and after its attempts it is failed with its reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outbox_entry_that_cannot_be_sent_holds_up_nobody() {
    const BACKOFF: Duration = Duration::from_millis(300);
    let world = World::new(Net::Local).await;
    let (a, b) = (&world.a, &world.b);
    // A party in the registry whose queue was never created.
    let ghost = 424242;
    world
        .parties
        .party(ghost)
        .name("ghost")
        .common_names("ghost")
        .register();
    let ghost = HerId::new(ghost).unwrap();
    let down = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let refusing: Arc<dyn Transport> = Arc::new(RefusingTransport {
        inner: world.transport.clone(),
        refused: queue_name(ghost, QueueKind::Async),
        down: down.clone(),
    });
    let OurMessenger { messenger, store } = world
        .parties
        .messenger(&a.test_party())
        .configure(|config| {
            config.outbox = OutboxPolicy {
                max_attempts: 3,
                backoff_min: BACKOFF,
                backoff_max: BACKOFF,
            }
        })
        .store_named("sender")
        .build(refusing);

    // The send to the ghost fails, names its queue, and is recorded.
    let error = messenger
        .send(SendRequest::new(
            ghost,
            FUNCTION,
            World::payload(a.her_id, ghost),
        ))
        .await
        .unwrap_err();
    let ghost_queue = queue_name(ghost, QueueKind::Async);
    assert!(error.to_string().contains(&ghost_queue), "{error}");
    let entries = store.outbox().entries(10).await.unwrap();
    assert_eq!(entries.len(), 1);
    let poisoned = entries[0].message_id.clone();
    assert!(
        matches!(&error, helsemelding_messaging::Error::InOutbox { message_id, queue, .. }
            if *message_id == poisoned && *queue == ghost_queue),
        "{error:?}"
    );
    let Some(OutboxState::Pending {
        attempts: 1,
        next_attempt_at,
        ..
    }) = store.outbox().state(&poisoned).await.unwrap()
    else {
        panic!("{:?}", store.outbox().state(&poisoned).await);
    };
    assert!(next_attempt_at > Utc::now(), "it waits its backoff");

    // A message to B while the broker is down stays in the outbox, behind
    // the poisoned entry; the outage counts against neither.
    down.store(true, std::sync::atomic::Ordering::SeqCst);
    let to_b = messenger
        .send(SendRequest::new(
            b.her_id,
            FUNCTION,
            World::payload(a.her_id, b.her_id),
        ))
        .await;
    assert!(
        matches!(to_b, Err(helsemelding_messaging::Error::InOutbox { .. })),
        "the broker is down: {to_b:?}"
    );
    let waiting = store
        .outbox()
        .pending(10)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.message_id)
        .find(|id| *id != poisoned)
        .expect("the message to B is recorded");
    assert!(matches!(
        store.outbox().state(&waiting).await.unwrap(),
        Some(OutboxState::Pending { attempts: 0, .. })
    ));
    tokio::time::sleep(BACKOFF).await;
    let report = messenger.flush_outbox().await.unwrap();
    assert!(report.outage.is_some(), "{report:?}");
    assert_eq!(report.sent, 0);
    assert!(matches!(
        store.outbox().state(&poisoned).await.unwrap(),
        Some(OutboxState::Pending { attempts: 1, .. })
    ));

    // The broker is back: the older poisoned entry fails again, and the
    // message to B after it is sent in the same pass.
    down.store(false, std::sync::atomic::Ordering::SeqCst);
    let report = messenger.flush_outbox().await.unwrap();
    assert_eq!((report.sent, report.retrying, report.failed), (1, 1, 0));
    assert!(report.outage.is_none());
    let got = eventually("the message to B", async || {
        b.inbox
            .received()
            .into_iter()
            .find(|r| r.message_id == waiting)
    })
    .await;
    assert_eq!(got.from, a.her_id);
    // Not due yet: nothing is tried.
    assert_eq!(
        messenger.flush_outbox().await.unwrap(),
        helsemelding_messaging::FlushReport::default()
    );

    // Its last attempt: failed, with the reason that names its queue.
    tokio::time::sleep(BACKOFF).await;
    let report = messenger.flush_outbox().await.unwrap();
    assert_eq!((report.sent, report.retrying, report.failed), (0, 0, 1));
    match store.outbox().state(&poisoned).await.unwrap() {
        Some(OutboxState::Failed {
            attempts, reason, ..
        }) => {
            assert_eq!(attempts, 3);
            assert!(reason.contains(&ghost_queue), "{reason}");
            assert!(reason.contains("does not exist"), "{reason}");
            assert!(reason.contains("after 3 attempts"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert!(store.outbox().due(Utc::now(), 10).await.unwrap().is_empty());
    world.stop().await;
}
