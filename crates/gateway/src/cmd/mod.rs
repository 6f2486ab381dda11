//! One module per subcommand.
pub mod config;
pub mod metadata;

pub mod audit;
pub mod bench;
pub mod cert;
mod identity_args;
pub mod protect;
pub mod receipts;
pub mod registry;
mod store_args;
pub mod unprotect;
