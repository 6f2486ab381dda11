//! Issue 12, finding 4 (the hard-crash half): a message that asks for a
//! receipt gets exactly one AppRec even when the process dies after the
//! AppRec was queued and before the broker heard the accept. The AppRec is
//! recorded in the outbox in one transaction with the hand-over, so the
//! redelivery is known as handed over and answered: neither handed over
//! nor answered again. (A true repeat from the sender, a first delivery,
//! is answered again: `nhn_world.rs`.)
//!
//! The crash is a transport whose first accept never reaches the broker
//! (the delivery stays unsettled, as when the process dies), followed by
//! a fresh listener; the broker is the private RabbitMQ of scripts/test.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use helsemelding_messaging::{Listener, ListenerOptions, Messenger, MessengerConfig, SendRequest};
use helsemelding_store::audit::AuditFilter;
use helsemelding_transport::{Capabilities, Delivery, Error, Receiver, Sender, Transport};
use helsemelding_transport_amqp::AmqpOptions;

mod common;
use common::{eventually, msghead, Bus, Counting, FUNCTION};

/// The broker, except that the first accept is lost on the way.
struct FirstAcceptLost {
    inner: Arc<dyn Transport>,
    lost: Arc<AtomicBool>,
}

struct LosingReceiver {
    inner: Box<dyn Receiver>,
    lost: Arc<AtomicBool>,
}

#[async_trait]
impl Transport for FirstAcceptLost {
    async fn sender(&self, queue: &str) -> Result<Box<dyn Sender>, Error> {
        self.inner.sender(queue).await
    }
    async fn receiver(&self, queue: &str, credit: u32) -> Result<Box<dyn Receiver>, Error> {
        Ok(Box::new(LosingReceiver {
            inner: self.inner.receiver(queue, credit).await?,
            lost: self.lost.clone(),
        }))
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    async fn close(&self) -> Result<(), Error> {
        self.inner.close().await
    }
}

#[async_trait]
impl Receiver for LosingReceiver {
    async fn receive(&mut self, within: Duration) -> Result<Option<Delivery>, Error> {
        self.inner.receive(within).await
    }
    async fn accept(&mut self, delivery: &Delivery) -> Result<(), Error> {
        if !self.lost.swap(true, Ordering::SeqCst) {
            // The process "died" here: the broker never hears of it.
            return Err(Error::Closed);
        }
        self.inner.accept(delivery).await
    }
    async fn release(&mut self, delivery: &Delivery) -> Result<(), Error> {
        self.inner.release(delivery).await
    }
    async fn reject(&mut self, delivery: &Delivery, reason: &str) -> Result<(), Error> {
        self.inner.reject(delivery, reason).await
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    async fn close(self: Box<Self>) -> Result<(), Error> {
        self.inner.close().await
    }
}

fn options() -> ListenerOptions {
    ListenerOptions {
        workers: 1,
        error_queue: false,
        sync_queue: false,
        poll: Duration::from_millis(100),
        ..ListenerOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivery_after_a_crash_gets_neither_a_second_hand_over_nor_a_second_apprec() {
    let bus = Bus::new(AmqpOptions::default());
    let (a, b) = (bus.party(), bus.party());
    let (a_id, b_id) = (a.peer.her_id, b.peer.her_id);
    let lost = Arc::new(AtomicBool::new(false));
    let crashing: Arc<dyn Transport> = Arc::new(FirstAcceptLost {
        inner: bus.transport.clone(),
        lost: lost.clone(),
    });
    let mut config = MessengerConfig::new(
        b_id,
        b.peer.signing.identity(),
        b.peer.encryption.identity(),
        bus.parties.trust_anchors(),
        bus.parties.crls(),
    );
    config.retry = helsemelding_messaging::RetryPolicy {
        delivery_limit: 10,
        backoff_min: Duration::from_millis(50),
        backoff_max: Duration::from_millis(200),
    };
    let b_messenger = Messenger::new(
        config,
        crashing,
        bus.parties.registry().clone(),
        b.store.clone(),
    );

    let payload = String::from_utf8(msghead(a_id, b_id, 1)).unwrap().replacen(
        "</MsgId>",
        "</MsgId>\n    <Ack V=\"J\" DN=\"Ja\" />",
        1,
    );
    let message_id = a
        .messenger
        .send(SendRequest::new(b_id, FUNCTION, payload.into_bytes()))
        .await
        .unwrap();

    let app = Arc::new(Counting::default());
    let first = Listener::start(&b_messenger, app.clone(), app.clone(), options())
        .await
        .unwrap();
    eventually(
        "the hand-over and the lost accept",
        Duration::from_secs(20),
        async || (app.distinct() == 1 && lost.load(Ordering::SeqCst)).then_some(()),
    )
    .await;
    // The crash: the unsettled delivery goes back to the queue.
    first.stop().await.unwrap();
    let second = Listener::start(&b_messenger, app.clone(), app.clone(), options())
        .await
        .unwrap();
    let store = b.store.clone();
    let id = message_id.clone();
    eventually(
        "the redelivery to be settled",
        Duration::from_secs(20),
        async || {
            let audit = store.audit().list(&AuditFilter::default()).await.unwrap();
            audit
                .iter()
                .any(|r| {
                    r.event.kind.as_str() == "accepted"
                        && r.event.message_id.as_deref() == Some(id.as_str())
                        && r.event.outcome.starts_with("duplicate")
                })
                .then_some(())
        },
    )
    .await;
    second.stop().await.unwrap();
    assert_eq!(app.hand_overs().get(&message_id), Some(&1));

    // The sender hears exactly one AppRec.
    let a_app = Arc::new(Counting::default());
    let a_listener = Listener::start(&a.messenger, a_app.clone(), a_app.clone(), options())
        .await
        .unwrap();
    eventually("the AppRec", Duration::from_secs(20), async || {
        (a_app.distinct() >= 1).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    a_listener.stop().await.unwrap();
    let apprecs = a_app
        .received()
        .iter()
        .filter(|m| m.function == "APPREC")
        .count();
    assert_eq!(apprecs, 1, "AppRecs for one message");
}
