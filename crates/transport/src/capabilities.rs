//! What a caller may rely on from a transport or one of its receivers
//! ([`Capabilities`]), since the same trait covers a broker whose queues
//! differ (RabbitMQ classic or quorum queues, with or without a
//! dead-letter policy) and the embedded store whose rules are fixed.

/// What a transport (or one receiver of it) promises beyond the traits.
///
/// Each field is a promise: `true` means the caller may rely on it, `false`
/// means it is not promised (it may still happen, e.g. a RabbitMQ queue
/// with a dead-letter policy). [`Capabilities::NONE`] (also `default()`)
/// promises nothing; fields added later start as `false` there, so a
/// transport that does not say is taken to promise nothing new. The struct
/// is `#[non_exhaustive]`: implementations start from `NONE` and add what
/// they promise with the `with_…` methods, e.g.
///
/// ```
/// use helsemelding_transport::Capabilities;
///
/// const PROMISED: Capabilities = Capabilities::NONE.with_release();
/// assert!(PROMISED.releases && !PROMISED.counts_deliveries);
/// ```
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

impl Capabilities {
    /// Promises nothing.
    pub const NONE: Capabilities = Capabilities {
        counts_deliveries: false,
        marks_redeliveries: false,
        releases: false,
        rejects_to_dead_letter: false,
    };

    /// Also promises [`counts_deliveries`](Capabilities::counts_deliveries).
    pub const fn with_delivery_counts(mut self) -> Capabilities {
        self.counts_deliveries = true;
        self
    }

    /// Also promises [`marks_redeliveries`](Capabilities::marks_redeliveries).
    pub const fn with_redelivery_marks(mut self) -> Capabilities {
        self.marks_redeliveries = true;
        self
    }

    /// Also promises [`releases`](Capabilities::releases).
    pub const fn with_release(mut self) -> Capabilities {
        self.releases = true;
        self
    }

    /// Also promises [`rejects_to_dead_letter`](Capabilities::rejects_to_dead_letter).
    pub const fn with_dead_letter_on_reject(mut self) -> Capabilities {
        self.rejects_to_dead_letter = true;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_promised_unless_added() {
        assert_eq!(Capabilities::NONE, Capabilities::default());
        let all = Capabilities::NONE
            .with_delivery_counts()
            .with_redelivery_marks()
            .with_release()
            .with_dead_letter_on_reject();
        assert!(all.counts_deliveries && all.marks_redeliveries);
        assert!(all.releases && all.rejects_to_dead_letter);
        let one = Capabilities::NONE.with_dead_letter_on_reject();
        assert!(one.rejects_to_dead_letter && !one.releases && !one.counts_deliveries);
    }
}
