//! Application receipts (AppRec) expected for sent messages.
//!
//! This module owns the receipt types and their trait, [`Receipts`].
//!
//! A municipality must know, for each message it sent, whether the receiver
//! answered with an AppRec and what it said. A sent message that asks for
//! one is recorded with a deadline; the AppRec that arrives later is matched
//! by its `OriginalMsgId` and must come from the party the message went to.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::Result;

/// A sent message that waits for its receipt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpectedReceipt {
    /// The sent message's id.
    pub message_id: String,
    /// Whom it went to: the receipt must come from there.
    pub to_her_id: u32,
    /// The sent message's function.
    pub function: String,
    /// When it was sent.
    pub sent_at: DateTime<Utc>,
    /// When its receipt is overdue.
    pub due_at: DateTime<Utc>,
}

/// A tracked message and its receipt, if one came.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceiptRecord {
    /// The tracked message.
    pub expected: ExpectedReceipt,
    /// Its receipt, once matched.
    pub received: Option<ReceivedReceipt>,
}

/// The receipt that answered a tracked message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceivedReceipt {
    /// When it came.
    pub at: DateTime<Utc>,
    /// AppRec status code: `1` OK, `2` rejected, `3` OK with errors.
    pub status: String,
    /// The receipt's own message-id.
    pub receipt_message_id: String,
}

/// What matching an incoming receipt found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReceiptMatch {
    /// It answers a tracked message; now recorded.
    Matched(ExpectedReceipt),
    /// That message was answered before (a duplicate receipt).
    AlreadyMatched,
    /// No message with that id was sent expecting a receipt.
    Unknown,
    /// It names our message but comes from a party the message did not go to.
    WrongSender {
        /// The party the message went to.
        expected_her_id: u32,
    },
}

/// Application receipts expected for sent messages. Every method is one
/// transaction of the backend.
#[async_trait]
pub trait Receipts: Send + Sync {
    /// Starts tracking a sent message.
    async fn expect(&self, expected: &ExpectedReceipt) -> Result<()>;

    /// Matches a receipt from `from_her_id` answering `original_message_id`
    /// (the look-up and the record are one transaction).
    async fn record(
        &self,
        original_message_id: &str,
        from_her_id: u32,
        received: &ReceivedReceipt,
    ) -> Result<ReceiptMatch>;

    /// Messages whose receipt has not come by `now` though it was due,
    /// earliest deadline first.
    async fn overdue(&self, now: DateTime<Utc>) -> Result<Vec<ReceiptRecord>>;

    /// Every tracked message, newest first, at most `limit`.
    async fn all(&self, limit: usize) -> Result<Vec<ReceiptRecord>>;

    /// One tracked message.
    async fn get(&self, message_id: &str) -> Result<Option<ReceiptRecord>>;
}
