//! What a caller may rely on from a transport or one of its receivers
//! ([`Capabilities`]), since the same trait covers a broker whose queues
//! differ (RabbitMQ classic or quorum queues, with or without a
//! dead-letter policy) and the embedded store whose rules are fixed.

/// What a transport (or one receiver of it) promises beyond the traits.
///
/// Each field is a promise: `true` means the caller may rely on it, `false`
/// means it is not promised (it may still happen, e.g. a RabbitMQ queue
/// with a dead-letter policy). [`Capabilities::default`] promises nothing;
/// fields added later start as `false` there, so a transport that does not
/// say is taken to promise nothing new. The struct is `#[non_exhaustive]`:
/// implementations outside this crate start from `default()` and set the
/// fields they promise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Capabilities {
    /// [`Delivery::delivery_count`](crate::Delivery::delivery_count) counts
    /// the earlier deliveries that were not accepted. When `false` it may
    /// stay 0 (RabbitMQ 3.10 classic queues), and a caller that limits
    /// attempts must count them itself.
    pub counts_deliveries: bool,
    /// [`Delivery::first_acquirer`](crate::Delivery::first_acquirer) is
    /// `false` whenever the message may have been delivered before.
    pub marks_redeliveries: bool,
    /// [`Receiver::release`](crate::Receiver::release) puts the message back
    /// on its queue, to be delivered again.
    pub releases: bool,
    /// [`Receiver::reject`](crate::Receiver::reject) moves the message to a
    /// dead-letter queue by itself. When `false` whether a rejected message
    /// is kept depends on the queue (a broker's dead-letter policy): a
    /// caller that must not lose it keeps it somewhere else first.
    pub rejects_to_dead_letter: bool,
}
