//! `helsemelding bench`: performance figures, each reported as a ratio to a
//! limit measured in the same run on the same machine.
//!
//! `bench protect` measures protect and unprotect on one core against the
//! cost of the RSA private-key operation each of them must do once: the
//! ratio min(protect, unprotect) / rsa_private says how much the CMS
//! machinery costs beyond the private-key operation (goal ≥ 0.8).
//!
//! Each side also does one RSA public-key operation (protect wraps the
//! content key for the recipient, unprotect verifies the signature), plus
//! hashing, AES and DER. The report therefore also gives the same-run rate
//! of the public operation and the bound private + public imposes on the
//! ratio, so a ratio short of the goal can be read against what is
//! possible at all.
//!
//! `bench e2e` measures messages through the whole stack against the raw
//! broker throughput and the crypto bound of the same run (see `bench/e2e.rs`).
//!
//! Time is the thread's CPU time (where the platform has it), in slices that
//! alternate between the operations: other processes on a shared machine
//! then slow no operation more than another, and waiting for a core does not
//! count.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{ensure, Context};
use clap::Subcommand;
use helsemelding_protect::{
    protect, unprotect, Certificate, Identity, ProtectOptions, UnprotectOptions,
};
use openssl::asn1::Asn1Time;
use openssl::bn::BigNum;
use openssl::encrypt::Encrypter;
use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::rsa::Rsa;
use openssl::sign::Signer;
use openssl::x509::{X509Builder, X509NameBuilder};
use serde::Serialize;

mod e2e;

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
    /// Messages per second through the whole stack, beside the raw broker
    /// rate and the crypto bound measured in the same run.
    E2e(e2e::E2eArgs),
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
    /// RSA-2048 public-key operations (PKCS#1 v1.5 encryption of a 32-byte key).
    rsa_public_per_s: f64,
    /// min(protect, unprotect) / rsa_private.
    ratio: f64,
    /// The ratio if each side did nothing but one private and one public
    /// RSA operation: rsa_public / (rsa_private + rsa_public).
    rsa_bound: f64,
    /// Which clock timed the operations: "thread-cpu" or "wall".
    clock: &'static str,
    goal: f64,
}

/// One timed operation.
type Operation<'a> = Box<dyn FnMut() -> anyhow::Result<()> + 'a>;

const GOAL: f64 = 0.8;
/// Operations alternate in slices this long, so load from other processes
/// hits all of them alike.
const SLICE: Duration = Duration::from_millis(50);

/// Runs `bench protect` or `bench e2e` and prints its figures.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        BenchCommand::Protect(args) => bench_protect(&args),
        BenchCommand::E2e(args) => e2e::run(args),
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
    let unprotect_options = UnprotectOptions::default();
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
    let recipient_key = receiver.certificate().x509().public_key()?;
    let rsa_encrypter = Encrypter::new(&recipient_key)?;
    let content_key = [7u8; 32];
    let mut wrapped = vec![0u8; rsa_encrypter.encrypt_len(&content_key)?];
    let mut ops: [(&str, Operation); 4] = [
        (
            "rsa_private",
            Box::new(|| {
                rsa_signer.update(b"one digest")?;
                rsa_signer.sign_to_vec()?;
                Ok(())
            }),
        ),
        (
            "rsa_public",
            Box::new(|| {
                rsa_encrypter.encrypt(&content_key, &mut wrapped)?;
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
    let mut counts = [0u64; 4];
    let mut spent = [Duration::ZERO; 4];
    while spent.iter().any(|s| *s < budget) {
        for (i, (_, op)) in ops.iter_mut().enumerate() {
            let start = Clock::now();
            while start.elapsed() < SLICE {
                op()?;
                counts[i] += 1;
            }
            spent[i] += start.elapsed();
        }
    }
    let rate = |i: usize| counts[i] as f64 / spent[i].as_secs_f64();
    let (rsa, rsa_public, protect_rate, unprotect_rate) = (rate(0), rate(1), rate(2), rate(3));
    let report = ProtectReport {
        size: args.size,
        seconds: args.seconds,
        protect_per_s: protect_rate,
        unprotect_per_s: unprotect_rate,
        rsa_private_per_s: rsa,
        rsa_public_per_s: rsa_public,
        ratio: protect_rate.min(unprotect_rate) / rsa,
        rsa_bound: rsa_public / (rsa + rsa_public),
        clock: Clock::NAME,
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
    println!("  rsa public    {:10.1} /s", report.rsa_public_per_s);
    println!(
        "  ratio         {:10.3}  (min(protect, unprotect) / rsa private; goal >= {})",
        report.ratio, report.goal
    );
    println!(
        "  rsa bound     {:10.3}  (the ratio with one private + one public RSA op per side and nothing else)",
        report.rsa_bound
    );
    println!("  clock         {:>10}", report.clock);
    Ok(())
}

/// The calling thread's CPU time where the platform has it, else wall time.
struct Clock(Duration);

impl Clock {
    #[cfg(unix)]
    const NAME: &'static str = "thread-cpu";
    #[cfg(not(unix))]
    const NAME: &'static str = "wall";

    fn now() -> Clock {
        Clock(Self::read())
    }

    fn elapsed(&self) -> Duration {
        Self::read().saturating_sub(self.0)
    }

    #[cfg(unix)]
    fn read() -> Duration {
        let mut now = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `now` is a valid timespec for the call to fill in.
        let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
        assert_eq!(
            rc, 0,
            "CLOCK_THREAD_CPUTIME_ID is always available on Linux"
        );
        Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
    }

    #[cfg(not(unix))]
    fn read() -> Duration {
        static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        START.get_or_init(std::time::Instant::now).elapsed()
    }
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
    // Through DER, as the gateway reads certificates: a certificate fresh
    // from the builder has no cached encoding and would be re-encoded on
    // every protect, a cost real certificates do not have.
    let der = builder.build().to_der()?;
    let certificate = Certificate::from_pem_or_der(&der).context("bench certificate")?;
    Identity::new(certificate, key).context("bench identity")
}
