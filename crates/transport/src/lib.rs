//! Moving messages to and from queues, and nothing else: one [`Transport`]
//! trait (open a sender to a queue, send and learn the broker's outcome;
//! receive with accept / release / reject) and its implementations:
//!
//! - [`amqp`]: AMQP 1.0 on fe2o3-amqp, RabbitMQ and Service Bus dialects,
//!   `amqp://` and `amqps://`, with reconnection;
//! - [`local`]: an embedded durable queue store (SQLite) with the same
//!   semantics, for development without a broker, the demo and fast tests.
//!
//! Delivery is at-least-once everywhere: a delivery that is not accepted
//! comes back (with `first_acquirer == false`), so the layers above
//! de-duplicate by message id. There is no "modified" outcome: RabbitMQ 3.10
//! ends the session on it. Retry is [`Receiver::release`], poison is
//! [`Receiver::reject`] (dead-lettered by the broker's policy).

pub mod amqp;
mod capabilities;
mod delivery;
mod error;
pub mod local;
mod message;

use std::time::Duration;

use async_trait::async_trait;

pub use capabilities::Capabilities;
pub use delivery::{Delivery, DeliveryToken};
pub use error::Error;
pub use message::{Message, Outcome, Value};

/// Opens senders and receivers on queues of one broker (or local store).
#[async_trait]
pub trait Transport: Send + Sync {
    /// A sender to `queue` (links are attached lazily and reused).
    async fn sender(&self, queue: &str) -> Result<Box<dyn Sender>, Error>;

    /// Whether `queue` exists ([`Error::NoSuchQueue`] if not). For OUR
    /// queues only (start-up, preflight): on AMQP the check attaches a
    /// receiver, which on another party's queue is an access attempt on its
    /// mailbox. RabbitMQ accepts and silently drops messages for a missing
    /// queue behind an exchange, so checking ours at start matters.
    /// The default says yes (stores that create queues on demand).
    async fn check_queue(&self, queue: &str) -> Result<(), Error> {
        let _ = queue;
        Ok(())
    }

    /// A receiver on `queue` that holds at most `credit` unsettled deliveries.
    async fn receiver(&self, queue: &str, credit: u32) -> Result<Box<dyn Receiver>, Error>;

    /// What every queue of this transport promises; one receiver may
    /// promise more ([`Receiver::capabilities`]). The default promises nothing.
    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }

    /// Closes the connection (or store) after the links are gone. Deliveries
    /// not settled by then go back to their queue.
    async fn close(&self) -> Result<(), Error>;
}

/// Sends messages to one queue.
#[async_trait]
pub trait Sender: Send {
    /// Sends `message` and waits for the broker's outcome.
    async fn send(&mut self, message: Message) -> Result<Outcome, Error>;

    /// Detaches the link.
    async fn close(self: Box<Self>) -> Result<(), Error>;
}

/// Receives messages from one queue. Every delivery must be settled by one
/// of accept / release / reject; one that is not goes back to the queue when
/// the receiver closes (or its lease runs out, for the local store).
#[async_trait]
pub trait Receiver: Send {
    /// The next delivery, or `None` if none arrived `within` this time.
    async fn receive(&mut self, within: Duration) -> Result<Option<Delivery>, Error>;

    /// Done with it: the queue forgets the message.
    async fn accept(&mut self, delivery: &Delivery) -> Result<(), Error>;

    /// Not now: the message goes back to the queue, its delivery count grows.
    async fn release(&mut self, delivery: &Delivery) -> Result<(), Error>;

    /// Never: the message goes to the queue's dead-letter path.
    async fn reject(&mut self, delivery: &Delivery, reason: &str) -> Result<(), Error>;

    /// What this receiver's queue promises. The default promises nothing.
    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }

    /// Detaches the link; unsettled deliveries go back to the queue.
    async fn close(self: Box<Self>) -> Result<(), Error>;
}

/// Opens the transport a URL names: `amqp://…`, `amqps://…` or `local:PATH`.
pub async fn open(url: &str, options: amqp::AmqpOptions) -> Result<Box<dyn Transport>, Error> {
    if let Some(path) = url.strip_prefix("local:") {
        return Ok(Box::new(local::LocalTransport::open(path)?));
    }
    Ok(Box::new(amqp::AmqpTransport::new(url, options)?))
}
