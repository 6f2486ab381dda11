//! `helsemelding outbox list|flush|retry|drop`: what the durable outbox
//! still holds (messages recorded but not yet accepted by the broker, e.g.
//! after a crash or an outage, and messages given up), sending what is due
//! now, putting a failed message back and removing one. `send` and
//! `listen` flush it too; an entry that cannot be sent never stops them.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use chrono::Utc;
use helsemelding_store::audit::{AuditEvent, AuditKind};
use helsemelding_store::outbox::{OutboxEntry, OutboxState};
use helsemelding_store::Store;
use serde_json::json;

use super::store_args::StoreArgs;
use crate::assembly;

/// See, send, retry and drop what the outbox holds.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(clap::Subcommand)]
enum Action {
    /// Pending and failed messages, oldest first: message id, state,
    /// receiver, queue, function, when recorded, failed attempts, next
    /// attempt and the last error (the reason of a failed one).
    List {
        /// At most this many.
        #[arg(long, default_value_t = 1000)]
        limit: usize,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Send every message that is due now, with its original message id;
    /// prints how many the broker accepted. Fails if any are still pending.
    Flush,
    /// Put a failed message back to pending, due at once, its attempts
    /// counted from zero (audited).
    Retry {
        /// The message id (from `outbox list`).
        id: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Remove a pending or failed message and its bytes; it is never sent
    /// (audited).
    Drop {
        /// The message id (from `outbox list`).
        id: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// Runs `outbox list|flush|retry|drop` with the configuration at `config`
/// (or the store `--store` names, where no broker is needed).
pub fn run(config: Option<&Path>, args: Args) -> Result<ExitCode> {
    match args.action {
        Action::List { limit, json, store } => {
            super::block_on(list(&*store.open(config)?, limit, json))
        }
        Action::Flush => flush(config),
        Action::Retry { id, store } => super::block_on(retry(&*store.open(config)?, &id)),
        Action::Drop { id, store } => super::block_on(drop_entry(&*store.open(config)?, &id)),
    }
}

async fn list(store: &dyn Store, limit: usize, as_json: bool) -> Result<ExitCode> {
    let entries = store.outbox().entries(limit).await?;
    if as_json {
        let rows: Vec<_> = entries.iter().map(to_json).collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else if entries.is_empty() {
        println!("the outbox is empty");
    } else {
        for entry in &entries {
            let (attempts, next, error) = details(&entry.state);
            let next = next
                .map(|at| format!("  next attempt {at}"))
                .unwrap_or_default();
            let label = if matches!(entry.state, OutboxState::Failed { .. }) {
                "reason"
            } else {
                "last error"
            };
            println!(
                "{}  {:<7} to {:<9} {:<16} {:<28} recorded {}  attempts {}{}{}",
                entry.message_id,
                entry.state.name(),
                entry.to_her_id,
                entry.queue,
                entry.function,
                entry.created_at.format("%Y-%m-%dT%H:%M:%SZ"),
                attempts,
                next,
                error.map(|e| format!("  {label}: {e}")).unwrap_or_default()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Attempts, next attempt (pending only) and last error or reason.
fn details(state: &OutboxState) -> (u32, Option<String>, Option<&str>) {
    match state {
        OutboxState::Pending {
            attempts,
            last_error,
            next_attempt_at,
        } => (
            *attempts,
            Some(next_attempt_at.format("%Y-%m-%dT%H:%M:%SZ").to_string()),
            last_error.as_deref(),
        ),
        OutboxState::Failed {
            attempts, reason, ..
        } => (*attempts, None, Some(reason.as_str())),
        OutboxState::Sent { .. } => (0, None, None),
    }
}

fn to_json(entry: &OutboxEntry) -> serde_json::Value {
    let (attempts, _, last_error) = details(&entry.state);
    let (next_attempt_at, failed_at) = match &entry.state {
        OutboxState::Pending {
            next_attempt_at, ..
        } => (Some(next_attempt_at.to_rfc3339()), None),
        OutboxState::Failed { at, .. } => (None, Some(at.to_rfc3339())),
        OutboxState::Sent { .. } => (None, None),
    };
    json!({
        "message_id": entry.message_id,
        "state": entry.state.name(),
        "to_her_id": entry.to_her_id,
        "queue": entry.queue,
        "function": entry.function,
        "created_at": entry.created_at.to_rfc3339(),
        "expires_at": entry.expires_at.map(|t| t.to_rfc3339()),
        "attempts": attempts,
        "next_attempt_at": next_attempt_at,
        "failed_at": failed_at,
        "last_error": last_error,
    })
}

fn flush(config: Option<&Path>) -> Result<ExitCode> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let messenger = assembly::open(&super::load_config(config)?).await?;
        let report = messenger.flush_outbox().await?;
        let left = messenger.store().outbox().pending_count().await?;
        let mut said = format!("sent {}; {left} pending", report.sent);
        if report.retrying > 0 {
            said += &format!(
                "; {} failed this attempt and wait for the next",
                report.retrying
            );
        }
        if report.failed > 0 {
            said += &format!("; {} given up (see `outbox list`)", report.failed);
        }
        println!("{said}");
        if let Some(outage) = &report.outage {
            eprintln!("helsemelding: the broker is unavailable, stopped: {outage}");
        }
        Ok(if left == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        })
    })
}

async fn retry(store: &dyn Store, id: &str) -> Result<ExitCode> {
    let entry = store.outbox().entry(id).await?;
    store
        .outbox()
        .retry(id, Utc::now())
        .await
        .with_context(|| format!("outbox retry {id}"))?;
    let mut event = AuditEvent::new(AuditKind::OutboxRetried, super::operator(), "pending");
    event.message_id = Some(id.to_owned());
    if let Some(entry) = entry {
        event.counterpart_her_id = Some(entry.to_her_id);
        event.function = Some(entry.function);
        event.reason = Some(format!("retried by the operator (queue {})", entry.queue));
    }
    store.audit().append(Utc::now(), &event).await?;
    println!("{id}: pending again; `listen` or `outbox flush` sends it");
    Ok(ExitCode::SUCCESS)
}

async fn drop_entry(store: &dyn Store, id: &str) -> Result<ExitCode> {
    let entry = store
        .outbox()
        .remove(id)
        .await
        .with_context(|| format!("outbox drop {id}"))?;
    let (attempts, _, last_error) = details(&entry.state);
    let mut event = AuditEvent::new(AuditKind::OutboxDropped, super::operator(), "dropped");
    event.message_id = Some(id.to_owned());
    event.counterpart_her_id = Some(entry.to_her_id);
    event.function = Some(entry.function.clone());
    event.reason = Some(format!(
        "dropped by the operator while {} after {attempts} attempts (queue {}){}",
        entry.state.name(),
        entry.queue,
        last_error
            .map(|e| format!("; last error: {e}"))
            .unwrap_or_default()
    ));
    store.audit().append(Utc::now(), &event).await?;
    println!(
        "{id}: dropped ({} to {} on {}); it will not be sent",
        entry.state.name(),
        entry.to_her_id,
        entry.queue
    );
    Ok(ExitCode::SUCCESS)
}
