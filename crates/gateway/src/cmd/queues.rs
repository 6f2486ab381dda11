//! `helsemelding --config F queues [--json]`: our queues (`<herid>_async`,
//! `_sync`, `_error`, the sync-reply queue, `_dl`) and what the broker can
//! tell about them: message counts on the local transport, and on RabbitMQ
//! when `broker.management_url` is configured (its management API, with the
//! broker user and `HELSEMELDING_BROKER_PASSWORD`); otherwise only whether
//! each queue exists, by attaching to it over AMQP.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use helsemelding_transport::local::LocalTransport;
use helsemelding_transport_amqp::management::Management;
use serde::Serialize;

use crate::assembly::{self, transport_endpoint};
use crate::config::{BrokerEndpoint, Config};
use crate::queues::{management, our_queues};

/// Show our queues and their message counts.
#[derive(clap::Args)]
pub struct Args {
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// Where the figures came from.
#[derive(Serialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Source {
    /// The local transport's store.
    Local,
    /// RabbitMQ's management API.
    Management,
    /// AMQP attaches: existence only.
    Amqp,
}

/// One of our queues as the broker sees it.
#[derive(Serialize, Debug, PartialEq, Eq)]
struct QueueStatus {
    name: String,
    kind: &'static str,
    exists: bool,
    /// Messages in the queue (ready and unacknowledged), when known.
    messages: Option<u64>,
    /// Consumers attached, when known.
    consumers: Option<u64>,
}

#[derive(Serialize)]
struct Report {
    her_id: u32,
    source: Source,
    queues: Vec<QueueStatus>,
}

/// Runs `queues` with the configuration at `config_path`.
pub fn run(config_path: Option<&Path>, args: Args) -> Result<ExitCode> {
    let path = config_path.context("this command needs --config FILE")?;
    let config = Config::load(path)?;
    let runtime = tokio::runtime::Runtime::new()?;
    let report = runtime.block_on(inspect(&config))?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_text(&report);
    }
    Ok(ExitCode::SUCCESS)
}

async fn inspect(config: &Config) -> Result<Report> {
    let queues = our_queues(config).await?;
    let (source, statuses) = match &config.broker.endpoint {
        BrokerEndpoint::Local { path } => (Source::Local, local_counts(path, queues).await?),
        BrokerEndpoint::Amqp { .. } => match management(config) {
            Some(management) => (
                Source::Management,
                management_counts(&management?, queues).await?,
            ),
            None => (Source::Amqp, amqp_existence(config, queues).await?),
        },
    };
    Ok(Report {
        her_id: config.her_id.get(),
        source,
        queues: statuses,
    })
}

async fn local_counts(
    path: &Path,
    queues: Vec<(String, &'static str)>,
) -> Result<Vec<QueueStatus>> {
    let transport = LocalTransport::open(path)
        .with_context(|| format!("opening the local transport {}", path.display()))?;
    let mut statuses = Vec::new();
    for (name, kind) in queues {
        let messages = transport
            .message_count(&name)
            .await
            .with_context(|| format!("counting queue {name}"))?;
        statuses.push(QueueStatus {
            name,
            kind,
            // The local store has every queue.
            exists: true,
            messages: Some(messages),
            consumers: None,
        });
    }
    Ok(statuses)
}

async fn amqp_existence(
    config: &Config,
    queues: Vec<(String, &'static str)>,
) -> Result<Vec<QueueStatus>> {
    let (url, options) = transport_endpoint(config);
    let transport = assembly::open_transport(&url, options).await?;
    let mut statuses = Vec::new();
    for (name, kind) in queues {
        let exists = match transport.check_queue(&name).await {
            Ok(()) => true,
            Err(helsemelding_transport::Error::NoSuchQueue { .. }) => false,
            Err(error) => {
                return Err(error).with_context(|| format!("checking queue {name}"));
            }
        };
        statuses.push(QueueStatus {
            name,
            kind,
            exists,
            messages: None,
            consumers: None,
        });
    }
    let _ = transport.close().await;
    Ok(statuses)
}

async fn management_counts(
    management: &Management,
    queues: Vec<(String, &'static str)>,
) -> Result<Vec<QueueStatus>> {
    let mut statuses = Vec::new();
    for (name, kind) in queues {
        let info = management.queue(&name).await?;
        statuses.push(QueueStatus {
            name,
            kind,
            exists: info.is_some(),
            messages: info.as_ref().map(|i| i.messages),
            consumers: info.as_ref().map(|i| i.consumers),
        });
    }
    Ok(statuses)
}

fn print_text(report: &Report) {
    println!("queues of HER-id {} ({:?})", report.her_id, report.source);
    for queue in &report.queues {
        let messages = queue
            .messages
            .map_or_else(|| "-".to_string(), |n| n.to_string());
        let state = if queue.exists { "" } else { "  MISSING" };
        println!(
            "  {:<10} {:<32} {:>8}{state}",
            queue.kind, queue.name, messages
        );
    }
}
