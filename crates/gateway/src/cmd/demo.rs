//! `helsemelding demo [--broker URL] [--her-ids M,D,G,A] [--keep DIR] [--json]`:
//! the whole system at work on embedded defaults, in a few seconds, with
//! nothing to configure. It makes a throw-away PKI ([`crate::devpki`]), a
//! file registry, one SQLite store per party and the embedded local queue
//! (or uses a RabbitMQ broker), starts the receive pipelines of three
//! parties and lets them exchange messages, printing each event as a person
//! would want to read it (time, who → whom, what, outcome):
//!
//! 1. a municipality sends IPLOS-style statistics to Helsedirektoratet,
//!    whose pipeline answers with an application receipt (AppRec) that the
//!    municipality matches to the message it sent;
//! 2. it sends a dialogue note (Dialogmelding) to a GP office: the same;
//! 3. it runs communication tests against the built-in responders (sync
//!    to Helsedirektoratet, async to the GP office);
//! 4. an attacker (a registered party with valid certificates of its own)
//!    sends a message claiming to come from the municipality: the receiver
//!    refuses it and the municipality's error handler gets the
//!    `abuse:spoofing-attack` report;
//! 5. each party's hash-chained audit log is verified.
//!
//! Exits 0 only when every step had its expected outcome. Every wait is
//! bounded (`--step-timeout`). Payloads and keys are never printed.

mod inbox;
pub(crate) mod payloads;
mod report;
mod through_serve;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, ensure, Context as _, Result};
use chrono::{DateTime, Utc};
use helsemelding_messaging::{
    convert, CommtestMode, Listener, ListenerOptions, Messenger, SendRequest,
};
use helsemelding_protect::{protect, ProtectOptions};
use helsemelding_registry::FileRegistry;
use helsemelding_store::audit::{AuditFilter, AuditKind, AuditRecord};
use helsemelding_store::Store;
use helsemelding_transport::{Outcome, Transport};
use helsemelding_transport_amqp::AmqpOptions;
use helsemelding_wire::apprec::{AppRec, Status};
use helsemelding_wire::envelope::{Outgoing, Routing};
use helsemelding_wire::error_report::ErrorCondition;
use helsemelding_wire::queue::{queue_name, QueueKind};
use helsemelding_wire::{metadata, msghead, HerId};
use uuid::Uuid;

use crate::assembly::{self, Parts};
use crate::devpki::{DevParty, DevPki};
use inbox::Inbox;
use payloads::{party, DIALOGUE_FUNCTION, STATISTICS_FUNCTION};
use report::{short_id, Actor, Line, Reporter};

/// The broker password, as everywhere else: never a command-line argument.
const BROKER_PASSWORD_ENV: &str = "HELSEMELDING_BROKER_PASSWORD";

/// The cast's HER-ids and names. 91462 is the municipality of the issue;
/// the others are made up for the demo (not their entries in NHN's
/// registry).
const MUNICIPALITY: (u32, &str) = (91462, "Eksempel kommune");
const DIRECTORATE: (u32, &str) = (4210, "Helsedirektoratet");
const GP_OFFICE: (u32, &str) = (95950, "Legekontoret");
const ATTACKER: (u32, &str) = (66666, "Mallory AS");

/// NHN's limit for a communication test round trip (activation checklist).
const COMMTEST_LIMIT: Duration = Duration::from_secs(5);

/// Run the demo.
#[derive(clap::Args)]
pub struct Args {
    /// Run through this AMQP 1.0 broker (RabbitMQ dialect) instead of the
    /// embedded local queue, e.g. amqp://user@127.0.0.1:5672/NHNTestServiceBus
    /// (the path is the exchange). The password comes from
    /// HELSEMELDING_BROKER_PASSWORD. The queues <her-id>_async, _sync,
    /// _error and _syncreply of the municipality, the directorate and the GP
    /// office must exist on the broker, bound to the exchange.
    // The help text, not HTML: `<her-id>` is no tag.
    #[allow(rustdoc::invalid_html_tags)]
    #[arg(long, value_name = "URL")]
    broker: Option<String>,
    /// An extra CA certificate (PEM) to trust for an amqps:// broker.
    #[arg(long, value_name = "FILE", requires = "broker")]
    broker_ca: Option<PathBuf>,
    /// HER-ids of the municipality, Helsedirektoratet, the GP office and
    /// the attacker, instead of 91462,4210,95950,66666 (e.g. to match the
    /// queues that exist on a shared broker).
    #[arg(long, value_name = "M,D,G,A", value_delimiter = ',')]
    her_ids: Option<Vec<u32>>,
    /// Keep the PKI, registry, stores and local queue in DIR (new or empty)
    /// for inspection, instead of a temporary directory removed at the end.
    #[arg(long, value_name = "DIR")]
    keep: Option<PathBuf>,
    /// Print the events as JSON lines (one object per event, then a summary).
    #[arg(long)]
    json: bool,
    /// Run it through two `helsemelding serve` processes, the way an EHR
    /// uses the gateway: the folders and the HTTP API (the local queue only).
    #[arg(long, conflicts_with_all = ["broker", "her_ids"])]
    serve: bool,
    /// How long to wait for each expected event.
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    step_timeout: u64,
}

/// Runs the demo; the exit status says whether every step had its
/// expected outcome.
pub fn run(args: Args) -> Result<ExitCode> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(run_demo(args))
}

async fn run_demo(args: Args) -> Result<ExitCode> {
    let cast = Cast::new(args.her_ids.as_deref())?;
    let (dir, temporary) = work_dir(args.keep.as_deref())?;
    let mut reporter = Reporter::new(args.json);
    if args.serve {
        let within = Duration::from_secs(args.step_timeout);
        let ok = through_serve::run(&dir, &mut reporter, within).await?;
        drop(temporary);
        return Ok(if ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    let world = World::set_up(&args, &cast, &dir, &reporter)
        .await
        .context("setting up the demo")?;

    reporter.note(
        "\n1. The municipality reports statistics to Helsedirektoratet \
         (only Helsedirektoratet can read it; the signature proves who sent it; the AppRec proves it was taken).",
    );
    world.send_statistics(&mut reporter).await;
    reporter.note("\n2. The municipality sends a dialogue note to the GP office.");
    world.send_dialogue(&mut reporter).await;
    reporter.note(
        "\n3. Communication tests: is the other side there and answering (NHN requires under 5 s)?",
    );
    world.communication_tests(&mut reporter).await;
    reporter.note(&format!(
        "\n4. {} sends a message in the municipality's name, signed with its own valid certificate: \
         the receiver must refuse it and warn the municipality.",
        world.attacker_actor.name
    ));
    world.spoof(&mut reporter).await;
    world.report_unexpected(&mut reporter);

    let stores = world.shut_down().await;
    reporter
        .note("\n5. Every party keeps a hash-chained audit log (who, what, when; never content): is it intact?");
    for (actor, store) in &stores {
        audit_line(&mut reporter, actor, &**store).await;
    }
    let ok = reporter.finish();
    match temporary {
        Some(temp) => drop(temp),
        None => reporter.note(&format!(
            "The PKI, registry, stores and queues are kept in {}.",
            dir.display()
        )),
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Who plays which part.
struct Cast {
    municipality: Actor,
    directorate: Actor,
    gp: Actor,
    attacker: Actor,
}

impl Cast {
    fn new(her_ids: Option<&[u32]>) -> Result<Cast> {
        let defaults = [MUNICIPALITY.0, DIRECTORATE.0, GP_OFFICE.0, ATTACKER.0];
        let ids = her_ids.unwrap_or(&defaults);
        ensure!(ids.len() == 4, "--her-ids takes four HER-ids");
        for (i, id) in ids.iter().enumerate() {
            ensure!(
                HerId::new(*id).is_some(),
                "--her-ids: {id} is not a valid HER-id"
            );
            ensure!(
                !ids[..i].contains(id),
                "--her-ids: {id} is given twice; every party needs its own"
            );
        }
        let actor = |her_id: u32, name: &str| Actor {
            her_id,
            name: name.to_owned(),
        };
        Ok(Cast {
            municipality: actor(ids[0], MUNICIPALITY.1),
            directorate: actor(ids[1], DIRECTORATE.1),
            gp: actor(ids[2], GP_OFFICE.1),
            attacker: actor(ids[3], ATTACKER.1),
        })
    }
}

/// The working directory and, when it is temporary, the guard that removes it.
fn work_dir(keep: Option<&Path>) -> Result<(PathBuf, Option<tempfile::TempDir>)> {
    let Some(dir) = keep else {
        let temp = tempfile::Builder::new()
            .prefix("helsemelding-demo-")
            .tempdir()
            .context("creating a temporary directory")?;
        return Ok((temp.path().to_path_buf(), Some(temp)));
    };
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    // Stores and queues left by an earlier run would mix into this one.
    let empty = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .next()
        .is_none();
    ensure!(
        empty,
        "--keep {}: the directory is not empty",
        dir.display()
    );
    Ok((dir.to_path_buf(), None))
}

/// A party that sends and receives: its identities, messenger, store and
/// running receive pipelines.
struct Participant {
    actor: Actor,
    party: DevParty,
    messenger: Messenger,
    inbox: Arc<Inbox>,
    listener: Listener,
}

impl Participant {
    fn her_id(&self) -> HerId {
        self.party.her_id
    }
}

struct World {
    municipality: Participant,
    directorate: Participant,
    gp: Participant,
    attacker: DevParty,
    attacker_actor: Actor,
    transport: Arc<dyn Transport>,
    within: Duration,
}

/// A business document the municipality sends in the demo.
struct Document {
    /// The step's name in `--json` output.
    step: &'static str,
    /// What it is, in words.
    what: &'static str,
    /// Its message function.
    function: &'static str,
    /// Writes it: (MsgId, time, sender, receiver) → MsgHead XML.
    write: fn(&str, DateTime<Utc>, msghead::Party, msghead::Party) -> String,
}

impl World {
    async fn set_up(args: &Args, cast: &Cast, dir: &Path, reporter: &Reporter) -> Result<World> {
        let pki = DevPki::new("helsemelding demo CA")?;
        let registry = Arc::new(FileRegistry::new(dir.join("registry")));
        let [municipality, directorate, gp, attacker] =
            issue_and_register(&pki, cast, &registry, &dir.join("pki"))?;
        let transport = open_transport(args, dir).await?;
        describe_set_up(reporter, args, cast, dir);
        if args.broker.is_some() {
            check_queues(&*transport, &[&municipality, &directorate, &gp]).await?;
        }
        let start = |actor: &Actor, party: DevParty| {
            Self::participant(actor.clone(), party, &pki, &transport, &registry, dir)
        };
        Ok(World {
            municipality: start(&cast.municipality, municipality).await?,
            directorate: start(&cast.directorate, directorate).await?,
            gp: start(&cast.gp, gp).await?,
            attacker,
            attacker_actor: cast.attacker.clone(),
            transport,
            within: Duration::from_secs(args.step_timeout),
        })
    }

    async fn participant(
        actor: Actor,
        party: DevParty,
        pki: &DevPki,
        transport: &Arc<dyn Transport>,
        registry: &Arc<FileRegistry>,
        dir: &Path,
    ) -> Result<Participant> {
        let store = assembly::open_store(&dir.join(format!("{}.sqlite", party.her_id)))?;
        let messenger = Parts {
            messenger: pki.messenger_config(&party),
            transport: transport.clone(),
            registry: registry.clone(),
            store,
        }
        .assemble();
        let inbox = Arc::new(Inbox::default());
        let listener = Listener::start(
            &messenger,
            inbox.clone(),
            inbox.clone(),
            ListenerOptions {
                workers: 1,
                error_queue: true,
                sync_queue: true,
                poll: Duration::from_millis(200),
                ..ListenerOptions::default()
            },
        )
        .await
        .with_context(|| format!("starting the receive pipelines of {actor}"))?;
        Ok(Participant {
            actor,
            party,
            messenger,
            inbox,
            listener,
        })
    }

    async fn send_statistics(&self, reporter: &mut Reporter) {
        let statistics = Document {
            step: "statistics",
            what: "IPLOS statistics",
            function: STATISTICS_FUNCTION,
            write: payloads::statistics_report,
        };
        self.send_document(reporter, &self.directorate, &statistics)
            .await;
    }

    async fn send_dialogue(&self, reporter: &mut Reporter) {
        let note = Document {
            step: "dialogue",
            what: "dialogue note",
            function: DIALOGUE_FUNCTION,
            write: payloads::dialogue_note,
        };
        self.send_document(reporter, &self.gp, &note).await;
    }

    /// The municipality sends `document` to `to`: sent, delivered byte for
    /// byte, answered by an AppRec matched in the municipality's store.
    async fn send_document(&self, reporter: &mut Reporter, to: &Participant, document: &Document) {
        let from = &self.municipality;
        let msg_id = Uuid::new_v4().to_string();
        let payload = (document.write)(
            &msg_id,
            Utc::now(),
            party(from.her_id(), &from.actor.name),
            party(to.her_id(), &to.actor.name),
        );
        let (step, what) = (document.step, document.what);
        let sent = self
            .send(reporter, step, from, to, what, document.function, &payload)
            .await;
        if let Some(id) = sent {
            self.expect_delivery(reporter, step, from, to, what, &id, &payload)
                .await;
            self.expect_receipt(reporter, step, from, to, what, &msg_id)
                .await;
        }
    }

    /// Sends through the sender's messenger; the message-id when the queue accepted it.
    #[allow(clippy::too_many_arguments)]
    async fn send(
        &self,
        reporter: &mut Reporter,
        step: &str,
        from: &Participant,
        to: &Participant,
        what: &str,
        function: &str,
        payload: &str,
    ) -> Option<String> {
        let request = SendRequest::new(to.her_id(), function, payload.as_bytes());
        let at = Utc::now();
        let result = from.messenger.send(request).await;
        let (ok, outcome, id) = match result {
            Ok(id) => (
                true,
                format!(
                    "sent: signed by {}, encrypted for {}, accepted by the queue",
                    from.actor.her_id, to.actor.her_id
                ),
                Some(id),
            ),
            Err(error) => (false, format!("not sent: {error:#}"), None),
        };
        reporter.line(Line {
            step: format!("{step}.sent"),
            at,
            from: from.actor.clone(),
            to: Some(to.actor.clone()),
            what: describe(what, id.as_deref()),
            outcome,
            ok,
            message_id: id.clone(),
        });
        id
    }

    /// Waits for the receiver's application to be handed message `id`.
    #[allow(clippy::too_many_arguments)]
    async fn expect_delivery(
        &self,
        reporter: &mut Reporter,
        step: &str,
        from: &Participant,
        to: &Participant,
        what: &str,
        id: &str,
        payload: &str,
    ) {
        let received = to.inbox.message(id, self.within).await;
        let (at, ok, outcome) = match received {
            Some(message) if message.from == from.her_id() && message.payload == payload.as_bytes() => (
                message.received_at,
                true,
                format!(
                    "delivered: decrypted, signature checked against {}'s registered certificate, handed to the application byte for byte",
                    from.actor.her_id
                ),
            ),
            Some(message) => (
                message.received_at,
                false,
                format!(
                    "handed over, but not as sent (from {}, {} payload bytes)",
                    message.from,
                    message.payload.len()
                ),
            ),
            None => (
                Utc::now(),
                false,
                format!("not handed to the application within {} s", self.within.as_secs()),
            ),
        };
        reporter.line(Line {
            step: format!("{step}.delivered"),
            at,
            from: from.actor.clone(),
            to: Some(to.actor.clone()),
            what: describe(what, Some(id)),
            outcome,
            ok,
            message_id: Some(id.to_owned()),
        });
    }

    /// Waits for the AppRec answering MsgHead `msg_id` and checks that the
    /// sender's receipts store matched it.
    async fn expect_receipt(
        &self,
        reporter: &mut Reporter,
        step: &str,
        from: &Participant,
        to: &Participant,
        what: &str,
        msg_id: &str,
    ) {
        let arrived = from
            .inbox
            .wait_for(self.within, |arrived| {
                arrived.messages.iter().find_map(|message| {
                    let apprec = AppRec::parse(&message.payload).ok()?;
                    (apprec.original.id == msg_id).then(|| (message.clone(), apprec))
                })
            })
            .await;
        let Some((message, apprec)) = arrived else {
            reporter.line(Line {
                step: format!("{step}.receipt"),
                at: Utc::now(),
                from: to.actor.clone(),
                to: Some(from.actor.clone()),
                what: "AppRec".into(),
                outcome: format!(
                    "no AppRec for the {what} within {} s",
                    self.within.as_secs()
                ),
                ok: false,
                message_id: None,
            });
            return;
        };
        let tracked = from.messenger.store().receipts().get(msg_id).await;
        let matched = matches!(
            &tracked,
            Ok(Some(record)) if record.received.as_ref().is_some_and(|r| r.status == Status::Ok.code())
        );
        let status = apprec.status;
        reporter.line(Line {
            step: format!("{step}.receipt"),
            at: message.received_at,
            from: to.actor.clone(),
            to: Some(from.actor.clone()),
            what: describe("AppRec", Some(&message.message_id)),
            outcome: match (status, matched) {
                (Status::Ok, true) => format!(
                    "status OK for the {what}: the receiver's application took it; \
                     matched in {}'s receipts store",
                    from.actor.her_id
                ),
                (Status::Ok, false) => {
                    format!("status OK for the {what}, but not matched in the receipts store")
                }
                (other, _) => format!(
                    "status {} ({}) for the {what}",
                    other.code(),
                    other.display_name()
                ),
            },
            ok: status == Status::Ok && matched && message.from == to.her_id(),
            message_id: Some(message.message_id.clone()),
        });
    }

    /// Communication tests from the municipality: sync to the directorate,
    /// async to the GP office, each answered by the pipelines' responder.
    async fn communication_tests(&self, reporter: &mut Reporter) {
        let from = &self.municipality;
        for (to, mode) in [
            (&self.directorate, CommtestMode::Sync),
            (&self.gp, CommtestMode::Async),
        ] {
            let at = Utc::now();
            let result = from
                .messenger
                .communication_test(to.her_id(), mode, self.within)
                .await;
            let (ok, outcome, message_id) = match result {
                Ok(answer) => (
                    answer.round_trip < COMMTEST_LIMIT,
                    format!(
                        "answered in {} ms by {}'s responder (limit {} s)",
                        answer.round_trip.as_millis(),
                        to.actor.her_id,
                        COMMTEST_LIMIT.as_secs()
                    ),
                    Some(answer.response_message_id),
                ),
                Err(error) => (false, format!("not answered: {error}"), None),
            };
            reporter.line(Line {
                step: format!("commtest.{}", mode.as_str()),
                at,
                from: from.actor.clone(),
                to: Some(to.actor.clone()),
                what: format!("communication test ({})", mode.as_str()),
                outcome,
                ok,
                message_id,
            });
        }
    }

    /// The attacker puts a message on the directorate's queue that claims
    /// to come from the municipality (header and MsgHead alike) but is
    /// signed with the attacker's own, valid certificate.
    async fn spoof(&self, reporter: &mut Reporter) {
        let (victim, target) = (&self.municipality, &self.directorate);
        let message_id = Uuid::new_v4().hyphenated().to_string();
        let sent = self.put_forged(victim, target, &message_id).await;
        let what = "forged statistics";
        reporter.line(Line {
            step: "spoof.sent".into(),
            at: Utc::now(),
            from: self.attacker_actor.clone(),
            to: Some(target.actor.clone()),
            what: describe(what, Some(&message_id)),
            ok: sent.is_ok(),
            outcome: match &sent {
                Ok(()) => format!(
                    "on the queue: fromHerId and MsgHead say {}, the signature is {}'s",
                    victim.actor.her_id, self.attacker_actor.her_id
                ),
                Err(error) => format!("could not be put on the queue: {error:#}"),
            },
            message_id: Some(message_id.clone()),
        });
        if sent.is_err() {
            return;
        }
        let arrived = victim.inbox.report_about(&message_id, self.within).await;
        let handed_over = target
            .inbox
            .snapshot()
            .messages
            .iter()
            .any(|m| m.message_id == message_id);
        let Some(arrived) = arrived else {
            reporter.line(Line {
                step: "spoof.refused".into(),
                at: Utc::now(),
                from: target.actor.clone(),
                to: Some(victim.actor.clone()),
                what: describe("error report", Some(&message_id)),
                outcome: format!(
                    "no error report reached {}'s error queue within {} s{}",
                    victim.actor.her_id,
                    self.within.as_secs(),
                    if handed_over {
                        "; the forged message was handed over"
                    } else {
                        ""
                    }
                ),
                ok: false,
                message_id: Some(message_id),
            });
            return;
        };
        let report = &arrived.report;
        let condition = report.condition_text.as_deref().unwrap_or("no condition");
        let is_spoofing = report.condition == Some(ErrorCondition::SpoofingAttack);
        // The receiver's own record of the refusal (written as it settles).
        let refusal = audit_event(
            &**target.messenger.store(),
            &message_id,
            AuditKind::ErrorReported,
            self.within,
        )
        .await;
        let recorded = refusal
            .as_ref()
            .is_some_and(|r| r.event.outcome == ErrorCondition::SpoofingAttack.as_str());
        reporter.line(Line {
            step: "spoof.refused".into(),
            at: refusal.as_ref().map_or(arrived.at, |r| r.at),
            from: target.actor.clone(),
            to: Some(victim.actor.clone()),
            what: describe("forged statistics", Some(&message_id)),
            outcome: if handed_over {
                format!("handed to the application although refused with {condition}")
            } else if !recorded {
                format!("reported {condition}, but the refusal is not in the audit log")
            } else {
                format!(
                    "refused: {condition}, not handed to the application; error report sent to {}",
                    queue_name(victim.her_id(), QueueKind::Error)
                )
            },
            ok: is_spoofing && recorded && !handed_over && report.from == Some(target.her_id()),
            message_id: Some(message_id.clone()),
        });
        reporter.line(Line {
            step: "spoof.reported".into(),
            at: arrived.at,
            from: victim.actor.clone(),
            to: None,
            what: format!("error report from {}", target.actor.her_id),
            outcome: format!(
                "error handler: {condition} about message {} (\"{}\")",
                short_id(&message_id),
                report.description.as_deref().unwrap_or("no description"),
            ),
            ok: is_spoofing,
            message_id: report.message_id.clone(),
        });
    }

    /// Builds the forged message as a peer would put it on the wire and
    /// sends it straight to the target's async queue.
    async fn put_forged(
        &self,
        victim: &Participant,
        target: &Participant,
        message_id: &str,
    ) -> Result<()> {
        let payload = payloads::statistics_report(
            &Uuid::new_v4().to_string(),
            Utc::now(),
            party(victim.her_id(), &victim.actor.name),
            party(target.her_id(), &target.actor.name),
        );
        let body = protect(
            payload.as_bytes(),
            &self.attacker.signing,
            target.party.decryption.certificate(),
            &ProtectOptions::default(),
        )?;
        let queue = queue_name(target.her_id(), QueueKind::Async);
        let envelope = Outgoing {
            message_id: message_id.to_owned(),
            from: victim.her_id(),
            to: target.her_id(),
            to_queue: queue.clone(),
            function: STATISTICS_FUNCTION.into(),
            routing: Routing::Async {
                reply_to: queue_name(victim.her_id(), QueueKind::Async),
                ttl: None,
            },
            protected: true,
            cpa_id: None,
            sent_at: Utc::now(),
            extra: metadata::extract(payload.as_bytes())?.into_iter().collect(),
        }
        .into_envelope();
        let mut sender = self.transport.sender(&queue).await?;
        let outcome = sender.send(convert::to_message(&envelope, body)).await?;
        sender.close().await?;
        match outcome {
            Outcome::Accepted => Ok(()),
            other => bail!("the broker answered {other:?}"),
        }
    }

    /// Error reports nobody expected (about the honest messages) fail the demo.
    fn report_unexpected(&self, reporter: &mut Reporter) {
        for participant in [&self.municipality, &self.directorate, &self.gp] {
            for arrived in participant.inbox.snapshot().reports {
                let report = &arrived.report;
                if report.condition == Some(ErrorCondition::SpoofingAttack) {
                    continue;
                }
                reporter.line(Line {
                    step: "unexpected.error-report".into(),
                    at: arrived.at,
                    from: participant.actor.clone(),
                    to: None,
                    what: format!(
                        "error report from {}",
                        report.from.map_or("?".into(), |h| h.to_string())
                    ),
                    outcome: format!(
                        "{} about message {}",
                        report.condition_text.as_deref().unwrap_or("no condition"),
                        report.original_message_id.as_deref().unwrap_or("?")
                    ),
                    ok: false,
                    message_id: report.message_id.clone(),
                });
            }
        }
    }

    /// Stops the pipelines (each settles its current delivery first) and
    /// closes the transport; hands back the stores for the audit check.
    async fn shut_down(self) -> Vec<(Actor, Arc<dyn Store>)> {
        let mut stores = Vec::new();
        for participant in [self.municipality, self.directorate, self.gp] {
            if let Err(error) = participant.listener.stop().await {
                tracing::warn!(%error, her_id = participant.actor.her_id, "stopping the listener");
            }
            if let Err(error) = participant.messenger.close().await {
                tracing::warn!(%error, her_id = participant.actor.her_id, "stopping the reply consumer");
            }
            stores.push((participant.actor, participant.messenger.store().clone()));
        }
        if let Err(error) = self.transport.close().await {
            tracing::warn!(%error, "closing the transport");
        }
        stores
    }
}

/// Issues every party's certificates, registers the parties and writes
/// the PKI's public parts and the parties' files into `pki_dir`.
fn issue_and_register(
    pki: &DevPki,
    cast: &Cast,
    registry: &FileRegistry,
    pki_dir: &Path,
) -> Result<[DevParty; 4]> {
    std::fs::create_dir_all(pki_dir).with_context(|| format!("creating {}", pki_dir.display()))?;
    pki.write_pem(pki_dir)?;
    let issue = |actor: &Actor| -> Result<DevParty> {
        let her_id = HerId::new(actor.her_id).expect("checked by Cast::new");
        let party = pki.party(her_id, &actor.name)?;
        party.register(registry, None)?;
        party.write_pem(pki_dir)?;
        Ok(party)
    };
    Ok([
        issue(&cast.municipality)?,
        issue(&cast.directorate)?,
        issue(&cast.gp)?,
        issue(&cast.attacker)?,
    ])
}

/// What the demo set up, for a person reading along.
fn describe_set_up(reporter: &Reporter, args: &Args, cast: &Cast, dir: &Path) {
    reporter.note(
        "helsemelding demo: signed and encrypted health messages between four parties (times in UTC)",
    );
    reporter.note(
        "  PKI       a throw-away CA made just now; each party has a signing and an encryption \
         certificate (RSA-2048), checked against the CA's CRL",
    );
    reporter.note(&format!(
        "  registry  {}, {}, {}, and {} (a registered party with valid certificates of its own)",
        cast.municipality, cast.directorate, cast.gp, cast.attacker
    ));
    reporter.note(&match &args.broker {
        Some(url) => format!("  queues    the AMQP 1.0 broker at {url}"),
        None => "  queues    the embedded local queue (SQLite)".to_owned(),
    });
    let removed = if args.keep.is_some() {
        ""
    } else {
        " (removed at the end; --keep DIR keeps it)"
    };
    reporter.note(&format!(
        "  storage   one SQLite store per party (outbox, de-duplication, audit log) in {}{removed}",
        dir.display()
    ));
}

/// `IPLOS statistics (message 1f3c5a2b)`.
fn describe(what: &str, message_id: Option<&str>) -> String {
    match message_id {
        Some(id) => format!("{what} (message {})", short_id(id)),
        None => what.to_owned(),
    }
}

/// The embedded local queue in `dir`, or the broker of `--broker`.
async fn open_transport(args: &Args, dir: &Path) -> Result<Arc<dyn Transport>> {
    let (url, options) = match &args.broker {
        None => (
            format!("local:{}", dir.join("queues.sqlite").display()),
            AmqpOptions::default(),
        ),
        Some(url) => {
            let parsed = url::Url::parse(url).context("--broker: not a URL")?;
            ensure!(
                parsed.password().is_none(),
                "--broker: the URL holds a password; set {BROKER_PASSWORD_ENV} instead"
            );
            // A broker call needs a moment even when the steps get none.
            let bound = Duration::from_secs(args.step_timeout.max(1));
            let options = AmqpOptions {
                password: std::env::var(BROKER_PASSWORD_ENV).ok(),
                ca_file: args.broker_ca.clone(),
                operation_timeout: bound,
                send_retry_for: bound,
                ..AmqpOptions::default()
            };
            (url.clone(), options)
        }
    };
    assembly::open_transport(&url, options).await
}

/// On a broker, every queue the demo uses must exist: say which do not.
async fn check_queues(transport: &dyn Transport, parties: &[&DevParty]) -> Result<()> {
    let mut missing = Vec::new();
    for party in parties {
        for kind in [
            QueueKind::Async,
            QueueKind::Sync,
            QueueKind::Error,
            QueueKind::SyncReply,
        ] {
            let queue = queue_name(party.her_id, kind);
            match transport.check_queue(&queue).await {
                Ok(()) => {}
                Err(helsemelding_transport::Error::NoSuchQueue { .. }) => missing.push(queue),
                Err(error) => {
                    return Err(error).context("the broker cannot be reached or refuses us")
                }
            }
        }
    }
    if !missing.is_empty() {
        bail!(
            "the broker lacks queues the demo needs: {}; create them (bound to the exchange) or choose HER-ids whose queues exist with --her-ids",
            missing.join(", ")
        );
    }
    Ok(())
}

/// The first audit record of `kind` about `message_id`, polled for at most `within`.
async fn audit_event(
    store: &dyn Store,
    message_id: &str,
    kind: AuditKind,
    within: Duration,
) -> Option<AuditRecord> {
    let filter = AuditFilter {
        message_id: Some(message_id.to_owned()),
        ..AuditFilter::default()
    };
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let found = store
            .audit()
            .list(&filter)
            .await
            .ok()
            .and_then(|records| records.into_iter().find(|r| r.event.kind == kind));
        if found.is_some() || tokio::time::Instant::now() >= deadline {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Verifies a party's audit chain and counts its events by kind.
async fn audit_line(reporter: &mut Reporter, actor: &Actor, store: &dyn Store) {
    let verified = store.audit().verify().await;
    let listed = store.audit().list(&AuditFilter::default()).await;
    let (ok, outcome) = match (verified, listed) {
        (Ok(report), Ok(events)) => {
            let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
            for event in &events {
                *kinds.entry(event.event.kind.as_str()).or_default() += 1;
            }
            let kinds: Vec<String> = kinds.iter().map(|(k, n)| format!("{n} {k}")).collect();
            let chain = if report.is_intact() {
                "hash chain intact".to_owned()
            } else {
                let problems: Vec<String> = report.problems.iter().map(|p| p.to_string()).collect();
                format!("hash chain BROKEN: {}", problems.join("; "))
            };
            (
                report.is_intact() && report.rows_checked > 0,
                format!(
                    "{} events ({}), {chain}",
                    report.rows_checked,
                    kinds.join(", ")
                ),
            )
        }
        (Err(error), _) | (_, Err(error)) => (false, format!("could not be read: {error}")),
    };
    reporter.line(Line {
        step: format!("audit.{}", actor.her_id),
        at: Utc::now(),
        from: actor.clone(),
        to: None,
        what: "audit log".into(),
        outcome,
        ok,
        message_id: None,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cast_takes_four_distinct_valid_her_ids() {
        let cast = Cast::new(None).unwrap();
        assert_eq!(cast.municipality.her_id, 91462);
        assert_eq!(cast.attacker.name, "Mallory AS");
        let cast = Cast::new(Some(&[1, 2, 3, 4])).unwrap();
        assert_eq!((cast.directorate.her_id, cast.gp.her_id), (2, 3));
        assert!(Cast::new(Some(&[1, 2, 3])).is_err());
        assert!(Cast::new(Some(&[1, 2, 2, 4])).is_err());
        assert!(Cast::new(Some(&[0, 2, 3, 4])).is_err());
    }

    #[test]
    fn a_kept_directory_must_be_empty() {
        let dir = tempfile::tempdir().unwrap();
        let fresh = dir.path().join("new");
        let (path, temp) = work_dir(Some(&fresh)).unwrap();
        assert_eq!(path, fresh);
        assert!(temp.is_none());
        std::fs::write(fresh.join("left-over"), b"x").unwrap();
        assert!(work_dir(Some(&fresh)).is_err());
        let (path, temp) = work_dir(None).unwrap();
        assert!(path.is_dir());
        drop(temp);
        assert!(!path.exists(), "the temporary directory is removed");
    }
}
