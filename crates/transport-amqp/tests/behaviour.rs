//! One behavioural suite, run against both transports: the embedded local
//! store and AMQP 1.0 to the private RabbitMQ of scripts/test. Each test is
//! a generic async fn over `&dyn Transport`, invoked once per transport.

use std::time::Duration;

use helsemelding_testkit::broker::{Broker, TestQueue};
use helsemelding_transport::local::LocalTransport;
use helsemelding_transport::{Message, Outcome, Transport, Value};
use helsemelding_transport_amqp::{AmqpOptions, AmqpTransport};

const WAIT: Duration = Duration::from_secs(10);
const QUIET: Duration = Duration::from_millis(700);

/// A transport with a fresh queue (and its dead-letter queue) to itself.
struct Fixture {
    transport: Box<dyn Transport>,
    queue: String,
    dead_letter: String,
    _keep: Keep,
}

#[allow(dead_code)]
enum Keep {
    Dir(tempfile::TempDir),
    Queue(Box<TestQueue>),
}

fn local() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let transport = LocalTransport::open(dir.path().join("queues.sqlite")).unwrap();
    Fixture {
        transport: Box::new(transport),
        queue: "work".into(),
        dead_letter: "work_dl".into(),
        _keep: Keep::Dir(dir),
    }
}

fn amqp() -> Fixture {
    let broker = Broker::from_env();
    let queue = broker.fresh_queue("behaviour");
    let url = format!("{}/{}", broker.amqp_url(), broker.exchange());
    let transport = AmqpTransport::new(&url, AmqpOptions::default()).unwrap();
    Fixture {
        transport: Box::new(transport),
        queue: queue.name().into(),
        dead_letter: queue.dead_letter().into(),
        _keep: Keep::Queue(Box::new(queue)),
    }
}

fn full_message(id: &str) -> Message {
    Message {
        message_id: Some(id.into()),
        to: Some("93252_async".into()),
        reply_to: Some("91462_async".into()),
        correlation_id: Some(format!("corr-{id}")),
        subject: Some("DIALOG_INNBYGGER_EKONTAKT".into()),
        content_type: Some("application/pkcs7-mime; smime-type=signed-and-enveloped-data".into()),
        ttl: Some(Duration::from_secs(600)),
        ..Message::new(vec![0u8, 1, 2, 255, b'<', b'x', b'/', b'>'])
    }
    .with_property("fromHerId", "91462")
    .with_property("toHerId", "93252")
    .with_property("cpaId", "b7ce8ab0-ea8a-4a5d-9c06-2e3ff0ba4e2c")
    .with_property("count", 7i32)
    .with_property("big", 1i64 << 40)
    .with_property("flag", true)
    .with_property("applicationTimeStamp", Value::Timestamp(1_700_000_000_123))
}

async fn send(fx: &Fixture, queue: &str, message: Message) {
    let mut sender = fx.transport.sender(queue).await.unwrap();
    assert_eq!(sender.send(message).await.unwrap(), Outcome::Accepted);
    sender.close().await.unwrap();
}

async fn every_property_arrives_intact(fx: Fixture) {
    let sent = full_message("m-props");
    send(&fx, &fx.queue, sent.clone()).await;
    let mut receiver = fx.transport.receiver(&fx.queue, 10).await.unwrap();
    let delivery = receiver.receive(WAIT).await.unwrap().expect("a delivery");
    let mut got = delivery.message.clone();
    // The broker may count TTL down on the way; the rest must be exact.
    assert!(got.ttl.unwrap() <= sent.ttl.unwrap() && got.ttl.unwrap() > Duration::from_secs(500));
    got.ttl = sent.ttl;
    assert_eq!(got, sent);
    assert!(delivery.first_acquirer);
    assert_eq!(delivery.delivery_count, 0);
    assert_eq!(delivery.queue, fx.queue);
    receiver.accept(&delivery).await.unwrap();
    receiver.close().await.unwrap();
    fx.transport.close().await.unwrap();
}

async fn accepted_messages_are_gone(fx: Fixture) {
    send(&fx, &fx.queue, Message::new(b"once".to_vec())).await;
    let mut receiver = fx.transport.receiver(&fx.queue, 10).await.unwrap();
    let delivery = receiver.receive(WAIT).await.unwrap().expect("a delivery");
    receiver.accept(&delivery).await.unwrap();
    receiver.close().await.unwrap();
    let mut again = fx.transport.receiver(&fx.queue, 10).await.unwrap();
    assert!(again.receive(QUIET).await.unwrap().is_none());
    again.close().await.unwrap();
    fx.transport.close().await.unwrap();
}

async fn released_messages_come_back_marked_as_redelivered(fx: Fixture) {
    send(
        &fx,
        &fx.queue,
        Message {
            message_id: Some("m-rel".into()),
            ..Message::new(b"r".to_vec())
        },
    )
    .await;
    let mut receiver = fx.transport.receiver(&fx.queue, 10).await.unwrap();
    let first = receiver
        .receive(WAIT)
        .await
        .unwrap()
        .expect("first delivery");
    assert!(first.first_acquirer);
    receiver.release(&first).await.unwrap();
    let second = receiver.receive(WAIT).await.unwrap().expect("redelivery");
    assert_eq!(second.message.message_id.as_deref(), Some("m-rel"));
    assert!(!second.first_acquirer, "a redelivery must say so");
    receiver.accept(&second).await.unwrap();
    receiver.close().await.unwrap();
    fx.transport.close().await.unwrap();
}

async fn rejected_messages_go_to_the_dead_letter_queue(fx: Fixture) {
    send(
        &fx,
        &fx.queue,
        Message {
            message_id: Some("m-poison".into()),
            ..Message::new(b"p".to_vec())
        },
    )
    .await;
    let mut receiver = fx.transport.receiver(&fx.queue, 10).await.unwrap();
    let delivery = receiver.receive(WAIT).await.unwrap().expect("a delivery");
    receiver.reject(&delivery, "poison").await.unwrap();
    assert!(
        receiver.receive(QUIET).await.unwrap().is_none(),
        "a rejected message must not come back"
    );
    receiver.close().await.unwrap();
    let mut dead = fx.transport.receiver(&fx.dead_letter, 10).await.unwrap();
    let dead_letter = dead
        .receive(WAIT)
        .await
        .unwrap()
        .expect("the dead-lettered message");
    assert_eq!(dead_letter.message.message_id.as_deref(), Some("m-poison"));
    assert_eq!(dead_letter.message.body, b"p");
    dead.accept(&dead_letter).await.unwrap();
    dead.close().await.unwrap();
    fx.transport.close().await.unwrap();
}

async fn expired_messages_are_not_delivered(fx: Fixture) {
    let short = Message {
        ttl: Some(Duration::from_millis(200)),
        ..Message::new(b"late".to_vec())
    };
    send(&fx, &fx.queue, short).await;
    send(
        &fx,
        &fx.queue,
        Message {
            message_id: Some("m-keep".into()),
            ..Message::new(b"k".to_vec())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let mut receiver = fx.transport.receiver(&fx.queue, 10).await.unwrap();
    let delivery = receiver
        .receive(WAIT)
        .await
        .unwrap()
        .expect("the unexpired message");
    assert_eq!(delivery.message.message_id.as_deref(), Some("m-keep"));
    receiver.accept(&delivery).await.unwrap();
    assert!(receiver.receive(QUIET).await.unwrap().is_none());
    receiver.close().await.unwrap();
    fx.transport.close().await.unwrap();
}

async fn unsettled_deliveries_return_when_the_receiver_closes(fx: Fixture) {
    for id in ["m-held", "m-prefetched"] {
        let m = Message {
            message_id: Some(id.into()),
            ..Message::new(id.as_bytes().to_vec())
        };
        send(&fx, &fx.queue, m).await;
    }
    // Credit 10: on AMQP the second message is prefetched, not handed out.
    let mut receiver = fx.transport.receiver(&fx.queue, 10).await.unwrap();
    let held = receiver.receive(WAIT).await.unwrap().expect("a delivery");
    assert_eq!(held.message.message_id.as_deref(), Some("m-held"));
    receiver.close().await.unwrap();
    let mut next = fx.transport.receiver(&fx.queue, 10).await.unwrap();
    let mut again = Vec::new();
    for _ in 0..2 {
        let d = next
            .receive(WAIT)
            .await
            .unwrap()
            .expect("the messages again");
        again.push(d.message.message_id.clone().unwrap());
        next.accept(&d).await.unwrap();
    }
    again.sort();
    assert_eq!(again, ["m-held", "m-prefetched"]);
    next.close().await.unwrap();
    fx.transport.close().await.unwrap();
}

async fn messages_keep_their_order_and_credit_bounds_prefetch(fx: Fixture) {
    let mut sender = fx.transport.sender(&fx.queue).await.unwrap();
    for i in 0..20 {
        let m = Message {
            message_id: Some(format!("m-{i}")),
            ..Message::new(vec![i as u8])
        };
        assert_eq!(sender.send(m).await.unwrap(), Outcome::Accepted);
    }
    sender.close().await.unwrap();
    let mut receiver = fx.transport.receiver(&fx.queue, 5).await.unwrap();
    for i in 0..20 {
        let d = receiver.receive(WAIT).await.unwrap().expect("a delivery");
        assert_eq!(d.message.message_id, Some(format!("m-{i}")));
        receiver.accept(&d).await.unwrap();
    }
    receiver.close().await.unwrap();
    fx.transport.close().await.unwrap();
}

macro_rules! per_transport {
    ($($test:ident),* $(,)?) => {
        mod local_store {
            $(#[tokio::test] async fn $test() { super::$test(super::local()).await })*
        }
        mod rabbitmq {
            $(#[tokio::test] async fn $test() { super::$test(super::amqp()).await })*
        }
    };
}

per_transport!(
    every_property_arrives_intact,
    accepted_messages_are_gone,
    released_messages_come_back_marked_as_redelivered,
    rejected_messages_go_to_the_dead_letter_queue,
    expired_messages_are_not_delivered,
    messages_keep_their_order_and_credit_bounds_prefetch,
    unsettled_deliveries_return_when_the_receiver_closes,
);

mod rabbitmq_only {
    use super::*;
    use helsemelding_transport::Error;

    #[tokio::test]
    async fn a_dropped_receiver_gives_its_deliveries_back() {
        let fx = amqp();
        let m = Message {
            message_id: Some("m-dropped".into()),
            ..Message::new(b"d".to_vec())
        };
        send(&fx, &fx.queue, m).await;
        let mut receiver = fx.transport.receiver(&fx.queue, 10).await.unwrap();
        let held = receiver.receive(WAIT).await.unwrap().expect("a delivery");
        drop(receiver);
        let mut next = fx.transport.receiver(&fx.queue, 10).await.unwrap();
        let again = next
            .receive(WAIT)
            .await
            .unwrap()
            .expect("the message again");
        assert_eq!(again.message.message_id, held.message.message_id);
        assert!(!again.first_acquirer);
        next.accept(&again).await.unwrap();
        next.close().await.unwrap();
        fx.transport.close().await.unwrap();
    }

    #[tokio::test]
    async fn missing_queues_are_named_by_check_queue_and_never_probed_by_senders() {
        let fx = amqp();
        let missing = format!("{}_nosuch", fx.queue);
        // A sender never attaches a receiver to see whether another party's
        // queue exists (an access attempt on its mailbox on NHN's bus).
        let sender = fx.transport.sender(&missing).await;
        assert!(sender.is_ok(), "a sender must not probe the queue");
        drop(sender);
        let error = fx.transport.check_queue(&missing).await.unwrap_err();
        assert!(
            matches!(&error, Error::NoSuchQueue { queue, .. } if *queue == missing),
            "{error:?}"
        );
        assert!(error.to_string().contains(&missing), "{error}");
        match fx.transport.receiver(&missing, 1).await {
            Err(Error::NoSuchQueue { queue, .. }) => assert_eq!(queue, missing),
            Err(e) => panic!("wrong error {e:?}"),
            Ok(_) => panic!("a receiver on a missing queue must be refused"),
        }
        // The refusals ended only sessions of their own: the same transport
        // still sends to and reads from an existing queue.
        fx.transport.check_queue(&fx.queue).await.unwrap();
        send(&fx, &fx.queue, Message::new(b"ok".to_vec())).await;
        let mut receiver = fx.transport.receiver(&fx.queue, 1).await.unwrap();
        let d = receiver.receive(WAIT).await.unwrap().expect("a delivery");
        assert_eq!(d.message.body, b"ok");
        receiver.accept(&d).await.unwrap();
        receiver.close().await.unwrap();
        fx.transport.close().await.unwrap();
    }
}
