//! One module per subcommand.

pub mod cert;
