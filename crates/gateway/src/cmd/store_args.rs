//! Finding the store: from `--store PATH`, else from the configuration.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Result;
use helsemelding_store::Store;

use crate::config::Config;

/// Where the SQLite store is, for commands that only read or check it.
#[derive(clap::Args)]
pub struct StoreArgs {
    /// The store database (default: `store.path` of the configuration).
    #[arg(long, value_name = "PATH", global = true)]
    store: Option<PathBuf>,
}

impl StoreArgs {
    /// Opens the store named by `--store` or by the configuration file.
    pub fn open(&self, config: Option<&Path>) -> Result<Arc<dyn Store>> {
        let path = match (&self.store, config) {
            (Some(path), _) => path.clone(),
            (None, Some(config)) => Config::load(config)?.store_path,
            (None, None) => anyhow::bail!("no store: give --store PATH or --config FILE"),
        };
        if path.is_dir() {
            anyhow::bail!("store {} is a directory, not a store file", path.display());
        }
        if !path.is_file() {
            anyhow::bail!("store {} does not exist", path.display());
        }
        crate::assembly::open_store(&path)
    }
}
