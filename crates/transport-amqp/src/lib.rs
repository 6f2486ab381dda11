//! AMQP 1.0 for [`helsemelding_transport`]'s traits, on fe2o3-amqp: RabbitMQ
//! (the NHN bus; v1 and v2 addresses) and Azure Service Bus, `amqp://` and
//! `amqps://`, with reconnection. Everything AMQP lives here; the traits,
//! the message model, the error type and the embedded queue stay in
//! `helsemelding-transport`, and the profile's rules (address templates,
//! body sections, TTLs) come from `helsemelding-wire`.
//!
//! One connection per [`AmqpTransport`]. Senders share one session; each
//! receiver has a session of its own, because RabbitMQ 3.10 keeps a
//! detached link's unsettled deliveries with its session until the session
//! ends: ending the receiver's session on close (or drop) gives them back.
//! Links are attached lazily, reused, and re-attached (on a new session, or
//! a new connection after capped exponential backoff with jitter) when the
//! broker ends them: on RabbitMQ any attach or disposition error ends the
//! whole session. Every broker call is bounded by
//! [`AmqpOptions::operation_timeout`]; a receiver that cannot reconnect for
//! longer than [`AmqpOptions::unavailable_after`] says so
//! ([`Error::Unavailable`]) instead of looking idle. Because RabbitMQ
//! accepts and drops messages sent to a missing queue behind an exchange,
//! our own queues can be checked to exist ([`Error::NoSuchQueue`]); senders
//! never look at a receiving party's queue.
//! Links are detached, never closed (RabbitMQ 3.10 answers a closing detach
//! with an error), and a closed receiver settles nothing: what it did not
//! settle goes back to the queue. A connection attempt is bounded as a whole
//! by [`AmqpOptions::connect_timeout`]; refused credentials are
//! [`Error::AuthenticationFailed`] at once, never retried.
//!
//! Errors are `helsemelding_transport`'s [`Error`]: what the traits return is
//! what callers (the messaging engine) classify, and a second enum here would
//! only be converted into it at every trait method.
//!
//! # Layout
//!
//! - `options`: [`AmqpOptions`], [`Dialect`] and the address templates they
//!   select (wire's [`AddressTemplates`](helsemelding_wire::queue::AddressTemplates));
//! - `endpoint`: the broker URL (host, port, TLS, user, exchange) and the
//!   TLS client configuration (system roots plus an extra CA file);
//! - `reconnect`: the pure part of reconnecting: backoff, the run of failed
//!   attempts, a receiver's outage and when to report it, which errors are
//!   final;
//! - `connection`: the one connection and the senders' session, opened and
//!   re-opened on demand, bounded broker calls, attach and queue checks;
//! - `sender`, `receiver`: the link of one sender and one receiver, their
//!   retry loops, and (receiver) the delivery token;
//! - `convert`: [`Message`](helsemelding_transport::Message) to fe2o3's
//!   message and back, and broker outcomes;
//! - `transport`: [`AmqpTransport`], which hands out senders and receivers;
//! - [`management`]: RabbitMQ's management API (queue counts, dead-letter
//!   paths), which AMQP 1.0 cannot ask.

#![deny(missing_docs)]

// Everything but the pure readers of broker answers needs the `client`
// feature (the default); the fuzz targets build without it.
#[cfg(feature = "client")]
mod connection;
#[cfg(feature = "client")]
mod convert;
#[cfg(feature = "client")]
mod endpoint;
pub mod management;
#[cfg(feature = "client")]
mod options;
#[cfg(feature = "client")]
mod receiver;
#[cfg(feature = "client")]
mod reconnect;
#[cfg(feature = "client")]
mod sender;
#[cfg(feature = "client")]
mod transport;

#[cfg(feature = "client")]
use helsemelding_transport::local::LocalTransport;
#[cfg(feature = "client")]
use helsemelding_transport::{Error, Transport};

#[cfg(feature = "client")]
pub use options::{AmqpOptions, Dialect};
#[cfg(feature = "client")]
pub use transport::AmqpTransport;

/// Opens the transport a URL names: `amqp://…`, `amqps://…`, or
/// `local:PATH` (the embedded queue, for which `options` do not matter).
#[cfg(feature = "client")]
pub async fn open(url: &str, options: AmqpOptions) -> Result<Box<dyn Transport>, Error> {
    if let Some(path) = url.strip_prefix("local:") {
        return Ok(Box::new(LocalTransport::open(path)?));
    }
    Ok(Box::new(AmqpTransport::new(url, options)?))
}
