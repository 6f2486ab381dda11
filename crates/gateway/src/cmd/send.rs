//! `helsemelding --config F send --to HERID --function MSGFUNC [--sync]
//! [--timeout S] FILE`: sign, encrypt and send one message. Async: prints
//! its message id once the broker accepted it. Sync: waits for the reply
//! and writes its decrypted payload to stdout.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, Result};
use helsemelding_messaging::SendRequest;
use helsemelding_wire::HerId;

use super::context::Context;

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

pub fn run(config: Option<&Path>, args: Args) -> Result<ExitCode> {
    let payload =
        std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let to = HerId::new(args.to).context("--to is not a valid HER-id")?;
    let from = args
        .from
        .map(|from| HerId::new(from).context("--from is not a valid HER-id"))
        .transpose()?;
    let function = message_function(args.function.as_deref(), &payload)?;
    let timeout = seconds("--timeout", args.timeout)?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let context = Context::open(config).await?;
        // Whatever an earlier run left in the outbox goes first.
        context.messenger.flush_outbox().await?;
        let mut request = SendRequest::new(to, function, payload);
        request.from = from;
        if !args.sync {
            let id = context.messenger.send(request).await?;
            println!("{id}");
            return Ok(ExitCode::SUCCESS);
        }
        let reply = context.messenger.send_and_wait(request, timeout).await;
        context.messenger.close().await?;
        let reply = reply?;
        eprintln!(
            "reply {} from {} ({})",
            reply.message_id, reply.from, reply.function
        );
        std::io::stdout().write_all(&reply.payload)?;
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

/// A positive, finite number of seconds from the command line.
pub fn seconds(flag: &str, value: f64) -> Result<Duration> {
    if !(value.is_finite() && value > 0.0 && value <= 3600.0) {
        anyhow::bail!("{flag} must be between 0 and 3600 seconds, not {value}");
    }
    Ok(Duration::from_secs_f64(value))
}
