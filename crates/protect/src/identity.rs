//! Our own certificate together with its private key (an [`Identity`]),
//! loaded from PEM or DER files or from a PKCS#12 bundle, and the
//! certificate's chain (intermediate CAs) that signing embeds in the message.
//!
//! NHN and Buypass hand out PKCS#12 bundles encrypted with RC2/3DES, which
//! OpenSSL 3 reads only with its `legacy` provider loaded; this module loads
//! it once for the process before the first bundle is opened.

use std::path::Path;
use std::sync::OnceLock;

use openssl::pkcs12::Pkcs12;
use openssl::pkey::{PKey, Private};
use openssl::provider::Provider;

use crate::{Certificate, Error, Result};

/// A certificate and the private key that belongs to it, with the
/// certificate's chain (intermediates, possibly the root) if one was given.
#[derive(Clone)]
pub struct Identity {
    certificate: Certificate,
    key: PKey<Private>,
    chain: Vec<Certificate>,
}

impl Identity {
    /// Pairs a certificate with its private key; fails when the key does not
    /// belong to the certificate.
    pub fn new(certificate: Certificate, key: PKey<Private>) -> Result<Self> {
        let matches = certificate
            .x509()
            .public_key()
            .map(|public| public.public_eq(&key))
            .unwrap_or(false);
        if !matches {
            return Err(Error::KeyMismatch {
                serial: certificate.serial_hex(),
            });
        }
        Ok(Identity {
            certificate,
            key: provider_native(key),
            chain: Vec::new(),
        })
    }

    /// The same identity with `chain` as its certificate's chain: the
    /// intermediate CAs up to (and possibly including) the root, in any
    /// order. Signing embeds every one of them except self-signed roots
    /// and the certificate itself; none is checked here.
    pub fn with_chain(mut self, chain: Vec<Certificate>) -> Self {
        self.chain = chain;
        self
    }

    /// Reads a certificate file and a private key file, each PEM or DER.
    /// Keys may be PKCS#8 or PKCS#1 (RSA), unencrypted. A PEM certificate
    /// file may hold several certificates: the one the key belongs to is
    /// the identity's, the others (in file order) its chain.
    pub fn from_files(certificate_path: &Path, key_path: &Path) -> Result<Self> {
        let cert_bytes = read(certificate_path)?;
        let mut certificates =
            Certificate::all_from_pem_or_der(&cert_bytes).map_err(|e| Error::CertificateFile {
                path: certificate_path.display().to_string(),
                reason: e.to_string(),
            })?;
        let key_bytes = read(key_path)?;
        let key = private_key_from_pem_or_der(&key_bytes).map_err(|reason| Error::KeyLoad {
            path: key_path.display().to_string(),
            reason,
        })?;
        let mismatch = || Error::KeyLoad {
            path: key_path.display().to_string(),
            reason: format!(
                "the key does not belong to the certificate in {}",
                certificate_path.display()
            ),
        };
        let own = certificates
            .iter()
            .position(|certificate| {
                certificate
                    .x509()
                    .public_key()
                    .is_ok_and(|public| public.public_eq(&key))
            })
            .ok_or_else(mismatch)?;
        let certificate = certificates.remove(own);
        Identity::new(certificate, key)
            .map(|identity| identity.with_chain(certificates))
            .map_err(|_| mismatch())
    }

    /// Reads a PKCS#12 bundle file (legacy RC2/3DES bundles included).
    pub fn from_pkcs12_file(path: &Path, password: &str) -> Result<Self> {
        let bytes = read(path)?;
        Identity::from_pkcs12(&bytes, password).map_err(|e| match e {
            Error::P12 { reason, .. } => Error::P12 {
                path: path.display().to_string(),
                reason,
            },
            other => other,
        })
    }

    /// Reads a PKCS#12 bundle from bytes; errors name the source `<memory>`.
    /// The bundle's other certificates (CA certificates) become the chain.
    pub fn from_pkcs12(der: &[u8], password: &str) -> Result<Self> {
        let fail = |reason: String| Error::P12 {
            path: "<memory>".to_string(),
            reason,
        };
        ensure_legacy_provider().map_err(fail)?;
        let bundle = Pkcs12::from_der(der).map_err(|_| fail("not a PKCS#12 bundle".into()))?;
        let parsed = bundle
            .parse2(password)
            .map_err(|_| fail("wrong password or damaged bundle".into()))?;
        let (Some(cert), Some(key)) = (parsed.cert, parsed.pkey) else {
            return Err(fail(
                "the bundle lacks a certificate or a private key".into(),
            ));
        };
        let chain = parsed
            .ca
            .map(|stack| stack.into_iter().map(Certificate::from_x509).collect())
            .unwrap_or_default();
        Identity::new(Certificate::from_x509(cert), key)
            .map(|identity| identity.with_chain(chain))
            .map_err(|_| fail("the bundle's key does not belong to its certificate".into()))
    }

    /// The certificate.
    pub fn certificate(&self) -> &Certificate {
        &self.certificate
    }

    /// The certificate's chain as given (see [`Identity::with_chain`]).
    pub fn chain(&self) -> &[Certificate] {
        &self.chain
    }

    /// What signing embeds beside the certificate: the chain without
    /// self-signed roots and without the certificate itself, each once.
    pub fn chain_to_embed(&self) -> Vec<&Certificate> {
        let mut embed: Vec<&Certificate> = Vec::new();
        for candidate in &self.chain {
            if !candidate.is_self_signed()
                && *candidate != self.certificate
                && !embed.contains(&candidate)
            {
                embed.push(candidate);
            }
        }
        embed
    }

    /// The private key (for the CMS code and benchmarks; never print it).
    pub fn private_key(&self) -> &PKey<Private> {
        &self.key
    }
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key is deliberately left out.
        f.debug_struct("Identity")
            .field("certificate", &self.certificate)
            .field("chain", &self.chain)
            .finish_non_exhaustive()
    }
}

/// Loads OpenSSL's `legacy` provider once (keeping the default one), so
/// RC2/3DES PKCS#12 bundles can be opened. The provider stays loaded for the
/// life of the process.
pub(crate) fn ensure_legacy_provider() -> std::result::Result<(), String> {
    static LEGACY: OnceLock<std::result::Result<Provider, String>> = OnceLock::new();
    LEGACY
        .get_or_init(|| {
            Provider::try_load(None, "legacy", true)
                .map_err(|e| format!("OpenSSL legacy provider unavailable: {e}"))
        })
        .as_ref()
        .map(|_| ())
        .map_err(Clone::clone)
}

/// A key built through the legacy API (e.g. `PKey::from_rsa`) is copied into
/// OpenSSL 3's provider form on every CMS operation, losing its cached RSA
/// blinding each time; decoding it once from PKCS#8 makes it provider-native.
fn provider_native(key: PKey<Private>) -> PKey<Private> {
    key.private_key_to_pkcs8()
        .and_then(|der| PKey::private_key_from_pkcs8(&der))
        .unwrap_or(key)
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::FileRead {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

/// PEM (PKCS#8 or `RSA PRIVATE KEY`) or DER (PKCS#8 or PKCS#1).
fn private_key_from_pem_or_der(bytes: &[u8]) -> std::result::Result<PKey<Private>, String> {
    let is_pem = bytes.windows(10).any(|w| w == b"-----BEGIN");
    if is_pem {
        if bytes.windows(9).any(|w| w == b"ENCRYPTED") {
            return Err("encrypted PEM keys are not supported; use PKCS#12".into());
        }
        return PKey::private_key_from_pem(bytes)
            .map_err(|_| "not a PEM private key (PKCS#8 or PKCS#1)".into());
    }
    PKey::private_key_from_der(bytes)
        .or_else(|_| PKey::private_key_from_pkcs8(bytes))
        .map_err(|_| "not a DER private key (PKCS#8 or PKCS#1)".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_key_is_an_error() {
        assert!(private_key_from_pem_or_der(b"").is_err());
        assert!(private_key_from_pem_or_der(b"\x30\x03\x02\x01\x00").is_err());
        assert!(private_key_from_pem_or_der(b"-----BEGIN PRIVATE KEY-----\nAA\n").is_err());
    }

    #[test]
    fn garbage_bundle_is_a_p12_error() {
        assert!(matches!(
            Identity::from_pkcs12(b"nope", "x"),
            Err(Error::P12 { .. })
        ));
    }
}
