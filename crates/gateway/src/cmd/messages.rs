//! `helsemelding messages list|show|events`: where each message is, as the
//! store records it inside the units of work that move it (submitted,
//! sent, answered; received, available, delivered, answered, rejected).
//! The same records will back the HTTP API's messages and events feed.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use helsemelding_store::messages::{
    Direction, MessageFilter, MessageRecord, MessageState, StateEvent,
};
use helsemelding_store::Store;
use helsemelding_wire::text::for_display;

use super::store_args::StoreArgs;
use crate::records::{event_json, record_json};

/// See where messages are and how they got there.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(clap::Subcommand)]
enum Action {
    /// Messages in record order: direction, our HER-id, peer, id, function,
    /// state (and `overdue` while an asked-for AppRec is late).
    List {
        /// Only `out` or `in`.
        #[arg(long)]
        direction: Option<String>,
        /// Only in this state, e.g. `SENT`, `APPREC_OK`, `AVAILABLE`.
        #[arg(long)]
        state: Option<String>,
        /// Only of this HER-id of ours.
        #[arg(long)]
        her_id: Option<u32>,
        /// Only records after this record number (paging).
        #[arg(long)]
        after: Option<i64>,
        /// At most this many.
        #[arg(long, default_value_t = 1000)]
        limit: usize,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// One message (by MsgId or message-id) with its state history.
    Show {
        /// The MsgHead's MsgId, or the AMQP message-id.
        id: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Every state change after a sequence number, oldest first.
    Events {
        /// Only changes after this sequence number.
        #[arg(long, default_value_t = 0)]
        after: i64,
        /// At most this many.
        #[arg(long, default_value_t = 1000)]
        limit: usize,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// Runs `messages list|show|events` on the store of the configuration at
/// `config` (or the one `--store` names).
pub fn run(config: Option<&Path>, args: Args) -> Result<ExitCode> {
    match args.action {
        Action::List {
            direction,
            state,
            her_id,
            after,
            limit,
            json,
            store,
        } => {
            let filter = MessageFilter {
                direction: direction.as_deref().map(parse_direction).transpose()?,
                state: state.as_deref().map(parse_state).transpose()?,
                ours: her_id,
                after,
                ..MessageFilter::default()
            };
            super::block_on(list(&*store.open(config)?, &filter, limit, json))
        }
        Action::Show { id, json, store } => super::block_on(show(&*store.open(config)?, &id, json)),
        Action::Events {
            after,
            limit,
            json,
            store,
        } => super::block_on(events(&*store.open(config)?, after, limit, json)),
    }
}

fn parse_direction(text: &str) -> Result<Direction> {
    text.parse()
        .ok()
        .with_context(|| format!("--direction {text:?}: expected `out` or `in`"))
}

fn parse_state(text: &str) -> Result<MessageState> {
    let upper = text.to_ascii_uppercase();
    upper.parse().ok().with_context(|| {
        let names: Vec<_> = MessageState::ALL.iter().map(|s| s.name()).collect();
        format!("--state {text:?}: expected one of {}", names.join(", "))
    })
}

/// How much of a peer's id is shown.
const ID_CHARS: usize = 100;

async fn list(
    store: &dyn Store,
    filter: &MessageFilter,
    limit: usize,
    as_json: bool,
) -> Result<ExitCode> {
    let records = store.messages().list(filter, limit).await?;
    if as_json {
        let rows: Vec<_> = records.iter().map(record_json).collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else if records.is_empty() {
        println!("no messages match");
    } else {
        for record in &records {
            println!("{}", record_line(record));
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn show(store: &dyn Store, id: &str, as_json: bool) -> Result<ExitCode> {
    let Some(record) = store.messages().find(id, None, None).await? else {
        eprintln!(
            "error: no message is recorded as {}",
            for_display(id, ID_CHARS)
        );
        return Ok(ExitCode::from(1));
    };
    let history = store.messages().history(record.id).await?;
    if as_json {
        let mut value = record_json(&record);
        value["history"] = history.iter().map(event_json).collect();
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        println!("{}", record_line(&record));
        if let Some(error) = &record.last_error {
            println!("  last error: {}", for_display(error, 400));
        }
        for event in &history {
            println!("  {}", event_line(event));
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn events(store: &dyn Store, after: i64, limit: usize, as_json: bool) -> Result<ExitCode> {
    let events = store.messages().events_after(after, limit).await?;
    if as_json {
        let rows: Vec<_> = events.iter().map(event_json).collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        for event in &events {
            println!("{}", event_line(event));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn record_line(record: &MessageRecord) -> String {
    format!(
        "#{:<6} {:<3} {:>9} {} {:>9}  {}  {}  {}{}",
        record.id,
        record.direction.name(),
        record.ours,
        if record.direction == Direction::Out {
            "→"
        } else {
            "←"
        },
        record.peer,
        for_display(record.public_id(), ID_CHARS),
        for_display(&record.function, 60),
        record.state,
        if record.overdue { " (overdue)" } else { "" },
    )
}

fn event_line(event: &StateEvent) -> String {
    format!(
        "{:>8}  {}  {:<3} {}  {}{}",
        event.seq,
        event.at.format("%Y-%m-%d %H:%M:%S%.3fZ"),
        event.direction.name(),
        for_display(&event.id, ID_CHARS),
        event.state,
        event
            .detail
            .as_deref()
            .map(|d| format!(": {}", for_display(d, 300)))
            .unwrap_or_default(),
    )
}
