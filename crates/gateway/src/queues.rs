//! Our queues: their names as the registry gives them for each of our
//! HER-ids, and what RabbitMQ's management API (`broker.management_url`,
//! with the broker user and `HELSEMELDING_BROKER_PASSWORD`) says of them:
//! message counts for `queues`, dead-letter paths for the supervisor's
//! start-up check.

use std::time::Duration;

use anyhow::{Context as _, Result};
use helsemelding_wire::queue::QueueKind;

use crate::assembly;
use crate::config::{BrokerEndpoint, Config};

/// Largest management API answer read for one queue.
const MAX_MANAGEMENT_ANSWER: usize = 1024 * 1024;
const MANAGEMENT_TIMEOUT: Duration = Duration::from_secs(10);

/// Our queues in a stable order, with their kind's short name: for every
/// one of our HER-ids, the queues its registry record names (several
/// HER-ids often share one set: each is listed once), the configured reply
/// queue, and the dead-letter queue beside the async one (`<prefix>_dl`,
/// NHN's policy; the registry does not name it).
pub(crate) async fn our_queues(config: &Config) -> Result<Vec<(String, &'static str)>> {
    let registry = assembly::open_registry(&config.registry)?;
    let mut queues: Vec<(String, &'static str)> = Vec::new();
    let mut add = |name: Option<String>, kind: QueueKind| {
        if let Some(name) = name.filter(|n| !n.is_empty()) {
            if !queues.iter().any(|(known, _)| *known == name) {
                queues.push((name, kind_name(kind)));
            }
        }
    };
    for her_id in &config.her_ids {
        let record = registry
            .communication_party(her_id.get())
            .await
            .with_context(|| format!("our HER-id {her_id} in the registry"))?;
        let names = record.queues.names();
        let dead_letter = names
            .async_queue
            .as_deref()
            .and_then(|q| q.strip_suffix("_async"))
            .map(|prefix| format!("{prefix}_dl"));
        add(names.async_queue, QueueKind::Async);
        add(names.sync, QueueKind::Sync);
        add(names.error, QueueKind::Error);
        add(
            config.broker.reply_queue.clone().or(names.syncreply),
            QueueKind::SyncReply,
        );
        add(dead_letter, QueueKind::DeadLetter);
    }
    Ok(queues)
}

fn kind_name(kind: QueueKind) -> &'static str {
    match kind {
        QueueKind::Async => "async",
        QueueKind::Sync => "sync",
        QueueKind::Error => "error",
        QueueKind::SyncReply => "syncreply",
        QueueKind::DeadLetter => "dl",
    }
}

pub(crate) fn management_client() -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(MANAGEMENT_TIMEOUT)
        .build()
        .context("setting up the management API client")
}

/// RabbitMQ's `GET /api/queues/%2F/{name}` answer and the URL asked (for
/// errors; it holds no password); `None`: no such queue.
pub(crate) async fn management_queue(
    client: &reqwest::Client,
    base: &url::Url,
    (user, password): &(String, String),
    name: &str,
) -> Result<Option<(Vec<u8>, String)>> {
    // The default virtual host "/", as NHN's broker uses.
    let url = format!(
        "{}/api/queues/%2F/{}",
        base.as_str().trim_end_matches('/'),
        url::form_urlencoded::byte_serialize(name.as_bytes()).collect::<String>()
    );
    let shown = url.clone();
    let response = client
        .get(url)
        .basic_auth(user, Some(password))
        .send()
        .await
        .with_context(|| format!("management API {shown}"))?;
    let status = response.status();
    if status == reqwest::StatusCode::NOT_FOUND {
        return Ok(None);
    }
    if !status.is_success() {
        anyhow::bail!("management API {shown} answered {status}");
    }
    let body = read_limited(response, MAX_MANAGEMENT_ANSWER)
        .await
        .with_context(|| format!("management API {shown}"))?;
    Ok(Some((body, shown)))
}

/// What the start-up check found about the dead-letter path of one of
/// the queues `listen` consumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum QueuePath {
    /// It dead-letters (by argument or policy): a rejected message is kept.
    Kept,
    /// It has none: the broker deletes a rejected message.
    None,
    /// It could not be checked, and why.
    Unknown(String),
}

/// The dead-letter paths of the queues `listen` consumes (async, sync,
/// error), as far as they can be known: a message it gives up must land
/// in a dead-letter queue or our store, never vanish. The local transport
/// dead-letters by itself (`None` here); on RabbitMQ the management API
/// (`broker.management_url`) tells each queue's `x-dead-letter-exchange`
/// argument or `dead-letter-exchange` policy.
pub(crate) async fn dead_letter_paths(config: &Config) -> Option<Vec<(String, QueuePath)>> {
    let BrokerEndpoint::Amqp { url, password, .. } = &config.broker.endpoint else {
        return None;
    };
    let queues: Vec<String> = match our_queues(config).await {
        Ok(queues) => queues
            .into_iter()
            .filter(|(_, kind)| matches!(*kind, "async" | "sync" | "error"))
            .map(|(name, _)| name)
            .collect(),
        Err(error) => {
            return Some(vec![(
                "our queues".into(),
                QueuePath::Unknown(format!("{error:#}")),
            )])
        }
    };
    let Some(management) = &config.broker.management_url else {
        let why = "broker.management_url (RabbitMQ's management API) is not set".to_owned();
        return Some(
            queues
                .into_iter()
                .map(|name| (name, QueuePath::Unknown(why.clone())))
                .collect(),
        );
    };
    let client = match management_client() {
        Ok(client) => client,
        Err(error) => {
            let why = format!("{error:#}");
            return Some(
                queues
                    .into_iter()
                    .map(|name| (name, QueuePath::Unknown(why.clone())))
                    .collect(),
            );
        }
    };
    let credentials = (
        percent_decode(url.username()),
        password.clone().unwrap_or_default(),
    );
    let mut paths = Vec::new();
    for name in queues {
        let answer = management_queue(&client, management, &credentials, &name).await;
        let path = answer.and_then(|answer| match answer {
            None => Ok(None),
            Some((body, shown)) => dead_letter_path(&body)
                .map(Some)
                .with_context(|| format!("management API {shown}")),
        });
        let path = match path {
            Ok(Some(DeadLetterPath::Exchange(_))) => QueuePath::Kept,
            Ok(Some(DeadLetterPath::None)) => QueuePath::None,
            // Listening on it fails at once, naming it.
            Ok(None) => continue,
            Err(error) => QueuePath::Unknown(format!("{error:#}")),
        };
        paths.push((name, path));
    }
    Some(paths)
}

/// Where a queue dead-letters to, by a management API answer.
#[derive(Debug, PartialEq, Eq)]
enum DeadLetterPath {
    /// To this exchange (`""`: the default exchange, by routing key).
    Exchange(String),
    /// Nowhere: the broker drops what is rejected.
    None,
}

/// Reads the dead-letter exchange from a `GET /api/queues/{vhost}/{name}`
/// answer: the queue's `x-dead-letter-exchange` argument, else the
/// `dead-letter-exchange` key of its effective policy (RabbitMQ gives `[]`
/// or leaves it out when there is no policy).
fn dead_letter_path(body: &[u8]) -> Result<DeadLetterPath> {
    let value: serde_json::Value = serde_json::from_slice(body).context("not a JSON answer")?;
    let object = value.as_object().context("not a JSON object")?;
    let from = |section: &str, key: &str| -> Result<Option<String>> {
        match object.get(section).and_then(|s| s.as_object()) {
            None => Ok(None),
            Some(map) => match map.get(key) {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(serde_json::Value::String(exchange)) => Ok(Some(exchange.clone())),
                Some(_) => anyhow::bail!("{section}.{key} is not an exchange name"),
            },
        }
    };
    let exchange = match from("arguments", "x-dead-letter-exchange")? {
        Some(exchange) => Some(exchange),
        None => from("effective_policy_definition", "dead-letter-exchange")?,
    };
    Ok(exchange.map_or(DeadLetterPath::None, DeadLetterPath::Exchange))
}

async fn read_limited(mut response: reqwest::Response, limit: usize) -> Result<Vec<u8>> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        anyhow::ensure!(
            body.len() + chunk.len() <= limit,
            "answer larger than {limit} bytes"
        );
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The counts of one queue in a management API answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct QueueCounts {
    pub(crate) messages: u64,
    pub(crate) consumers: u64,
}

/// Reads `messages` and `consumers` from RabbitMQ's `GET /api/queues/{vhost}/{name}`
/// answer. RabbitMQ leaves the message figures out until its first statistics
/// round for a new queue: absent means none counted yet.
pub(crate) fn parse_queue_info(body: &[u8]) -> Result<QueueCounts> {
    let value: serde_json::Value = serde_json::from_slice(body).context("not a JSON answer")?;
    let object = value.as_object().context("not a JSON object")?;
    let count = |key: &str| -> Result<u64> {
        match object.get(key) {
            None | Some(serde_json::Value::Null) => Ok(0),
            Some(v) => v.as_u64().with_context(|| format!("{key} is not a count")),
        }
    };
    Ok(QueueCounts {
        messages: count("messages")?,
        consumers: count("consumers")?,
    })
}

pub(crate) fn percent_decode(text: &str) -> String {
    url::form_urlencoded::parse(format!("u={text}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_counts_of_a_management_answer() {
        let body =
            br#"{"name":"91462_async","messages":3,"messages_ready":2,"consumers":1,"vhost":"/"}"#;
        assert_eq!(
            parse_queue_info(body).unwrap(),
            QueueCounts {
                messages: 3,
                consumers: 1
            }
        );
        // A queue the statistics have not reached yet.
        assert_eq!(
            parse_queue_info(br#"{"name":"x","consumers":0}"#).unwrap(),
            QueueCounts {
                messages: 0,
                consumers: 0
            }
        );
    }

    #[test]
    fn refuses_garbage_truncated_and_wrongly_typed_answers() {
        let full = br#"{"messages":3,"consumers":1}"#;
        for cut in 0..full.len() - 1 {
            assert!(parse_queue_info(&full[..cut]).is_err(), "cut at {cut}");
        }
        for bad in [
            &b"\xff\xfe garbage"[..],
            b"[]",
            b"42",
            br#"{"messages":-1}"#,
            br#"{"messages":"3"}"#,
            br#"{"messages":1.5}"#,
        ] {
            assert!(parse_queue_info(bad).is_err(), "{bad:?}");
        }
        let huge = format!(
            "{{\"messages\":1,\"pad\":\"{}\"}}",
            "x".repeat(2 * MAX_MANAGEMENT_ANSWER)
        );
        assert_eq!(parse_queue_info(huge.as_bytes()).unwrap().messages, 1);
    }

    #[test]
    fn reads_the_dead_letter_path_from_the_arguments_or_the_policy() {
        let by_argument = br#"{"name":"91462_async","arguments":{"x-dead-letter-exchange":"","x-dead-letter-routing-key":"91462_dl"},"effective_policy_definition":[]}"#;
        assert_eq!(
            dead_letter_path(by_argument).unwrap(),
            DeadLetterPath::Exchange(String::new())
        );
        let by_policy = br#"{"arguments":{},"policy":"dl","effective_policy_definition":{"dead-letter-exchange":"dlx"}}"#;
        assert_eq!(
            dead_letter_path(by_policy).unwrap(),
            DeadLetterPath::Exchange("dlx".into())
        );
        for nowhere in [
            &br#"{"arguments":{},"effective_policy_definition":[]}"#[..],
            br#"{"arguments":{"x-queue-type":"quorum"},"effective_policy_definition":{"max-length":10}}"#,
            br#"{"name":"q"}"#,
            br#"{"arguments":{"x-dead-letter-exchange":null}}"#,
        ] {
            assert_eq!(
                dead_letter_path(nowhere).unwrap(),
                DeadLetterPath::None,
                "{}",
                String::from_utf8_lossy(nowhere)
            );
        }
        for bad in [
            &b"[]"[..],
            b"{\"arguments\":",
            br#"{"arguments":{"x-dead-letter-exchange":5}}"#,
        ] {
            assert!(dead_letter_path(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn user_names_are_percent_decoded() {
        assert_eq!(percent_decode("her%40nhn"), "her@nhn");
        assert_eq!(percent_decode("plain"), "plain");
    }
}
