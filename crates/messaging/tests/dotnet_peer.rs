//! Error reports between us and a peer that behaves like the RELEASED .NET
//! listener of Helsenorge.Messaging (testkit's `dotnet` stand-in), on the
//! private RabbitMQ of scripts/test:
//!
//! (a) its reports reach our error callback exactly once, in the released
//!     clone shape (with and without the original's body) and in the
//!     unreleased #846 shape, and nothing is answered;
//! (b) every error report we send is taken in by it (not refused and
//!     answered with `transport:not-well-formed-xml`).

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use helsemelding_messaging::{convert, Listener, ListenerOptions, SendRequest};
use helsemelding_protect::{protect, Certificate, ProtectOptions};
use helsemelding_testkit::dotnet::{
    AnswerShape, Decision, DotnetListener, DotnetListenerOptions, Step, Verdict,
};
use helsemelding_testkit::pki::{Issued, Usage};
use helsemelding_transport::{Message, Outcome};
use helsemelding_transport_amqp::AmqpOptions;
use helsemelding_wire::envelope::{Outgoing, Routing};
use helsemelding_wire::error_report::ErrorCondition;
use helsemelding_wire::queue::{queue_name, QueueKind};
use helsemelding_wire::HerId;
use uuid::Uuid;

mod common;
use common::{eventually, msghead, Bus, Counting, Party, Peer, FUNCTION};

const WAIT: Duration = Duration::from_secs(20);
/// How long we watch for an answer that must not come.
const QUIET: Duration = Duration::from_secs(3);
const PROTECTED: &str = "application/pkcs7-mime; smime-type=signed-and-enveloped-data";

async fn listen(party: &Party) -> (Listener, Arc<Counting>) {
    let app = Arc::new(Counting::default());
    let listener = Listener::start(
        &party.messenger,
        app.clone(),
        app.clone(),
        ListenerOptions {
            workers: 1,
            error_queue: true,
            sync_queue: false,
            poll: Duration::from_millis(200),
            ..ListenerOptions::default()
        },
    )
    .await
    .unwrap();
    (listener, app)
}

/// The stand-in on `dotnet`'s own queues; its registry knows our error queue.
fn dotnet_listener(bus: &Bus, dotnet: &Peer, us: &Party, script: Vec<Step>) -> DotnetListener {
    DotnetListener::start(
        &DotnetListenerOptions::new(
            bus.broker.amqp_url(),
            bus.broker.exchange(),
            &queue_name(dotnet.her_id, QueueKind::Async),
            &queue_name(dotnet.her_id, QueueKind::Error),
        )
        .error_queue_of(
            us.peer.her_id.get(),
            &queue_name(us.peer.her_id, QueueKind::Error),
        )
        .script(script),
    )
}

fn raw(decisions: &[Decision]) -> Vec<&serde_json::Value> {
    decisions.iter().map(|d| &d.raw).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_from_a_released_dotnet_listener_reach_the_error_callback_once_unanswered() {
    let bus = Bus::new(AmqpOptions::default());
    let dotnet = bus.peer();
    let us = bus.party();
    let (listener, app) = listen(&us).await;
    let thumbprint = Certificate::from_x509(us.peer.signing.cert.clone())
        .thumbprint_sha1()
        .to_ascii_uppercase();
    let certificate_data = vec![
        format!("Subject: CN=party {} signing", us.peer.her_id),
        format!("Thumbprint: {thumbprint}"),
    ];
    let cases = [
        (
            AnswerShape::Released,
            ErrorCondition::InvalidCertificate,
            Some(certificate_data.clone()),
        ),
        (
            AnswerShape::ReleasedWithBody,
            ErrorCondition::ExpiredCertificate,
            Some(certificate_data.clone()),
        ),
        (
            AnswerShape::Unreleased846,
            ErrorCondition::InternalError,
            None,
        ),
    ];
    let script = cases
        .iter()
        .map(|(shape, condition, data)| Step::refuse(condition.as_str(), data.clone(), *shape))
        .collect();
    let peer = dotnet_listener(&bus, &dotnet, &us, script);
    let their_async = queue_name(dotnet.her_id, QueueKind::Async);
    let their_error = queue_name(dotnet.her_id, QueueKind::Error);

    let mut sent = Vec::new();
    for (n, (shape, condition, data)) in cases.iter().enumerate() {
        let payload = msghead(us.peer.her_id, dotnet.her_id, n);
        let id = us
            .messenger
            .send(SendRequest::new(dotnet.her_id, FUNCTION, payload))
            .await
            .unwrap();
        // One at a time, so that the script's steps meet the messages in order.
        let decision = eventually("the .NET listener's refusal", WAIT, async || {
            peer.decisions_on(&their_async)
                .into_iter()
                .find(|d| d.message_id.as_deref() == Some(id.as_str()))
        })
        .await;
        assert_eq!(decision.verdict, Verdict::Refused, "{:?}", decision.raw);
        let answer = decision.answer.as_ref().expect("a report to us");
        assert_eq!(answer.shape, *shape);
        assert_eq!(answer.queue, queue_name(us.peer.her_id, QueueKind::Error));
        if *shape == AnswerShape::Unreleased846 {
            assert_eq!(answer.content_type, None);
        } else {
            // The clone: our message-id and protected content-type.
            assert_eq!(answer.message_id.as_deref(), Some(id.as_str()));
            assert_eq!(answer.content_type.as_deref(), Some(PROTECTED));
        }
        sent.push((id, *shape, *condition, data.clone()));
    }

    let reports = eventually("three reports in the error callback", WAIT, async || {
        let errors = app.errors();
        (errors.len() >= sent.len()).then_some(errors)
    })
    .await;
    for (id, shape, condition, data) in &sent {
        let of_this: Vec<_> = reports
            .iter()
            .filter(|r| r.original_message_id.as_deref() == Some(id.as_str()))
            .collect();
        assert_eq!(of_this.len(), 1, "{shape:?}: exactly once: {reports:?}");
        let report = of_this[0];
        assert_eq!(report.condition, Some(*condition), "{shape:?}: {report:?}");
        assert_eq!(report.from, Some(dotnet.her_id));
        assert_eq!(report.to, Some(us.peer.her_id));
        assert_eq!(report.function.as_deref(), Some(FUNCTION));
        assert_eq!(&report.data, data.as_ref().unwrap_or(&Vec::new()));
        let received = report.receiver_time.expect("receiverTimeStamp read");
        assert!(
            (Utc::now() - received).num_seconds().abs() < 120,
            "{shape:?}: receiverTimeStamp {received}"
        );
        if *shape == AnswerShape::Unreleased846 {
            assert_ne!(report.message_id.as_deref(), Some(id.as_str()));
        } else {
            assert_eq!(report.message_id.as_deref(), Some(id.as_str()));
        }
    }

    // Nothing comes back to the peer, and nothing more reaches the callback.
    tokio::time::sleep(QUIET).await;
    bus.broker
        .wait_for_count(&queue_name(us.peer.her_id, QueueKind::Error), 0, WAIT);
    listener.stop().await.unwrap();
    assert_eq!(app.errors().len(), sent.len(), "{:?}", app.errors());
    assert!(app.received().is_empty());
    let decisions = peer.stop();
    assert!(
        decisions.iter().all(|d| d.queue != their_error),
        "the peer got an answer to its reports: {:?}",
        raw(&decisions)
    );
    assert_eq!(bus.broker.message_count(&their_error), 0);
    bus.transport.close().await.unwrap();
}

/// A message as the .NET party might put it on our async queue: `payload`
/// signed by `signer`, encrypted to us, claiming to come from `from`.
fn from_dotnet(from: &Peer, us: &Party, payload: &[u8], signer: &Issued) -> Message {
    let body = protect(
        payload,
        &signer.identity(),
        &Certificate::from_x509(us.peer.encryption.cert.clone()),
        &ProtectOptions::default(),
    )
    .unwrap();
    let envelope = Outgoing {
        message_id: Uuid::new_v4().hyphenated().to_string(),
        from: from.her_id,
        to: us.peer.her_id,
        to_queue: queue_name(us.peer.her_id, QueueKind::Async),
        function: FUNCTION.into(),
        routing: Routing::Async {
            reply_to: queue_name(from.her_id, QueueKind::Async),
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

/// One way of making our listener refuse a message from the .NET party:
/// what, the message, the condition we report, and the errorConditionData
/// expected (`Some(None)` = absent, `None` = not checked).
type Refusal = (
    &'static str,
    Message,
    ErrorCondition,
    Option<Option<String>>,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_report_we_send_is_taken_in_by_a_released_dotnet_listener() {
    let bus = Bus::new(AmqpOptions::default());
    let dotnet = bus.peer();
    let us = bus.party();
    let good = |n| msghead(dotnet.her_id, us.peer.her_id, n);
    let mallory = bus.parties.pki().issue("mallory signing", Usage::Signing);
    let mut no_timestamp = from_dotnet(&dotnet, &us, &good(4), &dotnet.signing);
    no_timestamp
        .application_properties
        .remove("applicationTimeStamp");
    let cases: Vec<Refusal> = vec![
        (
            "not XML",
            from_dotnet(&dotnet, &us, b"<MsgHead><unclosed>", &dotnet.signing),
            ErrorCondition::NotWellFormedXml,
            Some(None),
        ),
        (
            "spoofed signer",
            from_dotnet(&dotnet, &us, &good(2), &mallory),
            ErrorCondition::SpoofingAttack,
            None,
        ),
        (
            "MsgHead sender is not fromHerId",
            from_dotnet(
                &dotnet,
                &us,
                &msghead(HerId::new(4242).unwrap(), us.peer.her_id, 3),
                &dotnet.signing,
            ),
            ErrorCondition::SpoofingAttack,
            Some(Some(format!("{};4242;", dotnet.her_id))),
        ),
        (
            "missing applicationTimeStamp",
            no_timestamp,
            ErrorCondition::InvalidFieldValue,
            Some(Some("applicationTimeStamp;".into())),
        ),
    ];
    reports_are_taken_in(&bus, &dotnet, &us, cases).await;
}

/// The released listener refuses a message without `Label` (also on its
/// error queue) and answers it, so our report about a message without
/// subject carries `UNKNOWN` (found by the stand-in).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_about_a_message_without_subject_is_taken_in_by_a_released_dotnet_listener() {
    let bus = Bus::new(AmqpOptions::default());
    let dotnet = bus.peer();
    let us = bus.party();
    let payload = msghead(dotnet.her_id, us.peer.her_id, 5);
    let mut no_subject = from_dotnet(&dotnet, &us, &payload, &dotnet.signing);
    no_subject.subject = None;
    let cases: Vec<Refusal> = vec![(
        "missing Label",
        no_subject,
        ErrorCondition::InvalidFieldValue,
        Some(Some("Label;".into())),
    )];
    reports_are_taken_in(&bus, &dotnet, &us, cases).await;
}

/// Puts each case on our async queue (as the .NET party), and asserts that
/// the stand-in takes each of our reports in and that nothing comes back.
async fn reports_are_taken_in(bus: &Bus, dotnet: &Peer, us: &Party, cases: Vec<Refusal>) {
    let (listener, app) = listen(us).await;
    let peer = dotnet_listener(bus, dotnet, us, Vec::new());
    let their_error = queue_name(dotnet.her_id, QueueKind::Error);
    let our_error = queue_name(us.peer.her_id, QueueKind::Error);
    let our_async = queue_name(us.peer.her_id, QueueKind::Async);
    let mut sender = bus.transport.sender(&our_async).await.unwrap();
    let mut expected = Vec::new();
    for (what, message, condition, data) in cases {
        let id = message.message_id.clone().unwrap();
        assert_eq!(sender.send(message).await.unwrap(), Outcome::Accepted);
        expected.push((what, id, condition, data));
    }
    sender.close().await.unwrap();

    let decisions = eventually(
        "the .NET listener's decisions on our reports",
        WAIT,
        async || {
            let decisions = peer.decisions_on(&their_error);
            (decisions.len() >= expected.len()).then_some(decisions)
        },
    )
    .await;
    for (what, id, condition, data) in &expected {
        let about: Vec<&Decision> = decisions
            .iter()
            .filter(|d| {
                d.properties
                    .get("originalMessageId")
                    .is_some_and(|(_, v)| v == id)
            })
            .collect();
        assert_eq!(about.len(), 1, "{what}: one report: {:?}", raw(&decisions));
        let decision = about[0];
        assert_eq!(
            decision.verdict,
            Verdict::TakenIn,
            "{what}: the released .NET listener did not take our report in: {}",
            decision.raw
        );
        assert_eq!(decision.content_type.as_deref(), Some(PROTECTED), "{what}");
        assert!(decision.subject.is_some(), "{what}: a subject");
        let report = decision.report.as_ref().unwrap();
        assert_eq!(
            report.error_condition.as_deref(),
            Some(condition.as_str()),
            "{what}"
        );
        if let Some(data) = data {
            assert_eq!(&report.error_condition_data, data, "{what}");
        }
        let stamp = report.receiver_time_stamp.as_deref().unwrap_or_default();
        assert!(
            chrono::NaiveDateTime::parse_from_str(stamp, "%m/%d/%Y %H:%M:%S").is_ok(),
            "{what}: receiverTimeStamp {stamp:?}"
        );
        for (name, value) in [
            ("fromHerId", us.peer.her_id.to_string()),
            ("toHerId", dotnet.her_id.to_string()),
        ] {
            assert_eq!(
                decision.properties.get(name),
                Some(&("string".to_owned(), value)),
                "{what}: {name}"
            );
        }
    }

    // Nothing is answered: no refusal recorded, nothing on our error queue.
    tokio::time::sleep(QUIET).await;
    listener.stop().await.unwrap();
    let decisions = peer.stop();
    assert!(
        decisions.iter().all(|d| d.verdict == Verdict::TakenIn),
        "{:?}",
        raw(&decisions)
    );
    assert!(app.errors().is_empty(), "answered: {:?}", app.errors());
    assert_eq!(bus.broker.message_count(&our_error), 0);
    assert!(app.received().is_empty());
    bus.transport.close().await.unwrap();
}
