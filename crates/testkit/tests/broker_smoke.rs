//! Smoke test of the private broker harness: an AMQP 1.0 round trip with
//! fe2o3-amqp over a TCP_NODELAY stream, and the management helpers.

use std::time::Duration;

use fe2o3_amqp::sasl_profile::SaslProfile;
use fe2o3_amqp::types::messaging::{Body, Header, Message};
use fe2o3_amqp::types::primitives::Value;
use fe2o3_amqp::{Connection, Receiver, Sender, Session};
use helsemelding_testkit::broker::Broker;

const STEP: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_sent_to_a_fresh_queue_comes_back() {
    let broker = Broker::from_env();
    let queue = broker.fresh_queue("smoke");
    let (user, password) = broker.credentials();
    let authority = broker.amqp_url().rsplit_once('@').unwrap().1;

    let stream = tokio::net::TcpStream::connect(authority).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let mut connection = tokio::time::timeout(
        STEP,
        Connection::builder()
            .container_id("testkit-smoke")
            .hostname("localhost")
            .sasl_profile(SaslProfile::Plain {
                username: user.into(),
                password: password.into(),
            })
            .open_with_stream(stream),
    )
    .await
    .unwrap()
    .unwrap();
    let mut session = Session::begin(&mut connection).await.unwrap();

    let target = format!("/exchange/{}/{}", broker.exchange(), queue.name());
    let mut sender = Sender::attach(&mut session, "smoke-sender", target)
        .await
        .unwrap();
    let message = Message::builder()
        .header(Header {
            durable: true,
            ..Default::default()
        })
        .data(b"hello broker".to_vec())
        .build();
    let outcome = tokio::time::timeout(STEP, sender.send(message))
        .await
        .unwrap()
        .unwrap();
    assert!(outcome.is_accepted(), "broker outcome: {outcome:?}");
    broker.wait_for_count(queue.name(), 1, STEP);

    let source = format!("/amq/queue/{}", queue.name());
    let mut receiver = Receiver::attach(&mut session, "smoke-receiver", source)
        .await
        .unwrap();
    let delivery = tokio::time::timeout(STEP, receiver.recv::<Body<Value>>())
        .await
        .unwrap()
        .unwrap();
    match delivery.body() {
        Body::Data(sections) => assert_eq!(sections[0].0.as_slice(), b"hello broker"),
        other => panic!("expected a data section, got {other:?}"),
    }
    receiver.accept(&delivery).await.unwrap();
    broker.wait_for_count(queue.name(), 0, STEP);

    receiver.detach().await.unwrap();
    sender.detach().await.unwrap();
    session.end().await.unwrap();
    connection.close().await.unwrap();
}
