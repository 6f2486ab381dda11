//! Moving messages to and from queues, and nothing else: the traits any
//! crate implements to be a transport, and the embedded queue.
//!
//! - [`Transport`] (open a sender or receiver on a queue, check that one of
//!   ours exists), [`Sender`] (send and learn the broker's [`Outcome`]) and
//!   [`Receiver`] (receive, then accept / release / reject); they are
//!   object-safe, and the rest of the code holds `Arc<dyn Transport>` and
//!   `Box<dyn Receiver>`;
//! - [`Message`] and [`Value`]: the AMQP 1.0 properties, header fields and
//!   application properties the profile uses, and the body bytes;
//! - [`Delivery`] and its [`DeliveryToken`]: what the implementation needs
//!   to settle a delivery, opaque to everyone else (the implementation
//!   makes it and downcasts it back);
//! - [`Capabilities`]: what a transport or receiver promises beyond the
//!   traits (delivery counts, dead-lettering on reject);
//! - [`Error`]: the one error type of every transport;
//! - [`local`]: an embedded durable queue store (SQLite) with a broker's
//!   semantics, for development without a broker, the demo and fast tests.
//!   It is written against this crate's public API only, as a transport in
//!   another crate is (`helsemelding-transport-amqp` for AMQP 1.0).
//!
//! Delivery is at-least-once everywhere: a delivery that is not accepted
//! comes back (with `first_acquirer == false`), so the layers above
//! de-duplicate by message id. There is no "modified" outcome: RabbitMQ 3.10
//! ends the session on it. Retry is [`Receiver::release`], poison is
//! [`Receiver::reject`] (dead-lettered by the broker's policy, or by the
//! transport itself where [`Capabilities::rejects_to_dead_letter`] says so).

#![deny(missing_docs)]

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
