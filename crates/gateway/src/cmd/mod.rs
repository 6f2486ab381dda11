//! The subcommands of `helsemelding`: one module per subcommand, each with
//! an `Args` struct (clap) and a `run` function that the binary calls.
pub mod config;
pub mod metadata;

pub mod audit;
pub mod bench;
pub mod cert;
pub mod commtest;
pub mod demo;
mod identity_args;
pub mod listen;
pub mod messages;
pub mod outbox;
pub mod parked;
pub mod protect;
pub mod queues;
pub mod receipts;
pub mod registry;
pub mod sandbox;
pub mod send;
pub mod serve;
mod store_args;
pub mod unprotect;

use std::path::Path;

use anyhow::{bail, Result};

use crate::config::Config;

/// What to do when the broker refuses our user or password.
pub const CHECK_CREDENTIALS: &str = "check HELSEMELDING_BROKER_PASSWORD and the user in broker.url";

/// The configuration of a command that needs one.
fn load_config(path: Option<&Path>) -> Result<Config> {
    let Some(path) = path else {
        bail!("this command needs --config FILE");
    };
    Config::load(path)
}

/// Runs `work` (a command that only uses the store) on a runtime of its
/// own: the store is async, the command is not.
fn block_on<T>(work: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(work)
}

/// Who an operator's command acts as, for the audit log.
fn operator() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("USERNAME"))
        .unwrap_or_else(|_| "unknown".into());
    format!("operator:{user}")
}
