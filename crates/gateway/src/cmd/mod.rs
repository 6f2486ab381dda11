//! One module per subcommand.
pub mod metadata;
pub mod config;

pub mod cert;
pub mod registry;
