//! `helsemelding --config F send --to HERID --function MSGFUNC [--sync]
//! [--timeout S] FILE`: sign, encrypt and send one message. Async: prints
//! its message id once the broker accepted it; when the broker cannot be
//! reached within `broker.connect_timeout_ms` or the transfer fails for
//! now, or refuses our user or password, prints the id, says that the
//! message waits in the outbox and why, and exits 75 (EX_TEMPFAIL). Sync:
//! waits for the reply and writes its decrypted payload to stdout.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, Result};
use helsemelding_messaging::SendRequest;
use helsemelding_wire::text::for_display;
use helsemelding_wire::HerId;

use crate::config::{BrokerEndpoint, Config};
use crate::node::Node;

/// Send one message.
#[derive(clap::Args)]
pub struct Args {
    /// The receiver's HER-id.
    #[arg(long)]
    to: u32,
    /// The sending HER-id, one of the configuration's `her_ids` (default:
    /// the first).
    #[arg(long)]
    from: Option<u32>,
    /// The message function (AMQP subject), e.g. DIALOG_INNBYGGER_TEST;
    /// default: the MsgHead's `MsgInfo/Type`.
    #[arg(long)]
    function: Option<String>,
    /// Send to the receiver's sync queue and wait for the reply, which is
    /// written (decrypted and verified) to stdout.
    #[arg(long)]
    sync: bool,
    /// Seconds to wait for a sync reply.
    #[arg(long, default_value_t = 15.0, requires = "sync")]
    timeout: f64,
    /// The XML payload file, sent byte for byte.
    file: PathBuf,
}

/// The exit status of a `send` that left its message in the outbox because
/// the broker could not take it now (EX_TEMPFAIL of sysexits.h), refused
/// our credentials included: whoever called `send` must not send the
/// message again, `listen` or `outbox flush` will.
pub const EXIT_IN_OUTBOX: u8 = 75;

/// Runs `send` with the configuration at `config`: one message sent (or
/// kept in the outbox, exit status [`EXIT_IN_OUTBOX`]), or one sync request
/// answered.
pub fn run(config: Option<&Path>, args: Args) -> Result<ExitCode> {
    let payload = read_payload(&args.file)?;
    let to = HerId::new(args.to).context("--to is not a valid HER-id")?;
    let from = args
        .from
        .map(|from| HerId::new(from).context("--from is not a valid HER-id"))
        .transpose()?;
    let function = message_function(args.function.as_deref(), &payload)?;
    let timeout = seconds("--timeout", args.timeout)?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let config = super::load_config(config)?;
        let node = Node::open_for_one_send(&config).await?;
        let broker = broker_address(&config);
        let messenger = node.messenger();
        let mut request = SendRequest::new(to, function.clone(), payload);
        request.from = from;
        if args.sync {
            // Whatever an earlier run left in the outbox goes first; none
            // of it can stop this request.
            if let Err(error) = messenger.flush_outbox().await {
                tracing::warn!(%error, "earlier messages stay in the outbox");
            }
            let reply = messenger.send_and_wait(request, timeout).await;
            messenger.close().await?;
            let reply = match reply {
                Err(error) => {
                    let error = anyhow::Error::from(error);
                    if let Some(why) = temporary_failure(&error) {
                        eprintln!(
                            "helsemelding: sync request not sent: the broker at {broker} {why}"
                        );
                        return Ok(ExitCode::from(EXIT_IN_OUTBOX));
                    }
                    return Err(error);
                }
                Ok(reply) => reply,
            };
            // The reply's id and function are the peer's text.
            eprintln!(
                "reply {} from {} ({})",
                for_display(&reply.message_id, 100),
                reply.from,
                for_display(&reply.function, 100)
            );
            std::io::stdout().write_all(&reply.payload)?;
            return Ok(ExitCode::SUCCESS);
        }
        // The new message first, then whatever an earlier run left in the
        // outbox: into an outage, a send then waits for the broker once
        // (`broker.connect_timeout_ms`), not once per message.
        let sent = messenger.send(request).await;
        let id = match sent {
            Ok(id) => id,
            Err(helsemelding_messaging::Error::InOutbox {
                message_id, source, ..
            }) => {
                println!("{message_id}");
                eprintln!(
                    "helsemelding: {}",
                    in_outbox_report(&message_id, (*source).into(), &broker)
                );
                return Ok(ExitCode::from(EXIT_IN_OUTBOX));
            }
            Err(error) => return Err(error.into()),
        };
        println!("{id}");
        if let Err(error) = messenger.flush_outbox().await {
            tracing::warn!(%error, "earlier messages stay in the outbox");
        }
        messenger.close().await?;
        Ok(ExitCode::SUCCESS)
    })
}

/// The message function: `--function`, else the MsgHead's `MsgInfo/Type`;
/// never empty (every receiver refuses an empty subject).
fn message_function(given: Option<&str>, payload: &[u8]) -> Result<String> {
    let function = match given {
        Some(given) => given.trim().to_owned(),
        None => helsemelding_wire::msghead::MsgHead::parse(payload)
            .map(|head| head.function().trim().to_owned())
            .map_err(|e| {
                anyhow::anyhow!(
                    "no --function given and the payload is not a MsgHead to take it from ({e})"
                )
            })?,
    };
    if function.is_empty() || function.chars().any(char::is_control) {
        anyhow::bail!("the message function is empty or holds control characters: give --function (e.g. DIALOG_INNBYGGER_TEST)");
    }
    Ok(function)
}

fn read_payload(file: &Path) -> Result<Vec<u8>> {
    if file.is_dir() {
        anyhow::bail!("{}: is a directory, not a payload file", file.display());
    }
    std::fs::read(file).with_context(|| format!("reading {}", file.display()))
}

/// `host:port` of the configured broker (never the user or password).
fn broker_address(config: &Config) -> String {
    match &config.broker.endpoint {
        BrokerEndpoint::Amqp { url, .. } => {
            let port = url
                .port()
                .unwrap_or(if url.scheme() == "amqps" { 5671 } else { 5672 });
            format!("{}:{port}", url.host_str().unwrap_or_default())
        }
        BrokerEndpoint::Local { path } => path.display().to_string(),
    }
}

/// Why the broker could not take the message now, when that is a passing
/// state (unreachable, not answering, link lost) rather than a refusal.
fn temporary_failure(error: &anyhow::Error) -> Option<String> {
    use helsemelding_transport::Error as T;
    let transport = error.chain().find_map(|cause| cause.downcast_ref::<T>())?;
    match transport {
        T::Connect { reason, .. } => Some(format!("is unreachable ({reason})")),
        T::Unavailable { .. } | T::Timeout { .. } => Some(format!("is unreachable ({transport})")),
        T::Send { .. } => Some(format!("did not confirm the transfer ({transport})")),
        _ => None,
    }
}

/// What became of a message that is recorded in the outbox but was not
/// sent, and what will send it.
fn in_outbox_report(message_id: &str, error: anyhow::Error, broker: &str) -> String {
    if let Some(refusal) = refused_credentials(&error) {
        // Not a passing state: the same credentials fail again, so say what
        // to fix; the message is safe all the same and must not be sent
        // again by the caller.
        return format!(
            "{refusal}: {}; the message is recorded in the outbox as {message_id} and will be sent by \
             `listen` or `outbox flush` once the credentials are right",
            super::CHECK_CREDENTIALS
        );
    }
    match temporary_failure(&error) {
        Some(why) => format!(
            "recorded in the outbox as {message_id}; the broker at {broker} {why}; \
             it will be sent by `listen` or `outbox flush`"
        ),
        None => format!(
            "recorded in the outbox as {message_id}; sending it failed ({error:#}); \
             it is tried again by `listen` or `outbox flush` (see `outbox list`)"
        ),
    }
}

/// The broker's refusal of our user or password, if that is what failed.
fn refused_credentials(error: &anyhow::Error) -> Option<&helsemelding_transport::Error> {
    error.chain().find_map(|cause| {
        cause
            .downcast_ref::<helsemelding_transport::Error>()
            .filter(|e| {
                matches!(
                    e,
                    helsemelding_transport::Error::AuthenticationFailed { .. }
                )
            })
    })
}

/// A positive, finite number of seconds from the command line.
pub(crate) fn seconds(flag: &str, value: f64) -> Result<Duration> {
    if !(value.is_finite() && value > 0.0 && value <= 3600.0) {
        anyhow::bail!("{flag} must be between 0 and 3600 seconds, not {value}");
    }
    Ok(Duration::from_secs_f64(value))
}
