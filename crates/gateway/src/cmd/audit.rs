//! `helsemelding audit verify|list|prune`: the hash-chained audit log.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use helsemelding_store::audit::{AuditFilter, AuditRecord, MINIMUM_RETENTION_DAYS};
use helsemelding_store::Store;
use helsemelding_wire::text::{for_display, for_display_or};

use super::store_args::StoreArgs;

/// Check, read or prune the audit log.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(clap::Subcommand)]
enum Action {
    /// Walk the hash chain; exit non-zero and name the rows when it is broken.
    Verify {
        #[arg(long)]
        json: bool,
    },
    /// List events, oldest first.
    List {
        /// Only events at or after this instant (RFC 3339).
        #[arg(long, value_parser = parse_time)]
        since: Option<DateTime<Utc>>,
        /// Only events with this counterpart.
        #[arg(long)]
        her_id: Option<u32>,
        #[arg(long)]
        message_id: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Remove events older than BEFORE; refused inside the retention period.
    Prune {
        #[arg(long, value_parser = parse_time)]
        before: DateTime<Utc>,
        /// Retention in days (at least two years).
        #[arg(long, default_value_t = MINIMUM_RETENTION_DAYS)]
        retention_days: i64,
    },
}

fn parse_time(text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("not an RFC 3339 time ({e})"))
}

/// Runs `audit`: verifies, lists or prunes the audit log of the store
/// that `--store` or the configuration `config` names.
pub fn run(config: Option<&Path>, args: Args) -> Result<ExitCode> {
    let store = args.store.open(config)?;
    super::block_on(audit(&*store, args.action))
}

async fn audit(store: &dyn Store, action: Action) -> Result<ExitCode> {
    let audit = store.audit();
    match action {
        Action::Verify { json } => {
            let report = audit.verify().await.context("verifying the audit log")?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else if report.is_intact() {
                println!(
                    "audit log intact: {} rows, chain from row {} to row {}",
                    report.rows_checked,
                    report.start_seq + 1,
                    report.head_seq
                );
            } else {
                for problem in &report.problems {
                    println!("{problem}");
                }
            }
            if report.is_intact() {
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!(
                    "helsemelding: audit log broken: {} problem(s)",
                    report.problems.len()
                );
                Ok(ExitCode::FAILURE)
            }
        }
        Action::List {
            since,
            her_id,
            message_id,
            json,
        } => {
            let filter = AuditFilter {
                since,
                her_id,
                message_id,
                limit: None,
            };
            let records = audit.list(&filter).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&records)?);
            } else {
                records.iter().for_each(print_record);
            }
            Ok(ExitCode::SUCCESS)
        }
        Action::Prune {
            before,
            retention_days,
        } => {
            let removed = audit.prune(Utc::now(), before, retention_days).await?;
            println!(
                "removed {removed} audit rows older than {}",
                before.to_rfc3339()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn print_record(record: &AuditRecord) {
    let event = &record.event;
    // Message-ids, functions and reasons of received messages are the
    // peers' text: shown escaped and bounded.
    let optional = |value: Option<String>| for_display_or(value.as_deref(), 100, "-");
    println!(
        "{:>6}  {}  {:<18} {:<24} her-id {:<8} msg {:<36} {:<28} {}{}",
        record.seq,
        record.at.format("%Y-%m-%dT%H:%M:%SZ"),
        event.kind.as_str(),
        event.actor,
        optional(event.counterpart_her_id.map(|id| id.to_string())),
        optional(event.message_id.clone()),
        optional(event.function.clone()),
        event.outcome,
        event
            .reason
            .as_ref()
            .map(|r| format!(" ({})", for_display(r, 200)))
            .unwrap_or_default()
    );
}
