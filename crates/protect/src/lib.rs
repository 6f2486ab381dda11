//! Message protection for the NHN profile: CMS sign-then-encrypt and
//! decrypt-then-verify, and the X.509 checks every certificate passes before
//! it is used (validity period, key usage, chain, revocation).
//!
//! The judging code is pure: it takes the instant and the revocation data it
//! judges by as arguments. Fetching CRLs over the network is a separate piece
//! that keeps a cache warm, so a slow CRL server never stalls a send.
//!
//! ```
//! use helsemelding_protect::Certificate;
//! // Certificates are read from PEM or DER alike.
//! assert!(Certificate::from_pem_or_der(b"not a certificate").is_err());
//! ```

#![deny(missing_docs)]

mod certificate;
pub mod check;
mod cms;
mod crl;
mod error;
mod identity;
pub mod revocation;

pub use certificate::{Certificate, KeyUsage};
pub use check::{
    check_certificate, check_certificate_with_intermediates, CheckReport, CheckRequest, Problem,
    RevocationPolicy, TrustAnchors, Usage,
};
pub use cms::{
    protect, unprotect, unprotect_detailed, ContentCipher, ProtectOptions, UnprotectOptions,
    Unprotected, CONTENT_TYPE_PROTECTED, CONTENT_TYPE_UNPROTECTED, MAX_EMBEDDED_CERTIFICATES,
};
pub use crl::Crl;
pub use error::Error;
pub use identity::Identity;
pub use revocation::{BlockingCrlFetcher, CrlFetcher, CrlSource, FetcherConfig, StaticCrls};

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
