//! `helsemelding registry …`: read NHN registry documents and keep the
//! embedded file registry.
//!
//! `profile` and `party` read a CPP/CPA or an address record and print what
//! the engine will use (JSON with `--json`); `add`, `show` and `import`
//! manage a file registry directory.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use helsemelding_protect::{Certificate, Usage};
use helsemelding_registry::certificates::parse_certificate_details;
use helsemelding_registry::cppa::{
    parse_collaboration_document, ChannelKind, CollaborationDocument,
};
use helsemelding_registry::file::{Imported, NewParty};
use helsemelding_registry::party::parse_communication_party;
use helsemelding_registry::{CertificateSummary, CommunicationParty, FileRegistry, HerId};
use helsemelding_wire::text::{for_display, is_hidden_or_control};
use serde_json::{json, Value};

use super::identity_args::{read_file, require_fit, single_certificate};

/// Registry documents and the embedded file registry.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: RegistryCommand,
}

#[derive(Subcommand)]
enum RegistryCommand {
    /// Show a CPP or CPA: parties, roles, actions, endpoints, certificates.
    Profile {
        /// CPP or CPA XML file.
        file: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show an address-registry record (SOAP XML or REST JSON).
    Party {
        /// CommunicationDetails XML or JSON file.
        file: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show a certificate look-up answer (`GetCertificateDetailsFor…`).
    Certificate {
        /// CertificateDetails XML file.
        file: PathBuf,
        /// Print JSON: `{"certificate": CERT, "ldap_url": STRING|null}`.
        #[arg(long)]
        json: bool,
    },
    /// Create a party in a file registry.
    Add {
        /// Registry directory.
        #[arg(long)]
        dir: PathBuf,
        /// HER-id of the party (1 or more).
        #[arg(long)]
        her_id: helsemelding_wire::HerId,
        /// Name of the party (printable text, at most 200 characters).
        #[arg(long)]
        name: String,
        /// Signing certificate (PEM or DER).
        #[arg(long, value_name = "FILE")]
        signing_cert: PathBuf,
        /// Encryption certificate (PEM or DER).
        #[arg(long, value_name = "FILE")]
        encryption_cert: PathBuf,
        /// The party's CPP (XML).
        #[arg(long, value_name = "FILE")]
        cpp: Option<PathBuf>,
        /// Queue name prefix (default: the HER-id): queues are <P>_async, <P>_sync, <P>_error, <P>_syncreply.
        /// Letters, digits, '.', '_' and '-', not starting with '.', at most 100 characters.
        #[arg(long, value_name = "P")]
        queue_prefix: Option<String>,
        /// Overwrite the party's record and certificates if it is already in the registry.
        #[arg(long)]
        replace: bool,
        /// Accept certificates that are expired, not yet valid or lack the
        /// key usage of their role, with a warning, instead of refusing them.
        #[arg(long)]
        force: bool,
    },
    /// Show a party of a file registry.
    Show {
        /// Registry directory.
        #[arg(long)]
        dir: PathBuf,
        /// HER-id of the party.
        her_id: HerId,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Import real NHN documents (CPP, CPA, CommunicationDetails) unchanged.
    Import {
        /// Registry directory.
        #[arg(long)]
        dir: PathBuf,
        /// Documents to import.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

/// Run a `registry` subcommand.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        RegistryCommand::Profile { file, json } => {
            let document = parse_collaboration_document(&read(&file)?)
                .with_context(|| format!("{}", file.display()))?;
            if json {
                print_json(&profile_json(&document));
            } else {
                print_profile(&document);
            }
        }
        RegistryCommand::Party { file, json } => {
            let party = parse_communication_party(&read(&file)?)
                .with_context(|| format!("{}", file.display()))?;
            if json {
                print_json(&party_json(&party));
            } else {
                print_party(&party);
            }
        }
        RegistryCommand::Certificate { file, json } => {
            let details = parse_certificate_details(&read(&file)?)
                .with_context(|| format!("{}", file.display()))?;
            let summary = CertificateSummary::of(&details.certificate);
            if json {
                print_json(&json!({ "certificate": summary, "ldap_url": details.ldap_url }));
            } else {
                print_certificate("looked-up", Some(&summary));
                println!(
                    "  published at: {}",
                    details.ldap_url.as_deref().unwrap_or("-")
                );
            }
        }
        RegistryCommand::Add {
            dir,
            her_id,
            name,
            signing_cert,
            encryption_cert,
            cpp,
            queue_prefix,
            replace,
            force,
        } => {
            check_name(&name)?;
            if let Some(prefix) = &queue_prefix {
                check_queue_prefix(prefix)?;
            }
            let signing = single_certificate("--signing-cert", &signing_cert)?;
            let encryption = single_certificate("--encryption-cert", &encryption_cert)?;
            require_fit("--signing-cert", &signing, Usage::Signing, force)?;
            require_fit("--encryption-cert", &encryption, Usage::Encryption, force)?;
            let registry = FileRegistry::new(&dir);
            let her_id = her_id.get();
            if !replace {
                if let Ok(existing) = registry.party(her_id) {
                    anyhow::bail!(
                        "party {her_id} ({}) is already in {}: give --replace to overwrite its record and certificates",
                        for_display(&existing.name, 100),
                        dir.display()
                    );
                }
            }
            let new = NewParty {
                her_id,
                name,
                signing_certificate: signing,
                encryption_certificate: encryption,
                cpp: cpp
                    .as_deref()
                    .map(|cpp| read_file("--cpp", cpp))
                    .transpose()?,
                queue_prefix,
            };
            let record = registry.add_party(&new)?;
            println!(
                "added {} {} to {}",
                record.her_id,
                record.name,
                dir.display()
            );
        }
        RegistryCommand::Show { dir, her_id, json } => {
            let registry = FileRegistry::new(&dir);
            let party = registry.party(her_id)?;
            // A party imported without certificates or CPP shows them as null.
            let certificates = match registry.party_certificates(her_id) {
                Err(helsemelding_registry::Error::NotFound { .. }) => Default::default(),
                other => other?,
            };
            let summary = |c: Option<&Certificate>| c.map(CertificateSummary::of);
            if json {
                let mut value = party_json(&party);
                value["certificates"] = json!({
                    "encryption": summary(certificates.current_encryption()),
                    "signing": summary(certificates.current_signing()),
                });
                print_json(&value);
            } else {
                print_party(&party);
                print_certificate(
                    "encryption",
                    summary(certificates.current_encryption()).as_ref(),
                );
                print_certificate("signing", summary(certificates.current_signing()).as_ref());
            }
        }
        RegistryCommand::Import { dir, files } => {
            let registry = FileRegistry::new(&dir);
            for file in files {
                let imported = registry
                    .import(&read(&file)?)
                    .with_context(|| format!("importing {}", file.display()))?;
                let what = match imported {
                    Imported::Party(her_id) => format!("address record of party {her_id}"),
                    Imported::Cpp(her_id) => format!("CPP of party {her_id}"),
                    Imported::Cpa(id) => format!("CPA {}", for_display(&id, 100)),
                };
                println!("{}: {what}", file.display());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    read_file("reading", path)
}

/// Longest party name `add` takes.
const NAME_CHARS: usize = 200;
/// Longest queue prefix `add` takes (RabbitMQ allows 255 bytes per name).
const PREFIX_CHARS: usize = 100;

/// A party name is shown in listings and logs: printable text only.
fn check_name(name: &str) -> anyhow::Result<()> {
    if name.trim().is_empty() {
        anyhow::bail!("--name is empty");
    }
    if let Some(c) = name.chars().find(|c| is_hidden_or_control(*c)) {
        anyhow::bail!(
            "--name {:?} holds the control or invisible character {}: give printable text",
            for_display(name, NAME_CHARS),
            for_display(&c.to_string(), 20)
        );
    }
    if name.chars().count() > NAME_CHARS {
        anyhow::bail!("--name is longer than {NAME_CHARS} characters");
    }
    Ok(())
}

/// Queue names become file names, broker addresses and log fields:
/// letters, digits, '.', '_' and '-' only, not starting with '.'.
fn check_queue_prefix(prefix: &str) -> anyhow::Result<()> {
    let safe = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if prefix.is_empty()
        || prefix.starts_with('.')
        || !prefix.chars().all(safe)
        || prefix.chars().count() > PREFIX_CHARS
    {
        anyhow::bail!(
            "--queue-prefix {}: use letters, digits, '.', '_' and '-' only, not starting with '.', at most {PREFIX_CHARS} characters",
            for_display(prefix, PREFIX_CHARS)
        );
    }
    Ok(())
}

fn print_json(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("JSON values serialise")
    );
}

fn profile_json(document: &CollaborationDocument) -> Value {
    let parties: Vec<Value> = document
        .parties
        .iter()
        .map(|party| {
            let roles: Vec<Value> = party
                .roles
                .iter()
                .map(|r| {
                    json!({
                        "process": r.process,
                        "version": r.version,
                        "role": r.role,
                        "can_send": r.send_actions(),
                        "can_receive": r.receive_actions(),
                    })
                })
                .collect();
            json!({
                "her_id": party.her_id,
                "name": party.name,
                "roles": roles,
                "endpoints": {
                    "AMQPAsync": party.endpoint(ChannelKind::AMQPAsync),
                    "AMQPSync": party.endpoint(ChannelKind::AMQPSync),
                },
                "certificates": party.certificate_summaries(),
            })
        })
        .collect();
    json!({ "kind": document.kind, "id": document.id, "parties": parties })
}

fn party_json(party: &CommunicationParty) -> Value {
    json!({
        "her_id": party.her_id,
        "name": party.name,
        "parent_her_id": party.parent_her_id,
        "active": party.active,
        "queues": party.queues.names(),
    })
}

fn print_profile(document: &CollaborationDocument) {
    let kind = match document.kind {
        helsemelding_registry::ProfileKind::Cpp => "CPP",
        helsemelding_registry::ProfileKind::Cpa => "CPA",
    };
    println!("{kind} {}", document.id.as_deref().unwrap_or("(no id)"));
    for party in &document.parties {
        println!("party {} {}", party.her_id, party.name);
        for role in &party.roles {
            println!(
                "  {} {} as {}: sends {}; receives {}",
                role.process,
                role.version,
                role.role,
                role.send_actions().join(", "),
                role.receive_actions().join(", ")
            );
        }
        for kind in [ChannelKind::AMQPAsync, ChannelKind::AMQPSync] {
            println!("  {kind:?}: {}", party.endpoint(kind).unwrap_or("-"));
        }
        let certificates = party.certificate_summaries();
        print_certificate("encryption", certificates.encryption.as_ref());
        print_certificate("signing", certificates.signing.as_ref());
    }
}

fn print_party(party: &CommunicationParty) {
    println!("party {} {}", party.her_id, party.name);
    if let Some(parent) = party.parent_her_id {
        println!("  parent: {parent}");
    }
    println!("  active: {}", party.active);
    let names = party.queues.names();
    for (label, queue) in [
        ("async", &names.async_queue),
        ("sync", &names.sync),
        ("error", &names.error),
        ("syncreply", &names.syncreply),
    ] {
        println!("  {label} queue: {}", queue.as_deref().unwrap_or("-"));
    }
}

fn print_certificate(label: &str, certificate: Option<&CertificateSummary>) {
    match certificate {
        Some(c) => println!(
            "  {label} certificate: serial {} {} valid {} .. {}",
            c.serial, c.subject, c.not_before, c.not_after
        ),
        None => println!("  {label} certificate: -"),
    }
}
