//! One module per subcommand.
pub mod metadata;
