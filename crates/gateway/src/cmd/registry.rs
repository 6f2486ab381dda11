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
use helsemelding_registry::file::{ImportDocument, Imported, NewParty};
use helsemelding_registry::party::{parse_communication_party, queue_name};
use helsemelding_registry::{CertificateSummary, CommunicationParty, FileRegistry, HerId};
use helsemelding_wire::text::{for_display, is_hidden_or_control};
use serde_json::{json, Value};

use super::identity_args::{read_file, refuse_unless_forced, require_fit, single_certificate};

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
    ///
    /// All are judged before any is stored: names must be printable, queue
    /// names safe, and the certificates of a CPP or CPA fit for their role
    /// now; what the registry already holds is not overwritten without
    /// --replace (the same document again is left as it is).
    Import {
        /// Registry directory.
        #[arg(long)]
        dir: PathBuf,
        /// Documents to import.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Overwrite a party's record or CPP, or a CPA, that the registry
        /// already holds.
        #[arg(long)]
        replace: bool,
        /// Take a CPP or CPA whose certificates are expired, not yet valid,
        /// lack the key usage of their role or are missing, with a warning,
        /// instead of refusing it.
        #[arg(long)]
        force: bool,
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
        RegistryCommand::Import {
            dir,
            files,
            replace,
            force,
        } => import(&dir, &files, replace, force)?,
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
/// Longest queue name `import` takes: RabbitMQ's limit.
const QUEUE_CHARS: usize = 255;

/// A party name is shown in listings and logs: printable text only.
fn check_name(name: &str) -> anyhow::Result<()> {
    if name.trim().is_empty() {
        anyhow::bail!("--name is empty");
    }
    check_printable("--name", name)?;
    if name.chars().count() > NAME_CHARS {
        anyhow::bail!("--name is longer than {NAME_CHARS} characters");
    }
    Ok(())
}

/// Text we store and show later holds no control or invisible characters
/// (a terminal or log reader would act on them).
fn check_printable(what: &str, text: &str) -> anyhow::Result<()> {
    if let Some(c) = text.chars().find(|c| is_hidden_or_control(*c)) {
        anyhow::bail!(
            "{what} {:?} holds the control or invisible character {}: give printable text",
            for_display(text, NAME_CHARS),
            for_display(&c.to_string(), 20)
        );
    }
    Ok(())
}

/// Queue names become file names, broker addresses and log fields:
/// letters, digits, '.', '_' and '-' only, not starting with '.'.
fn check_queue_text(what: &str, text: &str, max_chars: usize) -> anyhow::Result<()> {
    let safe = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if text.is_empty()
        || text.starts_with('.')
        || !text.chars().all(safe)
        || text.chars().count() > max_chars
    {
        anyhow::bail!(
            "{what} {}: use letters, digits, '.', '_' and '-' only, not starting with '.', at most {max_chars} characters",
            for_display(text, max_chars)
        );
    }
    Ok(())
}

fn check_queue_prefix(prefix: &str) -> anyhow::Result<()> {
    check_queue_text("--queue-prefix", prefix, PREFIX_CHARS)
}

/// A registry address's queue name (its last segment) is what reaches the
/// broker; the rest is only shown.
fn check_queue_address(what: &str, address: &str) -> anyhow::Result<()> {
    check_printable(what, address)?;
    check_queue_text(what, queue_name(address), QUEUE_CHARS)
}

/// One document `import` was given, judged and ready to be stored.
struct Judged {
    file: PathBuf,
    bytes: Vec<u8>,
    document: ImportDocument,
    target: Imported,
    /// The registry holds these very bytes already.
    unchanged: bool,
}

/// `registry import`: every document is judged before any is stored, so a
/// refusal leaves the registry as it was.
fn import(dir: &Path, files: &[PathBuf], replace: bool, force: bool) -> anyhow::Result<()> {
    let registry = FileRegistry::new(dir);
    let mut judged: Vec<Judged> = Vec::new();
    for file in files {
        let one = judge_document(&registry, file, replace, force)?;
        if let Some(earlier) = judged.iter().find(|j| j.target == one.target) {
            anyhow::bail!(
                "{} and {} are both the {}: give one of them",
                earlier.file.display(),
                file.display(),
                imported_what(&one.target)
            );
        }
        judged.push(one);
    }
    for one in judged {
        if !one.unchanged {
            registry
                .import_document(&one.document, &one.bytes)
                .with_context(|| format!("importing {}", one.file.display()))?;
        }
        let unchanged = if one.unchanged { ", unchanged" } else { "" };
        println!(
            "{}: {}{unchanged}",
            one.file.display(),
            imported_what(&one.target)
        );
    }
    Ok(())
}

fn judge_document(
    registry: &FileRegistry,
    file: &Path,
    replace: bool,
    force: bool,
) -> anyhow::Result<Judged> {
    let place = file.display().to_string();
    let bytes = read(file)?;
    let document = ImportDocument::read(&bytes).with_context(|| format!("importing {place}"))?;
    let target = document
        .target()
        .with_context(|| format!("importing {place}"))?;
    // First what it would overwrite: a refusal for that needs no warnings
    // about the certificates before it.
    let unchanged = match registry.stored(&target)? {
        None => false,
        Some(stored) if stored == bytes => true,
        Some(_) if replace => false,
        Some(_) => anyhow::bail!(
            "{place}: {} already holds the {}: give --replace to overwrite it",
            registry.dir().display(),
            imported_what(&target)
        ),
    };
    match &document {
        ImportDocument::Party(record) => check_record(&place, record)?,
        ImportDocument::Collaboration(profile) => check_collaboration(&place, profile, force)?,
    }
    Ok(Judged {
        file: file.to_owned(),
        bytes,
        document,
        target,
        unchanged,
    })
}

fn imported_what(target: &Imported) -> String {
    match target {
        Imported::Party(her_id) => format!("address record of party {her_id}"),
        Imported::Cpp(her_id) => format!("CPP of party {her_id}"),
        Imported::Cpa(id) => format!("CPA {}", for_display(id, 100)),
    }
}

fn check_record(place: &str, record: &CommunicationParty) -> anyhow::Result<()> {
    let her_id = record.her_id;
    check_printable(
        &format!("{place}: the name of party {her_id}"),
        &record.name,
    )?;
    let queues = &record.queues;
    for (label, address) in [
        ("async", &queues.async_queue),
        ("sync", &queues.sync),
        ("error", &queues.error),
        ("syncreply", &queues.syncreply),
    ] {
        if let Some(address) = address {
            let what = format!("{place}: the {label} queue of party {her_id}");
            check_queue_address(&what, address)?;
        }
    }
    Ok(())
}

fn check_collaboration(
    place: &str,
    document: &CollaborationDocument,
    force: bool,
) -> anyhow::Result<()> {
    for party in &document.parties {
        let her_id = party.her_id;
        check_printable(&format!("{place}: the name of party {her_id}"), &party.name)?;
        for channel in party.channels.iter().filter(|c| c.kind.is_some()) {
            if let Some(endpoint) = &channel.endpoint {
                let what = format!(
                    "{place}: the endpoint of party {her_id}'s channel {}",
                    for_display(&channel.id, 100)
                );
                check_queue_address(&what, endpoint)?;
            }
        }
        let certificates = [
            (party.signing_certificate.as_ref(), Usage::Signing),
            (party.encryption_certificate.as_ref(), Usage::Encryption),
        ];
        for (certificate, usage) in certificates {
            judge_party_certificate(place, her_id, certificate, usage, force)?;
        }
    }
    Ok(())
}

/// The parser tells a party's certificates apart by key usage: one that
/// fits no role is missing here, and said so.
fn judge_party_certificate(
    place: &str,
    her_id: u32,
    certificate: Option<&Certificate>,
    usage: Usage,
    force: bool,
) -> anyhow::Result<()> {
    let role = match usage {
        Usage::Signing => "signing",
        Usage::Encryption => "encryption",
    };
    match certificate {
        Some(certificate) => {
            let what = format!("{place}: the {role} certificate of party {her_id}");
            require_fit(&what, certificate, usage, force)
        }
        None => refuse_unless_forced(
            format!(
                "{place}: party {her_id} has no {role} certificate (none with {})",
                usage.required_key_usage().as_str()
            ),
            force,
        ),
    }
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
