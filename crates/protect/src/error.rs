//! The one error type of this crate.

/// What went wrong while protecting, unprotecting or judging a certificate.
///
/// Variants name the certificate (by serial, lowercase hex) or the file they
/// concern; they never carry key material or payload bytes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The bytes are neither a PEM nor a DER X.509 certificate.
    #[error("not an X.509 certificate (PEM or DER): {reason}")]
    CertificateParse { reason: String },
    /// The bytes are neither a PEM nor a DER X.509 CRL.
    #[error("not an X.509 CRL (PEM or DER): {reason}")]
    CrlParse { reason: String },
    /// A CRL file given by the operator could not be read.
    #[error("cannot read CRL file {path}: {reason}")]
    CrlFile {
        path: std::path::PathBuf,
        reason: String,
    },
    /// The HTTP client or runtime for fetching CRLs could not be set up.
    #[error("cannot set up CRL fetching: {reason}")]
    CrlFetcherSetup { reason: String },

    /// A file could not be read.
    #[error("cannot read {path}: {reason}")]
    FileRead { path: String, reason: String },

    /// A certificate file could not be parsed.
    #[error("certificate file {path}: {reason}")]
    CertificateFile { path: String, reason: String },

    /// A private key file could not be read or does not fit its certificate.
    #[error("private key file {path}: {reason}")]
    KeyLoad { path: String, reason: String },

    /// A private key does not belong to the certificate it was paired with.
    #[error("the private key does not belong to certificate serial {serial}")]
    KeyMismatch { serial: String },

    /// A PKCS#12 bundle could not be opened.
    #[error("PKCS#12 bundle {path}: {reason}")]
    P12 { path: String, reason: String },

    /// Building the protected message failed.
    #[error("cannot protect the message ({step}): {reason}")]
    Protect { step: &'static str, reason: String },

    /// The bytes are not the expected CMS structure (`layer` says which:
    /// the outer EnvelopedData or the inner SignedData).
    #[error("not a CMS {layer}: {reason}")]
    NotCms { layer: &'static str, reason: String },

    /// None of our decryption certificates is among the envelope's recipients.
    #[error(
        "message is not encrypted to us: expected recipient serial {}, found {}",
        .expected_serials.join(" or "),
        if .found_serials.is_empty() { "no key-transport recipient".to_string() } else { .found_serials.join(", ") }
    )]
    NotForUs {
        expected_serials: Vec<String>,
        found_serials: Vec<String>,
    },

    /// The content-encryption algorithm is refused (DES always, 3DES when configured).
    #[error("refused content-encryption algorithm {algorithm}")]
    RefusedCipher { algorithm: String },

    /// Decrypting with our key failed (wrong key, damaged or tampered envelope).
    #[error("decryption with certificate serial {recipient_serial} failed: {reason}")]
    DecryptFailed {
        recipient_serial: String,
        reason: String,
    },

    /// The signed content must carry exactly one signature.
    #[error("expected exactly one signer, found {count}")]
    SignerCount { count: usize },

    /// The message was signed by another certificate than the expected sender's.
    #[error(
        "message signed by certificate serial {actual_serial}, expected sender certificate serial {expected_serial}"
    )]
    WrongSigner {
        expected_serial: String,
        actual_serial: String,
    },

    /// The signature by the expected certificate does not verify (content or
    /// signed attributes altered, or a broken signature).
    #[error("signature by certificate serial {signer_serial} does not verify: {reason}")]
    BadSignature {
        signer_serial: String,
        reason: String,
    },
}
