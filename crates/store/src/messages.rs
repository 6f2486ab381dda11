//! Where each message is, as the EHR sees it: one record per message and
//! an append-only history of its states, with a monotonic sequence number
//! that an EHR follows instead of polling (`GET /api/v1/events?after=SEQ`).
//!
//! This module owns the state machine's names ([`MessageState`]), the
//! records ([`MessageRecord`], [`StateEvent`]) and the trait
//! ([`Messages`]) for reading them and for the changes that only the EHR
//! makes (lease, acknowledge, release).
//!
//! The other changes are written by the backend inside the units of work
//! that cause them, never by a second call: an outgoing message becomes
//! `ACCEPTED` in the transaction that puts it in the outbox, `SENT` in the
//! one that marks it sent, `APPREC_*` in the one that matches its receipt;
//! an incoming message becomes `AVAILABLE` in the transaction that records
//! its hand-over (its answer too, when the gateway answers it at once:
//! `APPREC_SENT`). So the folder, the API and the events feed never
//! disagree with the outbox or the audit log.
//!
//! ```text
//! out: ACCEPTED → SENT → APPREC_OK | APPREC_REJECTED | APPREC_PARTIAL
//!      ACCEPTED ⇄ RETRY_WAIT → FAILED | EXPIRED;  ACCEPTED | RETRY_WAIT | FAILED → CANCELLED
//! in:  AVAILABLE → LEASED → DELIVERED → APPREC_SENT   (REJECTED: reported to the sender)
//! ```

use std::fmt;
use std::str::FromStr;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

pub use crate::inbox::Arrival;
use crate::inbox::MessageKey;
use crate::Result;

/// Which way a message went.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Sent by us.
    Out,
    /// Received by us.
    In,
}

impl Direction {
    /// `out` or `in`.
    pub fn name(self) -> &'static str {
        match self {
            Direction::Out => "out",
            Direction::In => "in",
        }
    }
}

impl FromStr for Direction {
    type Err = UnknownName;

    fn from_str(text: &str) -> std::result::Result<Self, UnknownName> {
        match text {
            "out" => Ok(Direction::Out),
            "in" => Ok(Direction::In),
            _ => Err(UnknownName(text.to_owned())),
        }
    }
}

/// A name that is not a [`Direction`] or a [`MessageState`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown name {0:?}")]
pub struct UnknownName(pub String);

macro_rules! states {
    ($($(#[$doc:meta])* $variant:ident = $name:literal,)*) => {
        /// A message's state; see the module's state machine.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum MessageState {
            $($(#[$doc])* $variant,)*
        }

        impl MessageState {
            /// Every state, outgoing first.
            pub const ALL: &'static [MessageState] = &[$(MessageState::$variant,)*];

            /// The state's name as the API and the events feed show it,
            /// e.g. `APPREC_OK`.
            pub fn name(self) -> &'static str {
                match self {
                    $(MessageState::$variant => $name,)*
                }
            }
        }

        impl FromStr for MessageState {
            type Err = UnknownName;

            fn from_str(text: &str) -> std::result::Result<Self, UnknownName> {
                match text {
                    $($name => Ok(MessageState::$variant),)*
                    _ => Err(UnknownName(text.to_owned())),
                }
            }
        }
    };
}

states! {
    /// Out: recorded in the outbox, not yet sent.
    Accepted = "ACCEPTED",
    /// Out: a transfer failed; it is tried again later.
    RetryWait = "RETRY_WAIT",
    /// Out: the broker accepted it.
    Sent = "SENT",
    /// Out: the receiver's AppRec says OK.
    AppRecOk = "APPREC_OK",
    /// Out: the receiver's AppRec rejects it.
    AppRecRejected = "APPREC_REJECTED",
    /// Out: the receiver's AppRec says OK with errors in parts.
    AppRecPartial = "APPREC_PARTIAL",
    /// Out: given up on (refused, out of attempts); can be retried.
    Failed = "FAILED",
    /// Out: its TTL passed before it could be sent.
    Expired = "EXPIRED",
    /// Out: removed before it was sent.
    Cancelled = "CANCELLED",
    /// In: taken from the queue, checked and kept for the EHR.
    Available = "AVAILABLE",
    /// In: leased by an EHR that has not acknowledged it yet.
    Leased = "LEASED",
    /// In: the EHR took it (acknowledged it, or moved its IN file away).
    Delivered = "DELIVERED",
    /// In: its AppRec went back to the sender.
    AppRecSent = "APPREC_SENT",
    /// In: refused, and the sender told so on its error queue.
    Rejected = "REJECTED",
}

impl MessageState {
    /// The state an AppRec status (kodeverk 8258: `1` OK, `2` rejected,
    /// `3` OK with errors in parts) gives the message it answers.
    pub fn of_apprec_status(status: &str) -> MessageState {
        match status {
            "1" => MessageState::AppRecOk,
            "3" => MessageState::AppRecPartial,
            _ => MessageState::AppRecRejected,
        }
    }

    /// Whether an outgoing message in this state can still be cancelled.
    pub fn is_cancellable(self) -> bool {
        matches!(
            self,
            MessageState::Accepted | MessageState::RetryWait | MessageState::Failed
        )
    }
}

impl fmt::Display for MessageState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One message as the EHR sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageRecord {
    /// The record's number: increasing, the cursor of [`MessageFilter`].
    pub id: i64,
    /// Which way it went.
    pub direction: Direction,
    /// Our HER-id (the sender of an outgoing message, the addressee of an
    /// incoming one).
    pub ours: u32,
    /// The other party's HER-id.
    pub peer: u32,
    /// The AMQP message-id.
    pub message_id: String,
    /// The MsgHead's MsgId, when it is a MsgHead.
    pub msg_id: Option<String>,
    /// The message function.
    pub function: String,
    /// Where it is.
    pub state: MessageState,
    /// An AppRec it asked for (out) or owes (in) is late.
    pub overdue: bool,
    /// Failed transfer attempts (out).
    pub attempts: u32,
    /// The last error or reason, when there was one.
    pub last_error: Option<String>,
    /// The status of its AppRec (`1`, `2`, `3`), once there is one.
    pub apprec_status: Option<String>,
    /// Until when it is leased (in).
    pub leased_until: Option<DateTime<Utc>>,
    /// When it was recorded.
    pub created_at: DateTime<Utc>,
    /// When its state last changed.
    pub updated_at: DateTime<Utc>,
}

impl MessageRecord {
    /// The id the EHR knows it by: the MsgId, else the message-id.
    pub fn public_id(&self) -> &str {
        self.msg_id.as_deref().unwrap_or(&self.message_id)
    }
}

/// One state change, in the order of the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateEvent {
    /// Its sequence number: strictly increasing, never reused.
    pub seq: i64,
    /// When it happened.
    pub at: DateTime<Utc>,
    /// The message's record number ([`MessageRecord::id`]).
    pub record: i64,
    /// Which way the message went.
    pub direction: Direction,
    /// Our HER-id.
    pub ours: u32,
    /// The MsgId, else the message-id.
    pub id: String,
    /// The state it came to.
    pub state: MessageState,
    /// Why, when there is something to say (an error, a reason).
    pub detail: Option<String>,
}

/// Which records [`Messages::list`] returns.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MessageFilter {
    /// Only this direction.
    pub direction: Option<Direction>,
    /// Only in this state.
    pub state: Option<MessageState>,
    /// Only of this HER-id of ours.
    pub ours: Option<u32>,
    /// Only recorded at or after this instant.
    pub from: Option<DateTime<Utc>>,
    /// Only recorded before this instant.
    pub to: Option<DateTime<Utc>>,
    /// Only records after this one (the cursor: the last id of a page).
    pub after: Option<i64>,
}

/// Message records and their history; the EHR's own changes. Every method
/// is one transaction of the backend.
#[async_trait]
pub trait Messages: Send + Sync {
    /// Records matching `filter`, in record order, at most `limit`.
    async fn list(&self, filter: &MessageFilter, limit: usize) -> Result<Vec<MessageRecord>>;

    /// The newest record whose MsgId or message-id is `id`, of this
    /// direction and HER-id of ours when given.
    async fn find(
        &self,
        id: &str,
        direction: Option<Direction>,
        ours: Option<u32>,
    ) -> Result<Option<MessageRecord>>;

    /// The state history of record `record`, oldest first.
    async fn history(&self, record: i64) -> Result<Vec<StateEvent>>;

    /// State changes after sequence number `after`, oldest first, at most
    /// `limit`.
    async fn events_after(&self, after: i64, limit: usize) -> Result<Vec<StateEvent>>;

    /// Leases up to `limit` incoming messages that are available (or whose
    /// lease ran out) until `until`, oldest first, of `ours` when given.
    async fn lease(
        &self,
        ours: Option<u32>,
        limit: usize,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<MessageRecord>>;

    /// Moves an incoming message to `state` at `now` with `detail`
    /// (`DELIVERED` once the EHR took it, `AVAILABLE` when it gave it
    /// back, `APPREC_SENT` once its answer is queued) and returns the
    /// record as it is now.
    async fn set_state(
        &self,
        record: i64,
        state: MessageState,
        now: DateTime<Utc>,
        detail: Option<&str>,
    ) -> Result<MessageRecord>;

    /// As [`Messages::set_state`], only from one of the states `from`:
    /// one transaction that checks and moves, so two clients racing for
    /// one message cannot both win. Another state is
    /// [`Error::RecordState`](crate::Error::RecordState) naming `action`.
    async fn transition(
        &self,
        record: i64,
        from: &[MessageState],
        to: MessageState,
        now: DateTime<Utc>,
        action: &'static str,
    ) -> Result<MessageRecord>;

    /// Records an incoming message refused with an error report to its
    /// sender (`REJECTED`, with the reason).
    async fn record_rejected(
        &self,
        key: MessageKey<'_>,
        arrival: Arrival<'_>,
        at: DateTime<Utc>,
        reason: &str,
    ) -> Result<()>;

    /// Flags record `record` overdue (an incoming message whose AppRec we
    /// owe and have not sent in time); returns whether it was not already.
    async fn flag_overdue(&self, record: i64) -> Result<bool>;

    /// Flags an outgoing message (by MsgId, to `peer`) whose AppRec is
    /// late; returns whether a record was flagged.
    async fn mark_overdue(&self, msg_id: &str, peer: u32) -> Result<bool>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_names_go_both_ways() {
        for state in MessageState::ALL {
            assert_eq!(state.name().parse::<MessageState>(), Ok(*state));
        }
        assert!("SENDING".parse::<MessageState>().is_err());
        assert_eq!("in".parse::<Direction>(), Ok(Direction::In));
        assert!("sideways".parse::<Direction>().is_err());
    }

    #[test]
    fn apprec_status_decides_the_outgoing_state() {
        assert_eq!(MessageState::of_apprec_status("1"), MessageState::AppRecOk);
        assert_eq!(
            MessageState::of_apprec_status("2"),
            MessageState::AppRecRejected
        );
        assert_eq!(
            MessageState::of_apprec_status("3"),
            MessageState::AppRecPartial
        );
    }
}
