//! One receiver: a link to one queue's source address on a session of its
//! own, re-attached after the broker ended it (quietly, until its
//! [`Health`] says the outage has lasted too long), and settlement on the
//! link a delivery came on, which its [`AmqpToken`] names.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use fe2o3_amqp::link::delivery::DeliveryInfo;
use fe2o3_amqp::link::CreditMode;
use fe2o3_amqp::session::SessionHandle;
use fe2o3_amqp::types::messaging::Body;
use fe2o3_amqp::types::primitives::Value as AmqpValue;
use helsemelding_transport::{Capabilities, Delivery, DeliveryToken, Error, Receiver};

use crate::connection::{attach_error, Shared};
use crate::convert::from_amqp;
use crate::reconnect::{is_final, Health};

/// What an AMQP queue promises. Delivery counts are not: RabbitMQ 3.10
/// classic queues always say 0 (quorum queues count), and the link cannot
/// tell which it reads. Reject dead-letters only where the queue has a
/// dead-letter policy on the broker.
pub(crate) const CAPABILITIES: Capabilities =
    Capabilities::NONE.with_redelivery_marks().with_release();

/// Receives on a link of its own session: ending the session is what makes
/// RabbitMQ 3.10 give back the deliveries the link holds (a detach alone
/// leaves them with the session), so `close` ends it and so does dropping
/// the receiver (fe2o3 sends `end` when a session handle is dropped).
pub(crate) struct AmqpReceiver {
    shared: Arc<Shared>,
    queue: String,
    address: String,
    credit: u32,
    session: Option<SessionHandle<()>>,
    link: Option<fe2o3_amqp::Receiver>,
    link_id: u64,
    health: Health,
}

/// What settles an AMQP delivery: the link it came on and fe2o3's handle.
struct AmqpToken {
    link_generation: u64,
    info: DeliveryInfo,
}

impl std::fmt::Debug for AmqpToken {
    // fe2o3's DeliveryInfo has no Debug; the link is what matters when debugging.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "amqp link {}", self.link_generation)
    }
}

enum Settle<'a> {
    Accept,
    Release,
    Reject(&'a str),
}

impl AmqpReceiver {
    /// A receiver on `queue` at `address`, attached at once so that a
    /// missing queue is reported here, not on the first receive.
    pub async fn attach(
        shared: Arc<Shared>,
        queue: &str,
        address: String,
        credit: u32,
    ) -> Result<AmqpReceiver, Error> {
        let unavailable_after = shared.options.unavailable_after;
        let mut receiver = AmqpReceiver {
            shared,
            queue: queue.to_owned(),
            address,
            credit: credit.max(1),
            session: None,
            link: None,
            link_id: 0,
            health: Health::new(unavailable_after),
        };
        receiver.ensure_link().await?;
        Ok(receiver)
    }

    async fn ensure_link(&mut self) -> Result<(), Error> {
        if self.link.is_some() {
            return Ok(());
        }
        if self.session.as_ref().is_none_or(|s| s.is_ended()) {
            self.session = None;
            self.session = Some(self.shared.private_session(&self.queue).await?);
        }
        let session = self.session.as_mut().expect("begun above");
        let name = format!("{}-receiver-{}", self.queue, uuid::Uuid::new_v4().simple());
        let attach = fe2o3_amqp::Receiver::builder()
            .name(name)
            .source(self.address.clone())
            .credit_mode(CreditMode::Auto(self.credit))
            .attach(session);
        match self.shared.bounded("attach", &self.queue, attach).await {
            Ok(Ok(link)) => {
                self.link = Some(link);
                self.link_id = self.shared.next_link_id();
                Ok(())
            }
            Ok(Err(reason)) => {
                // RabbitMQ has ended the session.
                self.session = None;
                Err(attach_error(&self.queue, reason))
            }
            Err(timeout) => {
                self.session = None;
                self.shared.drop_connection().await;
                Err(timeout)
            }
        }
    }

    /// Settles `delivery` on the link it came on.
    async fn settle(&mut self, delivery: &Delivery, how: Settle<'_>) -> Result<(), Error> {
        let Some(AmqpToken {
            link_generation,
            info,
        }) = delivery.token().downcast_ref()
        else {
            return Err(Error::Receive {
                queue: self.queue.clone(),
                reason: "delivery from another transport".into(),
            });
        };
        let link = match &self.link {
            Some(link) if *link_generation == self.link_id => link,
            _ => {
                return Err(Error::DeliveryLost {
                    queue: self.queue.clone(),
                })
            }
        };
        let info = info.clone();
        let result = match how {
            Settle::Accept => {
                self.shared
                    .bounded("accept", &self.queue, link.accept(info))
                    .await
            }
            Settle::Release => {
                self.shared
                    .bounded("release", &self.queue, link.release(info))
                    .await
            }
            Settle::Reject(reason) => {
                let error = fe2o3_amqp::types::definitions::Error::new(
                    fe2o3_amqp::types::definitions::AmqpError::NotAllowed,
                    Some(reason.to_owned()),
                    None,
                );
                self.shared
                    .bounded("reject", &self.queue, link.reject(info, error))
                    .await
            }
        };
        match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(reason)) => {
                self.link = None;
                Err(Error::Receive {
                    queue: self.queue.clone(),
                    reason,
                })
            }
            Err(timeout) => {
                self.link = None;
                self.shared.drop_connection().await;
                Err(timeout)
            }
        }
    }

    fn delivery(&self, delivery: fe2o3_amqp::Delivery<Body<AmqpValue>>) -> Delivery {
        let info = DeliveryInfo::from(&delivery);
        let amqp = delivery.into_message();
        let (delivery_count, first_acquirer) = amqp
            .header
            .as_ref()
            .map(|h| (h.delivery_count, h.first_acquirer))
            // No header: AMQP's defaults (first-acquirer false), so the
            // layers above count the delivery rather than assume it is new.
            .unwrap_or((0, false));
        let token = DeliveryToken::new(AmqpToken {
            link_generation: self.link_id,
            info,
        });
        Delivery::new(
            from_amqp(amqp),
            delivery_count,
            first_acquirer,
            self.queue.clone(),
            token,
        )
    }
}

#[async_trait]
impl Receiver for AmqpReceiver {
    async fn receive(&mut self, within: Duration) -> Result<Option<Delivery>, Error> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let error = match self.ensure_link().await {
                Ok(()) => {
                    self.health.recovered();
                    let link = self.link.as_mut().expect("attached");
                    match tokio::time::timeout_at(deadline, link.recv::<Body<AmqpValue>>()).await {
                        Err(_) => return Ok(None),
                        Ok(Ok(delivery)) => return Ok(Some(self.delivery(delivery))),
                        Ok(Err(e)) => Error::Receive {
                            queue: self.queue.clone(),
                            reason: e.to_string(),
                        },
                    }
                }
                Err(e) if is_final(&e) => return Err(e),
                Err(e) => e,
            };
            self.link = None;
            self.session = None;
            if self.shared.is_closed() {
                return Err(Error::Closed);
            }
            if self.health.is_up() {
                tracing::warn!(queue = %self.queue, %error, "receive failed; reconnecting (quietly until it works)");
            } else {
                tracing::debug!(queue = %self.queue, %error, "receive failed again; reconnecting");
            }
            let unavailable = self.health.failed(
                &self.queue,
                &error,
                tokio::time::Instant::now(),
                SystemTime::now(),
            );
            // Back off before answering too, so a caller that calls again at
            // once does not hammer an unreachable broker.
            let paused = tokio::time::timeout_at(deadline, self.shared.pause_after_failure())
                .await
                .is_ok();
            if let Some(unavailable) = unavailable {
                return Err(unavailable);
            }
            if !paused {
                return Ok(None);
            }
        }
    }

    async fn accept(&mut self, delivery: &Delivery) -> Result<(), Error> {
        self.settle(delivery, Settle::Accept).await
    }

    async fn release(&mut self, delivery: &Delivery) -> Result<(), Error> {
        self.settle(delivery, Settle::Release).await
    }

    async fn reject(&mut self, delivery: &Delivery, reason: &str) -> Result<(), Error> {
        self.settle(delivery, Settle::Reject(reason)).await
    }

    fn capabilities(&self) -> Capabilities {
        CAPABILITIES
    }

    async fn close(mut self: Box<Self>) -> Result<(), Error> {
        if let Some(link) = self.link.take() {
            // Detach, not close (RabbitMQ 3.10 answers a closing detach with an error).
            let detach = async { link.detach().await.map(drop).map_err(|(_, e)| e) };
            let _ = self.shared.bounded("detach", &self.queue, detach).await;
        }
        // Ending the session is what gives the unsettled deliveries back.
        if let Some(mut session) = self.session.take() {
            let _ = self
                .shared
                .bounded("end session", &self.queue, session.end())
                .await;
        }
        Ok(())
    }
}
