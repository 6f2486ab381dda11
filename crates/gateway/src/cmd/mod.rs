//! One module per subcommand.
pub mod registry;
