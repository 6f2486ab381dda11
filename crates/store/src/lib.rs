//! The gateway's durable memory, as traits that a backend implements
//! (`helsemelding-store-sqlite` on one machine; a shared PostgreSQL store
//! for several gateways can sit beside it), with the data they keep:
//!
//! - [`outbox`]: every message to send is recorded, protected, before it is
//!   transferred, and marked sent only on the broker's Accepted outcome, so a
//!   crash between the two is resent on restart with the same message-id.
//! - [`inbox`]: which (our HER-id, sender HER-id, message-id) triples were
//!   already handed to the application (de-duplication of redeliveries),
//!   and how often each delivery was attempted (brokers such as RabbitMQ
//!   3.10 do not count).
//! - [`receipts`]: sent messages that expect an application receipt, matched
//!   when it arrives, listed when overdue.
//! - [`parked`]: messages kept instead of dead-lettered where the broker
//!   would drop them (no dead-letter path) or nobody can be told of them.
//! - [`messages`]: where each message is as the EHR sees it (one record
//!   per message, an append-only history, a monotonic events feed),
//!   written by the backend inside the units of work above.
//! - [`audit`]: the append-only, hash-chained audit log of approvals and
//!   rejections, kept at least two years and never holding payloads; the
//!   chain itself (hashing, verification, retention) is pure and lives
//!   here, in [`audit::chain`], so every backend keeps the same chain.
//!
//! A [`Store`] gives one of each. Every trait method is one transaction of
//! the backend and returns only once it is durable; a change that must
//! happen together with another (a message marked sent and its audit row,
//! an answer queued and the hand-over it answers) is one method, a unit of
//! work, never two calls. Errors are this crate's [`Error`], which holds no
//! backend type.
//!
//! The traits are async and object-safe: callers hold an
//! `Arc<dyn Store>` and never learn which backend it is.

#![deny(missing_docs)]

pub mod audit;
mod error;
pub mod inbox;
pub mod messages;
pub mod outbox;
pub mod parked;
pub mod receipts;

pub use audit::AuditLog;
pub use error::Error;
pub use inbox::Inbox;
pub use messages::Messages;
pub use outbox::Outbox;
pub use parked::Parked;
pub use receipts::Receipts;

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A whole store: one backend's outbox, inbox, receipts, parked messages
/// and audit log, which share its transactions (so that a unit of work
/// spanning two of them, such as [`Outbox::mark_sent_audited`], is one).
pub trait Store: Send + Sync {
    /// The outbox of messages to send.
    fn outbox(&self) -> &dyn Outbox;
    /// De-duplication and delivery attempts of received messages.
    fn inbox(&self) -> &dyn Inbox;
    /// Application receipts expected for sent messages.
    fn receipts(&self) -> &dyn Receipts;
    /// Messages kept instead of dead-lettered.
    fn parked(&self) -> &dyn Parked;
    /// The hash-chained audit log.
    fn audit(&self) -> &dyn AuditLog;
    /// Message states and their history.
    fn messages(&self) -> &dyn Messages;
}
