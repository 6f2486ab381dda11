//! The messaging engine: what makes a payload handed to helsemelding reach
//! the receiver's queue exactly as NHN's reference library would send it,
//! and what makes every message on our queues either reach the application
//! or be answered on its sender's error queue, never lost.
//!
//! - [`engine`]: the receive decisions as pure functions (unit-tested
//!   without a broker);
//! - [`Messenger`]: sending (registry look-up, certificate checks, CMS,
//!   envelope, durable outbox, send, mark sent) and the outbox pump;
//! - [`Listener`]: the receive pipelines with N workers per queue, driving
//!   the engine around the transport, store, registry and CMS;
//! - [`convert`]: the wire envelope to and from the transport's message.
//!
//! Every delivery is settled on every path (accept, release after a
//! backoff, or reject), and the store de-duplicates by (sender, message-id).

pub mod convert;
pub mod engine;
mod error;
mod in_flight;
mod messenger;
mod receive;

pub use engine::{Decision, HandlerError, RetryPolicy};
pub use error::{Error, Result};
pub use messenger::{Messenger, MessengerConfig, SendRequest};
pub use receive::{ErrorHandler, Handler, Listener, ListenerOptions, Received};
