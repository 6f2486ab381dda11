//! `helsemelding sandbox DIR`: a throw-away installation to try `serve`
//! on the embedded defaults (the local queue, the file registry, SQLite):
//! a development PKI, a file registry with two parties (a municipality and
//! Helsedirektoratet), and for each a configuration with a folder drop
//! and the HTTP API on loopback, its API token and an example MsgHead to
//! drop into OUT or post to the API. Nothing in it is trusted anywhere
//! else: the CA key is never written, every name says "development".

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context as _, Result};
use helsemelding_registry::FileRegistry;
use helsemelding_wire::HerId;

use super::demo::payloads;
use crate::devpki::{DevParty, DevPki, PartyFiles};

/// Make a throw-away installation of two parties to try `serve` with.
#[derive(clap::Args)]
pub struct Args {
    /// Where to make it (empty or not yet there).
    dir: PathBuf,
}

/// The two parties: our municipality and the directorate it reports to,
/// each with the port of its API.
const PARTIES: [(u32, &str, u16); 2] = [
    (91462, "Eksempel kommune (development)", 8095),
    (4210, "Helsedirektoratet (development)", 8096),
];

/// Makes the sandbox in `args.dir` and says how to use it.
pub fn run(args: Args) -> Result<ExitCode> {
    let sandbox = make(&args.dir)?;
    println!("{}", instructions(&sandbox));
    Ok(ExitCode::SUCCESS)
}

/// What [`make`] made.
pub(crate) struct Sandbox {
    /// Where it is (absolute).
    pub dir: PathBuf,
    /// The municipality first, then the directorate.
    pub parties: Vec<SandboxParty>,
    /// A dialogue note from the first party to the second.
    pub example: PathBuf,
}

/// One party of a sandbox.
pub(crate) struct SandboxParty {
    pub her_id: HerId,
    pub name: String,
    pub config: PathBuf,
    /// The bare API token (owner-only).
    pub token: PathBuf,
    /// The port its configuration gives the API.
    pub port: u16,
}

/// Makes a sandbox in `dir` (new or empty).
pub(crate) fn make(dir: &Path) -> Result<Sandbox> {
    let dir = prepare(dir)?;
    let pki = DevPki::new("helsemelding sandbox CA (development)")?;
    let pki_dir = dir.join("pki");
    std::fs::create_dir_all(&pki_dir)?;
    let (ca, _) = pki.write_pem(&pki_dir)?;
    let registry = FileRegistry::new(dir.join("registry"));
    let mut parties = Vec::new();
    for (her_id, name, port) in PARTIES {
        let her_id = HerId::new(her_id).expect("a HER-id");
        let party = pki.party(her_id, name)?;
        party.register(&registry, None)?;
        let files = party.write_pem(&pki_dir)?;
        let config = write_config(&dir, &party, &files, &ca, port)?;
        parties.push(SandboxParty {
            her_id,
            name: party.name.clone(),
            config,
            token: dir.join(format!("{her_id}.token")),
            port,
        });
    }
    let example = dir.join("example-note.xml");
    let note = note(
        &parties[0],
        &parties[1],
        &uuid::Uuid::new_v4().hyphenated().to_string(),
    );
    std::fs::write(&example, note).with_context(|| format!("writing {}", example.display()))?;
    Ok(Sandbox {
        dir,
        parties,
        example,
    })
}

/// A dialogue note from `from` to `to` with `msg_id`, asking for an AppRec.
pub(crate) fn note(from: &SandboxParty, to: &SandboxParty, msg_id: &str) -> String {
    payloads::dialogue_note(
        msg_id,
        chrono::Utc::now(),
        payloads::party(from.her_id, &from.name),
        payloads::party(to.her_id, &to.name),
    )
}

/// The directory, made if missing; refused when it holds anything.
fn prepare(dir: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    if std::fs::read_dir(dir)?.next().is_some() {
        bail!(
            "{} is not empty: give a new or empty directory (a sandbox is never made over files)",
            dir.display()
        );
    }
    dir.canonicalize()
        .with_context(|| format!("resolving {}", dir.display()))
}

/// `<her-id>.toml`, `<her-id>.tokens` (the API's token file) and
/// `<her-id>.token` (the bare token, for curl), both owner-only.
fn write_config(
    dir: &Path,
    party: &DevParty,
    files: &PartyFiles,
    ca: &Path,
    port: u16,
) -> Result<PathBuf> {
    let her_id = party.her_id;
    let token = random_token()?;
    write_private(
        &dir.join(format!("{her_id}.tokens")),
        &format!("ehr {token}\n"),
    )?;
    write_private(&dir.join(format!("{her_id}.token")), &token)?;
    let config = format!(
        r#"# A development installation made by `helsemelding sandbox`: the local
# queue, the file registry and SQLite. Not for health data.
her_id = {her_id}
[broker]
url = "local:{queues}"
[identity]
signing_cert = "{signing_cert}"
signing_key = "{signing_key}"
decryption_cert = "{encryption_cert}"
decryption_key = "{encryption_key}"
[registry]
dir = "registry"
[trust]
anchors = ["{ca}"]
revocation = "off"          # the development CA publishes no CRL; in production: require
[store]
path = "{her_id}.sqlite"
[folder]
root = "folders"            # folders/{her_id}/OUT, SENT, FAILED, IN, RECEIPTS, APPREC
[http]
listen = "127.0.0.1:{port}"
token_file = "{her_id}.tokens"
"#,
        queues = dir.join("queues.db").display(),
        signing_cert = files.signing_cert.display(),
        signing_key = files.signing_key.display(),
        encryption_cert = files.encryption_cert.display(),
        encryption_key = files.encryption_key.display(),
        ca = ca.display(),
    );
    let path = dir.join(format!("{her_id}.toml"));
    std::fs::write(&path, config).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// 256 random bits as hex.
fn random_token() -> Result<String> {
    let mut bytes = [0u8; 32];
    openssl::rand::rand_bytes(&mut bytes)?;
    Ok(bytes.iter().fold(String::new(), |mut hex, b| {
        let _ = write!(hex, "{b:02x}");
        hex
    }))
}

fn write_private(path: &Path, text: &str) -> Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(text.as_bytes())?;
    Ok(())
}

fn instructions(sandbox: &Sandbox) -> String {
    let (ours, theirs) = (&sandbox.parties[0], &sandbox.parties[1]);
    let d = sandbox.dir.display();
    let port = ours.port;
    format!(
        "sandbox in {d}: {} ({}) and {} ({}), the local queue, a file registry, SQLite\n\
         \n\
         run each party's gateway (Ctrl-C or SIGTERM stops it):\n\
         \x20 helsemelding --config {} serve &\n\
         \x20 helsemelding --config {} serve &\n\
         \n\
         send through the folder: it arrives in {d}/folders/{}/IN\n\
         \x20 cp {} {d}/folders/{}/OUT/\n\
         \n\
         or through the API, and see what was sent:\n\
         \x20 curl -H \"Authorization: Bearer $(cat {})\" -H 'content-type: application/xml' \\\n\
         \x20      --data-binary @{} http://127.0.0.1:{port}/api/v1/messages\n\
         \x20 curl -H \"Authorization: Bearer $(cat {})\" http://127.0.0.1:{port}/api/v1/messages",
        ours.name,
        ours.her_id,
        theirs.name,
        theirs.her_id,
        theirs.config.display(),
        ours.config.display(),
        theirs.her_id,
        sandbox.example.display(),
        ours.her_id,
        ours.token.display(),
        sandbox.example.display(),
        ours.token.display(),
    )
}
