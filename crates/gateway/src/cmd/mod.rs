//! One module per subcommand.
pub mod config;
pub mod metadata;

pub mod bench;
pub mod cert;
mod identity_args;
pub mod protect;
pub mod registry;
pub mod unprotect;
