//! One sender: a link to one queue's target address on the senders' shared
//! session, attached on the first send and again after the broker ended
//! it; `send` waits for the broker's outcome and keeps trying through an
//! outage for as long as the [`SendBudget`] allows.

use std::sync::Arc;

use async_trait::async_trait;
use helsemelding_transport::{Error, Message, Outcome, Sender};

use crate::connection::Shared;
use crate::convert::{from_amqp_outcome, to_amqp};
use crate::reconnect::SendBudget;

pub(crate) struct AmqpSender {
    shared: Arc<Shared>,
    queue: String,
    address: String,
    link: Option<fe2o3_amqp::Sender>,
}

impl AmqpSender {
    /// A sender to `queue` at `address`; nothing is attached yet.
    pub fn new(shared: Arc<Shared>, queue: &str, address: String) -> AmqpSender {
        AmqpSender {
            shared,
            queue: queue.to_owned(),
            address,
            link: None,
        }
    }

    async fn ensure_link(&mut self) -> Result<&mut fe2o3_amqp::Sender, Error> {
        if self.link.is_none() {
            let name = format!("{}-sender-{}", self.queue, uuid::Uuid::new_v4().simple());
            let address = self.address.clone();
            let link = self
                .shared
                .attach(&self.queue, |session| {
                    Box::pin(fe2o3_amqp::Sender::attach(session, name, address))
                })
                .await?;
            self.link = Some(link);
        }
        Ok(self.link.as_mut().expect("attached above"))
    }

    /// One attempt: attach if need be, send, wait for the outcome.
    async fn try_send(&mut self, message: &Message) -> Result<Outcome, Error> {
        let shared = Arc::clone(&self.shared);
        let queue = self.queue.clone();
        let link = self.ensure_link().await?;
        match shared
            .bounded("send", &queue, link.send(to_amqp(message)))
            .await
        {
            Ok(Ok(outcome)) => Ok(from_amqp_outcome(outcome)),
            Ok(Err(reason)) => Err(Error::Send { queue, reason }),
            Err(timeout) => {
                shared.drop_connection().await;
                Err(timeout)
            }
        }
    }
}

#[async_trait]
impl Sender for AmqpSender {
    async fn send(&mut self, message: Message) -> Result<Outcome, Error> {
        let budget = SendBudget::new(
            tokio::time::Instant::now(),
            self.shared.options.send_retry_for,
        );
        loop {
            let error = match self.try_send(&message).await {
                Ok(outcome) => return Ok(outcome),
                Err(error) => error,
            };
            self.link = None;
            if !budget.retry(&error, tokio::time::Instant::now(), self.shared.is_closed()) {
                return Err(error);
            }
            // Debug only: the caller gets the last error when send gives up,
            // and a send into an outage should say so once, not per attempt.
            tracing::debug!(queue = %self.queue, %error, "send failed; reconnecting");
            // Never past the bound: the last attempt comes at `give_up_at`.
            let _ = tokio::time::timeout_at(budget.give_up_at(), self.shared.pause_after_failure())
                .await;
        }
    }

    async fn close(mut self: Box<Self>) -> Result<(), Error> {
        if let Some(link) = self.link.take() {
            let detach = async { link.detach().await.map(drop).map_err(|(_, e)| e) };
            let _ = self.shared.bounded("detach", &self.queue, detach).await;
        }
        Ok(())
    }
}
