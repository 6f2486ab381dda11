//! `helsemelding unprotect`: decrypt a protected message with our current
//! (or legacy) decryption identity and verify that the expected sender
//! signed it; writes the payload exactly as signed.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use helsemelding_protect::{unprotect, UnprotectOptions};

use super::identity_args::{load_certificate, load_identity, read_input, write_output};

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
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let decryption = load_identity(
        "decryption",
        args.decryption_cert.as_deref(),
        args.decryption_key.as_deref(),
        args.decryption_p12.as_deref(),
    )?
    .context("no decryption identity given")?;
    let legacy = load_identity(
        "legacy-decryption",
        args.legacy_decryption_cert.as_deref(),
        args.legacy_decryption_key.as_deref(),
        args.legacy_decryption_p12.as_deref(),
    )?;
    let sender = load_certificate("sender", &args.sender_cert)?;
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
