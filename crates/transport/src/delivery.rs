//! One received message ([`Delivery`]) and the opaque token
//! ([`DeliveryToken`]) with which the receiver that handed it out settles it.

use std::any::Any;
use std::fmt;

use crate::Message;

/// One received message and what the transport knows of its history.
///
/// Implementations build it with [`Delivery::new`]; the token in it is
/// theirs alone and only their receiver can read it back.
#[derive(Debug)]
pub struct Delivery {
    /// The message.
    pub message: Message,
    /// Earlier deliveries that were not accepted, as far as the transport
    /// counts them ([`Capabilities::counts_deliveries`](crate::Capabilities::counts_deliveries);
    /// RabbitMQ 3.10 classic queues always say 0).
    pub delivery_count: u32,
    /// False when the message may have been delivered before (the reliable
    /// redelivery signal on RabbitMQ).
    pub first_acquirer: bool,
    /// The queue it came from.
    pub queue: String,
    token: DeliveryToken,
}

impl Delivery {
    /// A delivery of `message` from `queue`, with its history as the
    /// transport knows it and the token its receiver settles it by.
    pub fn new(
        message: Message,
        delivery_count: u32,
        first_acquirer: bool,
        queue: impl Into<String>,
        token: DeliveryToken,
    ) -> Delivery {
        Delivery {
            message,
            delivery_count,
            first_acquirer,
            queue: queue.into(),
            token,
        }
    }

    /// What the receiver needs to settle this delivery.
    pub fn token(&self) -> &DeliveryToken {
        &self.token
    }
}

/// What an implementation needs to settle a delivery (a link and delivery
/// tag, a row and lease, ...), opaque to everyone else.
///
/// The implementation puts a value of a private type of its own in with
/// [`DeliveryToken::new`] and gets it back with
/// [`DeliveryToken::downcast_ref`]; a token from another transport does not
/// downcast, which the receiver reports as an error instead of settling the
/// wrong message. `Debug` shows the value's own `Debug` (which should say
/// where the delivery came from and nothing of the message).
pub struct DeliveryToken(Box<dyn TokenValue>);

/// The bounds of a token value, in one name so that the box can be
/// upcast to `dyn Any` for the downcast.
trait TokenValue: Any + fmt::Debug + Send + Sync {}

impl<T: Any + fmt::Debug + Send + Sync> TokenValue for T {}

impl DeliveryToken {
    /// A token holding `value`.
    pub fn new<T: Any + fmt::Debug + Send + Sync>(value: T) -> DeliveryToken {
        DeliveryToken(Box::new(value))
    }

    /// The value, if it is a `T` (that is, if this transport made the token).
    pub fn downcast_ref<T: Any>(&self) -> Option<&T> {
        let value: &dyn Any = &*self.0;
        value.downcast_ref()
    }
}

impl fmt::Debug for DeliveryToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct Ours {
        row: i64,
    }

    #[derive(Debug)]
    struct Theirs;

    #[test]
    fn a_token_gives_back_only_what_was_put_in() {
        let token = DeliveryToken::new(Ours { row: 7 });
        assert_eq!(token.downcast_ref::<Ours>(), Some(&Ours { row: 7 }));
        assert!(token.downcast_ref::<Theirs>().is_none());
        assert!(DeliveryToken::new(Theirs).downcast_ref::<Ours>().is_none());
        assert_eq!(format!("{token:?}"), "Ours { row: 7 }");
    }

    #[test]
    fn a_delivery_carries_its_token() {
        let delivery = Delivery::new(
            Message::new(b"x".to_vec()),
            2,
            false,
            "q",
            DeliveryToken::new(Ours { row: 1 }),
        );
        assert_eq!(delivery.token().downcast_ref::<Ours>().unwrap().row, 1);
        assert_eq!(
            (delivery.delivery_count, delivery.first_acquirer),
            (2, false)
        );
        assert_eq!(delivery.queue, "q");
    }
}
