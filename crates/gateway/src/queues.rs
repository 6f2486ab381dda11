//! Our queues: their names as the registry gives them for each of our
//! HER-ids, and what RabbitMQ's management API (`broker.management_url`,
//! with the broker user and `HELSEMELDING_BROKER_PASSWORD`) says of them:
//! message counts for `queues`, dead-letter paths for the supervisor's
//! start-up check.

use anyhow::{Context as _, Result};
use helsemelding_transport_amqp::management::{DeadLetterPath, Management};
use helsemelding_wire::queue::QueueKind;

use crate::assembly;
use crate::config::{BrokerEndpoint, Config};

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

/// The management API client of the configured broker, as the broker
/// user; `None` when `broker.management_url` is not set or the broker is
/// the local transport.
pub(crate) fn management(config: &Config) -> Option<Result<Management>> {
    let BrokerEndpoint::Amqp { url, password, .. } = &config.broker.endpoint else {
        return None;
    };
    let base = config.broker.management_url.as_ref()?;
    let user = percent_decode(url.username());
    Some(Management::new(base, &user, password.as_deref()).map_err(anyhow::Error::from))
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
    if !matches!(config.broker.endpoint, BrokerEndpoint::Amqp { .. }) {
        return None;
    }
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
    let unknown = |why: String| {
        let paths = queues
            .iter()
            .map(|name| (name.clone(), QueuePath::Unknown(why.clone())))
            .collect();
        Some(paths)
    };
    let management = match management(config) {
        None => {
            return unknown("broker.management_url (RabbitMQ's management API) is not set".into())
        }
        Some(Err(error)) => return unknown(format!("{error:#}")),
        Some(Ok(management)) => management,
    };
    let mut paths = Vec::new();
    for name in &queues {
        let path = match management.queue(name).await {
            Ok(Some(info)) => match info.dead_letter {
                DeadLetterPath::Exchange(_) => QueuePath::Kept,
                DeadLetterPath::None => QueuePath::None,
            },
            // Listening on it fails at once, naming it.
            Ok(None) => continue,
            Err(error) => QueuePath::Unknown(error.to_string()),
        };
        paths.push((name.clone(), path));
    }
    Some(paths)
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
    fn user_names_are_percent_decoded() {
        assert_eq!(percent_decode("her%40nhn"), "her@nhn");
        assert_eq!(percent_decode("plain"), "plain");
    }
}
