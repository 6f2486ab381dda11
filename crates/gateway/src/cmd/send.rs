//! `helsemelding --config F send --to HERID --function MSGFUNC FILE`: sign,
//! encrypt and send one async message; prints its message id once the
//! broker accepted it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use helsemelding_messaging::SendRequest;
use helsemelding_wire::HerId;

use super::context::Context;

/// Send one async message.
#[derive(clap::Args)]
pub struct Args {
    /// The receiver's HER-id.
    #[arg(long)]
    to: u32,
    /// The message function (AMQP subject), e.g. DIALOG_INNBYGGER_TEST.
    #[arg(long)]
    function: String,
    /// The XML payload file, sent byte for byte.
    file: PathBuf,
}

pub fn run(config: Option<&Path>, args: Args) -> Result<ExitCode> {
    let payload =
        std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let to = HerId::new(args.to).context("--to is not a valid HER-id")?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let context = Context::open(config).await?;
        // Whatever an earlier run left in the outbox goes first.
        context.messenger.flush_outbox().await?;
        let id = context
            .messenger
            .send(SendRequest::new(to, args.function, payload))
            .await?;
        println!("{id}");
        Ok(ExitCode::SUCCESS)
    })
}
