//! `helsemelding`: the gateway binary and the operators' CLI.
//!
//! This file parses the command line and hands each subcommand to the
//! library ([`helsemelding_gateway::cmd`]: an `Args` struct (clap) and a
//! `run` function per subcommand). What belongs to the process stays here:
//! the tracing subscriber, the end on a closed pipe, and the exit status.
//! Failures print one line on stderr that names the cause and exit
//! non-zero; nothing here ever prints key material or payload bytes to the
//! log.

// The doc comments here are clap's help texts, not HTML: `<KEY>` is no tag.
#![allow(rustdoc::invalid_html_tags)]

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use helsemelding_gateway::cmd;
use helsemelding_gateway::cmd::CHECK_CREDENTIALS;

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
    /// Run the gateway daemon: receive pipelines, outbox pump, the folder
    /// drop (`[folder] root`) and the HTTP API (`[http]`), until SIGTERM or SIGINT.
    Serve(cmd::serve::Args),
    /// Our queues and their message counts (where the broker can tell).
    Queues(cmd::queues::Args),
    /// Communication test against a party: round-trip time, non-zero exit past the limit.
    Commtest(cmd::commtest::Args),
    /// See it work: four parties exchange messages on a throw-away PKI and the local queue.
    Demo(cmd::demo::Args),
    /// Make a throw-away installation of two parties (PKI, registry,
    /// configurations with a folder drop and the HTTP API) to try `serve`.
    Sandbox(cmd::sandbox::Args),
    /// See (`outbox list`), send (`outbox flush`), retry (`outbox retry`) and
    /// drop (`outbox drop`) what the outbox holds.
    Outbox(cmd::outbox::Args),
    /// See (`parked list`), put back (`parked requeue`) and drop (`parked
    /// drop`) the messages kept in the store instead of dead-lettered.
    Parked(cmd::parked::Args),
    /// Where each message is (`messages list`), one with its history
    /// (`messages show ID`) and every state change (`messages events`).
    Messages(cmd::messages::Args),
}

fn main() -> ExitCode {
    end_quietly_on_a_closed_pipe();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("HELSEMELDING_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, never into a log file.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("helsemelding: {}{}", one_line(&error), hint(&error));
            ExitCode::FAILURE
        }
    }
}

/// What to do about an error whose causes do not say it: the transport
/// knows that the broker refused the user, the gateway knows where the
/// password comes from.
fn hint(error: &anyhow::Error) -> String {
    let refused = error.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<helsemelding_transport::Error>(),
            Some(helsemelding_transport::Error::AuthenticationFailed { .. })
        )
    });
    if refused {
        format!(": {CHECK_CREDENTIALS}")
    } else {
        String::new()
    }
}

/// The error and its causes as one line, so that log collectors and the
/// EHR's wrapper see one event: each cause once (an error whose message
/// already includes its source's text is not followed by that text
/// again), whitespace collapsed, and control characters (a broker's or a
/// peer's text may be among the causes) shown escaped.
fn one_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        let text = text.trim();
        if text.is_empty() || line.contains(text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(text);
    }
    let line = line.split_whitespace().collect::<Vec<_>>().join(" ");
    helsemelding_wire::text::for_display(&line, 2000)
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
        Command::Serve(args) => cmd::serve::run(cli.config.as_deref(), args),
        Command::Queues(args) => cmd::queues::run(cli.config.as_deref(), args),
        Command::Commtest(args) => cmd::commtest::run(cli.config.as_deref(), args),
        Command::Demo(args) => cmd::demo::run(args),
        Command::Sandbox(args) => cmd::sandbox::run(args),
        Command::Outbox(args) => cmd::outbox::run(cli.config.as_deref(), args),
        Command::Parked(args) => cmd::parked::run(cli.config.as_deref(), args),
        Command::Messages(args) => cmd::messages::run(cli.config.as_deref(), args),
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
    /// An error whose message includes its source's, as thiserror's
    /// `#[error("…: {source}")]` with `#[source]` makes it.
    #[derive(Debug)]
    struct Outer(std::io::Error);

    impl std::fmt::Display for Outer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "outer about queue q: {}", self.0)
        }
    }

    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn a_cause_is_said_once_and_control_characters_are_escaped() {
        let inner = std::io::Error::other("no route\n to\x1b[2J host");
        let error = anyhow::Error::new(Outer(inner)).context("sending");
        // `{:#}` repeats the io error: once inside Outer, once as its source.
        assert_eq!(format!("{error:#}").matches("no route").count(), 2);
        let line = super::one_line(&error);
        assert_eq!(line.matches("no route").count(), 1, "{line}");
        assert_eq!(
            line,
            "sending: outer about queue q: no route to\\x1b[2J host"
        );
        let forged = anyhow::anyhow!("a\nb\x1b[2J");
        assert_eq!(super::one_line(&forged), "a b\\x1b[2J");
    }

    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
