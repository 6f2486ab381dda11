//! The one error type of this crate.

/// What failed while sending or running a receive pipeline. Variants carry
/// HER-ids, message ids, queue names and certificate serials, never payload
/// bytes or keys.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The registry could not tell us about a party.
    #[error("registry look-up for HER-id {her_id}: {source}")]
    Registry {
        /// The party looked up.
        her_id: u32,
        /// The registry's error.
        #[source]
        source: helsemelding_registry::Error,
    },
    /// The address registry says the party's AMQP transport is disabled.
    #[error(
        "HER-id {her_id} has its AMQP transport disabled in the address registry; not sending"
    )]
    TransportDisabled {
        /// The receiver.
        her_id: u32,
    },
    /// The receiver's profile does not allow this message function.
    #[error("message function {function} may not be sent to HER-id {her_id} per its collaboration profile")]
    FunctionNotAllowed {
        /// The receiver.
        her_id: u32,
        /// The message function.
        function: String,
    },
    /// The receiver has no encryption certificate or queue in the registry.
    #[error("HER-id {her_id} has no {what} in the registry")]
    Incomplete {
        /// The receiver.
        her_id: u32,
        /// What is missing.
        what: &'static str,
    },
    /// A certificate failed its check before use.
    #[error("{role} certificate serial {serial} is not usable: {problems}")]
    Certificate {
        /// Whose certificate and for what (e.g. `receiver 93252 encryption`).
        role: String,
        /// Its serial (hex).
        serial: String,
        /// The problems found.
        problems: String,
    },
    /// The payload cannot be sent (not XML, say).
    #[error("payload refused: {0}")]
    Payload(#[source] helsemelding_wire::Error),
    /// Signing or encrypting failed.
    #[error("protecting message {message_id}: {source}")]
    Protect {
        /// The message.
        message_id: String,
        /// Why.
        #[source]
        source: helsemelding_protect::Error,
    },
    /// The durable store failed.
    #[error("store: {0}")]
    Store(#[from] helsemelding_store::Error),
    /// Moving the message failed; an outbox entry stays pending and is resent.
    #[error("transport: {0}")]
    Transport(#[from] helsemelding_transport::Error),
    /// The broker refused the message.
    #[error("the broker refused message {message_id} for queue {queue}: {reason}")]
    Refused {
        /// The message.
        message_id: String,
        /// The queue.
        queue: String,
        /// The broker's reason.
        reason: String,
    },
    /// The message is recorded in the outbox, but this transfer failed (the
    /// broker is down, or its queue refused it for now): the outbox pump,
    /// `listen` or an `outbox flush` tries it again with the same id.
    #[error("message {message_id} for queue {queue} waits in the outbox: {source}")]
    InOutbox {
        /// The message.
        message_id: String,
        /// The queue.
        queue: String,
        /// Why this transfer failed.
        #[source]
        source: Box<Error>,
    },
    /// An outbox entry could not be read back.
    #[error("outbox entry {message_id} is unreadable: {reason}")]
    Outbox {
        /// The message.
        message_id: String,
        /// Why.
        reason: String,
    },
    /// No reply came to a synchronous request in time.
    #[error("no reply from HER-id {her_id} to sync request {message_id} within {after:?}")]
    SyncTimeout {
        /// The request.
        message_id: String,
        /// The receiver.
        her_id: u32,
        /// The call timeout.
        after: std::time::Duration,
    },
    /// A reply came but is not the answer expected.
    #[error("the reply from HER-id {her_id} to {message_id} is not what was asked for: {reason}")]
    UnexpectedReply {
        /// The request.
        message_id: String,
        /// The replying party.
        her_id: u32,
        /// What is wrong.
        reason: String,
    },
    /// The registry names no queue of this kind for the party.
    #[error("the address registry names no {kind} queue for HER-id {her_id}: add it to the party's record (queues are never derived from the HER-id)")]
    NoQueue {
        /// The party.
        her_id: u32,
        /// `async`, `sync`, `error` or `syncreply`.
        kind: &'static str,
    },
    /// A message-id given by the caller was submitted before with another
    /// payload.
    #[error("message-id {message_id} was submitted before with other content: give the message a new id")]
    MessageIdConflict {
        /// The message-id.
        message_id: String,
    },
    /// The transport lacks what the receive pipeline needs.
    #[error("queue {queue}: the transport cannot {capability}, which the receive pipeline needs for {needed_for}")]
    TransportLacks {
        /// The queue to be consumed.
        queue: String,
        /// What it cannot do.
        capability: &'static str,
        /// What that is needed for.
        needed_for: &'static str,
    },
    /// A message is to be put back on a queue that is not one of ours.
    #[error("queue {queue} is not one of our queues ({ours}): a message is only put back where it came from")]
    NotOurQueue {
        /// The queue asked for.
        queue: String,
        /// Ours, comma-separated.
        ours: String,
    },
    /// A send names a sending HER-id that is not one of this installation's.
    #[error("HER-id {her_id} is not one of ours ({ours}): pick one with --from")]
    NotOurs {
        /// The HER-id asked for.
        her_id: u32,
        /// Ours, comma-separated.
        ours: String,
    },
    /// The MsgHead of a message to send names other parties than the
    /// envelope: the receiver would refuse it.
    #[error("the MsgHead {role} names HER-id {in_msghead}, but the message is {direction} HER-id {in_envelope}: fix the MsgHead {role} (the receiver would refuse it)")]
    MsgHeadParty {
        /// `Sender` or `Receiver`.
        role: &'static str,
        /// `from` or `to`.
        direction: &'static str,
        /// What the envelope says (the sending or receiving HER-id).
        in_envelope: u32,
        /// What the MsgHead says (`/`-separated HER-ids, or `none`).
        in_msghead: String,
    },
    /// Our signing certificate is not one the registry publishes for the
    /// sending HER-id: every receiver would refuse the signature.
    #[error("our signing certificate serial {serial} is not one the address registry publishes for HER-id {her_id} (registered: {registered}): configure the registered certificate, or register this one")]
    SigningNotRegistered {
        /// The sending HER-id.
        her_id: u32,
        /// Our signing certificate's serial.
        serial: String,
        /// The registered signing serials (`, `-separated; empty: none).
        registered: String,
    },
    /// A background task died.
    #[error("internal task failed: {0}")]
    Task(String),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
