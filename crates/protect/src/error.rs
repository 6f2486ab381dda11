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
    CertificateParse {
        /// Why, as the parser said it.
        reason: String,
    },
    /// The bytes are neither a PEM nor a DER X.509 CRL.
    #[error("not an X.509 CRL (PEM or DER): {reason}")]
    CrlParse {
        /// Why, as the parser said it.
        reason: String,
    },
    /// A CRL file given by the operator could not be read.
    #[error("cannot read CRL file {path}: {reason}")]
    CrlFile {
        /// The CRL file that could not be read.
        path: std::path::PathBuf,
        /// Why, as the operating system or the parser said it.
        reason: String,
    },
    /// The HTTP client or runtime for fetching CRLs could not be set up.
    #[error("cannot set up CRL fetching: {reason}")]
    CrlFetcherSetup {
        /// Why, as the HTTP client or runtime said it.
        reason: String,
    },

    /// A file could not be read.
    #[error("cannot read {path}: {reason}")]
    FileRead {
        /// The file that could not be read.
        path: String,
        /// Why, as the operating system said it.
        reason: String,
    },

    /// A certificate file could not be parsed.
    #[error("certificate file {path}: {reason}")]
    CertificateFile {
        /// The certificate file.
        path: String,
        /// Why its contents are not certificates.
        reason: String,
    },

    /// A private key file could not be read or does not fit its certificate.
    #[error("private key file {path}: {reason}")]
    KeyLoad {
        /// The private key file.
        path: String,
        /// Why it was refused: unreadable, or not the certificate's key.
        reason: String,
    },

    /// A private key does not belong to the certificate it was paired with.
    #[error("the private key does not belong to certificate serial {serial}")]
    KeyMismatch {
        /// The certificate's serial, lowercase hex.
        serial: String,
    },

    /// A PKCS#12 bundle could not be opened.
    #[error("PKCS#12 bundle {path}: {reason}")]
    P12 {
        /// The bundle's file, or `<memory>` for bytes given directly.
        path: String,
        /// Why, as the library said it.
        reason: String,
    },

    /// Building the protected message failed.
    #[error("cannot protect the message ({step}): {reason}")]
    Protect {
        /// The step that failed: `sign` or `encrypt`.
        step: &'static str,
        /// Why, as the library said it.
        reason: String,
    },

    /// The bytes are not the expected CMS structure (`layer` says which:
    /// the outer EnvelopedData or the inner SignedData).
    #[error("not a CMS {layer}: {reason}")]
    NotCms {
        /// The structure expected: `EnvelopedData` or `SignedData`.
        layer: &'static str,
        /// Why the bytes are not that structure.
        reason: String,
    },

    /// None of our decryption certificates is among the envelope's recipients.
    #[error(
        "message is not encrypted to us: expected recipient serial {}, found {}",
        .expected_serials.join(" or "),
        if .found_serials.is_empty() { "no key-transport recipient".to_string() } else { .found_serials.join(", ") }
    )]
    NotForUs {
        /// The serials of our decryption certificates, lowercase hex.
        expected_serials: Vec<String>,
        /// The envelope's recipients: serial in lowercase hex, else the key
        /// identifier; empty when it has no key-transport recipient.
        found_serials: Vec<String>,
    },

    /// The content-encryption algorithm is refused (DES always, 3DES when configured).
    #[error("refused content-encryption algorithm {algorithm}")]
    RefusedCipher {
        /// The algorithm's name and OID, e.g. `DES-CBC (1.3.14.3.2.7)`.
        algorithm: String,
    },

    /// Decrypting with our key failed (wrong key, damaged or tampered envelope).
    #[error("decryption with certificate serial {recipient_serial} failed: {reason}")]
    DecryptFailed {
        /// The serial of the certificate whose key was tried last, lowercase hex.
        recipient_serial: String,
        /// Why, as the library said it.
        reason: String,
    },

    /// The signed content must carry exactly one signature.
    #[error("expected exactly one signer, found {count}")]
    SignerCount {
        /// How many signers the SignedData carries.
        count: usize,
    },

    /// The message was signed by another certificate than the expected sender's.
    #[error(
        "message signed by certificate serial {actual_serial}, expected sender certificate serial {expected_serial}"
    )]
    WrongSigner {
        /// The accepted serials, lowercase hex, joined by ` or `; `(none)`
        /// when no signer was accepted.
        expected_serial: String,
        /// The signer the message names: serial in lowercase hex, else the
        /// key identifier.
        actual_serial: String,
    },

    /// The signature by the expected certificate does not verify (content or
    /// signed attributes altered, or a broken signature).
    #[error("signature by certificate serial {signer_serial} does not verify: {reason}")]
    BadSignature {
        /// The signing certificate's serial, lowercase hex.
        signer_serial: String,
        /// Why, as the library said it.
        reason: String,
    },
}
