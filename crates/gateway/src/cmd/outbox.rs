//! `helsemelding outbox list|flush`: what the durable outbox still holds
//! (messages recorded but not yet accepted by the broker, e.g. after a crash
//! or an outage) and sending it now. `send` and `listen` flush it on start
//! too; these commands let an operator see and clear it without sending
//! anything new.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use helsemelding_store::outbox::{OutboxState, OutgoingMessage};
use helsemelding_store::Store;
use serde_json::json;

use super::context::Context;
use super::store_args::StoreArgs;

/// See and send what the outbox holds.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(clap::Subcommand)]
enum Action {
    /// Pending messages, oldest first: message id, receiver, queue, function,
    /// when recorded, failed attempts and the last error.
    List {
        /// At most this many.
        #[arg(long, default_value_t = 1000)]
        limit: usize,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Send every pending message now, with its original message id; prints
    /// how many the broker accepted. Fails if any are still pending.
    Flush,
}

pub fn run(config: Option<&Path>, args: Args) -> Result<ExitCode> {
    match args.action {
        Action::List { limit, json, store } => list(&store.open(config)?, limit, json),
        Action::Flush => flush(config),
    }
}

fn list(store: &Store, limit: usize, as_json: bool) -> Result<ExitCode> {
    let pending = store.outbox().pending(limit)?;
    let rows = pending
        .iter()
        .map(|entry| Ok((entry, store.outbox().state(&entry.message_id)?)))
        .collect::<Result<Vec<_>>>()?;
    if as_json {
        let rows: Vec<_> = rows.iter().map(|(e, s)| to_json(e, s.as_ref())).collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else if rows.is_empty() {
        println!("the outbox is empty");
    } else {
        for (entry, state) in &rows {
            let (attempts, last_error) = attempts(state.as_ref());
            println!(
                "{}  to {:<9} {:<16} {:<28} recorded {}  attempts {}{}",
                entry.message_id,
                entry.to_her_id,
                entry.queue,
                entry.function,
                entry.created_at.format("%Y-%m-%dT%H:%M:%SZ"),
                attempts,
                last_error
                    .map(|e| format!("  last error: {e}"))
                    .unwrap_or_default()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn attempts(state: Option<&OutboxState>) -> (u32, Option<&str>) {
    match state {
        Some(OutboxState::Pending {
            attempts,
            last_error,
        }) => (*attempts, last_error.as_deref()),
        _ => (0, None),
    }
}

fn to_json(entry: &OutgoingMessage, state: Option<&OutboxState>) -> serde_json::Value {
    let (attempts, last_error) = attempts(state);
    json!({
        "message_id": entry.message_id,
        "to_her_id": entry.to_her_id,
        "queue": entry.queue,
        "function": entry.function,
        "created_at": entry.created_at.to_rfc3339(),
        "expires_at": entry.expires_at.map(|t| t.to_rfc3339()),
        "attempts": attempts,
        "last_error": last_error,
    })
}

fn flush(config: Option<&Path>) -> Result<ExitCode> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let context = Context::open(config).await?;
        let sent = context.messenger.flush_outbox().await?;
        let left = context.messenger.store().outbox().pending_count()?;
        println!("sent {sent}; {left} pending");
        Ok(if left == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        })
    })
}
