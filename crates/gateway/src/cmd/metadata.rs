//! `helsemelding metadata FILE [--json]`: the payload metadata a sender
//! copies into application properties (X-MessageInfo-*, X-Sender-*,
//! X-Receiver-*, X-AttachmentInfo-*), read from a MsgHead or AppRec file.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use helsemelding_wire::metadata;

/// Show the payload metadata of a message file.
#[derive(clap::Args)]
pub struct Args {
    /// The payload (MsgHead or AppRec XML, unprotected).
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// Print a flat JSON object instead of `key: value` lines.
    #[arg(long)]
    json: bool,
}

/// Runs `metadata`: prints the payload metadata of a MsgHead or AppRec file.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let payload =
        std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let metadata = metadata::extract(&payload)
        .with_context(|| format!("reading metadata of {}", args.file.display()))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&metadata)?);
    } else {
        for (key, value) in &metadata {
            println!("{key}: {value}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
