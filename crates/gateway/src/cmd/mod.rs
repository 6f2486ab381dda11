//! One module per subcommand.
pub mod config;
pub mod metadata;

pub mod audit;
pub mod bench;
pub mod cert;
pub mod commtest;
mod context;
pub mod demo;
mod identity_args;
pub mod listen;
pub mod outbox;
pub mod parked;
pub mod protect;
pub mod queues;
pub mod receipts;
pub mod registry;
pub mod send;
mod store_args;
pub mod unprotect;

/// Who an operator's command acts as, for the audit log.
fn operator() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("USERNAME"))
        .unwrap_or_else(|_| "unknown".into());
    format!("operator:{user}")
}
