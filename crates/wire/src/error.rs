//! The one error type of this crate.

use crate::condition::ErrorCondition;

/// What failed while reading or building something of the profile.
///
/// Variants name the field, element or queue they concern; they never carry
/// payload content. [`Error::condition`] says which error condition (if any)
/// the sender of a rejected message should be told about.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A HER-id field does not hold a positive integer.
    #[error("{field} is not a valid HER-id: {reason}")]
    InvalidHerId {
        /// The field or element that held it (e.g. `fromHerId`).
        field: String,
        /// The value refused, as text (a header value, never payload),
        /// cut to 64 characters.
        value: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// Required message header fields are absent, named as the reference
    /// library names them (`toHerId`, `fromHerId`, `Label`, `applicationTimeStamp`,
    /// `ContentType`, `MessageId`), in its order of checking.
    #[error("missing header fields: {}", .fields.join(", "))]
    MissingHeaders {
        /// The missing fields, in the reference library's order.
        fields: Vec<&'static str>,
    },
    /// A header field is present but its value is unusable.
    #[error("header field {field} is invalid: {reason}")]
    InvalidHeader {
        /// The field name as on the wire.
        field: &'static str,
        /// Why it was refused.
        reason: String,
    },
    /// The message is addressed to another party than us.
    #[error(
        "message addressed to HER-id {received}, which is not one of ours ({})",
        join_her_ids(expected)
    )]
    NotForUs {
        /// Our HER-ids.
        expected: Vec<u32>,
        /// The toHerId on the message.
        received: u32,
    },
    /// A value in a payload disagrees with the message header
    /// (e.g. the MsgHead sender vs `fromHerId`).
    #[error("{what} mismatch: header says {expected}, payload says {received}")]
    Mismatch {
        /// What was compared (e.g. `MsgHead sender HER-id`).
        what: &'static str,
        /// The value from the header (what the payload must match).
        expected: String,
        /// The value found in the payload.
        received: String,
    },
    /// The MsgHead names another sender than `fromHerId`: someone claims to
    /// be a party it is not (`abuse:spoofing-attack`).
    #[error(
        "the header says the message is from HER-id {header}, the MsgHead sender names {payload}"
    )]
    SenderMismatch {
        /// `fromHerId`.
        header: u32,
        /// The HER-ids the MsgHead sender names (`/`-separated).
        payload: String,
    },
    /// A queue address or address template is unusable.
    #[error("invalid queue address or template {address:?}: {reason}")]
    InvalidAddress {
        /// The address or template concerned.
        address: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// The payload is not well-formed XML (or not UTF-8).
    #[error("payload is not well-formed XML: {reason}")]
    NotWellFormed {
        /// The parser's reason (position, not content).
        reason: String,
    },
    /// The payload declares a DOCTYPE, which is never accepted.
    #[error("payload declares a DOCTYPE, which is refused")]
    DoctypeForbidden,
    /// The payload is larger than the configured cap.
    #[error("payload of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Size of the payload.
        size: usize,
        /// The cap.
        limit: usize,
    },
    /// The payload nests elements deeper than the cap.
    #[error("payload nests elements deeper than {limit} levels")]
    TooDeep {
        /// The cap.
        limit: usize,
    },
    /// The payload is well-formed but not the document expected.
    #[error("expected a {expected} document, found root element {found}")]
    UnexpectedDocument {
        /// The document expected (e.g. `MsgHead v1.2`).
        expected: &'static str,
        /// `{namespace}localname` of the root found.
        found: String,
    },
    /// A required element or attribute is missing from a document.
    #[error("{document}: missing {path}")]
    MissingElement {
        /// The document kind (e.g. `MsgHead`).
        document: &'static str,
        /// The element path (e.g. `MsgInfo/MsgId`).
        path: &'static str,
    },
    /// An element or attribute holds a value outside its code set.
    #[error("{document}: invalid value in {path}: {reason}")]
    InvalidValue {
        /// The document kind.
        document: &'static str,
        /// The element path.
        path: &'static str,
        /// Why it was refused.
        reason: String,
    },
}

impl Error {
    /// The error condition to report to the sender of a message rejected for
    /// this reason, per PROFILE.md; `None` for errors that are ours to fix
    /// (a bad address template, say), which are never reported to a peer.
    pub fn condition(&self) -> Option<ErrorCondition> {
        match self {
            Error::InvalidHerId { .. }
            | Error::MissingHeaders { .. }
            | Error::InvalidHeader { .. }
            | Error::NotForUs { .. }
            | Error::Mismatch { .. } => Some(ErrorCondition::InvalidFieldValue),
            Error::SenderMismatch { .. } => Some(ErrorCondition::SpoofingAttack),
            Error::NotWellFormed { .. }
            | Error::DoctypeForbidden
            | Error::TooLarge { .. }
            | Error::TooDeep { .. }
            | Error::UnexpectedDocument { .. }
            | Error::MissingElement { .. }
            | Error::InvalidValue { .. } => Some(ErrorCondition::NotWellFormedXml),
            Error::InvalidAddress { .. } => None,
        }
    }

    /// The `errorConditionData` values for an error report about this error,
    /// e.g. `["toHerId", "Label"]` for missing headers or
    /// `[expected, received]` for mismatches. Each is followed by `;` on the wire.
    pub fn condition_data(&self) -> Vec<String> {
        match self {
            Error::MissingHeaders { fields } => fields.iter().map(|f| f.to_string()).collect(),
            Error::InvalidHerId { field, value, .. } => vec![field.clone(), value.clone()],
            Error::InvalidHeader { field, .. } => vec![field.to_string()],
            Error::NotForUs { expected, received } => {
                vec![join_her_ids(expected), received.to_string()]
            }
            Error::Mismatch {
                expected, received, ..
            } => vec![expected.clone(), received.clone()],
            Error::SenderMismatch { header, payload } => vec![header.to_string(), payload.clone()],
            _ => Vec::new(),
        }
    }
}

/// This crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// HER-ids as `8141703,8141705` (for messages and error data).
fn join_her_ids(her_ids: &[u32]) -> String {
    her_ids
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}
