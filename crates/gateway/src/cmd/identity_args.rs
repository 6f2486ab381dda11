//! What the protect/unprotect commands share: loading an identity from a
//! certificate + key pair or a PKCS#12 bundle (password from the
//! environment, never an argument), and reading/writing payloads via files
//! or stdin/stdout.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use helsemelding_protect::{Certificate, Identity};

/// Environment variable holding the PKCS#12 password (empty when unset).
pub const P12_PASSWORD_ENV: &str = "HELSEMELDING_P12_PASSWORD";

/// Loads the identity given either as `cert` + `key` or as `p12`; `role`
/// names it in errors (e.g. "signing"). `None` when none of them is given.
pub fn load_identity(
    role: &str,
    cert: Option<&Path>,
    key: Option<&Path>,
    p12: Option<&Path>,
) -> anyhow::Result<Option<Identity>> {
    let identity = match (cert, key, p12) {
        (None, None, None) => return Ok(None),
        (Some(cert), Some(key), None) => Identity::from_files(cert, key),
        (None, None, Some(p12)) => {
            let password = std::env::var(P12_PASSWORD_ENV).unwrap_or_default();
            Identity::from_pkcs12_file(p12, &password)
        }
        _ => bail!("{role} identity: give either --{role}-cert with --{role}-key, or --{role}-p12"),
    };
    identity
        .map(Some)
        .with_context(|| format!("{role} identity"))
}

/// Reads a certificate file (PEM or DER); `role` names it in errors.
pub fn load_certificate(role: &str, path: &Path) -> anyhow::Result<Certificate> {
    let bytes =
        std::fs::read(path).with_context(|| format!("{role} certificate {}", path.display()))?;
    Certificate::from_pem_or_der(&bytes)
        .with_context(|| format!("{role} certificate {}", path.display()))
}

/// The bytes of `input`, or of stdin when absent.
pub fn read_input(input: Option<&PathBuf>) -> anyhow::Result<Vec<u8>> {
    match input {
        Some(path) => std::fs::read(path).with_context(|| format!("input {}", path.display())),
        None => {
            let mut bytes = Vec::new();
            std::io::stdin()
                .lock()
                .read_to_end(&mut bytes)
                .context("reading stdin")?;
            Ok(bytes)
        }
    }
}

/// Writes `bytes` to `output`, or to stdout when absent.
pub fn write_output(output: Option<&PathBuf>, bytes: &[u8]) -> anyhow::Result<()> {
    match output {
        Some(path) => {
            std::fs::write(path, bytes).with_context(|| format!("output {}", path.display()))
        }
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(bytes).context("writing stdout")?;
            stdout.flush().context("writing stdout")
        }
    }
}
