//! `helsemelding cert …`: certificate tools for operators.
//!
//! `cert check` judges one certificate as the gateway would before using it
//! (validity period, key usage, chain, revocation) and lists every problem.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use chrono::{DateTime, SecondsFormat, Utc};
use clap::{Subcommand, ValueEnum};
use helsemelding_protect::{
    check_certificate, BlockingCrlFetcher, Certificate, CheckReport, CheckRequest, Crl,
    FetcherConfig, RevocationPolicy, StaticCrls, TrustAnchors, Usage,
};
use openssl::x509::X509;

use super::identity_args::{pem_certificate_count, read_file};
use serde::Serialize;

/// Certificate tools.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    command: CertCommand,
}

#[derive(Subcommand, Debug)]
enum CertCommand {
    /// Judge a certificate: validity, key usage, chain and revocation.
    ///
    /// Prints subject, issuer, serial, validity, key usages and the errors
    /// found (all of them): not-yet-valid, expired, wrong-usage, untrusted,
    /// revoked, revocation-unknown. Exits 0 only when there are none.
    ///
    /// Without --trust there is no anchor to build a chain to, so the
    /// certificate is reported `untrusted`: the check never claims more
    /// than it could verify.
    ///
    /// Revocation: with --crl, the given CRL files are used; otherwise CRLs
    /// are fetched from the certificate's HTTP distribution points (1 s
    /// timeout) and cached in --crl-cache; --offline never fetches.
    Check(CheckArgs),
}

#[derive(clap::Args, Debug)]
struct CheckArgs {
    /// The certificate (PEM or DER).
    #[arg(value_name = "FILE")]
    certificate: PathBuf,

    /// What the certificate is to be used for: signing needs nonRepudiation,
    /// encryption needs keyEncipherment.
    #[arg(long, value_enum)]
    usage: UsageArg,

    /// A trust anchor (PEM, may hold several, or DER). Repeatable. Without
    /// any, the certificate is reported `untrusted`.
    #[arg(long = "trust", value_name = "CA")]
    trust: Vec<PathBuf>,

    /// An intermediate CA certificate the chain may pass through. Repeatable.
    #[arg(long = "intermediate", value_name = "CERT")]
    intermediates: Vec<PathBuf>,

    /// A CRL (PEM or DER) to judge revocation by. Repeatable; when given,
    /// nothing is fetched.
    #[arg(long = "crl", value_name = "FILE")]
    crls: Vec<PathBuf>,

    /// Never fetch CRLs: revocation is judged from --crl files only (else
    /// `revocation-unknown`).
    #[arg(long)]
    offline: bool,

    /// Judge at this instant (RFC 3339, e.g. 2016-06-01T12:00:00Z) instead of now.
    #[arg(long, value_name = "RFC3339", value_parser = parse_rfc3339)]
    at: Option<DateTime<Utc>>,

    /// What an unknown revocation status means.
    #[arg(long, value_enum, default_value_t = RevocationArg::Require)]
    revocation: RevocationArg,

    /// Directory for fetched CRLs [default: $XDG_CACHE_HOME/helsemelding/crl,
    /// else ~/.cache/helsemelding/crl].
    #[arg(long, value_name = "DIR")]
    crl_cache: Option<PathBuf>,

    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Copy, Clone, Debug, ValueEnum)]
enum UsageArg {
    Signing,
    Encryption,
}

#[derive(Copy, Clone, Debug, ValueEnum)]
enum RevocationArg {
    /// Unknown revocation status is an error.
    Require,
    /// Unknown revocation status is a warning.
    Warn,
    /// Revocation is not checked.
    Off,
}

/// What `cert check --json` prints: exactly these fields.
#[derive(Serialize, Debug)]
struct CheckOutput {
    subject: String,
    issuer: String,
    serial: String,
    not_before: String,
    not_after: String,
    key_usage: Vec<&'static str>,
    errors: Vec<&'static str>,
}

/// Runs `cert <subcommand>`.
pub fn run(args: Args) -> Result<ExitCode> {
    match args.command {
        CertCommand::Check(check) => run_check(check),
    }
}

fn run_check(args: CheckArgs) -> Result<ExitCode> {
    let bytes = read(&args.certificate)?;
    let count = pem_certificate_count(&bytes);
    if count > 1 {
        anyhow::bail!(
            "{}: holds {count} certificates; `cert check` judges one: give the others with --intermediate or --trust",
            args.certificate.display()
        );
    }
    let certificate = Certificate::from_pem_or_der(&bytes)
        .with_context(|| format!("reading {}", args.certificate.display()))?;
    let trust = TrustAnchors::new(read_certificates(&args.trust)?)
        .with_intermediates(read_certificates(&args.intermediates)?);
    let revocation = match args.revocation {
        RevocationArg::Require => RevocationPolicy::Require,
        RevocationArg::Warn => RevocationPolicy::Warn,
        RevocationArg::Off => RevocationPolicy::Off,
    };
    let crls = revocation_data(&args, &certificate, revocation)?;
    let request = CheckRequest {
        usage: match args.usage {
            UsageArg::Signing => Usage::Signing,
            UsageArg::Encryption => Usage::Encryption,
        },
        at: args.at.unwrap_or_else(Utc::now),
        trust: &trust,
        crls: &crls,
        revocation,
    };
    let report = check_certificate(&certificate, &request);
    let output = describe(&certificate, &report);
    if args.json {
        println!("{}", serde_json::to_string(&output)?);
    } else {
        print_text(&output);
    }
    for warning in &report.warnings {
        eprintln!("warning: {warning}");
    }
    Ok(if report.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// CRLs from files when given; else fetched (unless offline or not needed).
fn revocation_data(
    args: &CheckArgs,
    certificate: &Certificate,
    policy: RevocationPolicy,
) -> Result<Vec<Crl>> {
    if !args.crls.is_empty() {
        return Ok(StaticCrls::from_files(&args.crls)?.crls().to_vec());
    }
    if args.offline || policy == RevocationPolicy::Off {
        return Ok(Vec::new());
    }
    let fetcher = BlockingCrlFetcher::new(FetcherConfig {
        cache_dir: args.crl_cache.clone().or_else(default_crl_cache),
        ..FetcherConfig::default()
    })?;
    Ok(fetcher.crls_for(certificate))
}

/// `$XDG_CACHE_HOME/helsemelding/crl`, else `$HOME/.cache/helsemelding/crl`.
fn default_crl_cache() -> Option<PathBuf> {
    let non_empty = |name: &str| std::env::var_os(name).filter(|value| !value.is_empty());
    let base = non_empty("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| non_empty("HOME").map(|home| PathBuf::from(home).join(".cache")))?;
    Some(base.join("helsemelding").join("crl"))
}

fn describe(certificate: &Certificate, report: &CheckReport) -> CheckOutput {
    let rfc3339 = |at: DateTime<Utc>| at.to_rfc3339_opts(SecondsFormat::Secs, true);
    CheckOutput {
        subject: certificate.subject(),
        issuer: certificate.issuer(),
        serial: certificate.serial_hex(),
        not_before: rfc3339(certificate.not_before()),
        not_after: rfc3339(certificate.not_after()),
        key_usage: certificate
            .key_usage()
            .unwrap_or_default()
            .into_iter()
            .map(|usage| usage.as_str())
            .collect(),
        errors: report
            .errors
            .iter()
            .map(|problem| problem.as_str())
            .collect(),
    }
}

fn print_text(output: &CheckOutput) {
    let list = |items: &[&str]| {
        if items.is_empty() {
            "none".to_string()
        } else {
            items.join(", ")
        }
    };
    println!("subject:    {}", output.subject);
    println!("issuer:     {}", output.issuer);
    println!("serial:     {}", output.serial);
    println!("not_before: {}", output.not_before);
    println!("not_after:  {}", output.not_after);
    println!("key_usage:  {}", list(&output.key_usage));
    println!("errors:     {}", list(&output.errors));
}

fn read(path: &Path) -> Result<Vec<u8>> {
    read_file("reading", path)
}

/// Every certificate in each file: a PEM file may hold several.
fn read_certificates(paths: &[PathBuf]) -> Result<Vec<Certificate>> {
    let mut certificates = Vec::new();
    for path in paths {
        let bytes = read(path)?;
        let pem = X509::stack_from_pem(&bytes)
            .ok()
            .filter(|stack| !stack.is_empty());
        match pem {
            Some(stack) => certificates.extend(stack.into_iter().map(Certificate::from_x509)),
            None => certificates.push(
                Certificate::from_pem_or_der(&bytes)
                    .with_context(|| format!("reading {}", path.display()))?,
            ),
        }
    }
    Ok(certificates)
}

fn parse_rfc3339(text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text)
        .map(|at| at.with_timezone(&Utc))
        .map_err(|e| format!("not an RFC 3339 time ({e}), e.g. 2016-06-01T12:00:00Z"))
}
