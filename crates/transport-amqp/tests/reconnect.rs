//! Fault injection: the broker dies (KILL) and comes back; the same sender
//! and receiver objects carry on after reconnecting by themselves, and no
//! confirmed message is lost. Its own test binary, because it stops the
//! broker every other test uses (cargo runs test binaries one at a time).

use std::time::Duration;

use helsemelding_testkit::broker::Broker;
use helsemelding_transport::{Message, Outcome, Transport};
use helsemelding_transport_amqp::{AmqpOptions, AmqpTransport};

#[tokio::test]
async fn sender_and_receiver_reconnect_after_a_broker_crash() {
    let broker = Broker::from_env();
    let queue = broker.fresh_queue("reconnect");
    let options = AmqpOptions {
        backoff_max: Duration::from_secs(1),
        ..AmqpOptions::default()
    };
    let url = format!("{}/{}", broker.amqp_url(), broker.exchange());
    let transport = AmqpTransport::new(&url, options).unwrap();
    let mut sender = transport.sender(queue.name()).await.unwrap();
    let mut receiver = transport.receiver(queue.name(), 10).await.unwrap();
    let before = Message {
        message_id: Some("before".into()),
        ..Message::new(b"1".to_vec())
    };
    assert_eq!(sender.send(before).await.unwrap(), Outcome::Accepted);
    let held = receiver
        .receive(Duration::from_secs(10))
        .await
        .unwrap()
        .expect("first message");
    assert_eq!(held.message.message_id.as_deref(), Some("before"));

    let b = broker.clone();
    tokio::task::spawn_blocking(move || {
        b.kill();
        b.start();
    })
    .await
    .unwrap();

    // The unsettled delivery's link is gone, so the broker delivers the
    // message again whatever settling it now reports.
    let _ = receiver.accept(&held).await;
    let after = Message {
        message_id: Some("after".into()),
        ..Message::new(b"2".to_vec())
    };
    assert_eq!(sender.send(after).await.unwrap(), Outcome::Accepted);
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let d = receiver
            .receive(Duration::from_secs(30))
            .await
            .unwrap()
            .expect("redelivery after restart");
        seen.push(d.message.message_id.clone().unwrap());
        receiver.accept(&d).await.unwrap();
    }
    seen.sort();
    assert_eq!(seen, ["after", "before"]);
    receiver.close().await.unwrap();
    sender.close().await.unwrap();
    transport.close().await.unwrap();
}
