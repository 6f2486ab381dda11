//! One module per subcommand.
pub mod config;
pub mod metadata;

pub mod audit;
pub mod bench;
pub mod cert;
mod context;
mod identity_args;
pub mod listen;
pub mod protect;
pub mod queues;
pub mod receipts;
pub mod registry;
pub mod send;
mod store_args;
pub mod unprotect;
