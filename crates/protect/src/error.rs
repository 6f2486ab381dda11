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
}
