//! The supervisor: what runs around a [`Listener`] for as long as a
//! gateway listens (`listen` today, the `serve` daemon later). [`run`]
//! opens the messenger the configuration names ([`assembly::open`]),
//! decides where messages given up go (`[receive] dead_letters`, checked
//! against the broker at start), resends what the outbox holds and starts
//! the listener; then it pumps the outbox, says which application receipts
//! became overdue, and stops on the caller's word or on a stop signal.
//!
//! SIGTERM and SIGINT stop it gracefully: no new deliveries are taken, the
//! hand-overs in hand finish (at most 10 s, or until a second signal),
//! held-back deliveries go back to the broker, the messenger is closed and
//! the stop is audited. A stop signal during start-up ends it before any
//! message is taken.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use helsemelding_messaging::{
    DeadLetters, ErrorHandler, Handler, Listener, ListenerOptions, Messenger, ReceiveHealth,
};
use helsemelding_store::audit::{AuditEvent, AuditKind};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::assembly;
use crate::config::{Config, DeadLetterSetting};
use crate::queues::{self, QueuePath};

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

/// Waits for the services to end, cutting off what is still running
/// after [`SERVICE_STOP`].
async fn stop_all(running: Vec<JoinHandle<()>>) {
    let deadline = tokio::time::Instant::now() + SERVICE_STOP;
    for mut service in running {
        if tokio::time::timeout_at(deadline, &mut service)
            .await
            .is_err()
        {
            service.abort();
            let _ = service.await;
        }
    }
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
    config: &Config,
    handler: Arc<dyn Handler>,
    error_handler: Arc<dyn ErrorHandler>,
) -> Result<(Messenger, Listener)> {
    let messenger = assembly::open(config).await?;
    let (dead_letters, dead_letters_by_queue) = dead_letter_routes(config).await;
    // Whatever the outbox holds goes first; an entry that cannot be sent
    // (or a broker outage) never keeps the listener from starting.
    match messenger.flush_outbox().await {
        Ok(report) => {
            if let Some(outage) = report.outage {
                tracing::warn!(outage, "outbox: the broker is unavailable, sending later");
            }
        }
        Err(error) => tracing::warn!(%error, "outbox: not flushed on start, the pump tries again"),
    }
    let listener = Listener::start(
        &messenger,
        handler,
        error_handler,
        ListenerOptions {
            workers: config.receive.workers,
            dead_letters,
            dead_letters_by_queue,
            fault_pause_max: config.receive.fault_pause_max,
            max_bytes_in_flight: config.receive.max_bytes_in_flight,
            parked_per_worker: config.receive.held_back_per_worker,
            ..ListenerOptions::default()
        },
    )
    .await?;
    Ok((messenger, listener))
}

/// Runs the receive pipelines of the messenger `config` names
/// (`[receive] workers` per queue), handing what they accept to `handler` and
/// the error reports about our messages to `error_handler`, until
/// `finished` says so (asked ten times a second) or a stop signal comes;
/// then drains and closes (see the [module](self) docs). Returns when it
/// has stopped.
///
/// Call it in a Tokio runtime; from the call on, SIGTERM and SIGINT no
/// longer end the process at once.
pub async fn run(
    config: &Config,
    handler: Arc<dyn Handler>,
    error_handler: Arc<dyn ErrorHandler>,
    finished: impl FnMut() -> bool,
) -> Result<()> {
    run_with_chores(config, handler, error_handler, finished, Daemon::default()).await
}

/// Work that runs beside the listener for as long as it does (the HTTP
/// API), started once the messenger is open.
pub trait Service: Send {
    /// Starts the service over `messenger`; `receiving` says whether the
    /// listener's receive links work. It must finish what it has in hand
    /// and end once `stopping` turns true; what is still running
    /// [`SERVICE_STOP`] later is cut off.
    fn start(
        self: Box<Self>,
        messenger: &Messenger,
        receiving: ReceiveHealth,
        stopping: watch::Receiver<bool>,
    ) -> JoinHandle<()>;
}

/// How long the services have to stop once asked.
pub const SERVICE_STOP: Duration = Duration::from_secs(5);

/// What a daemon runs beside the listener: chores stepped in turn, and
/// services running on their own.
#[derive(Default)]
pub struct Daemon {
    /// Stepped every [`CHORE_INTERVAL`] (the folder drops).
    pub chores: Vec<Box<dyn Chore>>,
    /// Started once and stopped with the listener (the HTTP API).
    pub services: Vec<Box<dyn Service>>,
}

/// Work a daemon does beside the listener, a step at a time ([`run_with_chores`]).
#[async_trait::async_trait]
pub trait Chore: Send {
    /// One step (a pass over a folder, say); called every
    /// [`CHORE_INTERVAL`] while the gateway runs. A step that is still
    /// going when a stop signal comes is dropped where it is: it must leave
    /// nothing that the next start cannot pick up.
    async fn step(&mut self, messenger: &Messenger);
}

/// How often the chores take a step.
pub const CHORE_INTERVAL: Duration = Duration::from_millis(500);

/// [`run`], with the chores of `daemon` stepped in turn every
/// [`CHORE_INTERVAL`] once the listener runs (`serve`'s folder drops) and
/// its services running beside it (`serve`'s HTTP API).
pub async fn run_with_chores(
    config: &Config,
    handler: Arc<dyn Handler>,
    error_handler: Arc<dyn ErrorHandler>,
    mut finished: impl FnMut() -> bool,
    daemon: Daemon,
) -> Result<()> {
    let Daemon {
        mut chores,
        services,
    } = daemon;
    // From here on SIGTERM (systemd, docker stop) and SIGINT (Ctrl-C)
    // no longer end the process at once: start-up and the loop below
    // see them.
    let mut stop = StopSignals::install()?;
    // Nothing is taken before the listener runs: a stop signal during
    // start-up (a broker slow to answer) ends it at once.
    let (messenger, listener) = tokio::select! {
        started = start(config, handler, error_handler) => started?,
        signal = stop.next() => {
            eprintln!("{signal} during start-up: stopping before taking any message");
            return Ok(());
        }
    };
    let messenger = &messenger;
    let (stop_services, stopping) = watch::channel(false);
    let running: Vec<JoinHandle<()>> = services
        .into_iter()
        .map(|service| service.start(messenger, listener.health(), stopping.clone()))
        .collect();
    let started = AuditEvent::new(AuditKind::Start, messenger.actor(), "listening");
    messenger.audit(started).await;
    // AppRecs and communication-test answers go through the outbox:
    // whatever a broker outage left there is resent while we listen.
    let pump = messenger.spawn_outbox_pump(Duration::from_secs(5));
    let mut overdue_check = tokio::time::interval(Duration::from_secs(60));
    let mut chore_tick = tokio::time::interval(CHORE_INTERVAL);
    let have_chores = !chores.is_empty();
    loop {
        let chores_step = async {
            for chore in chores.iter_mut() {
                chore.step(messenger).await;
            }
        };
        tokio::select! {
            _ = overdue_check.tick() => report_overdue(messenger).await,
            _ = chore_tick.tick(), if have_chores => {
                tokio::select! {
                    () = chores_step => {}
                    signal = stop.next() => {
                        eprintln!("{signal}: stopping; the folder pass in hand is left where it is");
                        break;
                    }
                }
            }
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
        if finished() {
            break;
        }
    }
    // The services stop taking requests while the listener drains.
    let _ = stop_services.send(true);
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
    stop_all(running).await;
    pump.abort();
    messenger.close().await?;
    let stopped = AuditEvent::new(AuditKind::Stop, messenger.actor(), "stopped");
    messenger.audit(stopped).await;
    Ok(())
}
