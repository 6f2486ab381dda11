//! `helsemelding --config F serve`: the gateway an EHR system runs beside
//! it. For every HER-id of the configuration it runs the receive
//! pipelines (what arrives goes to `<root>/<her-id>/IN`), the outbox pump,
//! the receipt deadlines, the folder drop (`[folder]`: files in
//! `<root>/<her-id>/OUT` are sent and moved to SENT or FAILED) and, with
//! `[http]`, the local HTTP API (see the http module), until
//! SIGTERM or SIGINT: then no new work is taken, the hand-overs in hand
//! finish (at most 10 s) and it exits 0. What it was doing when it was
//! killed is taken up again at the next start (see the folder module).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use async_trait::async_trait;
use helsemelding_messaging::{Messenger, ReceiveHealth};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{Folder, Http, SentAfter};
use crate::folder::apprec::{Answered, AppRecDrop};
use crate::folder::drop_box::{DropBox, Outcome};
use crate::folder::taken::InboxTaken;
use crate::folder::PartyFolders;
use crate::http::{self, tls, Api, Tokens};
use crate::sink::ToDirectory;
use crate::supervisor::{self, Chore, Daemon, Service};

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
        let mut drop_box = DropBox::open(folders, folder.settle, folder.max_bytes)
            .with_context(|| format!("the folder drop of HER-id {her_id}"))?;
        if folder.sent_after == SentAfter::AppRec {
            drop_box = drop_box.sent_on_apprec();
        }
        if drop_box.in_work() > 0 {
            eprintln!(
                "HER-id {her_id}: {} file(s) in .work from an earlier run are taken up again",
                drop_box.in_work()
            );
        }
        let taken = InboxTaken::new(PartyFolders::new(&folder.root, *her_id));
        let answers = AppRecDrop::new(
            PartyFolders::new(&folder.root, *her_id),
            folder.settle,
            Duration::from_secs(u64::from(config.receipts.deadline_hours) * 3600),
        );
        chores.push(Box::new(FolderDrop {
            drop_box,
            taken,
            answers,
        }));
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
    let mut services: Vec<Box<dyn Service>> = Vec::new();
    if let Some(http) = &config.http {
        services.push(Box::new(HttpService::prepare(http, &folder)?));
    }
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let mut sink = ToDirectory::per_party(&folder.root);
        if !config.receipts.automatic {
            sink = sink.keeping_originals();
        }
        let sink = Arc::new(sink);
        let daemon = Daemon { chores, services };
        supervisor::run_with_chores(&config, sink.clone(), sink, || false, daemon).await
    })?;
    Ok(ExitCode::SUCCESS)
}

/// The HTTP API as a service of the supervisor: bound, its tokens read
/// and its TLS key loaded before anything else starts, so that a port in
/// use or a token file others can read stops `serve` at once.
struct HttpService {
    listener: std::net::TcpListener,
    tokens: Tokens,
    tls: Option<tls::Acceptor>,
    folder_root: PathBuf,
    max_bytes: usize,
}

impl HttpService {
    fn prepare(http: &Http, folder: &Folder) -> Result<HttpService> {
        let tokens = Tokens::load(&http.token_file)?;
        let tls = http
            .tls
            .as_ref()
            .map(|tls| tls::Acceptor::from_pem(&tls.cert, &tls.key))
            .transpose()?;
        let listener = std::net::TcpListener::bind(http.listen).with_context(|| {
            format!(
                "http.listen {}: cannot listen there (another process has the port?)",
                http.listen
            )
        })?;
        listener.set_nonblocking(true)?;
        eprintln!(
            "HTTP API on {}://{}",
            if tls.is_some() { "https" } else { "http" },
            listener.local_addr()?
        );
        Ok(HttpService {
            listener,
            tokens,
            tls,
            folder_root: folder.root.clone(),
            max_bytes: folder.max_bytes,
        })
    }
}

impl Service for HttpService {
    fn start(
        self: Box<Self>,
        messenger: &Messenger,
        receiving: ReceiveHealth,
        mut stopping: watch::Receiver<bool>,
    ) -> JoinHandle<()> {
        let api = Api::new(
            messenger.clone(),
            self.tokens,
            self.folder_root,
            self.max_bytes,
            Some(receiving),
        );
        let router = http::router(api);
        let (listener, tls) = (self.listener, self.tls);
        tokio::spawn(async move {
            let listener = match tokio::net::TcpListener::from_std(listener) {
                Ok(listener) => listener,
                Err(error) => {
                    eprintln!("HTTP API: {error}");
                    return;
                }
            };
            let stop = async move {
                let _ = stopping.wait_for(|stop| *stop).await;
            };
            if let Err(error) = http::serve(listener, router, tls, stop).await {
                eprintln!("HTTP API stopped: {error}");
            }
        })
    }
}

/// One HER-id's folders as a chore of the supervisor: OUT sent, IN files
/// the EHR took noted as delivered, its answers in APPREC sent.
struct FolderDrop {
    drop_box: DropBox,
    taken: InboxTaken,
    answers: AppRecDrop,
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
        match self.answers.pass(messenger).await {
            Ok(outcomes) => {
                for outcome in outcomes {
                    report_answer(her_id, &outcome);
                }
            }
            Err(error) => eprintln!("HER-id {her_id}: APPREC folder: {error}"),
        }
        match self.answers.flag_overdue(messenger).await {
            Ok(0) => {}
            Ok(flagged) => eprintln!(
                "HER-id {her_id}: {flagged} incoming message(s) wait past the deadline for our AppRec"
            ),
            Err(error) => eprintln!("HER-id {her_id}: checking owed AppRecs: {error}"),
        }
    }
}

fn report_answer(her_id: helsemelding_wire::HerId, outcome: &Answered) {
    let name = |path: &Path| {
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    match outcome {
        Answered::Sent(path) => eprintln!("HER-id {her_id}: AppRec sent for {}", name(path)),
        Answered::Failed(path) => eprintln!(
            "HER-id {her_id}: AppRec FAILED {} (see its .error.json)",
            name(path)
        ),
        Answered::Later(why) => tracing::warn!(%her_id, why, "APPREC folder: tried again later"),
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
