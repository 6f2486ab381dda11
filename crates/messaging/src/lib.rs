//! The messaging engine: what makes a payload handed to helsemelding reach
//! the receiver's queue exactly as NHN's reference library would send it,
//! and what makes every message on our queues either reach the application
//! or be answered on its sender's error queue, never lost.
//!
//! - [`engine`]: the receive pipeline as a pure state machine
//!   ([`engine::intake::Intake`]), the decisions and the one map from
//!   failures to error conditions ([`engine::Failure`]), unit-tested without
//!   a broker or a clock;
//! - [`Node`]: the shared part (configuration, transport, registry, store,
//!   waiting callers, sender links) that the sender and every pipeline
//!   borrow: sending (registry look-up, certificate checks, CMS, envelope,
//!   durable outbox, send, mark sent) and the outbox pump;
//! - [`Messenger`]: a node plus the one sync reply consumer it owns (its
//!   workers borrow the node, so nothing owns what owns it);
//! - [`Listener`]: the receive pipelines with N workers per queue, driving
//!   the engine around the transport, store, registry and CMS, within a
//!   bound on the payload bytes in flight;
//! - [`convert`]: the wire envelope to and from the transport's message;
//! - [`receipts`]: which sent messages wait for an AppRec, and the AppRec
//!   a received MsgHead is answered with;
//! - sync calls ([`Messenger::send_and_wait`]) with one reply consumer per
//!   messenger, and communication tests ([`Messenger::communication_test`])
//!   answered by every listener.
//!
//! Every delivery is settled on every path (accept, release after a
//! backoff, reject, or kept in the store where rejecting would delete it),
//! and the store de-duplicates by (sender, message-id). A fault of ours (a
//! full disk) pauses the pipelines instead of spending the message's
//! delivery attempts.

#![deny(missing_docs)]

mod answer;
mod api;
mod budget;
mod commtest;
pub mod convert;
pub mod engine;
mod error;
mod in_flight;
mod listener;
mod local_fault;
mod messenger;
mod outage;
pub mod receipts;
mod receive;
mod waiters;

pub use api::{
    Answering, ErrorHandler, Handler, ListenerOptions, Received, Reply, SendRequest, Submitted,
};
pub use commtest::{CommtestMode, CommtestOutcome};
pub use engine::{DeadLetters, Decision, HandlerError, OutboxPolicy, ReceivePolicy, RetryPolicy};
pub use error::{Error, Result};
pub use listener::{Listener, ReceiveHealth};
pub use messenger::{FlushReport, Messenger, MessengerConfig, Node};
