//! The one map from a failure the sender must hear about to the error
//! condition it hears (PROFILE.md "Error conditions"), as rustls has one
//! conversion from its errors to the alerts on the wire. Every report the
//! engine decides on names its [`Failure`]; nothing else picks a condition.
//! (`wire` classifies its own header and payload errors; the application
//! names its own condition in [`HandlerError::Reject`](super::HandlerError).)

use helsemelding_protect::Problem;
use helsemelding_wire::error_report::{ErrorCondition, ErrorReport};

/// Why a message is refused, as far as the condition depends on it.
#[derive(Debug, Clone, Copy)]
pub enum Failure<'a> {
    /// A header or payload check of `wire` failed.
    Wire(&'a helsemelding_wire::Error),
    /// The sender's signing certificate has these problems.
    Certificate(&'a [Problem]),
    /// Signed by a certificate that is not one of the claimed sender's.
    WrongSigner,
    /// A refused content-encryption algorithm.
    RefusedCipher,
    /// Not for us, not CMS, undecryptable, or a broken signature.
    Unopenable,
    /// The registry knows no such party, or no signing certificate of it.
    UnknownSender,
    /// An unprotected message, and unprotected ones are not taken.
    Unprotected,
    /// A message function the sender's profile does not allow.
    FunctionNotAllowed,
    /// The application named this condition.
    Application(ErrorCondition),
    /// The application rejected the content of a message that is no
    /// MsgHead (a MsgHead gets an AppRec instead).
    ContentRejected,
}

impl Failure<'_> {
    /// The condition the sender hears; `None` for a `wire` error that no
    /// sender is told of (there is nobody to tell, or nothing to say).
    pub fn condition(&self) -> Option<ErrorCondition> {
        Some(match self {
            Failure::Wire(error) => return error.condition(),
            // Several problems at once are `invalid-certificate`, as the
            // reference library reports them.
            Failure::Certificate([only]) => only.error_condition(),
            Failure::Certificate(_) => ErrorCondition::InvalidCertificate,
            Failure::WrongSigner => ErrorCondition::SpoofingAttack,
            Failure::RefusedCipher | Failure::Unprotected | Failure::FunctionNotAllowed => {
                ErrorCondition::UnsupportedMessage
            }
            Failure::Unopenable => ErrorCondition::InvalidCertificate,
            Failure::UnknownSender => ErrorCondition::MissingCertificate,
            Failure::Application(condition) => *condition,
            Failure::ContentRejected => ErrorCondition::InternalError,
        })
    }

    /// The report of this failure with `description` and condition data,
    /// when the sender is to hear of it.
    pub fn report(&self, description: impl Into<String>, data: Vec<String>) -> Option<ErrorReport> {
        Some(ErrorReport {
            condition: self.condition()?,
            description: description.into(),
            data,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_failure_has_its_condition() {
        use ErrorCondition as C;
        let cases: [(Failure<'_>, C); 10] = [
            (
                Failure::Certificate(&[Problem::Expired]),
                C::ExpiredCertificate,
            ),
            (
                Failure::Certificate(&[Problem::Revoked]),
                C::RevokedCertificate,
            ),
            (
                Failure::Certificate(&[Problem::Untrusted]),
                C::UnverifiedCertificate,
            ),
            (
                Failure::Certificate(&[Problem::Expired, Problem::Revoked]),
                C::InvalidCertificate,
            ),
            (Failure::WrongSigner, C::SpoofingAttack),
            (Failure::RefusedCipher, C::UnsupportedMessage),
            (Failure::Unopenable, C::InvalidCertificate),
            (Failure::UnknownSender, C::MissingCertificate),
            (Failure::FunctionNotAllowed, C::UnsupportedMessage),
            (Failure::ContentRejected, C::InternalError),
        ];
        for (failure, condition) in cases {
            assert_eq!(failure.condition(), Some(condition), "{failure:?}");
        }
    }
}
