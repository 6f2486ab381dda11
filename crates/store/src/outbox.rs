//! The durable outbox: record, transfer, mark sent.
//!
//! This module owns the outbox's data types and its trait, [`Outbox`].
//!
//! A message enters as `pending` with its protected bytes and its envelope
//! (serialised by the caller). The sender transfers it and calls
//! [`Outbox::mark_sent`] only on the broker's Accepted outcome; whatever is
//! still pending after a crash or an outage is returned by
//! [`Outbox::pending`] and sent again with the same message-id. Once sent,
//! the protected bytes are dropped: the outbox is no archive of health data.
//!
//! Entries are independent: each pending entry has its own attempt count
//! and next-attempt time ([`Outbox::due`] returns only those whose time has
//! come), so an entry that keeps failing (its queue does not exist, say)
//! delays only itself. The sender gives up on it after its attempts with
//! [`Outbox::mark_failed`]; a failed entry keeps its bytes until an
//! operator puts it back ([`Outbox::retry`]) or removes it
//! ([`Outbox::remove`]).

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::audit::{AuditEvent, AuditRecord};
use crate::inbox::{Answer, Arrival, MessageKey};
use crate::Result;

/// A message waiting to be sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutgoingMessage {
    /// Its message-id, unique in the outbox.
    pub message_id: String,
    /// The sender's HER-id (one of ours).
    pub from_her_id: u32,
    /// The receiver's HER-id.
    pub to_her_id: u32,
    /// The MsgHead's MsgId, when the payload is a MsgHead: the id its
    /// [message record](crate::messages::MessageRecord) is known by.
    pub msg_id: Option<String>,
    /// The queue it goes to, e.g. `93252_async`.
    pub queue: String,
    /// The message function (AMQP subject).
    pub function: String,
    /// The AMQP envelope as the caller serialises it.
    pub envelope: Vec<u8>,
    /// The protected (CMS) bytes.
    pub body: Vec<u8>,
    /// When it was recorded.
    pub created_at: DateTime<Utc>,
    /// After this instant the message is not worth sending (its TTL ran out).
    pub expires_at: Option<DateTime<Utc>>,
    /// SHA-256 (hex) of the payload before it was protected, when the
    /// caller's message-id is its own (a MsgHead's MsgId): kept after the
    /// bytes are gone, so that the same id submitted again can be told a
    /// replay (same digest) from a reuse (another).
    pub payload_digest: Option<String>,
}

/// Where a message is in the outbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OutboxState {
    /// Waiting to be sent (again).
    Pending {
        /// Failed transfer attempts so far (a broker outage does not count).
        attempts: u32,
        /// Why the last attempt failed, or why none could be made.
        last_error: Option<String>,
        /// Not tried again before this instant.
        next_attempt_at: DateTime<Utc>,
    },
    /// The broker accepted it; its bytes are gone.
    Sent {
        /// When the broker accepted it.
        at: DateTime<Utc>,
    },
    /// Given up on; its bytes are kept for a retry.
    Failed {
        /// When it was given up.
        at: DateTime<Utc>,
        /// Failed transfer attempts before it was given up.
        attempts: u32,
        /// Why it was given up.
        reason: String,
    },
}

impl OutboxState {
    /// `pending`, `sent` or `failed`.
    pub fn name(&self) -> &'static str {
        match self {
            OutboxState::Pending { .. } => "pending",
            OutboxState::Sent { .. } => "sent",
            OutboxState::Failed { .. } => "failed",
        }
    }
}

/// An entry as an operator sees it: everything but its bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxEntry {
    /// Its message-id.
    pub message_id: String,
    /// The receiver's HER-id.
    pub to_her_id: u32,
    /// The queue it goes to.
    pub queue: String,
    /// The message function (AMQP subject).
    pub function: String,
    /// When it was recorded.
    pub created_at: DateTime<Utc>,
    /// When its TTL runs out, if it has one.
    pub expires_at: Option<DateTime<Utc>>,
    /// See [`OutgoingMessage::payload_digest`].
    pub payload_digest: Option<String>,
    /// Where it is.
    pub state: OutboxState,
}

/// When an entry is due again, given its failed attempts so far (the one
/// just counted included): the sender's backoff, asked inside the unit of
/// work that counts the attempt.
pub type RetryAt = Box<dyn FnOnce(u32) -> DateTime<Utc> + Send>;

/// The outbox of messages to send. Every method is one transaction of the
/// backend; those that name more than one change (`…_audited`,
/// [`Outbox::enqueue_answer`]) are units of work: all of it happens or
/// none does.
#[async_trait]
pub trait Outbox: Send + Sync {
    /// Records a message as pending. The message id must be new
    /// ([`Error::DuplicateMessageId`](crate::Error::DuplicateMessageId)).
    async fn enqueue(&self, message: &OutgoingMessage) -> Result<()>;

    /// One unit of work: records a message as pending, as
    /// [`Outbox::enqueue`], and appends `audit` at the message's creation
    /// time. Both happen or neither does.
    async fn enqueue_audited(
        &self,
        message: &OutgoingMessage,
        audit: &AuditEvent,
    ) -> Result<AuditRecord>;

    /// One unit of work: records `message`, the answer (an AppRec) to a
    /// message handed to the application, together with that hand-over
    /// (outcome `accepted`, at the message's creation time): once the
    /// answer is queued the hand-over is on record, so a redelivery after
    /// a crash is neither handed over nor answered again. A message handed
    /// over before (the application answers it later) keeps its
    /// hand-over, which takes this answer.
    async fn enqueue_answer(
        &self,
        message: &OutgoingMessage,
        answers: MessageKey<'_>,
        arrival: Arrival<'_>,
        answer: &Answer,
    ) -> Result<()>;

    /// Pending messages, oldest first, at most `limit`, whether due or not.
    async fn pending(&self, limit: usize) -> Result<Vec<OutgoingMessage>>;

    /// Pending messages whose next attempt is due at `now`, oldest first,
    /// at most `limit`.
    async fn due(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<OutgoingMessage>>;

    /// Pending and failed entries (not the sent ones), oldest first, at
    /// most `limit`, without their bytes.
    async fn entries(&self, limit: usize) -> Result<Vec<OutboxEntry>>;

    /// One unit of work: counts a failed transfer attempt of this pending
    /// entry and sets its next attempt to `retry_at(attempts)`, given the
    /// attempts so far (this one included), which are returned.
    async fn record_attempt_failed(
        &self,
        message_id: &str,
        error: &str,
        retry_at: RetryAt,
    ) -> Result<u32>;

    /// Notes why a transfer could not be tried (the broker is down, which
    /// is not the entry's fault): the last error changes, the attempts and
    /// the next-attempt time do not.
    async fn record_outage(&self, message_id: &str, error: &str) -> Result<()>;

    /// Puts a failed entry back to pending, due at `now`, with its attempts
    /// counted from zero again.
    async fn retry(&self, message_id: &str, now: DateTime<Utc>) -> Result<()>;

    /// One entry without its bytes, or `None` if the outbox never saw it.
    async fn entry(&self, message_id: &str) -> Result<Option<OutboxEntry>>;

    /// Removes a pending or failed entry, its bytes with it, and returns
    /// what it was. A sent entry is history and stays.
    async fn remove(&self, message_id: &str) -> Result<OutboxEntry>;

    /// Marks a message sent (the broker accepted it) and drops its bytes.
    /// Marking an already sent message again is harmless.
    async fn mark_sent(&self, message_id: &str, at: DateTime<Utc>) -> Result<()>;

    /// One unit of work: marks a message sent, as [`Outbox::mark_sent`],
    /// and appends `audit` (its `sent` row) at `at`. Both happen or neither
    /// does.
    async fn mark_sent_audited(
        &self,
        message_id: &str,
        at: DateTime<Utc>,
        audit: &AuditEvent,
    ) -> Result<AuditRecord>;

    /// Gives up on a message (expired, receiver unknown, refused for good,
    /// out of attempts). Its bytes are kept for [`Outbox::retry`] until the
    /// entry is removed.
    async fn mark_failed(&self, message_id: &str, at: DateTime<Utc>, reason: &str) -> Result<()>;

    /// Gives up on a message whose TTL passed before it could be sent: as
    /// [`Outbox::mark_failed`] with the reason "expired in the outbox",
    /// and its record `EXPIRED` rather than `FAILED`.
    async fn mark_expired(&self, message_id: &str, at: DateTime<Utc>) -> Result<()>;

    /// Where a message is, or `None` if the outbox never saw it.
    async fn state(&self, message_id: &str) -> Result<Option<OutboxState>>;

    /// Number of pending messages (for status and metrics).
    async fn pending_count(&self) -> Result<u64>;
}
