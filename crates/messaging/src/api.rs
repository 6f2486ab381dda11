//! The public face of the pipelines: what the application receives
//! ([`Received`]), answers ([`Reply`]) and implements ([`Handler`],
//! [`ErrorHandler`]), and how the pipelines run ([`ListenerOptions`]).
//! Shared by the sender, the receive driver and the answer paths, so that
//! none of them imports another for its types.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use helsemelding_store::outbox::OutboxState;
use helsemelding_wire::error_report::ReceivedErrorReport;
use helsemelding_wire::HerId;
use uuid::Uuid;

use helsemelding_wire::error_report::ErrorCondition;

/// A message that passed every check, as the application receives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received {
    /// The sender's HER-id (`fromHerId`, verified against the signer).
    pub from: HerId,
    /// The one of our HER-ids it is addressed to (`toHerId`); its answers
    /// go out from this HER-id.
    pub to: HerId,
    /// The message function (AMQP subject).
    pub function: String,
    /// The message-id.
    pub message_id: String,
    /// The correlation-id, when present.
    pub correlation_id: Option<String>,
    /// The CPA id the sender named, when any.
    pub cpa_id: Option<Uuid>,
    /// The payload exactly as it was signed (never re-serialised).
    pub payload: Vec<u8>,
    /// Payload metadata (the `X-MessageInfo-*` keys), read from the payload.
    pub metadata: BTreeMap<String, String>,
    /// The sender's `applicationTimeStamp`.
    pub application_time: DateTime<Utc>,
    /// `enqueuedTimeUtc`, when the sender set it.
    pub enqueued_time: Option<DateTime<Utc>>,
    /// When we took the delivery.
    pub received_at: DateTime<Utc>,
    /// The queue it came from.
    pub queue: String,
}

/// The application's answer to a synchronous request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The reply's message function; `None`: the request's.
    pub function: Option<String>,
    /// The reply payload (XML), signed and encrypted for the requester.
    pub payload: Vec<u8>,
}

impl Reply {
    /// A reply with the request's message function.
    pub fn new(payload: impl Into<Vec<u8>>) -> Reply {
        Reply {
            function: None,
            payload: payload.into(),
        }
    }
}

/// The application's side of the async and sync pipelines.
#[async_trait]
pub trait Handler: Send + Sync {
    /// Takes a checked message from our async queue. The delivery is
    /// accepted only after this returned `Ok`: keep what must survive
    /// before returning. A MsgHead that asks for a receipt is then answered
    /// with an AppRec (status OK, or rejected on
    /// [`HandlerError::RejectContent`]).
    async fn handle(&self, message: &Received) -> std::result::Result<(), HandlerError>;

    /// Answers a checked synchronous request (our sync queue). The default
    /// refuses: the requester hears `transport:unsupported-message` on its
    /// error queue. Communication tests are answered without this.
    async fn answer(&self, message: &Received) -> std::result::Result<Reply, HandlerError> {
        Err(HandlerError::Reject {
            condition: ErrorCondition::UnsupportedMessage,
            description: format!(
                "HER-id {} does not answer synchronous {} requests",
                message.to, message.function
            ),
        })
    }
}

/// The application's side of our error queue.
#[async_trait]
pub trait ErrorHandler: Send + Sync {
    /// Takes an error report about a message we sent. `Err(Retry)` releases
    /// it for later; `Err(Reject)` dead-letters it (never answered).
    async fn handle_error(
        &self,
        report: &ReceivedErrorReport,
    ) -> std::result::Result<(), HandlerError>;
}

/// How the pipelines run.
#[derive(Clone, Debug)]
pub struct ListenerOptions {
    /// Concurrent workers per queue.
    pub workers: usize,
    /// Whether to consume our error queue too.
    pub error_queue: bool,
    /// Whether to consume our sync queue too (answering requests through
    /// [`Handler::answer`] and communication tests).
    pub sync_queue: bool,
    /// How long one receive call waits before checking for shutdown.
    pub poll: Duration,
    /// Deliveries one worker may hold back for a later retry while it goes
    /// on with other messages (a worker never sleeps holding a delivery).
    pub parked_per_worker: usize,
    /// Where a message that is given up goes, unless
    /// `dead_letters_by_queue` names its queue. A message whose sender
    /// cannot be read is always kept in the store.
    pub dead_letters: DeadLetters,
    /// Per-queue exceptions to `dead_letters` (a queue found without a
    /// dead-letter path at start: [`DeadLetters::Store`]).
    pub dead_letters_by_queue: BTreeMap<String, DeadLetters>,
    /// The longest pause between tries while a fault of ours lasts (a full
    /// disk: see [`HandlerError::Unavailable`]); pauses double from 1 s.
    pub fault_pause_max: Duration,
    /// Message bodies, in bytes, that the workers of one listener (all its
    /// queues) may be processing at once; a delivery waits for its share
    /// before its checks start and gives it back once it is settled or
    /// parked. Processing keeps several copies of a body alive (ciphertext,
    /// decrypted, verified payload), so the memory this bounds is a few
    /// times the figure. A body larger than the whole budget still goes,
    /// alone. Bodies held but not in processing are not counted: one per
    /// worker waiting for its share, the parked ones, and those the broker
    /// sent ahead within the link credit (1 + `parked_per_worker` per
    /// worker). Default 256 MiB.
    pub max_bytes_in_flight: usize,
}

impl ListenerOptions {
    /// Where a message given up on `queue` goes.
    pub fn dead_letters_of(&self, queue: &str) -> DeadLetters {
        self.dead_letters_by_queue
            .get(queue)
            .copied()
            .unwrap_or(self.dead_letters)
    }
}

impl Default for ListenerOptions {
    fn default() -> Self {
        ListenerOptions {
            workers: 4,
            error_queue: true,
            sync_queue: true,
            poll: Duration::from_millis(500),
            parked_per_worker: 4,
            dead_letters: DeadLetters::Broker,
            dead_letters_by_queue: BTreeMap::new(),
            fault_pause_max: Duration::from_secs(30),
            max_bytes_in_flight: 256 * 1024 * 1024,
        }
    }
}

/// Where a message that is given up goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadLetters {
    /// Rejected: the broker's dead-letter policy moves it (NHN's bus: to
    /// `<herid>_dl`).
    Broker,
    /// Kept in the store (`parked`) and accepted: for queues without a
    /// dead-letter path, where the broker would delete a rejected message.
    Store,
}

/// What the application callback said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandlerError {
    /// Not now (e.g. a database is down): release and retry.
    Retry {
        /// Why, for the log.
        reason: String,
    },
    /// Never: tell the sender with this condition and accept the original.
    Reject {
        /// The condition to report (usually `transport:internal-error`).
        condition: ErrorCondition,
        /// The description to report.
        description: String,
    },
    /// Ours, not the message's: the application cannot take anything now
    /// (its disk is full, its folder not writable). The listener releases
    /// the message without spending an attempt and stops taking deliveries
    /// until a later one goes through.
    Unavailable {
        /// What failed, for the log and the audit.
        reason: String,
    },
    /// The content is wrong (a business-level rejection): a MsgHead is
    /// answered with an AppRec of status rejected carrying these errors
    /// (kodeverk 8221 codes and texts, the application's choice) and
    /// accepted; anything else is reported as `transport:internal-error`.
    RejectContent {
        /// The AppRec errors.
        errors: Vec<helsemelding_wire::Code>,
    },
}

impl std::fmt::Display for HandlerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HandlerError::Retry { reason } => write!(f, "retry: {reason}"),
            HandlerError::Unavailable { reason } => write!(f, "unavailable: {reason}"),
            HandlerError::Reject {
                condition,
                description,
            } => write!(f, "reject ({}): {description}", condition.as_str()),
            HandlerError::RejectContent { errors } => {
                write!(f, "content rejected:")?;
                for error in errors {
                    write!(f, " {}", error.v)?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for HandlerError {}

/// A message handed over earlier that the application answers now
/// ([`Node::send_application_receipt`](crate::Node::send_application_receipt)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answering {
    /// Our HER-id it was addressed to.
    pub ours: HerId,
    /// Its sender, whom the AppRec goes to.
    pub sender: HerId,
    /// Its AMQP message-id.
    pub message_id: String,
    /// Its MsgHead's MsgId.
    pub msg_id: Option<String>,
    /// Its message function.
    pub function: String,
}

/// One async message to send.
#[derive(Clone, Debug)]
pub struct SendRequest {
    /// The sending HER-id, one of ours; `None`: our first.
    pub from: Option<HerId>,
    /// The receiver.
    pub to: HerId,
    /// The message function (AMQP subject), e.g. `DIALOG_INNBYGGER_TEST`.
    pub function: String,
    /// The XML payload, sent (signed) byte for byte.
    pub payload: Vec<u8>,
    /// The message-id to send it under (a GUID, "D" form, as the reference
    /// library's callers give it); `None`: a new one. A caller that gives
    /// its own can submit again safely ([`Node::submit`](crate::Node::submit)).
    pub message_id: Option<String>,
}

/// What [`Node::submit`](crate::Node::submit) came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Submitted {
    /// Recorded and accepted by the broker, under this message-id.
    Sent(String),
    /// This message-id was submitted before with the same payload: not
    /// sent again; where the first submission is now.
    Replay {
        /// The message-id.
        message_id: String,
        /// Its outbox state.
        state: OutboxState,
    },
}

impl SendRequest {
    /// A request to send `payload` as `function` to `to`.
    pub fn new(to: HerId, function: impl Into<String>, payload: impl Into<Vec<u8>>) -> Self {
        SendRequest {
            from: None,
            to,
            function: function.into(),
            payload: payload.into(),
            message_id: None,
        }
    }

    /// The same request, sent under the caller's `message_id`.
    pub fn with_message_id(mut self, message_id: impl Into<String>) -> Self {
        self.message_id = Some(message_id.into());
        self
    }

    /// The same request, sent from `from` (one of our HER-ids).
    pub fn from(mut self, from: HerId) -> Self {
        self.from = Some(from);
        self
    }
}
