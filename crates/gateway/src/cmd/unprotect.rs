//! `helsemelding unprotect`: decrypt a protected message with our current
//! (or legacy) decryption identity and verify that the expected sender
//! signed it; writes the payload exactly as signed. Certificates unfit for
//! their role (expired, not yet valid, the wrong key usage) are refused
//! before anything is read, or used with a warning under `--force`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use helsemelding_protect::{unprotect, Identity, UnprotectOptions, Usage};

use super::identity_args::{
    load_certificate, load_identity, read_input, require_fit, require_fit_to_decrypt, write_output,
};

/// Decrypt then verify a message (the PKCS#12 password comes from HELSEMELDING_P12_PASSWORD).
#[derive(clap::Args)]
pub struct Args {
    /// Our current encryption certificate (PEM or DER); with --decryption-key.
    #[arg(long, value_name = "FILE", requires = "decryption_key")]
    decryption_cert: Option<PathBuf>,
    /// The private key of --decryption-cert.
    #[arg(long, value_name = "FILE", requires = "decryption_cert")]
    decryption_key: Option<PathBuf>,
    /// Our current decryption identity as a PKCS#12 bundle, instead of cert + key.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["decryption_cert", "decryption_key"], required_unless_present = "decryption_cert")]
    decryption_p12: Option<PathBuf>,
    /// Our previous encryption certificate, tried when the message is for it.
    #[arg(long, value_name = "FILE", requires = "legacy_decryption_key")]
    legacy_decryption_cert: Option<PathBuf>,
    /// The private key of --legacy-decryption-cert.
    #[arg(long, value_name = "FILE", requires = "legacy_decryption_cert")]
    legacy_decryption_key: Option<PathBuf>,
    /// Our previous decryption identity as a PKCS#12 bundle.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["legacy_decryption_cert", "legacy_decryption_key"])]
    legacy_decryption_p12: Option<PathBuf>,
    /// The sender's signing certificate: the only signer accepted.
    #[arg(long, value_name = "FILE")]
    sender_cert: PathBuf,
    /// Refuse 3DES-encrypted messages (DES is always refused).
    #[arg(long)]
    reject_3des: bool,
    /// Protected message (DER); stdin when absent.
    #[arg(long = "in", value_name = "FILE")]
    input: Option<PathBuf>,
    /// Where to write the payload; stdout when absent.
    #[arg(long = "out", value_name = "FILE")]
    output: Option<PathBuf>,
    /// Use a certificate that is expired, not yet valid or lacks the key
    /// usage its role needs (keyEncipherment or dataEncipherment to
    /// decrypt, nonRepudiation for the sender), with a warning, instead of
    /// refusing it.
    #[arg(long)]
    force: bool,
}

/// Runs `unprotect`: decrypts one message and verifies its signer.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let (decryption, legacy) = decryption_identities(&args)?;
    let sender = load_certificate("sender", &args.sender_cert)?;
    // As `listen` judges a signer: its certificate now, for signing.
    let what = format!("--sender-cert {}", args.sender_cert.display());
    require_fit(&what, &sender, Usage::Signing, args.force)?;
    let der = read_input(args.input.as_ref())?;
    // The CLI keeps its behaviour: 3DES read unless --reject-3des.
    let options = UnprotectOptions {
        allow_3des: !args.reject_3des,
    };
    let payload =
        unprotect(&der, &decryption, legacy.as_ref(), &sender, &options).context("unprotect")?;
    write_output(args.output.as_ref(), &payload)?;
    Ok(ExitCode::SUCCESS)
}

/// Our current and legacy decryption identities, each judged fit to decrypt.
fn decryption_identities(args: &Args) -> anyhow::Result<(Identity, Option<Identity>)> {
    let current = decryption_identity(
        "decryption",
        args.decryption_cert.as_deref(),
        args.decryption_key.as_deref(),
        args.decryption_p12.as_deref(),
        args.force,
    )?
    .context("no decryption identity given")?;
    let legacy = decryption_identity(
        "legacy-decryption",
        args.legacy_decryption_cert.as_deref(),
        args.legacy_decryption_key.as_deref(),
        args.legacy_decryption_p12.as_deref(),
        args.force,
    )?;
    Ok((current, legacy))
}

fn decryption_identity(
    role: &str,
    cert: Option<&Path>,
    key: Option<&Path>,
    p12: Option<&Path>,
    force: bool,
) -> anyhow::Result<Option<Identity>> {
    let Some(identity) = load_identity(role, cert, key, p12)? else {
        return Ok(None);
    };
    // The flag and file the certificate came from, for the operator to fix.
    let what = match (cert, p12) {
        (Some(cert), _) => format!("--{role}-cert {}", cert.display()),
        (None, Some(p12)) => format!("--{role}-p12 {}", p12.display()),
        (None, None) => format!("the {role} certificate"),
    };
    require_fit_to_decrypt(&what, identity.certificate(), force)?;
    Ok(Some(identity))
}
