//! [`AmqpTransport`]: the [`Transport`] over one AMQP connection, handing
//! out senders and receivers at the addresses its templates give.

use std::sync::Arc;

use async_trait::async_trait;
use helsemelding_transport::{Capabilities, Error, Receiver, Sender, Transport};
use helsemelding_wire::queue::AddressTemplates;

use crate::connection::Shared;
use crate::endpoint::Endpoint;
use crate::options::AmqpOptions;
use crate::receiver::{self, AmqpReceiver};
use crate::sender::AmqpSender;

/// The AMQP 1.0 transport.
#[derive(Clone)]
pub struct AmqpTransport {
    shared: Arc<Shared>,
    addresses: Arc<AddressTemplates>,
}

impl AmqpTransport {
    /// A transport for `url` (`amqp://[user[:password]@]host[:port][/exchange]`
    /// or `amqps://…`). Connects lazily, on the first link. An unusable URL,
    /// CA file or address template is refused here.
    pub fn new(url: &str, options: AmqpOptions) -> Result<AmqpTransport, Error> {
        let endpoint = Endpoint::parse(url, options.password.as_deref())?;
        let addresses = options.address_templates(endpoint.exchange.as_deref())?;
        Ok(AmqpTransport {
            shared: Arc::new(Shared::new(endpoint, options)?),
            addresses: Arc::new(addresses),
        })
    }

    /// The sender target address for `queue` in this transport's dialect.
    pub fn sender_address(&self, queue: &str) -> String {
        self.addresses.sender_address(queue)
    }

    /// The receiver source address for `queue` in this transport's dialect.
    pub fn receiver_address(&self, queue: &str) -> String {
        self.addresses.receiver_address(queue)
    }
}

#[async_trait]
impl Transport for AmqpTransport {
    async fn sender(&self, queue: &str) -> Result<Box<dyn Sender>, Error> {
        // No existence check here: the queue is usually another party's,
        // and attaching a receiver to it (the only way to ask) is an access
        // attempt on someone else's mailbox on NHN's bus. The registry is
        // what says a party's queue exists; our own are checked at start-up
        // (`Transport::check_queue`).
        Ok(Box::new(AmqpSender::new(
            Arc::clone(&self.shared),
            queue,
            self.sender_address(queue),
        )))
    }

    async fn receiver(&self, queue: &str, credit: u32) -> Result<Box<dyn Receiver>, Error> {
        let receiver = AmqpReceiver::attach(
            Arc::clone(&self.shared),
            queue,
            self.receiver_address(queue),
            credit,
        )
        .await?;
        Ok(Box::new(receiver))
    }

    async fn check_queue(&self, queue: &str) -> Result<(), Error> {
        self.shared
            .check_queue(queue, &self.receiver_address(queue))
            .await
    }

    fn capabilities(&self) -> Capabilities {
        receiver::CAPABILITIES
    }

    async fn close(&self) -> Result<(), Error> {
        self.shared.close().await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Dialect;

    fn transport(url: &str, options: AmqpOptions) -> AmqpTransport {
        AmqpTransport::new(url, options).unwrap()
    }

    #[test]
    fn rabbitmq_senders_use_the_exchange_of_the_url_path() {
        let t = transport(
            "amqps://user@sb.test.nhn.no:5671/NHNTESTServiceBus",
            AmqpOptions::default(),
        );
        assert_eq!(
            t.sender_address("93252_async"),
            "/exchange/NHNTESTServiceBus/93252_async"
        );
        assert_eq!(t.receiver_address("91462_async"), "/amq/queue/91462_async");
    }

    #[test]
    fn rabbitmq_without_a_path_sends_to_the_queue() {
        let t = transport("amqp://her:secret@127.0.0.1:5672", AmqpOptions::default());
        assert_eq!(t.sender_address("91462_sync"), "/amq/queue/91462_sync");
    }

    #[test]
    fn service_bus_uses_plain_queue_names_and_templates_override() {
        let sb = AmqpOptions {
            dialect: Dialect::ServiceBus,
            ..AmqpOptions::default()
        };
        let t = transport("amqps://u@sb.example:5671/x", sb);
        assert_eq!(t.sender_address("91462_async"), "91462_async");
        assert_eq!(t.receiver_address("91462_async"), "91462_async");
        let v2 = AmqpOptions {
            sender_address: Some("/exchanges/{exchange}/{queue}".into()),
            receiver_address: Some("/queues/{queue}".into()),
            ..AmqpOptions::default()
        };
        let t = transport("amqp://u@h/ex", v2);
        assert_eq!(t.sender_address("q"), "/exchanges/ex/q");
        assert_eq!(t.receiver_address("q"), "/queues/q");
    }

    #[test]
    fn bad_urls_ca_files_and_templates_are_refused_at_once() {
        assert!(matches!(
            AmqpTransport::new("http://h", AmqpOptions::default()),
            Err(Error::Config(_))
        ));
        let missing = AmqpOptions {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..AmqpOptions::default()
        };
        assert!(matches!(
            AmqpTransport::new("amqps://h", missing),
            Err(Error::CaFile { .. })
        ));
        let no_exchange = AmqpOptions {
            sender_address: Some("/exchange/{exchange}/{queue}".into()),
            ..AmqpOptions::default()
        };
        assert!(matches!(
            AmqpTransport::new("amqp://h", no_exchange),
            Err(Error::Config(_))
        ));
    }

    #[test]
    fn an_amqp_queue_promises_redelivery_marks_and_release_but_not_counts() {
        let t = transport("amqp://h", AmqpOptions::default());
        let promised = t.capabilities();
        assert!(promised.marks_redeliveries && promised.releases);
        assert!(!promised.counts_deliveries && !promised.rejects_to_dead_letter);
    }
}
