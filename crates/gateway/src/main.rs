//! `helsemelding`: the gateway binary and the operators' CLI.
//!
//! Each subcommand lives in its own module under `cmd/` and exposes an
//! `Args` struct (clap) and a `run` function. Failures print one line on
//! stderr that names the cause and exit non-zero; nothing here ever prints
//! key material or payload bytes to the log.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd;

/// Signed and encrypted health messages over Norsk Helsenett's service bus.
#[derive(Parser)]
#[command(name = "helsemelding", version, about, long_about = None)]
struct Cli {
    /// Configuration file (TOML); keys may be overridden by HELSEMELDING_<SECTION>_<KEY>.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the version and the profile this build speaks.
    Version,
    /// Sign a payload and encrypt it to a recipient (CMS, DER).
    Protect(cmd::protect::Args),
    /// Decrypt a protected message and verify its sender's signature.
    Unprotect(cmd::unprotect::Args),
    /// Performance figures, each as a ratio to a limit measured in the same run.
    Bench(cmd::bench::Args),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("HELSEMELDING_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("helsemelding: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let _ = &cli.config;
    match cli.command {
        Command::Version => {
            println!("helsemelding {}", env!("CARGO_PKG_VERSION"));
            Ok(ExitCode::SUCCESS)
        }
        Command::Protect(args) => cmd::protect::run(args),
        Command::Unprotect(args) => cmd::unprotect::run(args),
        Command::Bench(args) => cmd::bench::run(args),
    }
}
