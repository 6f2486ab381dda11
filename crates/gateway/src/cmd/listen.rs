//! `helsemelding --config F listen [--out-dir D] [--count N] [--idle-exit S]`:
//! runs the receive pipelines and writes each accepted message as
//! `D/<message-id>.xml` (payload bytes exactly) and `D/<message-id>.json`
//! (who, what, when), atomically and before the message is accepted.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use async_trait::async_trait;
use helsemelding_messaging::{
    ErrorHandler, Handler, HandlerError, Listener, ListenerOptions, Messenger, Received,
};
use helsemelding_store::audit::{AuditEvent, AuditKind};
use helsemelding_wire::error_report::ReceivedErrorReport;
use helsemelding_wire::text::{for_display, for_display_or};
use serde_json::json;

use super::context::Context;

/// Receive messages into a directory.
#[derive(clap::Args)]
pub struct Args {
    /// Where to write the messages (created if missing).
    #[arg(long, default_value = ".")]
    out_dir: PathBuf,
    /// Exit after this many accepted messages.
    #[arg(long)]
    count: Option<u64>,
    /// Exit after this many seconds without a message.
    #[arg(long)]
    idle_exit: Option<u64>,
    /// Concurrent workers per queue.
    #[arg(long, default_value_t = 4)]
    workers: usize,
}

struct ToDirectory {
    dir: PathBuf,
    accepted: AtomicU64,
    last: std::sync::Mutex<Instant>,
}

impl ToDirectory {
    fn write(&self, message: &Received) -> std::io::Result<()> {
        // The message id names files: keep only what is safe in a file name.
        let stem: String = message
            .message_id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let meta = json!({
            "message_id": message.message_id,
            "from_her_id": message.from.get(),
            "to_her_id": message.to.get(),
            "function": message.function,
            "cpa_id": message.cpa_id.map(|c| c.to_string()),
            "correlation_id": message.correlation_id,
            "application_time": message.application_time.to_rfc3339(),
            "enqueued_time": message.enqueued_time.map(|t| t.to_rfc3339()),
            "received_at": message.received_at.to_rfc3339(),
            "metadata": message.metadata,
        });
        write_atomic(&self.dir.join(format!("{stem}.xml")), &message.payload)?;
        write_atomic(
            &self.dir.join(format!("{stem}.json")),
            serde_json::to_string_pretty(&meta)?.as_bytes(),
        )
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let temp = path.with_extension("part");
    let mut file = std::fs::File::create(&temp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&temp, path)
}

#[async_trait]
impl Handler for ToDirectory {
    async fn handle(&self, message: &Received) -> Result<(), HandlerError> {
        let written = tokio::task::block_in_place(|| self.write(message));
        written.map_err(|e| HandlerError::Retry {
            reason: format!("writing to {}: {e}", self.dir.display()),
        })?;
        *self.last.lock().unwrap() = Instant::now();
        let n = self.accepted.fetch_add(1, Ordering::SeqCst) + 1;
        // The message-id is the peer's text: shown escaped and bounded.
        eprintln!(
            "received {} from {} ({n})",
            for_display(&message.message_id, ID_CHARS),
            message.from
        );
        Ok(())
    }
}

#[async_trait]
impl ErrorHandler for ToDirectory {
    async fn handle_error(&self, report: &ReceivedErrorReport) -> Result<(), HandlerError> {
        *self.last.lock().unwrap() = Instant::now();
        eprintln!("{}", error_report_line(report));
        Ok(())
    }
}

/// How much of a peer's message-id or condition is shown.
const ID_CHARS: usize = 100;
/// How much of a peer's error description is shown.
const DESCRIPTION_CHARS: usize = 200;

/// One line about a received error report. Every field but the HER-id is
/// the peer's text, shown escaped and bounded: a description cannot forge
/// lines of our output, move the cursor or fill the log.
fn error_report_line(report: &ReceivedErrorReport) -> String {
    let from = report
        .from
        .map_or_else(|| "unknown".to_owned(), |h| h.to_string());
    let about = for_display_or(
        report.original_message_id.as_deref(),
        ID_CHARS,
        "an unknown message",
    );
    let condition = for_display_or(report.condition_text.as_deref(), ID_CHARS, "no condition");
    let mut line = format!("error report from {from} about {about}: {condition}");
    if let Some(description) = report.description.as_deref() {
        line.push_str(" (");
        line.push_str(&for_display(description, DESCRIPTION_CHARS));
        line.push(')');
    }
    line
}

/// Says which sent messages' AppRecs became overdue (each once a run).
async fn report_overdue(messenger: &Messenger) {
    match messenger.audit_overdue_receipts(chrono::Utc::now()).await {
        Ok(fresh) => {
            for record in fresh {
                let expected = record.expected;
                eprintln!(
                    "AppRec overdue: message {} ({}) to {}, due {}",
                    expected.message_id,
                    expected.function,
                    expected.to_her_id,
                    expected.due_at.to_rfc3339()
                );
            }
        }
        Err(error) => tracing::warn!(%error, "checking overdue receipts"),
    }
}

/// The output directory, created if missing; a file in its place is an
/// error that names it.
fn prepare_out_dir(dir: &Path) -> Result<()> {
    if dir.exists() && !dir.is_dir() {
        anyhow::bail!(
            "--out-dir {}: is not a directory; give a directory (it is created if missing)",
            dir.display()
        );
    }
    std::fs::create_dir_all(dir)
        .with_context(|| format!("--out-dir {}: cannot create the directory", dir.display()))
}

pub fn run(config: Option<&Path>, args: Args) -> Result<ExitCode> {
    prepare_out_dir(&args.out_dir)?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let context = Context::open(config).await?;
        // Whatever the outbox holds goes first; an entry that cannot be
        // sent (or a broker outage) never keeps the listener from starting.
        match context.messenger.flush_outbox().await {
            Ok(report) => {
                if let Some(outage) = report.outage {
                    tracing::warn!(outage, "outbox: the broker is unavailable, sending later");
                }
            }
            Err(error) => {
                tracing::warn!(%error, "outbox: not flushed on start, the pump tries again")
            }
        }
        let sink = Arc::new(ToDirectory {
            dir: args.out_dir.clone(),
            accepted: AtomicU64::new(0),
            last: std::sync::Mutex::new(Instant::now()),
        });
        let listener = Listener::start(
            &context.messenger,
            sink.clone(),
            sink.clone(),
            ListenerOptions {
                workers: args.workers.max(1),
                ..ListenerOptions::default()
            },
        )
        .await?;
        let messenger = &context.messenger;
        let started = AuditEvent::new(AuditKind::Start, messenger.actor(), "listening");
        messenger.audit(started).await;
        // AppRecs and communication-test answers go through the outbox:
        // whatever a broker outage left there is resent while we listen.
        let pump = messenger.spawn_outbox_pump(Duration::from_secs(5));
        let mut overdue_check = tokio::time::interval(Duration::from_secs(60));
        loop {
            tokio::select! {
                _ = overdue_check.tick() => report_overdue(messenger).await,
                _ = tokio::signal::ctrl_c() => break,
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
            if args
                .count
                .is_some_and(|n| sink.accepted.load(Ordering::SeqCst) >= n)
            {
                break;
            }
            let idle = sink.last.lock().unwrap().elapsed();
            if args
                .idle_exit
                .is_some_and(|s| idle >= Duration::from_secs(s))
            {
                break;
            }
        }
        listener.stop().await?;
        pump.abort();
        messenger.close().await?;
        let stopped = AuditEvent::new(AuditKind::Stop, messenger.actor(), "stopped");
        messenger.audit(stopped).await;
        Ok(ExitCode::SUCCESS)
    })
}
