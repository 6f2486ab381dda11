//! The one error type of every transport (each implementation returns it
//! from the traits, so callers classify failures in one way).

/// What went wrong moving a message. Carries queue names and broker
/// descriptions, never message content or passwords.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The URL or another option is not usable.
    #[error("invalid transport configuration: {0}")]
    Config(String),
    /// The extra CA file could not be read.
    #[error("reading CA file {file}: {reason}")]
    CaFile {
        /// The file.
        file: String,
        /// Why.
        reason: String,
    },
    /// Connecting (TCP, TLS, SASL or AMQP open) failed, or took longer than
    /// the transport's connect timeout.
    #[error("connecting to {endpoint}: {reason}")]
    Connect {
        /// host:port.
        endpoint: String,
        /// Why.
        reason: String,
    },
    /// The broker refused the user name and password (SASL outcome `auth`).
    /// Never retried: the same credentials fail again. The caller knows
    /// where the password came from and should say so.
    #[error("the broker at {endpoint} refused user {user} (SASL authentication failed)")]
    AuthenticationFailed {
        /// host:port.
        endpoint: String,
        /// The user name we gave (never the password).
        user: String,
    },
    /// The broker refused to attach a link to the queue (e.g. no such queue).
    #[error("attaching to queue {queue}: {reason}")]
    Attach {
        /// The queue.
        queue: String,
        /// The broker's description.
        reason: String,
    },
    /// The queue does not exist (the broker said `not-found`).
    #[error("queue {queue} does not exist: {reason}")]
    NoSuchQueue {
        /// The queue.
        queue: String,
        /// The broker's description.
        reason: String,
    },
    /// Reconnecting has been failing for longer than the configured bound
    /// (AMQP: `AmqpOptions::unavailable_after`); later calls keep reconnecting.
    #[error("queue {queue}: broker unreachable for {} s, last error: {last_error}", down_for.as_secs())]
    Unavailable {
        /// The queue.
        queue: String,
        /// When the outage began.
        since: std::time::SystemTime,
        /// How long it has lasted so far.
        down_for: std::time::Duration,
        /// The last failed attempt.
        last_error: String,
    },
    /// Sending a message failed; its outcome is unknown.
    #[error("sending to queue {queue}: {reason}")]
    Send {
        /// The queue.
        queue: String,
        /// Why.
        reason: String,
    },
    /// Receiving or settling failed.
    #[error("receiving from queue {queue}: {reason}")]
    Receive {
        /// The queue.
        queue: String,
        /// Why.
        reason: String,
    },
    /// The link the delivery came on is gone (reconnected since); the broker
    /// delivers the message again.
    #[error("delivery from queue {queue} can no longer be settled: its link is gone, the message will come again")]
    DeliveryLost {
        /// The queue.
        queue: String,
    },
    /// A broker call did not finish in time.
    #[error("{operation} on queue {queue} timed out after {seconds} s")]
    Timeout {
        /// What was attempted.
        operation: &'static str,
        /// The queue.
        queue: String,
        /// The bound.
        seconds: u64,
    },
    /// The local store failed.
    #[error("local queue store {path}: {reason}")]
    Store {
        /// The database file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The transport was closed.
    #[error("transport is closed")]
    Closed,
}
