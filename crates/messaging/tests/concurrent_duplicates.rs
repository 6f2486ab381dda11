//! Two copies of one message (same sender, same message-id) taken at the
//! same time by two workers must reach the application once. The store
//! records a hand-over only after it, so both copies used to pass its
//! check (found by the broker-restart stream test); the workers now claim
//! the (sender, message-id) pair first. Copies side by side in a queue are
//! what a transfer repeated after a lost outcome, a resend from the outbox
//! or a broker redelivery produce.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use helsemelding_messaging::{
    convert, ErrorHandler, Handler, HandlerError, Listener, ListenerOptions, Received,
};
use helsemelding_protect::{protect, Certificate, ProtectOptions};
use helsemelding_transport::Outcome;
use helsemelding_transport_amqp::AmqpOptions;
use helsemelding_wire::envelope::{Outgoing, Routing};
use helsemelding_wire::error_report::ReceivedErrorReport;
use helsemelding_wire::queue::{queue_name, QueueKind};
use uuid::Uuid;

mod common;
use common::{eventually, msghead, Bus, Counting, FUNCTION};

/// An application that takes its time, as one writing to a slow disk.
struct Slow(Arc<Counting>);

#[async_trait]
impl Handler for Slow {
    async fn handle(&self, message: &Received) -> Result<(), HandlerError> {
        tokio::time::sleep(Duration::from_millis(500)).await;
        self.0.handle(message).await
    }
}

#[async_trait]
impl ErrorHandler for Slow {
    async fn handle_error(&self, report: &ReceivedErrorReport) -> Result<(), HandlerError> {
        self.0.handle_error(report).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_copies_taken_at_once_are_handed_over_once() {
    let bus = Bus::new(AmqpOptions::default());
    let (a, b) = (bus.peer(), bus.party());
    let payload = msghead(a.her_id, b.peer.her_id, 1);
    let body = protect(
        &payload,
        &a.signing.identity(),
        &Certificate::from_x509(b.peer.encryption.cert.clone()),
        &ProtectOptions::default(),
    )
    .unwrap();
    let id = Uuid::new_v4().hyphenated().to_string();
    let envelope = Outgoing {
        message_id: id.clone(),
        from: a.her_id,
        to: b.peer.her_id,
        to_queue: queue_name(b.peer.her_id, QueueKind::Async),
        function: FUNCTION.into(),
        routing: Routing::Async {
            reply_to: queue_name(a.her_id, QueueKind::Async),
            ttl: None,
        },
        protected: true,
        cpa_id: None,
        sent_at: Utc::now(),
        extra: Vec::new(),
    }
    .into_envelope();
    let message = convert::to_message(&envelope, body);
    let queue = queue_name(b.peer.her_id, QueueKind::Async);
    let mut sender = bus.transport.sender(&queue).await.unwrap();
    for _ in 0..2 {
        assert_eq!(
            sender.send(message.clone()).await.unwrap(),
            Outcome::Accepted
        );
    }
    sender.close().await.unwrap();

    let app = Arc::new(Counting::default());
    let slow = Arc::new(Slow(app.clone()));
    let listener = Listener::start(
        &b.messenger,
        slow.clone(),
        slow,
        ListenerOptions {
            workers: 2,
            error_queue: false,
            sync_queue: false,
            poll: Duration::from_millis(200),
            ..ListenerOptions::default()
        },
    )
    .await
    .unwrap();
    let broker = bus.broker.clone();
    let q = queue.clone();
    tokio::task::spawn_blocking(move || broker.wait_for_count(&q, 0, Duration::from_secs(20)))
        .await
        .unwrap();
    eventually("the hand-over", Duration::from_secs(5), async || {
        (app.distinct() == 1).then_some(())
    })
    .await;
    listener.stop().await.unwrap();
    assert_eq!(app.hand_overs()[&id], 1, "handed over twice");
    bus.transport.close().await.unwrap();
}
