//! One module per subcommand.
pub mod config;
pub mod metadata;

pub mod cert;
pub mod registry;
