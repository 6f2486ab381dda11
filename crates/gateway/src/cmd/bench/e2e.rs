//! `helsemelding bench e2e`: persistent MsgHead messages through the whole
//! stack on one machine (a Messenger signs, encrypts, records in its outbox
//! and sends; a Listener with N workers receives, decrypts, verifies,
//! de-duplicates, hands over and accepts), reported beside two limits
//! measured in the same run:
//!
//! - `raw`: the same broker with the same client (`helsemelding_transport`):
//!   durable messages of the same size, the same number of sends in flight
//!   and receivers, send + receive + accept and nothing else;
//! - `crypto`: protect + unprotect pairs per second on every core available.
//!
//! ratio = e2e / min(raw, crypto); the goal is ≥ 0.7.
//!
//! The parties come from a throw-away [`DevPki`] and a file registry in a
//! temporary directory; revocation is required and judged from the dev
//! CA's CRL (`protect::StaticCrls`), as production judges a fetched one.
//! On the local transport (the default) the queues live in the same
//! temporary directory. With `--broker`, the receiver's `<her-id>_async`
//! queue must exist (HER-ids [`DEFAULT_SENDER`] and [`DEFAULT_RECEIVER`]
//! unless `--her-ids` names others) and should be empty.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _, Result};
use async_trait::async_trait;
use chrono::Utc;
use helsemelding_messaging::{
    ErrorHandler, Handler, HandlerError, Listener, ListenerOptions, Messenger, Received,
    SendRequest,
};
use helsemelding_protect::{protect, unprotect, Identity, ProtectOptions, UnprotectOptions};
use helsemelding_registry::FileRegistry;
use helsemelding_transport::{Message, Outcome, Transport};
use helsemelding_transport_amqp::AmqpOptions;
use helsemelding_wire::dialog::dialog_note;
use helsemelding_wire::error_report::ReceivedErrorReport;
use helsemelding_wire::msghead::{NewMsgHead, Party};
use helsemelding_wire::queue::{queue_name, QueueKind};
use helsemelding_wire::{Code, HerId};
use serde::Serialize;
use tokio::sync::watch;

use crate::assembly::{self, cached_file_registry, Parts};
use crate::devpki::{DevParty, DevPki};

/// The sending party's HER-id unless `--her-ids` says otherwise.
pub const DEFAULT_SENDER: u32 = 8_990_001;
/// The receiving party's HER-id unless `--her-ids` says otherwise; with
/// `--broker`, `8990002_async` must exist.
pub const DEFAULT_RECEIVER: u32 = 8_990_002;
/// The message function of the bench messages.
const FUNCTION: &str = "DIALOG_NOTAT";
/// The environment variable holding the broker password (never the URL).
const PASSWORD_ENV: &str = "HELSEMELDING_BROKER_PASSWORD";
const GOAL: f64 = 0.7;
/// Longest wait for one phase; a stuck broker ends the run with an error.
const PHASE_LIMIT: Duration = Duration::from_secs(600);
/// Seconds spent measuring the crypto bound.
const CRYPTO_SECONDS: f64 = 2.0;

/// Options of `bench e2e`.
#[derive(clap::Args)]
pub struct E2eArgs {
    /// AMQP broker URL (`amqp://user@host:port/exchange`, RabbitMQ dialect;
    /// password from HELSEMELDING_BROKER_PASSWORD). Default: the local
    /// transport in a temporary directory.
    #[arg(long, value_name = "URL")]
    broker: Option<String>,
    /// Sender and receiver HER-ids, e.g. `8990001,8990002`; with --broker the
    /// receiver's `<her-id>_async` queue must exist.
    #[arg(long, value_delimiter = ',', value_name = "SENDER,RECEIVER")]
    her_ids: Option<Vec<u32>>,
    /// Messages measured (after a short warm-up).
    #[arg(long, default_value_t = 2000)]
    messages: usize,
    /// Payload size in bytes (a MsgHead padded to this size).
    #[arg(long, default_value_t = 4096)]
    size: usize,
    /// Receive workers (and raw receivers).
    #[arg(long, default_value_t = 16)]
    workers: usize,
    /// Sends in flight at once (e2e and raw alike).
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// The figures of one `bench e2e` run.
#[derive(Serialize)]
struct E2eReport {
    transport: &'static str,
    messages: usize,
    size: usize,
    workers: usize,
    concurrency: usize,
    cores: usize,
    /// Messages per second through the whole stack.
    e2e_per_s: f64,
    /// Messages per second through the broker and client alone.
    raw_per_s: f64,
    /// protect + unprotect pairs per second on all cores.
    crypto_per_s: f64,
    /// e2e / min(raw, crypto).
    ratio: f64,
    goal: f64,
}

pub fn run(args: E2eArgs) -> Result<std::process::ExitCode> {
    ensure!(args.messages > 0, "--messages must be positive");
    ensure!(args.workers > 0, "--workers must be positive");
    ensure!(args.concurrency > 0, "--concurrency must be positive");
    ensure!(
        (512..=10 * 1024 * 1024).contains(&args.size),
        "--size must be 512 bytes .. 10 MiB"
    );
    let runtime = tokio::runtime::Runtime::new()?;
    let report = runtime.block_on(measure(&args))?;
    print_report(&report, args.json)?;
    Ok(std::process::ExitCode::SUCCESS)
}

async fn measure(args: &E2eArgs) -> Result<E2eReport> {
    let dir = tempfile::tempdir().context("temporary directory")?;
    let (sender_id, receiver_id) = match args.her_ids.as_deref() {
        Some([a, b]) => (*a, *b),
        Some(_) => bail!("--her-ids takes two HER-ids: SENDER,RECEIVER"),
        None => (DEFAULT_SENDER, DEFAULT_RECEIVER),
    };
    let her_id = |id: u32| HerId::new(id).with_context(|| format!("{id} is not a HER-id"));
    let (sender_id, receiver_id) = (her_id(sender_id)?, her_id(receiver_id)?);
    let (url, options, transport_name) = match &args.broker {
        None => (
            format!("local:{}", dir.path().join("queues.db").display()),
            AmqpOptions::default(),
            "local",
        ),
        Some(url) => (url.clone(), broker_options(url)?, "amqp"),
    };
    let transport = assembly::open_transport(&url, options).await?;
    let queue = queue_name(receiver_id, QueueKind::Async);
    transport
        .check_queue(&queue)
        .await
        .with_context(|| format!("the receiver's queue {queue}"))?;
    let payload = |i: usize| bench_payload(sender_id, receiver_id, i, args.size);

    let raw_per_s = raw_throughput(&transport, &queue, args, payload(0)?.len()).await?;
    let pki = DevPki::new("helsemelding bench CA")?;
    let parties = [
        pki.party(sender_id, "bench sender")?,
        pki.party(receiver_id, "bench receiver")?,
    ];
    let e2e_per_s = e2e_throughput(&pki, &parties, &transport, dir.path(), args, &payload).await?;
    let _ = transport.close().await;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let crypto_per_s = crypto_bound(&parties[0], &parties[1], &payload(0)?, cores)?;
    Ok(E2eReport {
        transport: transport_name,
        messages: args.messages,
        size: args.size,
        workers: args.workers,
        concurrency: args.concurrency,
        cores,
        e2e_per_s,
        raw_per_s,
        crypto_per_s,
        ratio: e2e_per_s / raw_per_s.min(crypto_per_s),
        goal: GOAL,
    })
}

/// AMQP options for `--broker`: the password only from the environment.
fn broker_options(url: &str) -> Result<AmqpOptions> {
    let parsed = url::Url::parse(url).context("--broker is not a URL")?;
    ensure!(
        parsed.password().is_none(),
        "--broker holds a password; set {PASSWORD_ENV} instead"
    );
    Ok(AmqpOptions {
        password: std::env::var(PASSWORD_ENV).ok(),
        ..AmqpOptions::default()
    })
}

/// A MsgHead (Dialogmelding note, no receipt asked for) of exactly `size`
/// bytes where the padding allows, with its own MsgId.
fn bench_payload(from: HerId, to: HerId, index: usize, size: usize) -> Result<Vec<u8>> {
    let party = |her_id: HerId, name: &str| Party {
        name: Some(name.into()),
        her_id: Some(her_id),
        sub: None,
    };
    let head = NewMsgHead {
        msg_type: Code::new(FUNCTION, "Notat"),
        msg_id: format!("00000000-0000-4000-8000-{index:012}"),
        gen_date: Utc::now(),
        ack: false,
        ref_to_parent: None,
        ref_to_conversation: None,
        sender: party(from, "bench sender"),
        receiver: party(to, "bench receiver"),
        content_description: None,
    };
    let bare = dialog_note(&head, "bench", "").len();
    let padding = "a".repeat(size.saturating_sub(bare));
    Ok(dialog_note(&head, "bench", &padding).into_bytes())
}

/// Send + receive + accept of `args.messages` durable messages of `size`
/// bytes: `concurrency` sender links, `workers` receivers with credit 1 (as
/// the Listener's workers).
async fn raw_throughput(
    transport: &Arc<dyn Transport>,
    queue: &str,
    args: &E2eArgs,
    size: usize,
) -> Result<f64> {
    let total = args.messages;
    let (progress, mut seen) = watch::channel(0usize);
    let progress = Arc::new(progress);
    let mut receivers = Vec::new();
    for _ in 0..args.workers {
        let mut receiver = transport.receiver(queue, 1).await?;
        let progress = progress.clone();
        receivers.push(tokio::spawn(async move {
            loop {
                if *progress.borrow() >= total {
                    break;
                }
                let Some(delivery) = receiver.receive(Duration::from_millis(100)).await? else {
                    continue;
                };
                receiver.accept(&delivery).await?;
                progress.send_modify(|n| *n += 1);
            }
            receiver.close().await?;
            anyhow::Ok(())
        }));
    }
    let body = vec![b'a'; size];
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut senders = Vec::new();
    for _ in 0..args.concurrency {
        let mut sender = transport.sender(queue).await?;
        let (next, body) = (next.clone(), body.clone());
        senders.push(tokio::spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < total {
                let message = Message::new(body.clone());
                match sender.send(message).await? {
                    Outcome::Accepted => {}
                    other => bail!("raw send: the broker answered {other:?}"),
                }
            }
            sender.close().await?;
            anyhow::Ok(())
        }));
    }
    for task in senders {
        task.await??;
    }
    tokio::time::timeout(PHASE_LIMIT, seen.wait_for(|n| *n >= total))
        .await
        .context("raw phase: timed out waiting for the receivers")??;
    let elapsed = started.elapsed();
    for task in receivers {
        task.await??;
    }
    Ok(total as f64 / elapsed.as_secs_f64())
}

/// Counts what the receiving application is handed.
struct Counter(watch::Sender<usize>);

#[async_trait]
impl Handler for Counter {
    async fn handle(&self, _message: &Received) -> Result<(), HandlerError> {
        self.0.send_modify(|n| *n += 1);
        Ok(())
    }
}

#[async_trait]
impl ErrorHandler for Counter {
    async fn handle_error(&self, _report: &ReceivedErrorReport) -> Result<(), HandlerError> {
        Ok(())
    }
}

/// The whole stack: a sending Messenger with `concurrency` sends in flight,
/// a receiving Listener with `workers` workers, both with their own store.
async fn e2e_throughput(
    pki: &DevPki,
    parties: &[DevParty; 2],
    transport: &Arc<dyn Transport>,
    dir: &std::path::Path,
    args: &E2eArgs,
    payload: &(dyn Fn(usize) -> Result<Vec<u8>> + Sync),
) -> Result<f64> {
    let registry_dir = dir.join("registry");
    let registry = FileRegistry::new(&registry_dir);
    // As the gateway reads it (see `cached_file_registry`).
    let cached = cached_file_registry(&registry_dir);
    let messenger = |party: &DevParty| -> Result<Messenger> {
        party.register(&registry, None)?;
        let store = assembly::open_store(&dir.join(format!("{}.db", party.her_id)))?;
        Ok(Parts {
            messenger: pki.messenger_config(party),
            transport: transport.clone(),
            registry: cached.clone(),
            store,
        }
        .assemble())
    };
    let (sender, receiver) = (messenger(&parties[0])?, messenger(&parties[1])?);
    let (progress, mut seen) = watch::channel(0usize);
    let counter = Arc::new(Counter(progress));
    let listener = Listener::start(
        &receiver,
        counter.clone(),
        counter,
        ListenerOptions {
            workers: args.workers,
            error_queue: false,
            sync_queue: false,
            poll: Duration::from_millis(200),
            ..ListenerOptions::default()
        },
    )
    .await
    .context("starting the receiver's Listener")?;
    let to = parties[1].her_id;
    // Warm-up: links attached, caches filled, pages touched.
    let warm_up = (args.messages / 10).clamp(1, 50);
    send_all(&sender, to, 0..warm_up, args.concurrency, payload).await?;
    wait_for(&mut seen, warm_up, "e2e warm-up").await?;
    let started = Instant::now();
    let measured = warm_up..warm_up + args.messages;
    send_all(&sender, to, measured, args.concurrency, payload).await?;
    wait_for(&mut seen, warm_up + args.messages, "e2e phase").await?;
    let elapsed = started.elapsed();
    listener.stop().await?;
    Ok(args.messages as f64 / elapsed.as_secs_f64())
}

/// Sends the messages `indices` with `concurrency` sends in flight.
async fn send_all(
    messenger: &Messenger,
    to: HerId,
    indices: std::ops::Range<usize>,
    concurrency: usize,
    payload: &(dyn Fn(usize) -> Result<Vec<u8>> + Sync),
) -> Result<()> {
    let payloads = indices.map(payload).collect::<Result<Vec<_>>>()?;
    let queue = Arc::new(std::sync::Mutex::new(payloads));
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (messenger, queue) = (messenger.clone(), queue.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let next = queue.lock().expect("not poisoned").pop();
                let Some(payload) = next else { break };
                messenger
                    .send(SendRequest::new(to, FUNCTION, payload))
                    .await?;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(())
}

async fn wait_for(seen: &mut watch::Receiver<usize>, count: usize, phase: &str) -> Result<()> {
    tokio::time::timeout(PHASE_LIMIT, seen.wait_for(|n| *n >= count))
        .await
        .with_context(|| format!("{phase}: timed out waiting for the receiver"))??;
    Ok(())
}

/// protect + unprotect pairs per second with one thread per core, for
/// [`CRYPTO_SECONDS`] of wall time (every core busy, as in the e2e run).
fn crypto_bound(
    sender: &DevParty,
    receiver: &DevParty,
    payload: &[u8],
    cores: usize,
) -> Result<f64> {
    let budget = Duration::from_secs_f64(CRYPTO_SECONDS);
    let pairs = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..cores)
            .map(|_| {
                scope.spawn(|| crypto_pairs(&sender.signing, &receiver.decryption, payload, budget))
            })
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().expect("crypto thread panicked"))
            .sum::<Result<u64>>()
    })?;
    Ok(pairs as f64 / budget.as_secs_f64())
}

fn crypto_pairs(
    signing: &Identity,
    decryption: &Identity,
    payload: &[u8],
    budget: Duration,
) -> Result<u64> {
    let started = Instant::now();
    let mut pairs = 0;
    while started.elapsed() < budget {
        let protected = protect(
            payload,
            signing,
            decryption.certificate(),
            &ProtectOptions::default(),
        )?;
        let clear = unprotect(
            &protected,
            decryption,
            None,
            signing.certificate(),
            &UnprotectOptions::default(),
        )?;
        ensure!(
            clear == payload,
            "the crypto round trip changed the payload"
        );
        pairs += 1;
    }
    Ok(pairs)
}

fn print_report(report: &E2eReport, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string(report)?);
        return Ok(());
    }
    println!(
        "bench e2e: {} messages of {} bytes over the {} transport, {} sends in flight, {} receive workers, {} cores",
        report.messages, report.size, report.transport, report.concurrency, report.workers, report.cores
    );
    println!(
        "  e2e           {:10.1} msgs/s  (sign+encrypt+send+receive+decrypt+verify)",
        report.e2e_per_s
    );
    println!(
        "  raw           {:10.1} msgs/s  (same broker and client, send+receive+accept)",
        report.raw_per_s
    );
    println!(
        "  crypto bound  {:10.1} msgs/s  (protect+unprotect on all cores)",
        report.crypto_per_s
    );
    println!(
        "  ratio         {:10.3}  (e2e / min(raw, crypto); goal >= {})",
        report.ratio, report.goal
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_payload_is_a_msghead_of_the_asked_size_without_a_receipt_request() {
        let (a, b) = (HerId::new(8990001).unwrap(), HerId::new(8990002).unwrap());
        let payload = bench_payload(a, b, 7, 4096).unwrap();
        assert_eq!(payload.len(), 4096);
        let head = helsemelding_wire::msghead::MsgHead::parse(&payload).unwrap();
        assert_eq!(head.function(), FUNCTION);
        assert!(!head.wants_receipt());
        head.check_parties(a, b).unwrap();
        assert_ne!(payload, bench_payload(a, b, 8, 4096).unwrap());
    }

    #[test]
    fn a_password_in_the_broker_url_is_refused() {
        let error = broker_options("amqp://her:secret@127.0.0.1:5672/x").unwrap_err();
        assert!(error.to_string().contains(PASSWORD_ENV), "{error}");
        assert!(!error.to_string().contains("secret"));
        assert!(broker_options("amqp://her@127.0.0.1:5672/x").is_ok());
    }
}
