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
mod config;
mod devpki;

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
    /// Print the version.
    Version,
    /// Show the payload metadata (X-MessageInfo-* etc.) of a MsgHead or AppRec file.
    Metadata(cmd::metadata::Args),
    /// Show the effective configuration (file plus HELSEMELDING_* variables).
    Config(cmd::config::Args),
    /// Certificate tools (`cert check`).
    Cert(cmd::cert::Args),
    /// Read NHN registry documents; manage the embedded file registry.
    Registry(cmd::registry::Args),
    /// Sign a payload and encrypt it to a recipient (CMS, DER).
    Protect(cmd::protect::Args),
    /// Decrypt a protected message and verify its sender's signature.
    Unprotect(cmd::unprotect::Args),
    /// Check, read or prune the hash-chained audit log.
    Audit(cmd::audit::Args),
    /// Sent messages and their application receipts (AppRec); what is overdue.
    Receipts(cmd::receipts::Args),
    /// Performance figures, each as a ratio to a limit measured in the same run.
    Bench(cmd::bench::Args),
    /// Sign, encrypt and send one message; prints its message id (async) or the reply (--sync).
    Send(cmd::send::Args),
    /// Run the receive pipelines, writing each accepted message to a directory.
    Listen(cmd::listen::Args),
    /// Our queues and their message counts (where the broker can tell).
    Queues(cmd::queues::Args),
    /// Communication test against a party: round-trip time, non-zero exit past the limit.
    Commtest(cmd::commtest::Args),
    /// See it work: four parties exchange messages on a throw-away PKI and the local queue.
    Demo(cmd::demo::Args),
    /// See (`outbox list`) and send (`outbox flush`) what the outbox still holds.
    Outbox(cmd::outbox::Args),
}

fn main() -> ExitCode {
    end_quietly_on_a_closed_pipe();
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
            // One line, whatever the causes' own messages contain, so that
            // log collectors and the EHR's wrapper see one event.
            let message = format!("{error:#}");
            eprintln!(
                "helsemelding: {}",
                message.split_whitespace().collect::<Vec<_>>().join(" ")
            );
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Config(args) => cmd::config::run(cli.config.as_deref(), args),
        Command::Version => {
            println!("helsemelding {}", env!("CARGO_PKG_VERSION"));
            Ok(ExitCode::SUCCESS)
        }
        Command::Metadata(args) => cmd::metadata::run(args),
        Command::Cert(args) => cmd::cert::run(args),
        Command::Registry(args) => cmd::registry::run(args),
        Command::Protect(args) => cmd::protect::run(args),
        Command::Unprotect(args) => cmd::unprotect::run(args),
        Command::Bench(args) => cmd::bench::run(args),
        Command::Audit(args) => cmd::audit::run(cli.config.as_deref(), args),
        Command::Receipts(args) => cmd::receipts::run(cli.config.as_deref(), args),
        Command::Send(args) => cmd::send::run(cli.config.as_deref(), args),
        Command::Listen(args) => cmd::listen::run(cli.config.as_deref(), args),
        Command::Queues(args) => cmd::queues::run(cli.config.as_deref(), args),
        Command::Commtest(args) => cmd::commtest::run(cli.config.as_deref(), args),
        Command::Demo(args) => cmd::demo::run(args),
        Command::Outbox(args) => cmd::outbox::run(cli.config.as_deref(), args),
    }
}

/// Output into a pipe whose reader is gone (`helsemelding registry show …
/// | head`) ends the process quietly with the shell's status for SIGPIPE,
/// as for other command-line tools, instead of a panic message from
/// `println!`. The signal itself stays ignored (Rust's default): a network
/// peer that goes away must be an error the code handles, never a kill.
fn end_quietly_on_a_closed_pipe() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.starts_with("failed printing to std") && message.contains("Broken pipe") {
            std::process::exit(141);
        }
        report(info);
    }));
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
