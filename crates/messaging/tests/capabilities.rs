//! The engine reads what the transport promises (`Capabilities`): a
//! listener on a transport that cannot release a delivery (so could not
//! try a failing message again) refuses to start, naming the queue and
//! what is missing, instead of losing messages later. The transport is the
//! local one behind a wrapper that promises everything but release.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use helsemelding_messaging::{
    Error as MessagingError, ErrorHandler, Handler, HandlerError, Listener, ListenerOptions,
    Received,
};
use helsemelding_testkit::party::Parties;
use helsemelding_transport::local::LocalTransport;
use helsemelding_transport::{Capabilities, Delivery, Error, Receiver, Sender, Transport};
use helsemelding_wire::error_report::ReceivedErrorReport;

/// Counts and marks deliveries, dead-letters on reject, but never releases.
const NO_RELEASE: Capabilities = Capabilities::NONE
    .with_delivery_counts()
    .with_redelivery_marks()
    .with_dead_letter_on_reject();

struct WithoutRelease(Arc<dyn Transport>);
struct ReceiverWithoutRelease(Box<dyn Receiver>);

#[async_trait]
impl Transport for WithoutRelease {
    async fn sender(&self, queue: &str) -> Result<Box<dyn Sender>, Error> {
        self.0.sender(queue).await
    }
    async fn receiver(&self, queue: &str, credit: u32) -> Result<Box<dyn Receiver>, Error> {
        Ok(Box::new(ReceiverWithoutRelease(
            self.0.receiver(queue, credit).await?,
        )))
    }
    fn capabilities(&self) -> Capabilities {
        NO_RELEASE
    }
    async fn close(&self) -> Result<(), Error> {
        self.0.close().await
    }
}

#[async_trait]
impl Receiver for ReceiverWithoutRelease {
    async fn receive(&mut self, within: Duration) -> Result<Option<Delivery>, Error> {
        self.0.receive(within).await
    }
    async fn accept(&mut self, delivery: &Delivery) -> Result<(), Error> {
        self.0.accept(delivery).await
    }
    async fn release(&mut self, delivery: &Delivery) -> Result<(), Error> {
        self.0.release(delivery).await
    }
    async fn reject(&mut self, delivery: &Delivery, reason: &str) -> Result<(), Error> {
        self.0.reject(delivery, reason).await
    }
    fn capabilities(&self) -> Capabilities {
        NO_RELEASE
    }
    async fn close(self: Box<Self>) -> Result<(), Error> {
        self.0.close().await
    }
}

struct Nobody;

#[async_trait]
impl Handler for Nobody {
    async fn handle(&self, _: &Received) -> Result<(), HandlerError> {
        Ok(())
    }
}

#[async_trait]
impl ErrorHandler for Nobody {
    async fn handle_error(&self, _: &ReceivedErrorReport) -> Result<(), HandlerError> {
        Ok(())
    }
}

#[tokio::test]
async fn a_listener_on_a_transport_that_cannot_release_refuses_to_start() {
    let parties = Parties::new("capabilities CA");
    let a = parties.party(91462).register();
    let local: Arc<dyn Transport> =
        Arc::new(LocalTransport::open(parties.dir().join("queues.db")).unwrap());
    let transport: Arc<dyn Transport> = Arc::new(WithoutRelease(local.clone()));
    let ours = parties.messenger(&a).build(transport);
    let nobody = Arc::new(Nobody);
    let options = ListenerOptions {
        workers: 1,
        error_queue: false,
        sync_queue: false,
        ..ListenerOptions::default()
    };
    let refused = Listener::start(
        &ours.messenger,
        nobody.clone(),
        nobody.clone(),
        options.clone(),
    )
    .await
    .err()
    .expect("a listener that could never retry");
    match &refused {
        MessagingError::TransportLacks {
            queue, capability, ..
        } => {
            assert_eq!(queue, "91462_async");
            assert!(capability.contains("release"), "{capability}");
        }
        other => panic!("not TransportLacks: {other}"),
    }
    assert!(refused.to_string().contains("91462_async"), "{refused}");
    ours.messenger.close().await.unwrap();

    // The same party on the local transport itself starts.
    let ours = parties
        .messenger(&a)
        .store_named("second")
        .build(local.clone());
    let listener = Listener::start(&ours.messenger, nobody.clone(), nobody, options)
        .await
        .unwrap();
    listener.stop().await.unwrap();
    ours.messenger.close().await.unwrap();
}
