//! What happened to received messages: de-duplication and attempt counting.
//!
//! This module owns the inbox's data types and its trait, [`Inbox`].
//!
//! Duplicates are normal on the bus (a consumer that outlives the broker's
//! consumer timeout gets its delivery again), so every hand-over to the
//! application is remembered by (our HER-id, sender HER-id, message-id) for
//! at least as long as the longest TTL, and a repeat is accepted without a
//! second hand-over. Brokers that do not count deliveries (RabbitMQ 3.10
//! classic queues report 0 forever) are counted here instead.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::audit::AuditEvent;
use crate::Result;

/// A hand-over remembered for de-duplication.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandOver {
    /// When it was handed over.
    pub at: DateTime<Utc>,
    /// What was done with it, e.g. `accepted`.
    pub outcome: String,
    /// The answer it got (an AppRec, say), which a repeat gets again.
    pub answer: Option<Answer>,
}

/// The answer a handed-over message got: its function and unprotected
/// payload. Only answers without health data are kept (AppRecs); they are
/// protected afresh when sent again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    /// The answer's message function, e.g. `APPREC`.
    pub function: String,
    /// The answer's unprotected payload.
    pub payload: Vec<u8>,
}

/// How often a message was delivered before, as far as the store counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeliveryCount {
    /// Redeliveries seen, the current one included (first deliveries are
    /// not written down).
    pub redeliveries: u32,
    /// Deliveries released without spending an attempt (outages, faults
    /// of ours).
    pub free: u32,
}

impl DeliveryCount {
    /// The attempt number of the current delivery (1 for the first), given
    /// the broker's own count of earlier deliveries (0 where the broker
    /// does not count): free deliveries are not attempts.
    pub fn attempt(&self, broker_count: u32) -> u32 {
        (1 + self.redeliveries.max(broker_count))
            .saturating_sub(self.free)
            .max(1)
    }
}

/// Which message: our HER-id it was addressed to, the sender, its id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MessageKey<'a> {
    /// Our HER-id it was addressed to.
    pub ours: u32,
    /// The sender's HER-id.
    pub sender: u32,
    /// Its message-id.
    pub message_id: &'a str,
}

/// A delivery as the store counts it: the queue it came from and its
/// message id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeliveryKey<'a> {
    /// The queue it came from.
    pub queue: &'a str,
    /// Its message-id.
    pub message_id: &'a str,
}

/// What the hand-over of an incoming message adds to its [message record](crate::messages::MessageRecord): the
/// MsgHead's MsgId (the id the EHR knows) and the message function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arrival<'a> {
    /// The MsgHead's `MsgInfo/MsgId`, when the payload is a MsgHead.
    pub msg_id: Option<&'a str>,
    /// The message function (AMQP subject).
    pub function: &'a str,
}

/// A hand-over to record as one unit of work
/// ([`Inbox::record_hand_over_audited`]).
#[derive(Clone, Copy, Debug)]
pub struct HandOverRecord<'a> {
    /// Which message.
    pub key: MessageKey<'a>,
    /// When it was handed over.
    pub at: DateTime<Utc>,
    /// What was done with it, e.g. `accepted`.
    pub outcome: &'a str,
    /// The answer it got, kept for a repeat.
    pub answer: Option<&'a Answer>,
    /// The delivery whose count (and unknown-revocation mark) is forgotten,
    /// if it was written down (first deliveries are not).
    pub delivery: Option<DeliveryKey<'a>>,
    /// Its audit row, appended at `at`.
    pub audit: &'a AuditEvent,
    /// What its message record keeps (`AVAILABLE` from now on); `None`
    /// records no state.
    pub arrival: Option<Arrival<'a>>,
}

/// De-duplication and delivery attempts of received messages. Every method
/// is one transaction of the backend.
#[async_trait]
pub trait Inbox: Send + Sync {
    /// Records that the message was handed to the application (or
    /// answered) with `outcome` and the answer it got. Returns `false` when
    /// it was already recorded: the caller must not hand it over again.
    /// Messages refused with an error report are never recorded: a repeat
    /// of one is judged afresh.
    async fn record_hand_over(
        &self,
        key: MessageKey<'_>,
        at: DateTime<Utc>,
        outcome: &str,
        answer: Option<&Answer>,
    ) -> Result<bool>;

    /// One unit of work: records the hand-over (as
    /// [`Inbox::record_hand_over`]), appends its audit row and forgets the
    /// delivery's count and unknown-revocation mark (as
    /// [`Inbox::forget_deliveries`] and [`Inbox::forget_revocation_unknown`]).
    /// All of it happens or none does. Returns `false` when the hand-over
    /// was already recorded (the audit row and the forgetting happen all
    /// the same).
    async fn record_hand_over_audited(&self, record: &HandOverRecord<'_>) -> Result<bool>;

    /// The earlier hand-over of this message, if any (hand-overs recorded
    /// before our HER-id was kept count for any of ours).
    async fn hand_over(&self, key: MessageKey<'_>) -> Result<Option<HandOver>>;

    /// Forgets hand-overs older than `before` (the de-duplication window has
    /// passed); returns how many were removed.
    async fn forget_hand_overs_before(&self, before: DateTime<Utc>) -> Result<usize>;

    /// Since when the revocation status of this message's sender has been
    /// unknown: the first call records `now`, later ones return it.
    async fn revocation_unknown_since(
        &self,
        queue: &str,
        message_id: &str,
        now: DateTime<Utc>,
    ) -> Result<DateTime<Utc>>;

    /// Forgets that a message's revocation status was unknown (it was
    /// settled, or the status became known).
    async fn forget_revocation_unknown(&self, queue: &str, message_id: &str) -> Result<()>;

    /// Counts one more redelivery of `message_id` from `queue`; returns the
    /// redeliveries seen so far (this one included) and how many
    /// deliveries were released without spending an attempt.
    async fn count_delivery(
        &self,
        queue: &str,
        message_id: &str,
        at: DateTime<Utc>,
    ) -> Result<DeliveryCount>;

    /// Marks one delivery as free: it failed for an outage or a fault of
    /// ours (registry or revocation service down, disk full), which must
    /// not spend the message's delivery attempts. Brokers that count
    /// deliveries count it all the same; this count is subtracted.
    async fn uncount_delivery(&self, queue: &str, message_id: &str) -> Result<()>;

    /// Forgets the attempt count of a message that was settled for good.
    async fn forget_deliveries(&self, queue: &str, message_id: &str) -> Result<()>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_deliveries_are_not_attempts() {
        let count = |redeliveries, free| DeliveryCount { redeliveries, free };
        assert_eq!(count(0, 0).attempt(0), 1);
        assert_eq!(count(1, 0).attempt(0), 2);
        // The broker's count wins where it is higher.
        assert_eq!(count(1, 0).attempt(4), 5);
        assert_eq!(count(0, 20).attempt(20), 1);
        assert_eq!(count(0, 20).attempt(21), 2);
        // Never below the first attempt.
        assert_eq!(count(0, 9).attempt(0), 1);
    }
}
