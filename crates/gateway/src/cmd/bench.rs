//! `helsemelding bench`: performance figures, each reported as a ratio to a
//! limit measured in the same run on the same machine.
//!
//! `bench protect` measures protect and unprotect on one core against the
//! cost of the RSA private-key operation each of them must do once: the
//! ratio min(protect, unprotect) / rsa_private says how much the CMS
//! machinery costs beyond the unavoidable (goal ≥ 0.8).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use clap::Subcommand;
use helsemelding_protect::{
    protect, unprotect, Certificate, Identity, ProtectOptions, UnprotectOptions,
};
use openssl::asn1::Asn1Time;
use openssl::bn::BigNum;
use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::rsa::Rsa;
use openssl::sign::Signer;
use openssl::x509::{X509Builder, X509NameBuilder};
use serde::Serialize;

/// Run a benchmark.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: BenchCommand,
}

#[derive(Subcommand)]
enum BenchCommand {
    /// CMS protect/unprotect rate against the RSA-2048 private-key rate.
    Protect(ProtectArgs),
}

#[derive(clap::Args)]
struct ProtectArgs {
    /// Payload size in bytes.
    #[arg(long, default_value_t = 4096)]
    size: usize,
    /// Seconds spent measuring each operation.
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// The figures of one `bench protect` run.
#[derive(Serialize)]
struct ProtectReport {
    size: usize,
    seconds: f64,
    protect_per_s: f64,
    unprotect_per_s: f64,
    rsa_private_per_s: f64,
    /// min(protect, unprotect) / rsa_private.
    ratio: f64,
    goal: f64,
}

/// One timed operation.
type Operation<'a> = Box<dyn FnMut() -> anyhow::Result<()> + 'a>;

const GOAL: f64 = 0.8;
/// Operations alternate in slices this long, so load from other processes
/// hits all three alike.
const SLICE: Duration = Duration::from_millis(200);

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        BenchCommand::Protect(args) => bench_protect(&args),
    }
}

fn bench_protect(args: &ProtectArgs) -> anyhow::Result<ExitCode> {
    ensure!(
        args.seconds > 0.0 && args.seconds.is_finite(),
        "--seconds must be positive"
    );
    let sender = self_signed("bench sender")?;
    let receiver = self_signed("bench receiver")?;
    let payload: Vec<u8> = (0..args.size).map(|i| b'a' + (i % 26) as u8).collect();
    let protect_options = ProtectOptions::default();
    let unprotect_options = UnprotectOptions { reject_3des: true };
    let sample = protect(&payload, &sender, receiver.certificate(), &protect_options)?;
    let round_trip = unprotect(
        &sample,
        &receiver,
        None,
        sender.certificate(),
        &unprotect_options,
    )?;
    ensure!(round_trip == payload, "round trip changed the payload");

    let mut rsa_signer = Signer::new(MessageDigest::sha256(), sender.private_key())?;
    let mut ops: [(&str, Operation); 3] = [
        (
            "rsa_private",
            Box::new(|| {
                rsa_signer.update(b"one digest")?;
                rsa_signer.sign_to_vec()?;
                Ok(())
            }),
        ),
        (
            "protect",
            Box::new(|| {
                protect(&payload, &sender, receiver.certificate(), &protect_options)?;
                Ok(())
            }),
        ),
        (
            "unprotect",
            Box::new(|| {
                unprotect(
                    &sample,
                    &receiver,
                    None,
                    sender.certificate(),
                    &unprotect_options,
                )?;
                Ok(())
            }),
        ),
    ];
    let budget = Duration::from_secs_f64(args.seconds);
    let mut counts = [0u64; 3];
    let mut spent = [Duration::ZERO; 3];
    while spent.iter().any(|s| *s < budget) {
        for (i, (_, op)) in ops.iter_mut().enumerate() {
            let start = Instant::now();
            while start.elapsed() < SLICE {
                op()?;
                counts[i] += 1;
            }
            spent[i] += start.elapsed();
        }
    }
    let rate = |i: usize| counts[i] as f64 / spent[i].as_secs_f64();
    let (rsa, protect_rate, unprotect_rate) = (rate(0), rate(1), rate(2));
    let report = ProtectReport {
        size: args.size,
        seconds: args.seconds,
        protect_per_s: protect_rate,
        unprotect_per_s: unprotect_rate,
        rsa_private_per_s: rsa,
        ratio: protect_rate.min(unprotect_rate) / rsa,
        goal: GOAL,
    };
    print_report(&report, args.json)?;
    Ok(ExitCode::SUCCESS)
}

fn print_report(report: &ProtectReport, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(report)?);
        return Ok(());
    }
    println!(
        "bench protect: payload {} bytes, RSA-2048, one core",
        report.size
    );
    println!("  protect       {:10.1} /s", report.protect_per_s);
    println!("  unprotect     {:10.1} /s", report.unprotect_per_s);
    println!("  rsa private   {:10.1} /s", report.rsa_private_per_s);
    println!(
        "  ratio         {:10.3}  (min(protect, unprotect) / rsa private; goal >= {})",
        report.ratio, report.goal
    );
    Ok(())
}

/// A fresh RSA-2048 key and a self-signed certificate for it.
fn self_signed(common_name: &str) -> anyhow::Result<Identity> {
    let key = PKey::from_rsa(Rsa::generate(2048)?)?;
    let mut name = X509NameBuilder::new()?;
    name.append_entry_by_text("CN", common_name)?;
    let name = name.build();
    let mut builder = X509Builder::new()?;
    builder.set_version(2)?;
    let serial = BigNum::from_u32(0x4242)?.to_asn1_integer()?;
    builder.set_serial_number(&serial)?;
    builder.set_subject_name(&name)?;
    builder.set_issuer_name(&name)?;
    builder.set_pubkey(&key)?;
    let (not_before, not_after) = (Asn1Time::days_from_now(0)?, Asn1Time::days_from_now(1)?);
    builder.set_not_before(&not_before)?;
    builder.set_not_after(&not_after)?;
    builder.sign(&key, MessageDigest::sha256())?;
    Identity::new(Certificate::from_x509(builder.build()), key).context("bench identity")
}
