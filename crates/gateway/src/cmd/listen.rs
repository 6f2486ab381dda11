//! `helsemelding --config F listen [--out-dir D] [--count N] [--idle-exit S]`:
//! runs the receive pipelines and writes each accepted message as
//! `D/<message-id>.xml` (payload bytes exactly) and `D/<message-id>.json`
//! (who, what, when), atomically and before the message is accepted. A
//! redelivered message whose `.xml` file is there with the same bytes is
//! not written again; with other bytes the file is kept and the message
//! waits (the error names the file).
//!
//! SIGTERM and SIGINT stop it gracefully: no new deliveries are taken, the
//! hand-overs in hand finish (at most 10 s, or until a second signal),
//! held-back deliveries go back to the broker, and it exits 0.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use async_trait::async_trait;
use helsemelding_messaging::{
    DeadLetters, ErrorHandler, Handler, HandlerError, Listener, ListenerOptions, Messenger,
    Received,
};
use helsemelding_store::audit::{AuditEvent, AuditKind};
use helsemelding_wire::error_report::ReceivedErrorReport;
use helsemelding_wire::text::{for_display, for_display_or};
use serde_json::json;

use super::context::Context;
use super::queues::{self, QueuePath};
use crate::config::{Config, DeadLetterSetting};

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

/// What writing a message into the out dir came to.
#[derive(Debug, PartialEq, Eq)]
enum Written {
    /// Its files were written.
    New,
    /// `<id>.xml` was there already with the same bytes: an earlier run
    /// wrote it and stopped before the delivery was settled. Nothing is
    /// rewritten.
    AlreadyThere,
}

impl ToDirectory {
    /// Writes `<id>.json`, then `<id>.xml`, each atomically: an `.xml`
    /// file is there only when both are complete. A message whose `.xml`
    /// file exists with the same bytes is not written again; with other
    /// bytes it is an error that names the file, which is kept.
    fn write(&self, message: &Received) -> std::io::Result<Written> {
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
        let xml = self.dir.join(format!("{stem}.xml"));
        let json = self.dir.join(format!("{stem}.json"));
        match std::fs::read(&xml) {
            Ok(existing) if existing == message.payload => {
                if !json.exists() {
                    // Written by hand or by an older version: complete it.
                    write_atomic(&json, &meta_json(message)?)?;
                }
                return Ok(Written::AlreadyThere);
            }
            Ok(_) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    format!(
                        "{} already exists with other content than message {} from {}; \
                         it is not overwritten: move it away to take this message",
                        xml.display(),
                        for_display(&message.message_id, ID_CHARS),
                        message.from
                    ),
                ))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(std::io::Error::new(
                    e.kind(),
                    format!("reading {}: {e}", xml.display()),
                ))
            }
        }
        write_atomic(&json, &meta_json(message)?)?;
        if let Err(error) = write_atomic(&xml, &message.payload) {
            // No `.json` without its `.xml`: on a full disk it only takes room.
            let _ = std::fs::remove_file(&json);
            return Err(error);
        }
        // The renames are durable only once the directory is.
        std::fs::File::open(&self.dir)?.sync_all()?;
        Ok(Written::New)
    }
}

/// Why the out dir did not take a message. A file already there with
/// other bytes is about this message: it waits, spending attempts. Any
/// other failure (a full disk, a folder not writable) is ours, not the
/// message's: the listener pauses and says so, and spends no attempts.
fn refusal(error: std::io::Error) -> HandlerError {
    if error.kind() == std::io::ErrorKind::AlreadyExists {
        eprintln!("not taken: {error}");
        return HandlerError::Retry {
            reason: error.to_string(),
        };
    }
    HandlerError::Unavailable {
        reason: error.to_string(),
    }
}

/// Who, what, when: the `<id>.json` beside the payload (never the payload).
fn meta_json(message: &Received) -> std::io::Result<Vec<u8>> {
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
    Ok(serde_json::to_string_pretty(&meta)?.into_bytes())
}

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let temp = path.with_extension("part");
    let written = (|| {
        let mut file = std::fs::File::create(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temp, path)
    })();
    if written.is_err() {
        // Never leave a half-written file behind.
        let _ = std::fs::remove_file(&temp);
    }
    written.map_err(|e| std::io::Error::new(e.kind(), format!("writing {}: {e}", path.display())))
}

#[async_trait]
impl Handler for ToDirectory {
    async fn handle(&self, message: &Received) -> Result<(), HandlerError> {
        let written = tokio::task::block_in_place(|| self.write(message));
        let written = written.map_err(refusal)?;
        *self.last.lock().unwrap() = Instant::now();
        let n = self.accepted.fetch_add(1, Ordering::SeqCst) + 1;
        // The message-id is the peer's text: shown escaped and bounded.
        let (id, from) = (for_display(&message.message_id, ID_CHARS), message.from);
        match written {
            Written::New => eprintln!("received {id} from {from} ({n})"),
            Written::AlreadyThere => {
                eprintln!("already in the out dir: {id} from {from} ({n}); not written again")
            }
        }
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

/// Where messages given up go, by `[receive] dead_letters` and, for
/// `auto`, by what the broker says of each queue: rejected where the queue
/// has a dead-letter path, else kept in our store (a rejected message must
/// never be deleted). Said at start, loudly where a path is missing.
async fn dead_letter_routes(config: &Config) -> (DeadLetters, BTreeMap<String, DeadLetters>) {
    let by_queue = BTreeMap::new();
    match config.receive.dead_letters {
        DeadLetterSetting::Broker => return (DeadLetters::Broker, by_queue),
        DeadLetterSetting::Store => {
            eprintln!("note: messages given up are kept in our store (`helsemelding parked list`)");
            return (DeadLetters::Store, by_queue);
        }
        DeadLetterSetting::Auto => {}
    }
    let paths =
        match tokio::time::timeout(DEAD_LETTER_CHECK, queues::dead_letter_paths(config)).await {
            // The local transport dead-letters by itself.
            Ok(None) => return (DeadLetters::Broker, by_queue),
            Ok(Some(paths)) => paths,
            Err(_) => {
                eprintln!(
                    "WARNING: cannot check the dead-letter path of our queues: the management API \
                 did not answer within {} s; {KEPT}",
                    DEAD_LETTER_CHECK.as_secs()
                );
                return (DeadLetters::Store, by_queue);
            }
        };
    for line in dead_letter_lines(&paths) {
        eprintln!("{line}");
    }
    let by_queue = paths
        .into_iter()
        .filter(|(_, path)| *path == QueuePath::Kept)
        .map(|(name, _)| (name, DeadLetters::Broker))
        .collect();
    (DeadLetters::Store, by_queue)
}

/// Where messages given up go when the broker would delete them.
const KEPT: &str =
    "messages given up there are kept in our store instead (`helsemelding parked list`)";

/// The start-up lines about the dead-letter paths found: one warning per
/// queue without one, one note when nothing could be checked for want of
/// the management API.
fn dead_letter_lines(paths: &[(String, QueuePath)]) -> Vec<String> {
    let unconfigured = paths
        .iter()
        .filter(
            |(_, path)| matches!(path, QueuePath::Unknown(why) if why.contains("management_url")),
        )
        .count();
    let mut lines = Vec::new();
    if unconfigured > 0 {
        lines.push(format!(
            "note: the dead-letter path of our queues is not checked: set broker.management_url \
             (RabbitMQ's management API) to have it checked at start; until then {KEPT}, or set \
             receive.dead_letters = \"broker\" where the broker's policy dead-letters them"
        ));
    }
    for (name, path) in paths {
        match path {
            QueuePath::Kept => {}
            QueuePath::None => lines.push(format!(
                "WARNING: queue {name} has no dead-letter path (no x-dead-letter-exchange \
                 argument, no dead-letter-exchange policy): the broker would delete a message \
                 the listener rejects; {KEPT}. Have the broker's operator give it one (NHN's: to \
                 {}_dl)",
                name.rsplit_once('_')
                    .map_or(name.as_str(), |(prefix, _)| prefix)
            )),
            QueuePath::Unknown(why) if why.contains("management_url") => {}
            QueuePath::Unknown(why) => lines.push(format!(
                "WARNING: cannot check the dead-letter path of queue {name}: {why}; {KEPT}"
            )),
        }
    }
    lines
}

/// How long the start-up check of the dead-letter paths may take.
const DEAD_LETTER_CHECK: Duration = Duration::from_secs(10);

/// How long a stop waits for the hand-overs in hand.
const DRAIN: Duration = Duration::from_secs(10);

/// SIGTERM and SIGINT, caught for the process's lifetime once installed.
/// SIGPIPE stays ignored, as `main` set it.
struct StopSignals {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn install() -> Result<StopSignals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(StopSignals {
            terminate: signal(SignalKind::terminate()).context("catching SIGTERM")?,
            interrupt: signal(SignalKind::interrupt()).context("catching SIGINT")?,
        })
    }

    /// The name of the next stop signal, once it arrives.
    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.terminate.recv() => "SIGTERM",
            _ = self.interrupt.recv() => "SIGINT",
        }
    }
}

/// Opens what the configuration names, says what it finds amiss, resends
/// what the outbox holds and starts the listener.
async fn start(
    config: Option<&Path>,
    workers: usize,
    sink: Arc<ToDirectory>,
) -> Result<(Context, Listener)> {
    let (context, config) = Context::open_with_config(config).await?;
    let (dead_letters, dead_letters_by_queue) = dead_letter_routes(&config).await;
    // Whatever the outbox holds goes first; an entry that cannot be sent
    // (or a broker outage) never keeps the listener from starting.
    match context.messenger.flush_outbox().await {
        Ok(report) => {
            if let Some(outage) = report.outage {
                tracing::warn!(outage, "outbox: the broker is unavailable, sending later");
            }
        }
        Err(error) => tracing::warn!(%error, "outbox: not flushed on start, the pump tries again"),
    }
    let listener = Listener::start(
        &context.messenger,
        sink.clone(),
        sink,
        ListenerOptions {
            workers: workers.max(1),
            dead_letters,
            dead_letters_by_queue,
            fault_pause_max: config.receive.fault_pause_max,
            max_bytes_in_flight: config.receive.max_bytes_in_flight,
            ..ListenerOptions::default()
        },
    )
    .await?;
    Ok((context, listener))
}

pub fn run(config: Option<&Path>, args: Args) -> Result<ExitCode> {
    prepare_out_dir(&args.out_dir)?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        // From here on SIGTERM (systemd, docker stop) and SIGINT (Ctrl-C)
        // no longer end the process at once: start-up and the loop below
        // see them.
        let mut stop = StopSignals::install()?;
        let sink = Arc::new(ToDirectory {
            dir: args.out_dir.clone(),
            accepted: AtomicU64::new(0),
            last: std::sync::Mutex::new(Instant::now()),
        });
        // Nothing is taken before the listener runs: a stop signal during
        // start-up (a broker slow to answer) ends it at once.
        let (context, listener) = tokio::select! {
            started = start(config, args.workers, sink.clone()) => started?,
            signal = stop.next() => {
                eprintln!("{signal} during start-up: stopping before taking any message");
                return Ok(ExitCode::SUCCESS);
            }
        };
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
                signal = stop.next() => {
                    eprintln!(
                        "{signal}: stopping; no new deliveries, the hand-overs in hand finish \
                         (at most {} s), the rest go back to the broker",
                        DRAIN.as_secs()
                    );
                    break;
                }
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
        // A second signal (Ctrl-C twice) cuts the drain short.
        let cut = async {
            tokio::select! {
                () = tokio::time::sleep(DRAIN) => {}
                signal = stop.next() => eprintln!("{signal} again: cutting the drain short"),
            }
        };
        let cut_short = listener.stop_unless(cut).await?;
        if cut_short > 0 {
            eprintln!(
                "{cut_short} worker(s) had not finished when the drain ended: their \
                 deliveries go back to the broker unsettled and come again to the next listener"
            );
        }
        pump.abort();
        messenger.close().await?;
        let stopped = AuditEvent::new(AuditKind::Stop, messenger.actor(), "stopped");
        messenger.audit(stopped).await;
        Ok(ExitCode::SUCCESS)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use helsemelding_wire::HerId;

    fn sink(dir: &Path) -> ToDirectory {
        ToDirectory {
            dir: dir.to_path_buf(),
            accepted: AtomicU64::new(0),
            last: std::sync::Mutex::new(Instant::now()),
        }
    }

    fn message(payload: &[u8]) -> Received {
        let now = chrono::Utc::now();
        Received {
            from: HerId::new(8_142_001).unwrap(),
            to: HerId::new(8_142_002).unwrap(),
            function: "DIALOG_INNBYGGER_TEST".into(),
            message_id: "4f0c3c1e-id".into(),
            correlation_id: None,
            cpa_id: None,
            payload: payload.to_vec(),
            metadata: Default::default(),
            application_time: now,
            enqueued_time: None,
            received_at: now,
            queue: "8142002_async".into(),
        }
    }

    #[test]
    fn a_message_whose_file_is_there_with_the_same_bytes_is_not_written_again() {
        let dir = tempfile::tempdir().unwrap();
        let sink = sink(dir.path());
        let first = message(b"<MsgHead/>");
        assert_eq!(sink.write(&first).unwrap(), Written::New);
        let json = dir.path().join("4f0c3c1e-id.json");
        let meta = std::fs::read(&json).unwrap();
        let mut again = message(b"<MsgHead/>");
        again.received_at += chrono::Duration::seconds(5);
        assert_eq!(sink.write(&again).unwrap(), Written::AlreadyThere);
        assert_eq!(std::fs::read(&json).unwrap(), meta, "rewritten");
        // A .json lost beside a complete .xml is written again.
        std::fs::remove_file(&json).unwrap();
        assert_eq!(sink.write(&again).unwrap(), Written::AlreadyThere);
        assert!(json.exists());
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(!names.iter().any(|n| n.ends_with(".part")), "{names:?}");
    }

    #[test]
    fn a_message_whose_file_is_there_with_other_bytes_is_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let sink = sink(dir.path());
        let xml = dir.path().join("4f0c3c1e-id.xml");
        std::fs::write(&xml, b"<other/>").unwrap();
        let error = sink.write(&message(b"<MsgHead/>")).unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::AlreadyExists);
        let text = error.to_string();
        assert!(text.contains(&xml.display().to_string()), "{text}");
        assert!(text.contains("move it away"), "{text}");
        assert!(!text.contains("MsgHead"), "payload in the error: {text}");
        assert_eq!(std::fs::read(&xml).unwrap(), b"<other/>");
    }
}
