//! The AMQP transport against things that are not ours: Debian's
//! python3-qpid-proton as the peer on the other end of a queue, and the
//! broker's TLS listener with the CA scripts/broker generated.

use std::time::Duration;

use helsemelding_testkit::broker::Broker;
use helsemelding_testkit::peers::proton_peer;
use helsemelding_transport::{Error, Message, Outcome, Transport, Value};
use helsemelding_transport_amqp::{AmqpOptions, AmqpTransport};

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test]
async fn a_message_from_python_proton_arrives_with_every_property_typed() {
    let broker = Broker::from_env();
    let queue = broker.fresh_queue("from-proton");
    let peer_url = broker.amqp_url().to_owned();
    let address = format!("/amq/queue/{}", queue.name());
    let printed =
        tokio::task::spawn_blocking(move || proton_peer("send", &peer_url, &address, WAIT))
            .await
            .unwrap();
    assert_eq!(printed.trim(), "sent");

    let transport = AmqpTransport::new(broker.amqp_url(), AmqpOptions::default()).unwrap();
    let mut receiver = transport.receiver(queue.name(), 10).await.unwrap();
    let delivery = receiver
        .receive(WAIT)
        .await
        .unwrap()
        .expect("the proton message");
    let m = &delivery.message;
    assert_eq!(m.message_id.as_deref(), Some("py-message-1"));
    assert_eq!(m.correlation_id.as_deref(), Some("py-correlation-1"));
    assert_eq!(m.to.as_deref(), Some("91462_async"));
    assert_eq!(m.reply_to.as_deref(), Some("109989_async"));
    assert_eq!(m.subject.as_deref(), Some("DIALOG_INNBYGGER_EKONTAKT"));
    assert_eq!(
        m.content_type.as_deref(),
        Some("application/pkcs7-mime; smime-type=signed-and-enveloped-data")
    );
    assert!(m.durable);
    assert_eq!(m.body, b"\x00\x01binary body\xff");
    let p = &m.application_properties;
    assert_eq!(p["fromHerId"], Value::String("109989".into()));
    assert_eq!(p["fromHerId"].as_integer(), Some(109989));
    assert_eq!(
        p["applicationTimeStamp"],
        Value::String("2026-11-23T12:00:00.0000000+01:00".into())
    );
    assert_eq!(p["intHerId"], Value::Int(91462));
    assert_eq!(
        p["longHerId"],
        Value::Long(93252),
        "a plain Python int is an AMQP long"
    );
    assert_eq!(p["longHerId"].as_integer(), Some(93252));
    assert_eq!(p["flag"], Value::Bool(true));
    assert_eq!(p["stamp"], Value::Timestamp(1_700_000_000_123));
    receiver.accept(&delivery).await.unwrap();
    receiver.close().await.unwrap();
    transport.close().await.unwrap();
}

#[tokio::test]
async fn python_proton_reads_what_we_send_with_the_types_we_chose() {
    let broker = Broker::from_env();
    let queue = broker.fresh_queue("to-proton");
    let url = format!("{}/{}", broker.amqp_url(), broker.exchange());
    let transport = AmqpTransport::new(&url, AmqpOptions::default()).unwrap();
    let mut sender = transport.sender(queue.name()).await.unwrap();
    let message = Message {
        message_id: Some("rust-1".into()),
        correlation_id: Some("rust-corr-1".into()),
        to: Some("109989_async".into()),
        reply_to: Some("91462_async".into()),
        subject: Some("APPREC".into()),
        content_type: Some("text/plain".into()),
        ..Message::new(b"hello proton".to_vec())
    }
    .with_property("fromHerId", "91462")
    .with_property("int", 5i32)
    .with_property("long", 1i64 << 40)
    .with_property("flag", false)
    .with_property("stamp", Value::Timestamp(1_700_000_000_123));
    assert_eq!(sender.send(message).await.unwrap(), Outcome::Accepted);
    sender.close().await.unwrap();
    transport.close().await.unwrap();

    let peer_url = broker.amqp_url().to_owned();
    let address = format!("/amq/queue/{}", queue.name());
    let printed =
        tokio::task::spawn_blocking(move || proton_peer("receive", &peer_url, &address, WAIT))
            .await
            .unwrap();
    let got: serde_json::Value = serde_json::from_str(printed.trim()).unwrap();
    assert_eq!(got["id"], "rust-1");
    assert_eq!(got["correlation_id"], "rust-corr-1");
    assert_eq!(got["to"], "109989_async");
    assert_eq!(got["reply_to"], "91462_async");
    assert_eq!(got["subject"], "APPREC");
    assert_eq!(got["content_type"], "text/plain");
    assert_eq!(got["durable"], true);
    assert_eq!(got["body_hex"], hex(b"hello proton"));
    let props = &got["properties"];
    assert_eq!(props["fromHerId"], serde_json::json!(["str", "91462"]));
    assert_eq!(props["int"], serde_json::json!(["int32", "5"]));
    assert_eq!(
        props["long"],
        serde_json::json!(["int", (1i64 << 40).to_string()])
    );
    assert_eq!(props["flag"], serde_json::json!(["bool", "False"]));
    assert_eq!(
        props["stamp"],
        serde_json::json!(["timestamp", "1700000000123"])
    );
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn amqps_works_with_the_generated_ca_and_fails_without_it() {
    let broker = Broker::from_env();
    let queue = broker.fresh_queue("tls");
    let with_ca = AmqpOptions {
        ca_file: Some(broker.ca_file().to_owned()),
        ..AmqpOptions::default()
    };
    let transport = AmqpTransport::new(broker.amqps_url(), with_ca).unwrap();
    let mut sender = transport.sender(queue.name()).await.unwrap();
    assert_eq!(
        sender
            .send(Message::new(b"over tls".to_vec()))
            .await
            .unwrap(),
        Outcome::Accepted
    );
    sender.close().await.unwrap();
    let mut receiver = transport.receiver(queue.name(), 1).await.unwrap();
    let delivery = receiver.receive(WAIT).await.unwrap().expect("the message");
    assert_eq!(delivery.message.body, b"over tls");
    receiver.accept(&delivery).await.unwrap();
    receiver.close().await.unwrap();
    transport.close().await.unwrap();

    // System roots only: the private CA is unknown, so the handshake fails.
    let untrusting = AmqpOptions {
        send_retry_for: Duration::ZERO,
        operation_timeout: Duration::from_secs(5),
        ..AmqpOptions::default()
    };
    let transport = AmqpTransport::new(broker.amqps_url(), untrusting).unwrap();
    let mut sender = transport.sender(queue.name()).await.unwrap();
    match sender.send(Message::new(b"x".to_vec())).await {
        Err(Error::Connect { reason, .. }) => assert!(reason.contains("UnknownIssuer"), "{reason}"),
        other => panic!("expected a certificate error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_receiver_on_a_missing_queue_is_a_no_such_queue_error_naming_it() {
    let broker = Broker::from_env();
    let transport = AmqpTransport::new(broker.amqp_url(), AmqpOptions::default()).unwrap();
    match transport.receiver("no-such-queue-here", 1).await {
        Err(Error::NoSuchQueue { queue, .. }) => assert_eq!(queue, "no-such-queue-here"),
        Err(other) => panic!("expected a no-such-queue error, got {other}"),
        Ok(_) => panic!("expected a no-such-queue error"),
    }
    // The session the broker ended is replaced: the next link works.
    let queue = broker.fresh_queue("after-error");
    let mut sender = transport.sender(queue.name()).await.unwrap();
    assert_eq!(
        sender.send(Message::new(b"ok".to_vec())).await.unwrap(),
        Outcome::Accepted
    );
    broker.wait_for_count(queue.name(), 1, Duration::from_secs(10));
    transport.close().await.unwrap();
}
