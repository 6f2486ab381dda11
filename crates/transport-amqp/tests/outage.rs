//! Fault injection: while the broker is down, `receive` answers `None` for a
//! while, then says the broker is unreachable, and once it is back the same
//! receiver carries on. Its own test binary, because it stops the broker
//! every other test uses (cargo runs test binaries one at a time).

use std::time::{Duration, Instant};

use helsemelding_testkit::broker::Broker;
use helsemelding_transport::{Error, Message, Outcome, Transport};
use helsemelding_transport_amqp::{AmqpOptions, AmqpTransport};

#[tokio::test]
async fn receive_reports_a_long_outage_then_recovers() {
    let broker = Broker::from_env();
    let queue = broker.fresh_queue("outage");
    let options = AmqpOptions {
        unavailable_after: Duration::from_secs(2),
        operation_timeout: Duration::from_secs(2),
        backoff_max: Duration::from_millis(300),
        ..AmqpOptions::default()
    };
    let url = format!("{}/{}", broker.amqp_url(), broker.exchange());
    let transport = AmqpTransport::new(&url, options).unwrap();
    let mut receiver = transport.receiver(queue.name(), 10).await.unwrap();
    assert!(receiver
        .receive(Duration::from_millis(200))
        .await
        .unwrap()
        .is_none());

    let b = broker.clone();
    tokio::task::spawn_blocking(move || b.kill()).await.unwrap();

    let down = Instant::now();
    let mut quiet_answers = 0;
    let error = loop {
        assert!(down.elapsed() < Duration::from_secs(15), "no outage error");
        match receiver.receive(Duration::from_millis(300)).await {
            Ok(None) => quiet_answers += 1,
            Ok(Some(_)) => panic!("nothing was sent"),
            Err(e) => break e,
        }
    };
    assert!(
        quiet_answers >= 2,
        "idle answers before the bound: {quiet_answers}"
    );
    match &error {
        Error::Unavailable {
            queue: q,
            down_for,
            last_error,
            ..
        } => {
            assert_eq!(q, queue.name());
            assert!(*down_for >= Duration::from_secs(2), "{down_for:?}");
            assert!(!last_error.is_empty());
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert!(down.elapsed() >= Duration::from_secs(2));
    // Still down: it keeps saying so (after a backoff pause).
    assert!(matches!(
        receiver.receive(Duration::from_millis(300)).await,
        Err(Error::Unavailable { .. })
    ));

    let b = broker.clone();
    tokio::task::spawn_blocking(move || b.start())
        .await
        .unwrap();

    let mut sender = transport.sender(queue.name()).await.unwrap();
    let m = Message {
        message_id: Some("after-outage".into()),
        ..Message::new(b"x".to_vec())
    };
    assert_eq!(sender.send(m).await.unwrap(), Outcome::Accepted);
    let d = receiver
        .receive(Duration::from_secs(20))
        .await
        .unwrap()
        .expect("the message after the outage");
    assert_eq!(d.message.message_id.as_deref(), Some("after-outage"));
    receiver.accept(&d).await.unwrap();
    receiver.close().await.unwrap();
    sender.close().await.unwrap();
    transport.close().await.unwrap();
}
