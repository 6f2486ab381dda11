//! `helsemelding protect`: sign a payload with our signing identity and
//! encrypt it to a recipient's encryption certificate (CMS, DER out).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use helsemelding_protect::{protect, ProtectOptions, Usage};

use super::identity_args::{
    load_certificate, load_identity, read_input, require_fit, write_output,
};

/// Sign then encrypt a payload (the PKCS#12 password comes from HELSEMELDING_P12_PASSWORD).
#[derive(clap::Args)]
pub struct Args {
    /// Our signing certificate (PEM or DER); with --signing-key.
    #[arg(long, value_name = "FILE", requires = "signing_key")]
    signing_cert: Option<PathBuf>,
    /// The private key of --signing-cert (PEM or DER, PKCS#8 or PKCS#1).
    #[arg(long, value_name = "FILE", requires = "signing_cert")]
    signing_key: Option<PathBuf>,
    /// Our signing identity as a PKCS#12 bundle, instead of cert + key.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["signing_cert", "signing_key"], required_unless_present = "signing_cert")]
    signing_p12: Option<PathBuf>,
    /// The recipient's encryption certificate (PEM or DER).
    #[arg(long, value_name = "FILE")]
    recipient_cert: PathBuf,
    /// Payload file; stdin when absent.
    #[arg(long = "in", value_name = "FILE")]
    input: Option<PathBuf>,
    /// Where to write the DER; stdout when absent.
    #[arg(long = "out", value_name = "FILE")]
    output: Option<PathBuf>,
    /// Use a certificate that is expired, not yet valid or lacks the key
    /// usage its role needs (nonRepudiation to sign, keyEncipherment to
    /// encrypt), with a warning, instead of refusing it.
    #[arg(long)]
    force: bool,
}

/// Runs `protect`: signs and encrypts one payload.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let signer = load_identity(
        "signing",
        args.signing_cert.as_deref(),
        args.signing_key.as_deref(),
        args.signing_p12.as_deref(),
    )?
    .context("no signing identity given")?;
    require_fit(
        "the signing certificate",
        signer.certificate(),
        Usage::Signing,
        args.force,
    )?;
    let recipient = load_certificate("recipient", &args.recipient_cert)?;
    require_fit(
        "the recipient certificate",
        &recipient,
        Usage::Encryption,
        args.force,
    )?;
    let payload = read_input(args.input.as_ref())?;
    let der =
        protect(&payload, &signer, &recipient, &ProtectOptions::default()).context("protect")?;
    write_output(args.output.as_ref(), &der)?;
    Ok(ExitCode::SUCCESS)
}
