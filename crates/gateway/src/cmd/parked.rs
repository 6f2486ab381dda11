//! `helsemelding parked list|requeue|drop`: messages the listener kept in
//! the store instead of dead-lettering them, because our queue has no
//! dead-letter path (the broker would have deleted them) or because nobody
//! could be told of them (no usable fromHerId). They stay until an
//! operator puts one back on its queue (judged afresh, e.g. after the
//! sender's record was fixed) or drops it; both are audited.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use chrono::Utc;
use helsemelding_store::audit::{AuditEvent, AuditKind};
use helsemelding_store::parked::ParkedSummary;
use helsemelding_store::Store;
use helsemelding_transport::Message;
use helsemelding_wire::text::for_display;
use serde_json::json;

use super::store_args::StoreArgs;
use crate::assembly;

/// See, put back and drop the messages kept instead of dead-lettered.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(clap::Subcommand)]
enum Action {
    /// The kept messages, oldest first: id, when, queue, message id, body
    /// size and why (with the header fields that identify it).
    List {
        /// At most this many.
        #[arg(long, default_value_t = 1000)]
        limit: usize,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Put a kept message back on the queue it came from, exactly as it
    /// came; the listener judges it afresh (audited).
    Requeue {
        /// The id (from `parked list`).
        id: i64,
    },
    /// Remove a kept message and its bytes for good (audited).
    Drop {
        /// The id (from `parked list`).
        id: i64,
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// Runs `parked list|requeue|drop` with the configuration at `config` (or
/// the store `--store` names, where no broker is needed).
pub fn run(config: Option<&Path>, args: Args) -> Result<ExitCode> {
    match args.action {
        Action::List { limit, json, store } => {
            super::block_on(list(&*store.open(config)?, limit, json))
        }
        Action::Requeue { id } => requeue(config, id),
        Action::Drop { id, store } => super::block_on(drop_parked(&*store.open(config)?, id)),
    }
}

/// How much of a peer's message-id is shown.
const ID_CHARS: usize = 100;

async fn list(store: &dyn Store, limit: usize, as_json: bool) -> Result<ExitCode> {
    let parked = store.parked().list(limit).await?;
    if as_json {
        let rows: Vec<_> = parked.iter().map(to_json).collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else if parked.is_empty() {
        println!("no messages are parked");
    } else {
        for message in &parked {
            println!(
                "{:<5} {}  {:<20} {:<38} {:>8} bytes  {}",
                message.id,
                message.parked_at.format("%Y-%m-%dT%H:%M:%SZ"),
                message.queue,
                for_display(message.message_id.as_deref().unwrap_or("(none)"), ID_CHARS),
                message.body_len,
                message.reason
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn to_json(message: &ParkedSummary) -> serde_json::Value {
    json!({
        "id": message.id,
        "parked_at": message.parked_at.to_rfc3339(),
        "queue": message.queue,
        "message_id": message.message_id,
        "body_bytes": message.body_len,
        "reason": message.reason,
        "header": serde_json::from_slice::<serde_json::Value>(&message.envelope).ok(),
    })
}

fn requeue(config: Option<&Path>, id: i64) -> Result<ExitCode> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let messenger = assembly::open(&super::load_config(config)?).await?;
        let store = messenger.store().clone();
        let (summary, body) = store
            .parked()
            .get(id)
            .await?
            .with_context(|| format!("parked requeue {id}: no parked message has this id"))?;
        let mut message: Message = serde_json::from_slice(&summary.envelope)
            .with_context(|| format!("parked requeue {id}: its stored header is unreadable"))?;
        message.body = body;
        messenger
            .put_back(&summary.queue, message)
            .await
            .with_context(|| format!("parked requeue {id}"))?;
        store.parked().remove(id).await?;
        audit_removal(&*store, &summary, "requeued", "put back on its queue").await?;
        println!(
            "{id}: put back on {}; the listener judges it afresh",
            summary.queue
        );
        Ok(ExitCode::SUCCESS)
    })
}

async fn drop_parked(store: &dyn Store, id: i64) -> Result<ExitCode> {
    let (summary, _) = store
        .parked()
        .get(id)
        .await?
        .with_context(|| format!("parked drop {id}: no parked message has this id"))?;
    store
        .parked()
        .remove(id)
        .await
        .with_context(|| format!("parked drop {id}"))?;
    audit_removal(store, &summary, "dropped", "dropped for good").await?;
    println!("{id}: dropped from {}; it is gone", summary.queue);
    Ok(ExitCode::SUCCESS)
}

async fn audit_removal(
    store: &dyn Store,
    parked: &ParkedSummary,
    outcome: &str,
    what: &str,
) -> Result<()> {
    let mut event = AuditEvent::new(AuditKind::ParkedRemoved, super::operator(), outcome);
    event.message_id = parked.message_id.clone();
    event.reason = Some(format!(
        "parked message {} {what} by the operator (queue {}); it was parked because: {}",
        parked.id, parked.queue, parked.reason
    ));
    store.audit().append(Utc::now(), &event).await?;
    Ok(())
}
