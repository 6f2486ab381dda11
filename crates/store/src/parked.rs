//! Messages kept instead of dead-lettered.
//!
//! This module owns the parked-message types and their trait, [`Parked`].
//!
//! A broker without a dead-letter path for our queue (RabbitMQ's default)
//! deletes a rejected message, and a message whose sender cannot be read
//! cannot be reported to anybody. Neither may vanish: the receive pipeline
//! parks such a message here (its AMQP header as JSON, its body as it came)
//! and accepts the delivery; an operator lists, drops or requeues it.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::Result;

/// A message to park: where it came from, why, and what it was.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParkedMessage {
    /// The queue it was taken from.
    pub queue: String,
    /// Its message-id, when it had one.
    pub message_id: Option<String>,
    /// Why it was not handed over (for the operator; no payload content).
    pub reason: String,
    /// When it was parked.
    pub parked_at: DateTime<Utc>,
    /// Its AMQP properties and application properties, as JSON.
    pub envelope: Vec<u8>,
    /// Its body, exactly as it came (usually still encrypted).
    pub body: Vec<u8>,
}

/// A parked message as listed: everything but the body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParkedSummary {
    /// The id operators name it by.
    pub id: i64,
    /// The queue it was taken from.
    pub queue: String,
    /// Its message-id, when it had one.
    pub message_id: Option<String>,
    /// Why it was parked.
    pub reason: String,
    /// When it was parked.
    pub parked_at: DateTime<Utc>,
    /// Its AMQP header, as JSON.
    pub envelope: Vec<u8>,
    /// The size of its body in bytes.
    pub body_len: u64,
}

/// Messages kept instead of dead-lettered. Every method is one transaction
/// of the backend.
#[async_trait]
pub trait Parked: Send + Sync {
    /// Keeps `message`; returns the id it is listed under.
    async fn park(&self, message: &ParkedMessage) -> Result<i64>;

    /// The parked messages, oldest first, at most `limit`.
    async fn list(&self, limit: usize) -> Result<Vec<ParkedSummary>>;

    /// How many messages are parked.
    async fn count(&self) -> Result<u64>;

    /// One parked message, body included.
    async fn get(&self, id: i64) -> Result<Option<(ParkedSummary, Vec<u8>)>>;

    /// Removes a parked message (dropped, or put back on its queue);
    /// [`Error::UnknownParked`](crate::Error::UnknownParked) if there is none.
    async fn remove(&self, id: i64) -> Result<()>;
}
