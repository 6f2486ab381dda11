//! `helsemelding --config F serve`: the gateway an EHR system runs beside
//! it. For every HER-id of the configuration it runs the receive
//! pipelines (what arrives goes to `<root>/<her-id>/IN`), the outbox pump,
//! the receipt deadlines and the folder drop (`[folder]`: files in
//! `<root>/<her-id>/OUT` are sent and moved to SENT or FAILED), until
//! SIGTERM or SIGINT: then no new work is taken, the hand-overs in hand
//! finish (at most 10 s) and it exits 0. What it was doing when it was
//! killed is taken up again at the next start (see the folder module).

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, Result};
use async_trait::async_trait;
use helsemelding_messaging::Messenger;

use crate::folder::drop_box::{DropBox, Outcome};
use crate::folder::taken::InboxTaken;
use crate::folder::PartyFolders;
use crate::sink::ToDirectory;
use crate::supervisor::{self, Chore};

/// Run the gateway daemon: receive, send from the folder drop, pump the outbox.
#[derive(clap::Args)]
pub struct Args {}

/// Runs `serve` with the configuration at `config` until a stop signal.
pub fn run(config: Option<&Path>, _args: Args) -> Result<ExitCode> {
    let config = super::load_config(config)?;
    let folder = config
        .folder
        .clone()
        .context("serve needs a folder drop: set [folder] root = \"DIR\" in the configuration")?;
    let mut chores: Vec<Box<dyn Chore>> = Vec::new();
    for her_id in &config.her_ids {
        let folders = PartyFolders::new(&folder.root, *her_id);
        let drop_box = DropBox::open(folders, folder.settle, folder.max_bytes)
            .with_context(|| format!("the folder drop of HER-id {her_id}"))?;
        if drop_box.in_work() > 0 {
            eprintln!(
                "HER-id {her_id}: {} file(s) in .work from an earlier run are taken up again",
                drop_box.in_work()
            );
        }
        let taken = InboxTaken::new(PartyFolders::new(&folder.root, *her_id));
        chores.push(Box::new(FolderDrop { drop_box, taken }));
    }
    eprintln!(
        "serving HER-id(s) {} with the folder drop in {}",
        config
            .her_ids
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        folder.root.display()
    );
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let sink = Arc::new(ToDirectory::per_party(&folder.root));
        supervisor::run_with_chores(&config, sink.clone(), sink, || false, chores).await
    })?;
    Ok(ExitCode::SUCCESS)
}

/// One HER-id's folders as a chore of the supervisor: OUT sent, and IN
/// files the EHR took noted as delivered.
struct FolderDrop {
    drop_box: DropBox,
    taken: InboxTaken,
}

#[async_trait]
impl Chore for FolderDrop {
    async fn step(&mut self, messenger: &Messenger) {
        let her_id = self.drop_box.her_id();
        match self.drop_box.pass(messenger).await {
            Ok(outcomes) => {
                for outcome in outcomes {
                    report(her_id, &outcome);
                }
            }
            // The folder itself failed (gone, full, not writable): said,
            // and tried again at the next step; nothing is lost, the files
            // stay where they are.
            Err(error) => eprintln!("HER-id {her_id}: folder drop: {error}"),
        }
        // A store that fails now is said once a look; the next look tries again.
        if let Err(error) = self.taken.look(messenger).await {
            eprintln!("HER-id {her_id}: noting IN files taken: {error}");
        }
    }
}

fn report(her_id: helsemelding_wire::HerId, outcome: &Outcome) {
    let name = |path: &Path| {
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    match outcome {
        Outcome::Sent(path) => eprintln!("HER-id {her_id}: sent {}", name(path)),
        Outcome::Replay(path) => {
            eprintln!(
                "HER-id {her_id}: {} was sent before: not sent again",
                name(path)
            )
        }
        Outcome::Failed(path) => eprintln!(
            "HER-id {her_id}: FAILED {} (see its .error.json)",
            name(path)
        ),
        Outcome::Waiting(why) => tracing::debug!(%her_id, why, "waiting in the outbox"),
        Outcome::Later(why) => tracing::warn!(%her_id, why, "folder drop: tried again later"),
    }
}
