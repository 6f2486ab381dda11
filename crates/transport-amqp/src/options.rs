//! The settings beyond the URL ([`AmqpOptions`]) and the address templates
//! they select: the templates themselves are wire's, the one copy of the
//! profile's address rules.

use std::path::PathBuf;
use std::time::Duration;

use helsemelding_transport::Error;
use helsemelding_wire::queue::AddressTemplates;
pub use helsemelding_wire::queue::Dialect;

/// Settings beyond the URL.
#[derive(Debug, Clone)]
pub struct AmqpOptions {
    /// Address conventions: RabbitMQ v1 (senders target
    /// `/exchange/<exchange>/<queue>`, exchange = the URL path, or without a
    /// path `/amq/queue/<queue>`; receivers read `/amq/queue/<queue>`),
    /// RabbitMQ 4 v2 (`/exchanges/…`, `/queues/…`) or Service Bus (plain
    /// queue names).
    pub dialect: Dialect,
    /// The SASL password, when it does not come in the URL (e.g. read from a
    /// secret file or `HELSEMELDING_BROKER_PASSWORD`). Wins over the URL's.
    pub password: Option<String>,
    /// An extra trusted CA (PEM) beside the system roots, for `amqps://`.
    pub ca_file: Option<PathBuf>,
    /// Sender target template; `{queue}` and `{exchange}` are replaced.
    /// Default from the dialect. It must contain `{queue}`, and may use
    /// `{exchange}` only when the URL names one ([`AmqpTransport::new`]
    /// refuses it otherwise).
    ///
    /// [`AmqpTransport::new`]: crate::AmqpTransport::new
    pub sender_address: Option<String>,
    /// Receiver source template; `{queue}` is replaced. Default from the
    /// dialect; the same rules as `sender_address`.
    pub receiver_address: Option<String>,
    /// Bound on every single broker call (connect, attach, send, settle, detach).
    pub operation_timeout: Duration,
    /// Bound on one connection attempt as a whole (TCP, TLS, SASL, AMQP
    /// open); an attempt that takes longer fails with [`Error::Connect`].
    pub connect_timeout: Duration,
    /// How long `send` keeps reconnecting through an outage before it gives up.
    pub send_retry_for: Duration,
    /// How long `receive` keeps reconnecting quietly (answering `None`)
    /// before it reports [`Error::Unavailable`]; it still reconnects on
    /// later calls.
    pub unavailable_after: Duration,
    /// First reconnection delay; doubles per failed attempt.
    pub backoff_min: Duration,
    /// Cap of the reconnection delay.
    pub backoff_max: Duration,
    /// The AMQP container id (default: `helsemelding-<random>`).
    pub container_id: Option<String>,
}

impl Default for AmqpOptions {
    fn default() -> Self {
        AmqpOptions {
            dialect: Dialect::RabbitMq,
            password: None,
            ca_file: None,
            sender_address: None,
            receiver_address: None,
            operation_timeout: Duration::from_secs(15),
            connect_timeout: Duration::from_secs(10),
            send_retry_for: Duration::from_secs(60),
            unavailable_after: Duration::from_secs(15),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(10),
            container_id: None,
        }
    }
}

impl AmqpOptions {
    /// The dialect's templates for `exchange`, with the configured
    /// templates in place of either side.
    pub(crate) fn address_templates(
        &self,
        exchange: Option<&str>,
    ) -> Result<AddressTemplates, Error> {
        let dialect = self.dialect.templates(exchange);
        if self.sender_address.is_none() && self.receiver_address.is_none() {
            return Ok(dialect);
        }
        let sender = self
            .sender_address
            .as_deref()
            .unwrap_or(dialect.sender_template());
        let receiver = self
            .receiver_address
            .as_deref()
            .unwrap_or(dialect.receiver_template());
        AddressTemplates::custom(sender, receiver, exchange)
            .map_err(|e| Error::Config(format!("broker address templates: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn templates(options: AmqpOptions, exchange: Option<&str>) -> AddressTemplates {
        options.address_templates(exchange).unwrap()
    }

    #[test]
    fn the_dialect_decides_unless_a_side_is_configured() {
        let t = templates(AmqpOptions::default(), Some("NHNTESTServiceBus"));
        assert_eq!(
            t.sender_address("93252_async"),
            "/exchange/NHNTESTServiceBus/93252_async"
        );
        assert_eq!(t.receiver_address("91462_async"), "/amq/queue/91462_async");
        let receiver_only = AmqpOptions {
            receiver_address: Some("/queues/{queue}".into()),
            ..AmqpOptions::default()
        };
        let t = templates(receiver_only, Some("ex"));
        assert_eq!(t.sender_address("q"), "/exchange/ex/q");
        assert_eq!(t.receiver_address("q"), "/queues/q");
        let v2 = AmqpOptions {
            dialect: Dialect::RabbitMqV2,
            ..AmqpOptions::default()
        };
        assert_eq!(
            templates(v2, Some("ex")).sender_address("q"),
            "/exchanges/ex/q"
        );
    }

    #[test]
    fn unusable_templates_are_configuration_errors() {
        for (sender, exchange) in [
            ("/fixed/address", Some("ex")),
            ("/exchange/{exchange}/{queue}", None),
            ("/x/{host}/{queue}", Some("ex")),
        ] {
            let options = AmqpOptions {
                sender_address: Some(sender.into()),
                ..AmqpOptions::default()
            };
            assert!(
                matches!(options.address_templates(exchange), Err(Error::Config(_))),
                "{sender} with {exchange:?}"
            );
        }
    }
}
