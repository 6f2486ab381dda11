//! `helsemelding --config F commtest --to HERID [--sync|--async]
//! [--timeout S] [--limit S] [--json]`: sends a communication test
//! (Dialogmelding `Foresporsel` KT), waits for the answer and prints the
//! round-trip time. Exits non-zero when no answer came in time or the
//! round trip exceeded the limit (5 s, the activation checklist's).
//!
//! `--async` listens on our async queue for the answer while it waits:
//! other messages that arrive meanwhile are released for the regular
//! listener (each such release counts as one delivery attempt).

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use async_trait::async_trait;
use helsemelding_messaging::{
    CommtestMode, ErrorHandler, Handler, HandlerError, Listener, ListenerOptions, Received,
};
use helsemelding_wire::error_report::ReceivedErrorReport;
use helsemelding_wire::text::for_display;
use helsemelding_wire::HerId;
use serde_json::json;

use super::send::seconds;
use crate::node::Node;

/// Run a communication test against a party.
#[derive(clap::Args)]
pub struct Args {
    /// The party to test.
    #[arg(long)]
    to: u32,
    /// Over the sync queues (the default).
    #[arg(long, conflicts_with = "over_async")]
    sync: bool,
    /// Over the async queues.
    #[arg(long = "async", id = "over_async")]
    over_async: bool,
    /// Seconds to wait for the answer.
    #[arg(long, default_value_t = 15.0)]
    timeout: f64,
    /// Seconds a round trip may take to count as passed.
    #[arg(long, default_value_t = 5.0)]
    limit: f64,
    /// Print one JSON object instead of a sentence.
    #[arg(long)]
    json: bool,
}

/// While an async test waits: anything but its answer goes back to the queue.
struct NotNow;

#[async_trait]
impl Handler for NotNow {
    async fn handle(&self, message: &Received) -> Result<(), HandlerError> {
        Err(HandlerError::Retry {
            reason: format!(
                "commtest is waiting; {} is left for the listener",
                message.message_id
            ),
        })
    }
}

#[async_trait]
impl ErrorHandler for NotNow {
    async fn handle_error(&self, _: &ReceivedErrorReport) -> Result<(), HandlerError> {
        Err(HandlerError::Retry {
            reason: "commtest is waiting".into(),
        })
    }
}

/// Runs `commtest` with the configuration at `config`: one communication
/// test, reported; the exit status says whether it answered within the limit.
pub fn run(config: Option<&Path>, args: Args) -> Result<ExitCode> {
    let to = HerId::new(args.to).context("--to is not a valid HER-id")?;
    let timeout = seconds("--timeout", args.timeout)?;
    let limit = seconds("--limit", args.limit)?;
    let mode = if args.over_async {
        CommtestMode::Async
    } else {
        CommtestMode::Sync
    };
    let runtime = tokio::runtime::Runtime::new()?;
    let result = runtime.block_on(async {
        let node = Node::open(&super::load_config(config)?).await?;
        let messenger = node.messenger();
        let listener = match mode {
            CommtestMode::Sync => None,
            CommtestMode::Async => Some(
                Listener::start(
                    messenger,
                    Arc::new(NotNow),
                    Arc::new(NotNow),
                    ListenerOptions {
                        workers: 1,
                        error_queue: false,
                        sync_queue: false,
                        poll: Duration::from_millis(100),
                        ..ListenerOptions::default()
                    },
                )
                .await?,
            ),
        };
        let outcome = messenger.communication_test(to, mode, timeout).await;
        if let Some(listener) = listener {
            listener.stop().await?;
        }
        messenger.close().await?;
        anyhow::Ok(outcome)
    })?;
    report(to, mode, limit, result, args.json)
}

fn report(
    to: HerId,
    mode: CommtestMode,
    limit: Duration,
    result: helsemelding_messaging::Result<helsemelding_messaging::CommtestOutcome>,
    as_json: bool,
) -> Result<ExitCode> {
    let (passed, millis, problem) = match &result {
        Ok(outcome) if outcome.round_trip <= limit => (true, Some(outcome.round_trip), None),
        Ok(outcome) => (
            false,
            Some(outcome.round_trip),
            Some(format!("slower than the limit of {} ms", limit.as_millis())),
        ),
        // The error may quote the peer's answer: escaped and bounded.
        Err(error) => (false, None, Some(for_display(&error.to_string(), 500))),
    };
    let millis = millis.map(|d| d.as_secs_f64() * 1000.0);
    if as_json {
        println!(
            "{}",
            json!({
                "to": to.get(),
                "mode": mode.as_str(),
                "passed": passed,
                "round_trip_ms": millis.map(|m| (m * 10.0).round() / 10.0),
                "limit_ms": limit.as_millis() as u64,
                "request_msg_id": result.as_ref().ok().map(|o| o.request_msg_id.clone()),
                "error": problem,
            })
        );
    } else {
        match (&problem, millis) {
            (None, Some(ms)) => println!(
                "communication test with {to} ({}): answered in {ms:.0} ms",
                mode.as_str()
            ),
            (Some(problem), Some(ms)) => println!(
                "communication test with {to} ({}): answered in {ms:.0} ms, {problem}",
                mode.as_str()
            ),
            (Some(problem), None) => println!(
                "communication test with {to} ({}): FAILED: {problem}",
                mode.as_str()
            ),
            (None, None) => unreachable!("a pass always has a round trip"),
        }
    }
    Ok(if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
