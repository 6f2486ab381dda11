//! Paths to `../shared/fixtures` (real NHN samples; never copied into the repo).

use std::path::PathBuf;

/// The `shared/fixtures` directory beside the workspace root.
pub fn dir() -> PathBuf {
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = workspace.join("../shared/fixtures");
    assert!(
        dir.is_dir(),
        "fixtures not found at {}: the shared/ folder must sit beside the repository",
        dir.display()
    );
    dir
}

/// A file under `shared/fixtures/nhn/`, e.g. `nhn("registry/CPP_93238.xml")`.
pub fn nhn(relative: &str) -> PathBuf {
    dir().join("nhn").join(relative)
}

/// The bytes of a file under `shared/fixtures/nhn/`.
pub fn read_nhn(relative: &str) -> Vec<u8> {
    let path = nhn(relative);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Published test password of `Helsenorge_*.p12` in the fixtures.
pub const HELSENORGE_P12_PASSWORD: &str = "drQhrTUSKyQCHYoY";
/// Published test password of `Counterparty_*.p12` in the fixtures.
pub const COUNTERPARTY_P12_PASSWORD: &str = "XVNQ2QEL1PrREwVD";
