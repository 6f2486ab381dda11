//! Queue names, queue addresses and time-to-live rules.
//!
//! Every party has `<herid>_async`, `<herid>_sync`, `<herid>_error`, one or
//! more sync-reply queues (commonly `<herid>_syncreply`) and the broker's
//! dead-letter queue `<herid>_dl`. The address registry hands out full
//! addresses (`sb.test.nhn.no/DigitalDialog/93238_async`) whose last path
//! segment is the queue name. How a queue name becomes an AMQP link address
//! depends on the broker dialect: [`AddressTemplates`] holds that choice.

use std::time::Duration;

use crate::error::{Error, Result};
use crate::herid::HerId;

/// The kinds of queue a party has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QueueKind {
    /// Asynchronous messages (`_async`).
    Async,
    /// Synchronous requests (`_sync`).
    Sync,
    /// Error reports (`_error`).
    Error,
    /// Replies to synchronous requests (`_syncreply`).
    SyncReply,
    /// The broker's dead-letter queue (`_dl`).
    DeadLetter,
}

impl QueueKind {
    /// Every kind, in a stable order.
    pub const ALL: [QueueKind; 5] = [
        QueueKind::Async,
        QueueKind::Sync,
        QueueKind::Error,
        QueueKind::SyncReply,
        QueueKind::DeadLetter,
    ];

    /// The suffix after the HER-id, e.g. `_async`.
    pub const fn suffix(self) -> &'static str {
        match self {
            QueueKind::Async => "_async",
            QueueKind::Sync => "_sync",
            QueueKind::Error => "_error",
            QueueKind::SyncReply => "_syncreply",
            QueueKind::DeadLetter => "_dl",
        }
    }

    /// The address registry's type code for this kind (`E_SB_ASYNC`, ...);
    /// `None` for the dead-letter queue, which the registry does not list.
    pub const fn registry_code(self) -> Option<&'static str> {
        match self {
            QueueKind::Async => Some(REGISTRY_CODE_ASYNC),
            QueueKind::Sync => Some(REGISTRY_CODE_SYNC),
            QueueKind::Error => Some(REGISTRY_CODE_ERROR),
            QueueKind::SyncReply => Some(REGISTRY_CODE_SYNCREPLY),
            QueueKind::DeadLetter => None,
        }
    }

    /// The kind of queue an address registry type code names.
    pub fn from_registry_code(code: &str) -> Option<QueueKind> {
        match code.trim() {
            REGISTRY_CODE_ASYNC => Some(QueueKind::Async),
            REGISTRY_CODE_SYNC => Some(QueueKind::Sync),
            REGISTRY_CODE_ERROR => Some(QueueKind::Error),
            REGISTRY_CODE_SYNCREPLY => Some(QueueKind::SyncReply),
            _ => None,
        }
    }

    /// The default time-to-live of messages sent to this kind of queue.
    ///
    /// Sync requests (and replies, sent to a sync-reply queue) live 15 s;
    /// async messages and error reports have none unless configured.
    pub const fn default_ttl(self) -> Option<Duration> {
        match self {
            QueueKind::Sync | QueueKind::SyncReply => Some(SYNC_TTL),
            QueueKind::Async | QueueKind::Error | QueueKind::DeadLetter => None,
        }
    }
}

/// Address registry type code of the async queue.
pub const REGISTRY_CODE_ASYNC: &str = "E_SB_ASYNC";
/// Address registry type code of the sync queue.
pub const REGISTRY_CODE_SYNC: &str = "E_SB_SYNC";
/// Address registry type code of the error queue.
pub const REGISTRY_CODE_ERROR: &str = "E_SB_ERROR";
/// Address registry type code of the sync-reply queue.
pub const REGISTRY_CODE_SYNCREPLY: &str = "E_SB_SYNCREPLY";
/// Address registry type code of the party's certificate directory (an LDAP URL).
pub const REGISTRY_CODE_CERTIFICATES: &str = "E_DS";

/// Time-to-live of sync requests and replies (15 000 ms).
pub const SYNC_TTL: Duration = Duration::from_millis(15_000);
/// How long a sync caller waits for its reply by default.
pub const SYNC_CALL_TIMEOUT: Duration = Duration::from_secs(15);
/// Deliveries before a failing message goes to the dead-letter path
/// (the reference library's limit).
pub const DEFAULT_DELIVERY_LIMIT: u32 = 10;
/// The communication test to helsenorge.no must answer within this.
pub const COMMTEST_DEADLINE: Duration = Duration::from_secs(5);

/// An AMQP `ttl` header value in milliseconds, clamped to `u32`.
pub fn ttl_millis(ttl: Duration) -> u32 {
    u32::try_from(ttl.as_millis()).unwrap_or(u32::MAX)
}

/// The queue name of `her_id`'s queue of `kind`, e.g. `93238_async`.
pub fn queue_name(her_id: HerId, kind: QueueKind) -> String {
    format!("{her_id}{}", kind.suffix())
}

/// The HER-id and kind a standard queue name stands for
/// (`93238_error` → 93238, Error); `None` for other names.
pub fn parse_queue_name(name: &str) -> Option<(HerId, QueueKind)> {
    QueueKind::ALL.iter().find_map(|kind| {
        let digits = name.strip_suffix(kind.suffix())?;
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let her_id = HerId::parse_field("queue", digits).ok()?;
        Some((her_id, *kind))
    })
}

/// The queue name in an address registry address: its last path segment
/// (`sb.test.nhn.no/DigitalDialog/93238_async` → `93238_async`).
///
/// An empty name is refused (the reference library's MUG-000003).
pub fn queue_name_from_address(address: &str) -> Result<&str> {
    let trimmed = address.trim();
    let name = trimmed.rsplit('/').next().unwrap_or_default().trim();
    if name.is_empty() {
        return Err(Error::InvalidAddress {
            address: address.to_string(),
            reason: "empty queue name",
        });
    }
    if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Error::InvalidAddress {
            address: address.to_string(),
            reason: "queue name contains whitespace or control characters",
        });
    }
    Ok(name)
}

/// Placeholder for the queue name in an address template.
pub const QUEUE_PLACEHOLDER: &str = "{queue}";
/// Placeholder for the exchange name in an address template.
pub const EXCHANGE_PLACEHOLDER: &str = "{exchange}";

/// The broker dialects, as configuration names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Dialect {
    /// RabbitMQ v1 addresses (`rabbitmq`), NHN's broker today (the default).
    #[default]
    RabbitMq,
    /// RabbitMQ 4 v2 addresses (`rabbitmq-v2`).
    RabbitMqV2,
    /// Azure Service Bus, plain queue names (`servicebus`).
    ServiceBus,
}

impl Dialect {
    /// The configuration name.
    pub const fn name(self) -> &'static str {
        match self {
            Dialect::RabbitMq => "rabbitmq",
            Dialect::RabbitMqV2 => "rabbitmq-v2",
            Dialect::ServiceBus => "servicebus",
        }
    }

    /// The address templates of this dialect.
    pub fn templates(self, exchange: Option<&str>) -> AddressTemplates {
        match self {
            Dialect::RabbitMq => AddressTemplates::rabbitmq(exchange),
            Dialect::RabbitMqV2 => AddressTemplates::rabbitmq_v2(exchange),
            Dialect::ServiceBus => AddressTemplates::service_bus(),
        }
    }
}

impl std::str::FromStr for Dialect {
    type Err = Error;

    fn from_str(text: &str) -> Result<Dialect> {
        [Dialect::RabbitMq, Dialect::RabbitMqV2, Dialect::ServiceBus]
            .into_iter()
            .find(|d| d.name().eq_ignore_ascii_case(text.trim()))
            .ok_or_else(|| Error::InvalidAddress {
                address: text.to_string(),
                reason: "unknown dialect (rabbitmq, rabbitmq-v2 or servicebus)",
            })
    }
}

/// How queue names become AMQP link addresses for one broker.
///
/// Templates contain `{queue}` and optionally `{exchange}`; the exchange
/// comes from configuration (the path of the connection URL), never derived,
/// since its case differs between NHN documents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressTemplates {
    sender: String,
    receiver: String,
    exchange: Option<String>,
}

impl AddressTemplates {
    /// RabbitMQ v1 addresses (RabbitMQ 3.x, NHN today): senders target
    /// `/exchange/<exchange>/<queue>` (or `/amq/queue/<queue>` without an
    /// exchange), receivers read `/amq/queue/<queue>`.
    pub fn rabbitmq(exchange: Option<&str>) -> AddressTemplates {
        let exchange = non_empty(exchange);
        let sender = if exchange.is_some() {
            "/exchange/{exchange}/{queue}"
        } else {
            "/amq/queue/{queue}"
        };
        AddressTemplates {
            sender: sender.to_string(),
            receiver: "/amq/queue/{queue}".to_string(),
            exchange,
        }
    }

    /// RabbitMQ 4 (v2) addresses: senders target `/exchanges/<exchange>/<queue>`
    /// (routing key = queue name) or `/queues/<queue>`; receivers `/queues/<queue>`.
    pub fn rabbitmq_v2(exchange: Option<&str>) -> AddressTemplates {
        let exchange = non_empty(exchange);
        let sender = if exchange.is_some() {
            "/exchanges/{exchange}/{queue}"
        } else {
            "/queues/{queue}"
        };
        AddressTemplates {
            sender: sender.to_string(),
            receiver: "/queues/{queue}".to_string(),
            exchange,
        }
    }

    /// Azure Service Bus (legacy) addresses: plain queue names.
    pub fn service_bus() -> AddressTemplates {
        AddressTemplates {
            sender: QUEUE_PLACEHOLDER.to_string(),
            receiver: QUEUE_PLACEHOLDER.to_string(),
            exchange: None,
        }
    }

    /// Templates from configuration. Each must contain `{queue}`; one that
    /// uses `{exchange}` needs an exchange.
    pub fn custom(
        sender: &str,
        receiver: &str,
        exchange: Option<&str>,
    ) -> Result<AddressTemplates> {
        let exchange = non_empty(exchange);
        for template in [sender, receiver] {
            check_template(template, exchange.is_some())?;
        }
        Ok(AddressTemplates {
            sender: sender.to_string(),
            receiver: receiver.to_string(),
            exchange,
        })
    }

    /// The target address of a sender link to `queue`.
    pub fn sender_address(&self, queue: &str) -> String {
        self.fill(&self.sender, queue)
    }

    /// The source address of a receiver link on `queue`.
    pub fn receiver_address(&self, queue: &str) -> String {
        self.fill(&self.receiver, queue)
    }

    /// The sender template itself, e.g. `/exchange/{exchange}/{queue}`
    /// (to override one side only: [`AddressTemplates::custom`] with the
    /// other side's template).
    pub fn sender_template(&self) -> &str {
        &self.sender
    }

    /// The receiver template itself, e.g. `/amq/queue/{queue}`.
    pub fn receiver_template(&self) -> &str {
        &self.receiver
    }

    fn fill(&self, template: &str, queue: &str) -> String {
        template
            .replace(EXCHANGE_PLACEHOLDER, self.exchange.as_deref().unwrap_or(""))
            .replace(QUEUE_PLACEHOLDER, queue)
    }
}

fn non_empty(exchange: Option<&str>) -> Option<String> {
    exchange
        .map(|e| e.trim_matches('/'))
        .filter(|e| !e.is_empty())
        .map(str::to_string)
}

fn check_template(template: &str, have_exchange: bool) -> Result<()> {
    let refuse = |reason| {
        Err(Error::InvalidAddress {
            address: template.to_string(),
            reason,
        })
    };
    if !template.contains(QUEUE_PLACEHOLDER) {
        return refuse("template lacks {queue}");
    }
    if template.contains(EXCHANGE_PLACEHOLDER) && !have_exchange {
        return refuse("template uses {exchange} but no exchange is configured");
    }
    let rest = template
        .replace(QUEUE_PLACEHOLDER, "")
        .replace(EXCHANGE_PLACEHOLDER, "");
    if rest.contains(['{', '}']) {
        return refuse("unknown placeholder (only {queue} and {exchange})");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn her(n: u32) -> HerId {
        HerId::new(n).unwrap()
    }

    #[test]
    fn names_for_a_party() {
        let names: Vec<String> = QueueKind::ALL
            .iter()
            .map(|k| queue_name(her(93238), *k))
            .collect();
        assert_eq!(
            names,
            [
                "93238_async",
                "93238_sync",
                "93238_error",
                "93238_syncreply",
                "93238_dl"
            ]
        );
    }

    #[test]
    fn names_parse_back() {
        for kind in QueueKind::ALL {
            assert_eq!(
                parse_queue_name(&queue_name(her(91462), kind)),
                Some((her(91462), kind))
            );
        }
        assert_eq!(parse_queue_name("abc_async"), None);
        assert_eq!(parse_queue_name("_async"), None);
        assert_eq!(parse_queue_name("93238_other"), None);
        assert_eq!(parse_queue_name("0_async"), None);
    }

    #[test]
    fn queue_from_registry_address() {
        assert_eq!(
            queue_name_from_address("sb.test.nhn.no/DigitalDialog/93238_async").unwrap(),
            "93238_async"
        );
        assert_eq!(queue_name_from_address("93252_sync").unwrap(), "93252_sync");
        assert_eq!(
            queue_name_from_address(" sb.nhn.no/x/1_error ").unwrap(),
            "1_error"
        );
        for bad in ["", "  ", "sb.test.nhn.no/DigitalDialog/", "a/b c"] {
            let err = queue_name_from_address(bad).unwrap_err();
            assert!(matches!(err, Error::InvalidAddress { .. }), "{bad:?}");
        }
    }

    #[test]
    fn registry_codes() {
        assert_eq!(
            QueueKind::from_registry_code("E_SB_ASYNC"),
            Some(QueueKind::Async)
        );
        assert_eq!(
            QueueKind::from_registry_code("E_SB_SYNC"),
            Some(QueueKind::Sync)
        );
        assert_eq!(
            QueueKind::from_registry_code("E_SB_ERROR"),
            Some(QueueKind::Error)
        );
        assert_eq!(
            QueueKind::from_registry_code("E_SB_SYNCREPLY"),
            Some(QueueKind::SyncReply)
        );
        assert_eq!(QueueKind::from_registry_code("E_DS"), None);
        for kind in [
            QueueKind::Async,
            QueueKind::Sync,
            QueueKind::Error,
            QueueKind::SyncReply,
        ] {
            assert_eq!(
                QueueKind::from_registry_code(kind.registry_code().unwrap()),
                Some(kind)
            );
        }
        assert_eq!(QueueKind::DeadLetter.registry_code(), None);
    }

    #[test]
    fn rabbitmq_addresses() {
        let t = AddressTemplates::rabbitmq(Some("NHNTESTServiceBus"));
        assert_eq!(
            t.sender_address("93252_async"),
            "/exchange/NHNTESTServiceBus/93252_async"
        );
        assert_eq!(t.receiver_address("91462_async"), "/amq/queue/91462_async");
        let t = AddressTemplates::rabbitmq(Some("/NHNTestServiceBus"));
        assert_eq!(
            t.sender_address("1_sync"),
            "/exchange/NHNTestServiceBus/1_sync"
        );
        let no_exchange = AddressTemplates::rabbitmq(None);
        assert_eq!(
            no_exchange.sender_address("93252_async"),
            "/amq/queue/93252_async"
        );
        assert_eq!(AddressTemplates::rabbitmq(Some("")), no_exchange);
    }

    #[test]
    fn rabbitmq_v2_and_service_bus_addresses() {
        let t = AddressTemplates::rabbitmq_v2(Some("NHNTESTServiceBus"));
        assert_eq!(
            t.sender_address("93252_async"),
            "/exchanges/NHNTESTServiceBus/93252_async"
        );
        assert_eq!(t.receiver_address("91462_async"), "/queues/91462_async");
        assert_eq!(
            AddressTemplates::rabbitmq_v2(None).sender_address("q"),
            "/queues/q"
        );
        let sb = AddressTemplates::service_bus();
        assert_eq!(sb.sender_address("93252_async"), "93252_async");
        assert_eq!(sb.receiver_address("91462_error"), "91462_error");
    }

    #[test]
    fn dialects_by_name() {
        let d: Dialect = "RabbitMQ".parse().unwrap();
        assert_eq!(d, Dialect::RabbitMq);
        assert_eq!(
            d.templates(Some("NHNTESTServiceBus"))
                .sender_address("1_async"),
            "/exchange/NHNTESTServiceBus/1_async"
        );
        assert_eq!(
            "servicebus"
                .parse::<Dialect>()
                .unwrap()
                .templates(None)
                .receiver_address("1_async"),
            "1_async"
        );
        assert_eq!(
            "rabbitmq-v2"
                .parse::<Dialect>()
                .unwrap()
                .templates(None)
                .receiver_address("1_async"),
            "/queues/1_async"
        );
        assert!("kafka".parse::<Dialect>().is_err());
    }

    #[test]
    fn custom_templates() {
        let t =
            AddressTemplates::custom("/x/{exchange}/{queue}", "/in/{queue}", Some("ex")).unwrap();
        assert_eq!(t.sender_address("q1"), "/x/ex/q1");
        assert_eq!(t.receiver_address("q1"), "/in/q1");
        assert!(AddressTemplates::custom("/x/", "/in/{queue}", None).is_err());
        assert!(AddressTemplates::custom("/x/{exchange}/{queue}", "{queue}", None).is_err());
        assert!(AddressTemplates::custom("/x/{host}/{queue}", "{queue}", None).is_err());
    }

    #[test]
    fn one_side_overrides_keep_the_other_sides_template() {
        let base = Dialect::default().templates(Some("ex"));
        assert_eq!(base.sender_template(), "/exchange/{exchange}/{queue}");
        assert_eq!(base.receiver_template(), "/amq/queue/{queue}");
        let t = AddressTemplates::custom(base.sender_template(), "/queues/{queue}", Some("ex"))
            .unwrap();
        assert_eq!(t.sender_address("q"), "/exchange/ex/q");
        assert_eq!(t.receiver_address("q"), "/queues/q");
    }

    #[test]
    fn ttl_defaults_and_clamp() {
        assert_eq!(
            QueueKind::Sync.default_ttl(),
            Some(Duration::from_millis(15_000))
        );
        assert_eq!(
            QueueKind::SyncReply.default_ttl(),
            Some(Duration::from_millis(15_000))
        );
        assert_eq!(QueueKind::Async.default_ttl(), None);
        assert_eq!(QueueKind::Error.default_ttl(), None);
        assert_eq!(ttl_millis(SYNC_TTL), 15_000);
        assert_eq!(ttl_millis(Duration::from_secs(4 * 24 * 3600)), 345_600_000);
        assert_eq!(ttl_millis(Duration::from_secs(100 * 24 * 3600)), u32::MAX);
    }
}
