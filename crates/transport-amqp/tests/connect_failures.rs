//! Connection failures that the caller must be told plainly: refused
//! credentials are [`Error::AuthenticationFailed`] at once (not retried
//! for a minute as `SASL error code Auth`), and a broker that accepts TCP
//! but never answers is given up after the connect timeout.

use std::time::{Duration, Instant};

use helsemelding_testkit::broker::Broker;
use helsemelding_transport::{Error, Message, Transport};
use helsemelding_transport_amqp::{AmqpOptions, AmqpTransport};

#[tokio::test]
async fn refused_credentials_are_one_error_at_once_that_names_the_user() {
    let broker = Broker::from_env();
    let queue = broker.fresh_queue("auth");
    let options = AmqpOptions {
        password: Some("not-the-password".into()),
        ..AmqpOptions::default()
    };
    let url = format!("{}/{}", broker.amqp_url(), broker.exchange());
    let transport = AmqpTransport::new(&url, options).unwrap();
    let (user, _) = broker.credentials();
    let started = Instant::now();
    // A sender connects on its first send (it never probes the queue).
    let mut sender = transport.sender(queue.name()).await.unwrap();
    let error = match sender.send(Message::new(b"x".to_vec())).await {
        Ok(outcome) => panic!("a send with a wrong password: {outcome:?}"),
        Err(error) => error,
    };
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    match &error {
        Error::AuthenticationFailed { endpoint, user: u } => {
            assert!(endpoint.starts_with("127.0.0.1:"), "{endpoint}");
            assert_eq!(u, user);
        }
        other => panic!("expected AuthenticationFailed, got {other:?}"),
    }
    let text = error.to_string();
    assert!(text.contains(&format!("refused user {user}")), "{text}");
    assert!(!text.contains("not-the-password"), "{text}");
    let started = Instant::now();
    assert!(matches!(
        transport.receiver(queue.name(), 1).await.err(),
        Some(Error::AuthenticationFailed { .. })
    ));
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn a_broker_that_never_answers_is_given_up_after_the_connect_timeout() {
    // Accepts TCP connections (the kernel's backlog) but never speaks AMQP.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let options = AmqpOptions {
        connect_timeout: Duration::from_millis(800),
        operation_timeout: Duration::from_secs(30),
        ..AmqpOptions::default()
    };
    let transport = AmqpTransport::new(&format!("amqp://u@127.0.0.1:{port}/x"), options).unwrap();
    let started = Instant::now();
    let error = transport.check_queue("q").await.unwrap_err();
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(700) && took < Duration::from_secs(3),
        "{took:?}"
    );
    match error {
        Error::Connect { endpoint, reason } => {
            assert_eq!(endpoint, format!("127.0.0.1:{port}"));
            assert!(reason.contains("connect timeout of 0.8 s"), "{reason}");
        }
        other => panic!("expected Connect, got {other:?}"),
    }
    drop(silent);
}
