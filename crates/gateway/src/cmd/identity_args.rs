//! What the protect/unprotect/registry commands share: loading an identity
//! from a certificate + key pair or a PKCS#12 bundle (password from the
//! environment, never an argument), judging the certificates they are
//! given, and reading/writing payloads via files or stdin/stdout.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use chrono::{DateTime, Utc};
use helsemelding_protect::{Certificate, Identity, KeyUsage, Usage};
use helsemelding_wire::text::for_display;

use crate::node::P12_PASSWORD_ENV;

/// Loads the identity given either as `cert` + `key` or as `p12`; `role`
/// names it in errors (e.g. "signing"). `None` when none of them is given.
pub fn load_identity(
    role: &str,
    cert: Option<&Path>,
    key: Option<&Path>,
    p12: Option<&Path>,
) -> anyhow::Result<Option<Identity>> {
    let load = || -> anyhow::Result<Identity> {
        Ok(match (cert, key, p12) {
            (Some(cert), Some(key), None) => {
                // The certificate must be one certificate (the identity
                // takes the first of a PEM file), and both must be files.
                single_certificate(&format!("--{role}-cert"), cert)?;
                read_file(&format!("--{role}-key"), key)?;
                Identity::from_files(cert, key)?
            }
            (None, None, Some(p12)) => {
                read_file(&format!("--{role}-p12"), p12)?;
                let password = std::env::var(P12_PASSWORD_ENV).unwrap_or_default();
                Identity::from_pkcs12_file(p12, &password)?
            }
            _ => bail!("give either --{role}-cert with --{role}-key, or --{role}-p12"),
        })
    };
    if (cert, key, p12) == (None, None, None) {
        return Ok(None);
    }
    load().map(Some).with_context(|| format!("{role} identity"))
}

/// Reads a certificate file (PEM or DER) that must hold one certificate;
/// `role` names it in errors (e.g. "recipient").
pub fn load_certificate(role: &str, path: &Path) -> anyhow::Result<Certificate> {
    single_certificate(&format!("{role} certificate"), path)
}

/// The one certificate (PEM or DER) in the file `what` names. A PEM file
/// with several certificates is an error that names the file and the
/// count: taking the first silently may take the wrong one.
pub fn single_certificate(what: &str, path: &Path) -> anyhow::Result<Certificate> {
    let bytes = read_file(what, path)?;
    let count = pem_certificate_count(&bytes);
    if count > 1 {
        bail!(
            "{what} {}: holds {count} certificates; give a file with exactly one",
            path.display()
        );
    }
    Certificate::from_pem_or_der(&bytes).with_context(|| format!("{what} {}", path.display()))
}

/// How many PEM certificate blocks `bytes` holds (0 for DER).
pub fn pem_certificate_count(bytes: &[u8]) -> usize {
    const BEGINS: [&[u8]; 3] = [
        b"-----BEGIN CERTIFICATE-----",
        b"-----BEGIN X509 CERTIFICATE-----",
        b"-----BEGIN TRUSTED CERTIFICATE-----",
    ];
    BEGINS
        .iter()
        .map(|begin| bytes.windows(begin.len()).filter(|w| w == begin).count())
        .sum()
}

/// The bytes of the file `what` (e.g. `--signing-cert`) names; a directory
/// or a missing file is said as such, with the path.
pub fn read_file(what: &str, path: &Path) -> anyhow::Result<Vec<u8>> {
    if path.is_dir() {
        bail!("{what} {}: is a directory, not a file", path.display());
    }
    std::fs::read(path).map_err(|error| match error.kind() {
        std::io::ErrorKind::NotFound => {
            anyhow::anyhow!("{what} {}: no such file", path.display())
        }
        _ => anyhow::anyhow!("{what} {}: cannot read it ({error})", path.display()),
    })
}

/// What is wrong with `certificate` for `usage` at `at`: validity period
/// and key usage (chain and revocation are `cert check`'s and the
/// gateway's business). Empty when nothing.
pub fn certificate_problems(
    certificate: &Certificate,
    usage: Usage,
    at: DateTime<Utc>,
) -> Vec<String> {
    let mut problems = validity_problems(certificate, at);
    let required = usage.required_key_usage();
    let (purpose, other) = match usage {
        Usage::Signing => ("signing", Usage::Encryption),
        Usage::Encryption => ("encryption", Usage::Signing),
    };
    match certificate.key_usage() {
        None => problems.push(format!(
            "has no key usage extension ({purpose} needs {})",
            required.as_str()
        )),
        Some(usages) if !usages.contains(&required) => problems.push(format!(
            "has key usage {} without {} ({purpose} needs it){}",
            listed(&usages),
            required.as_str(),
            swapped_hint(&usages, other)
        )),
        Some(_) => {}
    }
    problems
}

/// What is wrong with our `certificate` for decrypting with its key at
/// `at`. Unlike encrypting to a certificate, a missing key usage extension
/// is no problem here: it restricts nothing, and the message was already
/// encrypted to it; only a certificate that says it is for something else
/// is one we should not have been sent messages for.
pub fn decryption_problems(certificate: &Certificate, at: DateTime<Utc>) -> Vec<String> {
    const DECRYPTS: [KeyUsage; 2] = [KeyUsage::KeyEncipherment, KeyUsage::DataEncipherment];
    let mut problems = validity_problems(certificate, at);
    if let Some(usages) = certificate.key_usage() {
        if !DECRYPTS.iter().any(|usage| usages.contains(usage)) {
            problems.push(format!(
                "has key usage {} without keyEncipherment or dataEncipherment (decryption needs one){}",
                listed(&usages),
                swapped_hint(&usages, Usage::Signing)
            ));
        }
    }
    problems
}

fn validity_problems(certificate: &Certificate, at: DateTime<Utc>) -> Vec<String> {
    let day = |t: DateTime<Utc>| t.format("%Y-%m-%d %H:%M:%SZ").to_string();
    let mut problems = Vec::new();
    if at < certificate.not_before() {
        problems.push(format!(
            "is not valid before {}",
            day(certificate.not_before())
        ));
    }
    if at > certificate.not_after() {
        problems.push(format!("expired on {}", day(certificate.not_after())));
    }
    problems
}

fn listed(usages: &[KeyUsage]) -> String {
    if usages.is_empty() {
        return "(none)".to_owned();
    }
    usages
        .iter()
        .map(|u| u.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A certificate with the other role's bit was most likely given in place
/// of its partner: saying so saves the operator the comparison.
fn swapped_hint(usages: &[KeyUsage], other: Usage) -> &'static str {
    if !usages.contains(&other.required_key_usage()) {
        return "";
    }
    match other {
        Usage::Signing => "; it is a signing certificate: were the two swapped?",
        Usage::Encryption => "; it is an encryption certificate: were the two swapped?",
    }
}

/// Refuses `certificate` (named by `what`) when it is not fit for `usage`
/// now; with `force`, warns on stderr instead.
pub fn require_fit(
    what: &str,
    certificate: &Certificate,
    usage: Usage,
    force: bool,
) -> anyhow::Result<()> {
    let problems = certificate_problems(certificate, usage, Utc::now());
    judged(what, certificate, &problems, force)
}

/// [`require_fit`] for our own certificate whose key is to decrypt.
pub fn require_fit_to_decrypt(
    what: &str,
    certificate: &Certificate,
    force: bool,
) -> anyhow::Result<()> {
    let problems = decryption_problems(certificate, Utc::now());
    judged(what, certificate, &problems, force)
}

fn judged(
    what: &str,
    certificate: &Certificate,
    problems: &[String],
    force: bool,
) -> anyhow::Result<()> {
    if problems.is_empty() {
        return Ok(());
    }
    refuse_unless_forced(
        format!(
            "{what} (serial {}, {}) {}",
            certificate.serial_hex(),
            for_display(&certificate.subject(), 200),
            problems.join("; ")
        ),
        force,
    )
}

/// Refuses with `said`, or with `force` only warns it on stderr.
pub fn refuse_unless_forced(said: String, force: bool) -> anyhow::Result<()> {
    if force {
        eprintln!("warning: {said}; used anyway (--force)");
        return Ok(());
    }
    bail!("{said}; give the right certificate, or --force to use it anyway")
}

/// The bytes of `input`, or of stdin when absent.
pub fn read_input(input: Option<&PathBuf>) -> anyhow::Result<Vec<u8>> {
    match input {
        Some(path) => read_file("input", path),
        None => {
            let mut bytes = Vec::new();
            std::io::stdin()
                .lock()
                .read_to_end(&mut bytes)
                .context("reading stdin")?;
            Ok(bytes)
        }
    }
}

/// Writes `bytes` to `output`, or to stdout when absent.
pub fn write_output(output: Option<&PathBuf>, bytes: &[u8]) -> anyhow::Result<()> {
    match output {
        Some(path) => {
            std::fs::write(path, bytes).with_context(|| format!("output {}", path.display()))
        }
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(bytes).context("writing stdout")?;
            stdout.flush().context("writing stdout")
        }
    }
}
