//! Interoperability at the messaging level with peers that are not ours,
//! on the private RabbitMQ of scripts/test:
//!
//! - a message with exactly the AMQP properties NHN's .NET reference
//!   library sends, its body protected by the `openssl cms` CLI, reaches
//!   the application with the right fields;
//! - an error report exactly as the reference library sends it (no
//!   content-type, `MM/dd/yyyy HH:mm:ss` receiverTimeStamp) reaches the
//!   error callback, and nothing is answered;
//! - Debian's python3-qpid-proton sends us a message with HER-ids typed as
//!   AMQP longs, and receives ours, checking every property by name and
//!   AMQP type; the openssl CLI decrypts and verifies what we sent.

use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Timelike, Utc};
use helsemelding_messaging::{Listener, ListenerOptions, SendRequest};
use helsemelding_testkit::peers::{openssl_protect, openssl_unprotect, proton_peer_with};
use helsemelding_transport::{Message, Outcome};
use helsemelding_transport_amqp::AmqpOptions;
use helsemelding_wire::error_report::ErrorCondition;
use helsemelding_wire::queue::{queue_name, QueueKind};
use uuid::Uuid;

mod common;
use common::{eventually, msghead, Bus, Counting, Party, FUNCTION};

const WAIT: Duration = Duration::from_secs(20);
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

/// Puts `message` on `queue` with our raw transport; the broker must accept it.
async fn put(bus: &Bus, queue: &str, message: Message) {
    let mut sender = bus.transport.sender(queue).await.unwrap();
    assert_eq!(sender.send(message).await.unwrap(), Outcome::Accepted);
    sender.close().await.unwrap();
}

/// The application properties the .NET library adds to every transfer.
fn with_reference_extras(message: Message) -> Message {
    message
        .with_property("enqueuedTimeUtc", "2026-11-23T11:59:58")
        .with_property("X-ExecutingAssembly", "Helsenorge.Messaging.Server")
        .with_property("X-ExecutingAssemblyVersion", "6.2.1.0")
        .with_property("X-TargetFramework", ".NETCoreApp,Version=v8.0")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_exactly_as_the_reference_library_sends_it_is_handed_over() {
    let bus = Bus::new(AmqpOptions::default());
    let dotnet = bus.peer();
    let us = bus.party();
    let (listener, app) = listen(&us).await;

    let payload = msghead(dotnet.her_id, us.peer.her_id, 1);
    let body = openssl_protect(
        &payload,
        &dotnet.signing,
        &us.peer.encryption.cert,
        bus.parties.dir(),
    );
    let id = Uuid::new_v4().hyphenated().to_string();
    let our_async = queue_name(us.peer.her_id, QueueKind::Async);
    let mut message = with_reference_extras(
        Message::new(body)
            .with_property("fromHerId", dotnet.her_id.to_string())
            .with_property("toHerId", us.peer.her_id.to_string())
            .with_property("applicationTimeStamp", "2026-11-23T11:59:57Z"),
    );
    message.message_id = Some(id.clone());
    message.correlation_id = Some(id.clone());
    message.to = Some(our_async.clone());
    message.reply_to = Some(queue_name(dotnet.her_id, QueueKind::Async));
    message.subject = Some(FUNCTION.into());
    message.content_type = Some(PROTECTED.into());
    // The reference library never sets durable and has no TTL on async.
    message.durable = false;
    message.ttl = None;
    put(&bus, &our_async, message).await;

    let got = eventually("the hand-over", WAIT, async || {
        app.received().into_iter().next()
    })
    .await;
    assert_eq!(got.payload, payload, "payload bytes exactly as signed");
    assert_eq!(got.message_id, id);
    assert_eq!(got.correlation_id.as_deref(), Some(id.as_str()));
    assert_eq!((got.from, got.to), (dotnet.her_id, us.peer.her_id));
    assert_eq!(got.function, FUNCTION);
    assert_eq!(got.cpa_id, None);
    assert_eq!(got.queue, our_async);
    assert_eq!(
        got.application_time,
        Utc.with_ymd_and_hms(2026, 11, 23, 11, 59, 57).unwrap()
    );
    assert_eq!(
        got.enqueued_time,
        Some(Utc.with_ymd_and_hms(2026, 11, 23, 11, 59, 58).unwrap())
    );
    assert_eq!(got.metadata["X-MessageInfo-Type"], FUNCTION);
    listener.stop().await.unwrap();
    assert_eq!(app.hand_overs()[&id], 1);
    assert!(app.errors().is_empty());
    let their_error = queue_name(dotnet.her_id, QueueKind::Error);
    bus.broker
        .wait_for_count(&their_error, 0, Duration::from_secs(2));
    bus.transport.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_report_as_the_reference_library_sends_it_reaches_the_error_callback_unanswered() {
    let bus = Bus::new(AmqpOptions::default());
    let dotnet = bus.peer();
    let us = bus.party();
    let (listener, app) = listen(&us).await;

    let report_id = Uuid::new_v4().hyphenated().to_string();
    let original_id = Uuid::new_v4().hyphenated().to_string();
    let our_error = queue_name(us.peer.her_id, QueueKind::Error);
    // As Helsenorge.Messaging builds it: no content-type, no reply-to or
    // correlation-id, one empty data section, .NET's invariant date format.
    let mut report = with_reference_extras(
        Message::new(Vec::new())
            .with_property("fromHerId", dotnet.her_id.to_string())
            .with_property("toHerId", us.peer.her_id.to_string())
            .with_property("applicationTimeStamp", "2026-11-23T12:00:01Z")
            .with_property("originalMessageId", original_id.as_str())
            .with_property("receiverTimeStamp", "11/23/2026 12:00:00")
            .with_property("errorCondition", "transport:invalid-field-value")
            .with_property("errorDescription", "Invalid value in field: 'toHerId'")
            .with_property("errorConditionData", "toHerId;Label;"),
    );
    report.message_id = Some(report_id.clone());
    report.to = Some(our_error.clone());
    report.subject = Some(FUNCTION.into());
    report.content_type = None;
    report.durable = false;
    put(&bus, &our_error, report).await;

    let got = eventually("the error callback", WAIT, async || {
        app.errors().into_iter().next()
    })
    .await;
    assert_eq!(got.message_id.as_deref(), Some(report_id.as_str()));
    assert_eq!(got.from, Some(dotnet.her_id));
    assert_eq!(got.to, Some(us.peer.her_id));
    assert_eq!(got.function.as_deref(), Some(FUNCTION));
    assert_eq!(
        got.original_message_id.as_deref(),
        Some(original_id.as_str())
    );
    assert_eq!(
        got.receiver_time,
        Some(Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0).unwrap())
    );
    assert_eq!(got.condition, Some(ErrorCondition::InvalidFieldValue));
    assert_eq!(
        got.condition_text.as_deref(),
        Some("transport:invalid-field-value")
    );
    assert_eq!(
        got.description.as_deref(),
        Some("Invalid value in field: 'toHerId'")
    );
    assert_eq!(got.data, vec!["toHerId", "Label"]);

    // Accepted (gone from our error queue) and never answered.
    bus.broker
        .wait_for_count(&our_error, 0, Duration::from_secs(5));
    tokio::time::sleep(Duration::from_millis(500)).await;
    listener.stop().await.unwrap();
    assert_eq!(app.errors().len(), 1);
    assert!(app.received().is_empty());
    for kind in [QueueKind::Error, QueueKind::Async] {
        let queue = queue_name(dotnet.her_id, kind);
        assert_eq!(
            bus.broker.message_count(&queue),
            0,
            "{queue}: nothing is sent back"
        );
    }
    bus.transport.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proton_peer_with_integer_her_ids_is_accepted_and_receives_ours_as_the_profile_says() {
    let bus = Bus::new(AmqpOptions::default());
    let python = bus.peer();
    let us = bus.party();
    let (listener, app) = listen(&us).await;
    let url = bus.broker.amqp_url().to_owned();

    // Python to us: HER-ids as plain Python ints (AMQP long).
    let payload = msghead(python.her_id, us.peer.her_id, 2);
    let body = openssl_protect(
        &payload,
        &python.signing,
        &us.peer.encryption.cert,
        bus.parties.dir(),
    );
    let id = Uuid::new_v4().hyphenated().to_string();
    let our_async = queue_name(us.peer.her_id, QueueKind::Async);
    let spec = serde_json::json!({
        "id": id,
        "correlation_id": id,
        "to": our_async,
        "reply_to": queue_name(python.her_id, QueueKind::Async),
        "subject": FUNCTION,
        "content_type": PROTECTED,
        "durable": true,
        "properties": {
            "fromHerId": python.her_id.get(),
            "toHerId": us.peer.her_id.get(),
            "applicationTimeStamp": "2026-11-23T12:00:00Z",
        },
    });
    let spec_file = bus.parties.dir().join("spec.json");
    std::fs::write(&spec_file, spec.to_string()).unwrap();
    let body_file = bus.parties.dir().join("body.der");
    std::fs::write(&body_file, &body).unwrap();
    let args = [
        "send-spec".to_owned(),
        url.clone(),
        format!("/amq/queue/{our_async}"),
        spec_file.display().to_string(),
        body_file.display().to_string(),
    ];
    let out = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        proton_peer_with(&args, WAIT)
    })
    .await
    .unwrap();
    assert_eq!(out.trim(), "sent");
    let got = eventually("the hand-over", WAIT, async || {
        app.received().into_iter().next()
    })
    .await;
    assert_eq!(got.payload, payload);
    assert_eq!(got.message_id, id);
    assert_eq!((got.from, got.to), (python.her_id, us.peer.her_id));
    assert_eq!(got.function, FUNCTION);
    assert_eq!(
        got.application_time,
        Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0).unwrap()
    );

    // Us to Python: the peer checks names and AMQP types, we check values.
    let to_python = msghead(us.peer.her_id, python.her_id, 3);
    let before = Utc::now().with_nanosecond(0).unwrap();
    let sent_id = us
        .messenger
        .send(SendRequest::new(python.her_id, FUNCTION, to_python.clone()))
        .await
        .unwrap();
    let their_async = queue_name(python.her_id, QueueKind::Async);
    let address = format!("/amq/queue/{their_async}");
    let out = tokio::task::spawn_blocking(move || {
        proton_peer_with(&["receive-nhn", &url, &address], WAIT)
    })
    .await
    .unwrap();
    let seen: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(seen["problems"], serde_json::json!([]), "{seen}");
    assert_eq!(seen["id"], serde_json::json!(["string", sent_id]));
    assert_eq!(
        seen["correlation_id"],
        serde_json::json!(["string", sent_id])
    );
    assert_eq!(seen["to"], their_async.as_str());
    assert_eq!(
        seen["reply_to"],
        queue_name(us.peer.her_id, QueueKind::Async).as_str()
    );
    assert_eq!(seen["subject"], FUNCTION);
    assert_eq!(seen["content_type"], PROTECTED);
    assert_eq!(seen["durable"], true);
    let properties = &seen["properties"];
    assert_eq!(
        properties["fromHerId"],
        serde_json::json!(["string", us.peer.her_id.to_string()])
    );
    assert_eq!(
        properties["toHerId"],
        serde_json::json!(["string", python.her_id.to_string()])
    );
    assert_eq!(properties["applicationTimeStamp"][0], "string");
    let stamp = properties["applicationTimeStamp"][1].as_str().unwrap();
    let stamp = chrono::DateTime::parse_from_rfc3339(stamp).unwrap();
    assert!(stamp >= before && stamp <= Utc::now(), "{stamp}");
    assert_eq!(
        properties["X-MessageInfo-Type"],
        serde_json::json!(["string", FUNCTION])
    );
    assert!(properties.get("cpaId").is_none(), "no CPA was used: {seen}");

    let body = hex::decode(seen["body_hex"].as_str().unwrap()).unwrap();
    let opened = openssl_unprotect(
        &body,
        &python.encryption,
        &us.peer.signing.cert,
        &bus.parties.pki().ca.cert,
        bus.parties.dir(),
    );
    assert_eq!(
        opened, to_python,
        "openssl reads back our payload byte for byte"
    );

    listener.stop().await.unwrap();
    assert_eq!(app.received().len(), 1);
    assert!(app.errors().is_empty());
    bus.transport.close().await.unwrap();
}
