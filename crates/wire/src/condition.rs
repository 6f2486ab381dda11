//! The error conditions of the profile and their exact wire strings: what
//! a receiver tells a sender on its error queue. Own module, so that the
//! crate's error type and the error report both use it without importing
//! each other.

use std::fmt;
use std::str::FromStr;

/// The error conditions of the profile, with their exact wire strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCondition {
    /// Payload is not XML or fails its schema.
    NotWellFormedXml,
    /// Missing or wrong header field, header vs payload mismatch, bad HER-id.
    InvalidFieldValue,
    /// Wrong key usage, several certificate errors, decryption or verification failure.
    InvalidCertificate,
    /// Certificate not yet valid or expired.
    ExpiredCertificate,
    /// Revoked, or revocation status unknown.
    RevokedCertificate,
    /// Revocation service unavailable (normally retried, not reported).
    RevokedCertificateOffline,
    /// No certificate for the sender.
    MissingCertificate,
    /// The sender's certificate could not be verified.
    UnverifiedCertificate,
    /// Message function or process not in the CPA, or a refused cipher.
    UnsupportedMessage,
    /// The message claims a sender that did not sign it.
    SpoofingAttack,
    /// The application reports an error the sender should know.
    InternalError,
}

impl ErrorCondition {
    /// Every condition.
    pub const ALL: [ErrorCondition; 11] = [
        ErrorCondition::NotWellFormedXml,
        ErrorCondition::InvalidFieldValue,
        ErrorCondition::InvalidCertificate,
        ErrorCondition::ExpiredCertificate,
        ErrorCondition::RevokedCertificate,
        ErrorCondition::RevokedCertificateOffline,
        ErrorCondition::MissingCertificate,
        ErrorCondition::UnverifiedCertificate,
        ErrorCondition::UnsupportedMessage,
        ErrorCondition::SpoofingAttack,
        ErrorCondition::InternalError,
    ];

    /// The exact wire string, e.g. `transport:invalid-field-value`.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCondition::NotWellFormedXml => "transport:not-well-formed-xml",
            ErrorCondition::InvalidFieldValue => "transport:invalid-field-value",
            ErrorCondition::InvalidCertificate => "transport:invalid-certificate",
            ErrorCondition::ExpiredCertificate => "transport:expired-certificate",
            ErrorCondition::RevokedCertificate => "transport:revoked-certificate",
            ErrorCondition::RevokedCertificateOffline => "transport:revoked-certificate-offline",
            ErrorCondition::MissingCertificate => "transport:missing-certificate",
            ErrorCondition::UnverifiedCertificate => "transport:unverified-certificate",
            ErrorCondition::UnsupportedMessage => "transport:unsupported-message",
            ErrorCondition::SpoofingAttack => "abuse:spoofing-attack",
            ErrorCondition::InternalError => "transport:internal-error",
        }
    }

    /// A default description for reports that have no better one.
    pub const fn default_description(self) -> &'static str {
        match self {
            ErrorCondition::NotWellFormedXml => "The payload is not well-formed XML",
            ErrorCondition::InvalidFieldValue => "Invalid or missing field value",
            ErrorCondition::InvalidCertificate => {
                "Invalid certificate, or decryption or signature verification failed"
            }
            ErrorCondition::ExpiredCertificate => "Certificate is expired or not yet valid",
            ErrorCondition::RevokedCertificate => {
                "Certificate is revoked or its revocation status is unknown"
            }
            ErrorCondition::RevokedCertificateOffline => "Revocation status could not be checked",
            ErrorCondition::MissingCertificate => "No certificate found for the sender",
            ErrorCondition::UnverifiedCertificate => {
                "The sender's certificate could not be verified"
            }
            ErrorCondition::UnsupportedMessage => "Message function or process is not supported",
            ErrorCondition::SpoofingAttack => {
                "The message was not signed by the party it claims to come from"
            }
            ErrorCondition::InternalError => "The receiving application reported an error",
        }
    }
}

impl fmt::Display for ErrorCondition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ErrorCondition {
    type Err = UnknownCondition;

    fn from_str(text: &str) -> Result<ErrorCondition, UnknownCondition> {
        let text = text.trim();
        ErrorCondition::ALL
            .into_iter()
            .find(|c| c.as_str().eq_ignore_ascii_case(text))
            .ok_or_else(|| UnknownCondition(text.to_string()))
    }
}

/// An `errorCondition` that is none of the profile's (kept as text by
/// the error-report reader: peers may send their own).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown error condition {0:?}")]
pub struct UnknownCondition(pub String);
