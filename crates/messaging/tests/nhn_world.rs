//! The deployed NHN world on the private RabbitMQ (PROFILE.md, corrections
//! of 2026-12-01):
//!
//! - one installation serves a parent (8141703) and its service (8141705,
//!   NHN's real address record, whose queues are the parent's): a message
//!   for 8141705 arrives on `8141703_async`, is handed over, and its AppRec
//!   leaves from 8141705; an error report about a message from 8141705
//!   lands on `8141703_error`;
//! - a peer whose queues are named unlike its HER-id gets our messages,
//!   sync replies and error reports on exactly those queues;
//! - a corrected resend after an error report is handed over, a true
//!   repeat is not and gets the same AppRec again;
//! - a message whose sender's revocation status stays unknown is
//!   dead-lettered after `revocation_unknown_for` while others flow;
//! - a MsgHead whose sender HER-id sits in a HealthcareProfessional below
//!   the organisation passes.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use helsemelding_messaging::convert;
use helsemelding_messaging::{
    CommtestMode, Listener, ListenerOptions, Messenger, MessengerConfig, SendRequest,
};
use helsemelding_protect::{protect, Certificate, ProtectOptions, TrustAnchors};
use helsemelding_store::audit::{AuditFilter, AuditKind};
use helsemelding_store::Store;
use helsemelding_testkit::fixtures::read_nhn;
use helsemelding_testkit::party::OurMessenger;
use helsemelding_testkit::pki::{TestPki, Usage};
use helsemelding_transport::{Message, Outcome};
use helsemelding_transport_amqp::AmqpOptions;
use helsemelding_wire::apprec::AppRec;
use helsemelding_wire::envelope::{Outgoing, Routing};
use helsemelding_wire::error_report::ErrorCondition;
use helsemelding_wire::HerId;
use uuid::Uuid;

mod common;
use common::{eventually, msghead, Bus, Counting, Peer, FUNCTION};

const WAIT: Duration = Duration::from_secs(20);
const PARENT: u32 = 8141703;
const SERVICE: u32 = 8141705;

fn her(id: u32) -> HerId {
    HerId::new(id).unwrap()
}

/// A MsgHead that asks for an AppRec.
fn asking_for_apprec(from: HerId, to: HerId, n: usize) -> Vec<u8> {
    let text = String::from_utf8(msghead(from, to, n)).unwrap();
    text.replacen("</MsgId>", "</MsgId>\n    <Ack V=\"J\" DN=\"Ja\" />", 1)
        .into_bytes()
}

async fn listen(messenger: &Messenger, app: &Arc<Counting>) -> Listener {
    Listener::start(
        messenger,
        app.clone(),
        app.clone(),
        ListenerOptions {
            workers: 1,
            poll: Duration::from_millis(100),
            ..ListenerOptions::default()
        },
    )
    .await
    .unwrap()
}

/// Puts `message` on `queue` with the bus's raw transport.
async fn put(bus: &Bus, queue: &str, message: Message) {
    let mut sender = bus.transport.sender(queue).await.unwrap();
    assert_eq!(sender.send(message).await.unwrap(), Outcome::Accepted);
    sender.close().await.unwrap();
}

/// A message from `from` to `to` as a peer would send it, with a chosen id
/// and body (protected for `to` by `signer`, or raw bytes).
fn message_with_id(
    from: &Peer,
    to: &Peer,
    queue: &str,
    message_id: &str,
    body: Vec<u8>,
) -> Message {
    let envelope = Outgoing {
        message_id: message_id.to_owned(),
        from: from.her_id,
        to: to.her_id,
        to_queue: queue.to_owned(),
        function: FUNCTION.into(),
        routing: Routing::Async {
            reply_to: format!("{}_async", from.her_id),
            ttl: None,
        },
        protected: true,
        cpa_id: None,
        sent_at: Utc::now(),
        extra: Default::default(),
    }
    .into_envelope();
    convert::to_message(&envelope, body)
}

fn protected_for(from: &Peer, to: &Peer, payload: &[u8]) -> Vec<u8> {
    protect(
        payload,
        &from.signing.identity(),
        &Certificate::from_x509(to.encryption.cert.clone()),
        &ProtectOptions::default(),
    )
    .unwrap()
}

/// The installation of 8141703 and 8141705: one identity, NHN's record
/// for 8141705 (its queues are 8141703's), one messenger for both.
struct Municipality {
    messenger: Messenger,
    app: Arc<Counting>,
    listener: Option<Listener>,
    peer: Peer,
    _queues: helsemelding_testkit::broker::PartyQueues,
}

async fn municipality(bus: &Bus) -> Municipality {
    let queues = bus.broker.party_queues(PARENT);
    // One identity for both HER-ids, on the parent's queues.
    let installation = bus
        .parties
        .party(PARENT)
        .common_names("municipality")
        .queue_prefix(PARENT)
        .register();
    bus.parties
        .registration(SERVICE, &installation.signing, &installation.encryption)
        .queue_prefix(PARENT)
        .add();
    // NHN's own record for the service: queues inherited from 8141703.
    bus.parties
        .registry()
        .import(&read_nhn(&format!(
            "registry/CommunicationDetailsRest_{SERVICE}.json"
        )))
        .unwrap();
    let record = bus.parties.registry().party(SERVICE).unwrap();
    assert_eq!(
        record.queues.names().async_queue.as_deref(),
        Some("8141703_async")
    );
    let messenger = bus
        .parties
        .messenger(&installation)
        .configure(|config| config.her_ids = vec![her(PARENT), her(SERVICE)])
        .store_named("municipality")
        .build(bus.transport.clone())
        .messenger;
    let app = Arc::new(Counting::default());
    let listener = listen(&messenger, &app).await;
    Municipality {
        messenger,
        app,
        listener: Some(listener),
        peer: Peer::new(her(SERVICE), installation.signing, installation.encryption),
        _queues: queues,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_installation_serves_a_parent_and_its_service_on_inherited_queues() {
    let bus = Bus::new(AmqpOptions::default());
    let mut municipality = municipality(&bus).await;
    let gp = bus.party();
    let gp_app = Arc::new(Counting::default());
    let gp_listener = listen(&gp.messenger, &gp_app).await;

    // The GP writes to the service: the registry sends it to 8141703_async.
    let id = gp
        .messenger
        .send(SendRequest::new(
            her(SERVICE),
            FUNCTION,
            asking_for_apprec(gp.peer.her_id, her(SERVICE), 1),
        ))
        .await
        .unwrap();
    let got = eventually("the hand-over to 8141705", WAIT, async || {
        municipality
            .app
            .received()
            .into_iter()
            .find(|r| r.message_id == id)
    })
    .await;
    assert_eq!(got.to, her(SERVICE), "for the service, not the parent");
    assert_eq!(got.queue, "8141703_async");

    // Its AppRec leaves from 8141705.
    let apprec = eventually("the AppRec at the GP", WAIT, async || {
        gp_app
            .received()
            .into_iter()
            .find(|r| r.function == "APPREC")
    })
    .await;
    assert_eq!(apprec.from, her(SERVICE));
    let parsed = AppRec::parse(&apprec.payload).unwrap();
    assert_eq!(parsed.status.code(), "1");

    // A refused message from 8141705: the report goes to 8141703_error,
    // where the installation's error listener takes it.
    let refused = Uuid::new_v4().to_string();
    let queue = format!("{}_async", gp.peer.her_id);
    put(
        &bus,
        &queue,
        message_with_id(
            &municipality.peer,
            &gp.peer,
            &queue,
            &refused,
            b"not CMS".to_vec(),
        ),
    )
    .await;
    let report = eventually("the report on 8141703_error", WAIT, async || {
        municipality
            .app
            .errors()
            .into_iter()
            .find(|r| r.original_message_id.as_deref() == Some(refused.as_str()))
    })
    .await;
    assert_eq!(report.condition, Some(ErrorCondition::InvalidCertificate));
    assert_eq!(report.to, Some(her(SERVICE)));
    assert!(!bus.broker.queue_exists("8141705_error"));

    // Sending from the service: `from` picks it, and the reply-to is the
    // registry's (inherited) async queue.
    let from_service = municipality
        .messenger
        .send(
            SendRequest::new(
                gp.peer.her_id,
                FUNCTION,
                msghead(her(SERVICE), gp.peer.her_id, 2),
            )
            .from(her(SERVICE)),
        )
        .await
        .unwrap();
    let got = eventually("the GP's hand-over", WAIT, async || {
        gp_app
            .received()
            .into_iter()
            .find(|r| r.message_id == from_service)
    })
    .await;
    assert_eq!(got.from, her(SERVICE));
    // A sender that is not ours is refused before anything leaves.
    let error = municipality
        .messenger
        .send(
            SendRequest::new(
                gp.peer.her_id,
                FUNCTION,
                msghead(her(4242), gp.peer.her_id, 3),
            )
            .from(her(4242)),
        )
        .await
        .unwrap_err();
    assert!(error.to_string().contains("4242"), "{error}");

    gp_listener.stop().await.unwrap();
    municipality.listener.take().unwrap().stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_with_queues_unlike_its_her_id_is_reached_on_exactly_those() {
    let bus = Bus::new(AmqpOptions::default());
    let us = bus.party();
    let us_app = Arc::new(Counting::default());
    let us_listener = listen(&us.messenger, &us_app).await;
    // The peer's queues carry another name (as NHN's inherited ones do).
    let prefix_her_id = 700_000_000 + fastrand::u32(0..100_000_000);
    let _queues = bus.broker.party_queues(prefix_her_id);
    let her_id = her(prefix_her_id + 1);
    let odd_party = bus
        .parties
        .party(her_id.get())
        .name("queues named otherwise")
        .common_names("odd")
        .queue_prefix(prefix_her_id)
        .register();
    let odd = bus
        .parties
        .messenger(&odd_party)
        .configure(|config| config.retry.backoff_min = Duration::from_millis(50))
        .store_named("odd")
        .build(bus.transport.clone())
        .messenger;
    let odd_app = Arc::new(Counting::default());
    let odd_listener = listen(&odd, &odd_app).await;

    // Our message reaches it on <prefix>_async.
    let id = us
        .messenger
        .send(SendRequest::new(
            her_id,
            FUNCTION,
            msghead(us.peer.her_id, her_id, 1),
        ))
        .await
        .unwrap();
    let got = eventually("the odd peer's hand-over", WAIT, async || {
        odd_app.received().into_iter().find(|r| r.message_id == id)
    })
    .await;
    assert_eq!(got.queue, format!("{prefix_her_id}_async"));

    // Its sync call to us: our reply goes to its registry reply queue.
    let outcome = odd
        .communication_test(us.peer.her_id, CommtestMode::Sync, WAIT)
        .await
        .unwrap();
    assert_eq!(outcome.to, us.peer.her_id);
    assert_eq!(
        odd.reply_queue().await.unwrap(),
        format!("{prefix_her_id}_syncreply")
    );

    // A refused message from it: the report goes to <prefix>_error.
    let odd_peer = Peer::new(her_id, odd_party.signing, odd_party.encryption);
    let refused = Uuid::new_v4().to_string();
    let queue = format!("{}_async", us.peer.her_id);
    put(
        &bus,
        &queue,
        message_with_id(&odd_peer, &us.peer, &queue, &refused, b"junk".to_vec()),
    )
    .await;
    let report = eventually("the report on the odd error queue", WAIT, async || {
        odd_app
            .errors()
            .into_iter()
            .find(|r| r.original_message_id.as_deref() == Some(refused.as_str()))
    })
    .await;
    assert_eq!(report.condition, Some(ErrorCondition::InvalidCertificate));
    assert!(!bus
        .broker
        .queue_exists(&format!("{}_error", prefix_her_id + 1)));
    odd.close().await.unwrap();
    odd_listener.stop().await.unwrap();
    us_listener.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrected_resend_is_handed_over_and_a_true_repeat_gets_its_apprec_again() {
    let bus = Bus::new(AmqpOptions::default());
    let (sender, receiver) = (bus.party(), bus.party());
    let sender_app = Arc::new(Counting::default());
    let receiver_app = Arc::new(Counting::default());
    let sender_listener = listen(&sender.messenger, &sender_app).await;
    let receiver_listener = listen(&receiver.messenger, &receiver_app).await;
    let queue = format!("{}_async", receiver.peer.her_id);
    let id = Uuid::new_v4().to_string();

    // First copy: broken, reported.
    put(
        &bus,
        &queue,
        message_with_id(
            &sender.peer,
            &receiver.peer,
            &queue,
            &id,
            b"broken".to_vec(),
        ),
    )
    .await;
    eventually("the report about the broken copy", WAIT, async || {
        sender_app
            .errors()
            .into_iter()
            .find(|r| r.original_message_id.as_deref() == Some(id.as_str()))
    })
    .await;
    assert!(receiver_app.received().is_empty());

    // The sender fixes it and resends with the same id: judged afresh.
    let payload = asking_for_apprec(sender.peer.her_id, receiver.peer.her_id, 1);
    let body = protected_for(&sender.peer, &receiver.peer, &payload);
    put(
        &bus,
        &queue,
        message_with_id(&sender.peer, &receiver.peer, &queue, &id, body.clone()),
    )
    .await;
    let got = eventually("the corrected copy", WAIT, async || {
        receiver_app
            .received()
            .into_iter()
            .find(|r| r.message_id == id)
    })
    .await;
    assert_eq!(got.payload, payload);
    let apprecs = |app: &Counting| {
        app.received()
            .into_iter()
            .filter(|r| r.function == "APPREC")
            .map(|r| r.payload)
            .collect::<Vec<_>>()
    };
    eventually("the first AppRec", WAIT, async || {
        (apprecs(&sender_app).len() == 1).then_some(())
    })
    .await;

    // A true repeat: not handed over again, answered with the same AppRec.
    put(
        &bus,
        &queue,
        message_with_id(&sender.peer, &receiver.peer, &queue, &id, body),
    )
    .await;
    let both = eventually("the AppRec again", WAIT, async || {
        let both = apprecs(&sender_app);
        (both.len() == 2).then_some(both)
    })
    .await;
    assert_eq!(both[0], both[1], "the same AppRec, byte for byte");
    assert_eq!(receiver_app.hand_overs().get(&id), Some(&1));
    sender_listener.stop().await.unwrap();
    receiver_listener.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_revocation_is_dead_lettered_after_its_time_while_others_flow() {
    let bus = Bus::new(AmqpOptions::default());
    // The revocation service of this CA never answers: its CRL is unknown.
    let silent_ca = TestPki::new("CA whose CRL cannot be had");
    let good_sender = bus.party();
    let silent_peer = {
        let her_id = 600_000_000 + fastrand::u32(0..100_000_000);
        let silent = bus
            .parties
            .party(her_id)
            .name("revocation unknown")
            .common_names("silent")
            .issued_by(&silent_ca)
            .register();
        Peer::new(silent.her_id, silent.signing, silent.encryption)
    };
    let _silent_queues = bus.broker.party_queues(silent_peer.her_id.get());
    let receiver = bus.party();
    let OurMessenger { messenger, store } = bus
        .parties
        .messenger(&receiver.peer.test_party())
        .configure(|config| {
            config.trust = TrustAnchors::new(vec![
                bus.parties.pki().ca.certificate(),
                silent_ca.ca.certificate(),
            ]);
            config.receive.revocation_unknown_for = Duration::from_secs(2);
            config.retry.backoff_min = Duration::from_millis(100);
            config.retry.backoff_max = Duration::from_millis(300);
        })
        .store_named("strict")
        .build(bus.transport.clone());
    let app = Arc::new(Counting::default());
    let listener = listen(&messenger, &app).await;

    let queue = format!("{}_async", receiver.peer.her_id);
    let unknown = Uuid::new_v4().to_string();
    let payload = msghead(silent_peer.her_id, receiver.peer.her_id, 1);
    put(
        &bus,
        &queue,
        message_with_id(
            &silent_peer,
            &receiver.peer,
            &queue,
            &unknown,
            protected_for(&silent_peer, &receiver.peer, &payload),
        ),
    )
    .await;
    // Others keep flowing through the same single worker meanwhile.
    let mut sent = Vec::new();
    for n in 0..3 {
        sent.push(
            good_sender
                .messenger
                .send(SendRequest::new(
                    receiver.peer.her_id,
                    FUNCTION,
                    msghead(good_sender.peer.her_id, receiver.peer.her_id, n),
                ))
                .await
                .unwrap(),
        );
    }
    eventually("the other senders' messages", WAIT, async || {
        sent.iter()
            .all(|id| app.hand_overs().contains_key(id))
            .then_some(())
    })
    .await;
    assert!(
        !audited_dead_letter(&store, &unknown).await,
        "dead-lettered before its time"
    );
    eventually("the dead-letter audit event", WAIT, async || {
        audited_dead_letter(&store, &unknown).await.then_some(())
    })
    .await;
    bus.broker
        .wait_for_count(&format!("{}_dl", receiver.peer.her_id), 1, WAIT);
    assert!(!app.hand_overs().contains_key(&unknown));
    listener.stop().await.unwrap();
}

async fn audited_dead_letter(store: &Arc<dyn Store>, message_id: &str) -> bool {
    let filter = AuditFilter {
        message_id: Some(message_id.to_owned()),
        ..AuditFilter::default()
    };
    store
        .audit()
        .list(&filter)
        .await
        .unwrap()
        .iter()
        .any(|record| {
            record.event.kind == AuditKind::Rejected
                && record.event.outcome == "dead-lettered"
                && record
                    .event
                    .reason
                    .as_deref()
                    .is_some_and(|r| r.contains("revocation"))
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_named_by_a_healthcare_professional_below_the_organisation_passes() {
    let bus = Bus::new(AmqpOptions::default());
    let (gp, receiver) = (bus.party(), bus.party());
    let app = Arc::new(Counting::default());
    let listener = listen(&receiver.messenger, &app).await;
    let text = String::from_utf8(msghead(her(974_000_001), receiver.peer.her_id, 1)).unwrap();
    // The organisation is named by its organisation number; the GP's HER-id
    // sits in the HealthcareProfessional below it.
    let deep = text.replacen(
        "<Ident><Id>974000001</Id><TypeId V=\"HER\"",
        &format!(
            "<HealthcareProfessional><FamilyName>Lege</FamilyName><Ident><Id>{}</Id><TypeId V=\"HER\" S=\"2.16.578.1.12.4.1.1.9051\" /></Ident></HealthcareProfessional><Ident><Id>974000001</Id><TypeId V=\"ENH\"",
            gp.peer.her_id
        ),
        1,
    );
    let id = gp
        .messenger
        .send(SendRequest::new(
            receiver.peer.her_id,
            FUNCTION,
            deep.into_bytes(),
        ))
        .await
        .unwrap();
    eventually("the hand-over", WAIT, async || {
        app.hand_overs().contains_key(&id).then_some(())
    })
    .await;
    listener.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signer_rotation_the_cache_has_not_seen_is_looked_up_again_not_called_spoofing() {
    let bus = Bus::new(AmqpOptions::default());
    let sender = bus.party();
    let receiver = bus.peer();
    // The receiver reads the registry through an hour-long cache.
    let cached = Arc::new(helsemelding_registry::CachingRegistry::with_ttl(
        helsemelding_registry::FileRegistry::new(bus.parties.registry().dir()),
        Duration::from_secs(3600),
    ));
    let messenger = bus
        .parties
        .messenger(&receiver.test_party())
        .registry(cached)
        .store_named("cached")
        .build(bus.transport.clone())
        .messenger;
    let app = Arc::new(Counting::default());
    let listener = listen(&messenger, &app).await;
    let before = sender
        .messenger
        .send(SendRequest::new(
            receiver.her_id,
            FUNCTION,
            msghead(sender.peer.her_id, receiver.her_id, 1),
        ))
        .await
        .unwrap();
    eventually("the first message", WAIT, async || {
        app.hand_overs().contains_key(&before).then_some(())
    })
    .await;

    // The sender rotates its signing certificate; the registry has the new
    // one, the receiver's cache still the old.
    let rotated = bus.parties.pki().issue("rotated signing", Usage::Signing);
    bus.parties
        .registration(sender.peer.her_id.get(), &rotated, &sender.peer.encryption)
        .name("rotated")
        .add();
    let queue = format!("{}_async", receiver.her_id);
    let rotated_peer = Peer::new(sender.peer.her_id, rotated, sender.peer.encryption.clone());
    let payload = msghead(sender.peer.her_id, receiver.her_id, 2);
    let after = Uuid::new_v4().to_string();
    put(
        &bus,
        &queue,
        message_with_id(
            &rotated_peer,
            &receiver,
            &queue,
            &after,
            protected_for(&rotated_peer, &receiver, &payload),
        ),
    )
    .await;
    eventually("the message signed after the rotation", WAIT, async || {
        app.hand_overs().contains_key(&after).then_some(())
    })
    .await;
    assert!(app.errors().is_empty());
    listener.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sending_with_a_signing_certificate_the_registry_does_not_publish_is_refused() {
    let bus = Bus::new(AmqpOptions::default());
    let (us, them) = (bus.party(), bus.peer());
    let unregistered = bus
        .parties
        .pki()
        .issue("not registered signing", Usage::Signing);
    let messenger = Messenger::new(
        MessengerConfig::new(
            us.peer.her_id,
            unregistered.identity(),
            us.peer.encryption.identity(),
            bus.parties.trust_anchors(),
            bus.parties.crls(),
        ),
        bus.transport.clone(),
        bus.parties.registry().clone(),
        us.store.clone(),
    );
    let error = messenger
        .send(SendRequest::new(
            them.her_id,
            FUNCTION,
            msghead(us.peer.her_id, them.her_id, 1),
        ))
        .await
        .unwrap_err();
    let text = error.to_string();
    let serial = Certificate::from_x509(unregistered.cert.clone()).serial_hex();
    let registered = Certificate::from_x509(us.peer.signing.cert.clone()).serial_hex();
    assert!(
        text.contains(&serial) && text.contains(&registered),
        "{text}"
    );
    assert_eq!(
        bus.broker.message_count(&format!("{}_async", them.her_id)),
        0,
        "nothing left"
    );
}
