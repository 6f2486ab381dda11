//! `helsemelding receipts [--overdue]`: sent messages and their AppRecs.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use chrono::Utc;
use helsemelding_store::receipts::ReceiptRecord;
use serde_json::json;

use super::store_args::StoreArgs;

/// List tracked messages and whether their application receipt came.
#[derive(clap::Args)]
pub struct Args {
    /// Only messages whose receipt is overdue now.
    #[arg(long)]
    overdue: bool,
    /// At most this many, newest first (ignored with --overdue).
    #[arg(long, default_value_t = 100)]
    limit: usize,
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    store: StoreArgs,
}

/// Runs `receipts`: lists sent messages and their AppRecs from the store
/// that `--store` or the configuration `config` names.
pub fn run(config: Option<&Path>, args: Args) -> Result<ExitCode> {
    let store = args.store.open(config)?;
    let now = Utc::now();
    let records = super::block_on(async {
        Ok(if args.overdue {
            store.receipts().overdue(now).await?
        } else {
            store.receipts().all(args.limit).await?
        })
    })?;
    if args.json {
        let rows: Vec<_> = records.iter().map(|r| to_json(r, now)).collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else if records.is_empty() {
        println!(
            "{}",
            if args.overdue {
                "no receipts overdue"
            } else {
                "no messages tracked"
            }
        );
    } else {
        for record in &records {
            let expected = &record.expected;
            println!(
                "{}  to {:<8} {:<28} sent {}  {}",
                expected.message_id,
                expected.to_her_id,
                expected.function,
                expected.sent_at.format("%Y-%m-%dT%H:%M:%SZ"),
                state(record, now)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn state(record: &ReceiptRecord, now: chrono::DateTime<Utc>) -> String {
    match &record.received {
        Some(received) => format!(
            "receipt status {} at {}",
            received.status,
            received.at.format("%Y-%m-%dT%H:%M:%SZ")
        ),
        None if record.expected.due_at <= now => {
            format!(
                "OVERDUE since {}",
                record.expected.due_at.format("%Y-%m-%dT%H:%M:%SZ")
            )
        }
        None => format!(
            "waiting, due {}",
            record.expected.due_at.format("%Y-%m-%dT%H:%M:%SZ")
        ),
    }
}

fn to_json(record: &ReceiptRecord, now: chrono::DateTime<Utc>) -> serde_json::Value {
    let expected = &record.expected;
    json!({
        "message_id": expected.message_id,
        "to_her_id": expected.to_her_id,
        "function": expected.function,
        "sent_at": expected.sent_at.to_rfc3339(),
        "due_at": expected.due_at.to_rfc3339(),
        "overdue": record.received.is_none() && expected.due_at <= now,
        "receipt": record.received.as_ref().map(|r| json!({
            "status": r.status,
            "at": r.at.to_rfc3339(),
            "message_id": r.receipt_message_id,
        })),
    })
}
