//! `helsemelding --config F listen [--out-dir D] [--count N] [--idle-exit S]`:
//! runs the receive pipelines and writes each accepted message as
//! `D/<message-id>.xml` (payload bytes exactly) and `D/<message-id>.json`
//! (who, what, when), atomically and before the message is accepted. A
//! redelivered message whose `.xml` file is there with the same bytes is
//! not written again; with other bytes the file is kept and the message
//! waits (the error names the file). The writer is [`crate::sink`].
//!
//! SIGTERM and SIGINT stop it gracefully: no new deliveries are taken, the
//! hand-overs in hand finish (at most 10 s, or until a second signal),
//! held-back deliveries go back to the broker, and it exits 0. That, the
//! outbox pump and the overdue receipts are the [`crate::supervisor`]'s.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};

use crate::sink::ToDirectory;
use crate::supervisor;

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
    /// Concurrent workers per queue [default: `[receive] workers`, 4].
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=256))]
    workers: Option<u16>,
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

/// Runs `listen` with the configuration at `config` until `--count`,
/// `--idle-exit` or a stop signal ends it.
pub fn run(config: Option<&Path>, args: Args) -> Result<ExitCode> {
    prepare_out_dir(&args.out_dir)?;
    let mut config = super::load_config(config)?;
    if let Some(workers) = args.workers {
        config.receive.workers = usize::from(workers);
    }
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let sink = Arc::new(ToDirectory::new(args.out_dir.clone()));
        let finished = || {
            if args.count.is_some_and(|n| sink.accepted() >= n) {
                return true;
            }
            let idle = sink.idle();
            args.idle_exit
                .is_some_and(|s| idle >= Duration::from_secs(s))
        };
        supervisor::run(&config, sink.clone(), sink.clone(), finished).await?;
        Ok(ExitCode::SUCCESS)
    })
}
