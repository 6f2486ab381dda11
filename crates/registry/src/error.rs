//! The one error type of this crate.

/// What went wrong while reading a registry document or asking a registry.
///
/// Variants name the party (HER-id), the document element, the CPA id or the
/// URL they concern; they never carry document bytes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The document is larger than the parser accepts (checked before parsing).
    #[error("{what} is {size} bytes, more than the limit of {limit}")]
    TooLarge {
        what: &'static str,
        size: usize,
        limit: usize,
    },
    /// The document was refused as hostile or unsupported XML (DOCTYPE,
    /// entity declarations, too deep, too many elements).
    #[error("{what} refused: {reason}")]
    Refused { what: &'static str, reason: String },
    /// The bytes are not well-formed XML.
    #[error("{what} is not well-formed XML: {reason}")]
    Xml { what: &'static str, reason: String },
    /// The bytes are not valid JSON of the expected shape.
    #[error("{what} is not valid JSON: {reason}")]
    Json { what: &'static str, reason: String },
    /// The root element is not one this parser reads.
    #[error("{what}: unexpected document root <{root}>")]
    UnexpectedDocument { what: &'static str, root: String },
    /// The registry answered with an empty (`i:nil`) document: no profile or
    /// agreement exists (REG-000002 / REG-000003 in the reference library).
    #[error("{what}: the registry returned an empty document (no such profile or agreement)")]
    EmptyDocument { what: &'static str },
    /// A required element or attribute is missing.
    #[error("missing {element} (party {party})")]
    Missing {
        element: &'static str,
        party: String,
    },
    /// An element holds a value that cannot be used.
    #[error("invalid {element} {value:?} (party {party})")]
    Invalid {
        element: &'static str,
        value: String,
        party: String,
    },
    /// A certificate in a registry document could not be read.
    #[error("certificate {cert_id} of party {party} is unreadable: {source}")]
    Certificate {
        party: String,
        cert_id: String,
        #[source]
        source: helsemelding_protect::Error,
    },
    /// The registry knows nothing about this key (REG-000001..3).
    #[error("{what} not found: {key}")]
    NotFound { what: &'static str, key: String },
    /// The registry service could not be reached or answered with an error.
    #[error("registry request {url} failed: {reason}")]
    Http { url: String, reason: String },
    /// The registry service did not answer in time.
    #[error("registry request {url} timed out")]
    Timeout { url: String },
    /// Authentication against the registry service failed.
    #[error("registry authentication failed: {reason}")]
    Auth { reason: String },
    /// Reading or writing the file registry failed.
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        Error::Io {
            path: path.display().to_string(),
            source,
        }
    }

    /// Whether the registry itself is unavailable (worth retrying, and the
    /// moment a cache serves its last good answer), as opposed to a definite
    /// answer such as "not found" or a broken document.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            Error::Http { .. } | Error::Timeout { .. } | Error::Auth { .. }
        )
    }
}
