//! One module per subcommand.
pub mod bench;
mod identity_args;
pub mod protect;
pub mod unprotect;
