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
        /// The kind of document, e.g. `CPP/CPA document`.
        what: &'static str,
        /// Its size in bytes.
        size: usize,
        /// The largest size accepted, in bytes.
        limit: usize,
    },
    /// The document was refused as hostile or unsupported XML (DOCTYPE,
    /// entity declarations, too deep, too many elements).
    #[error("{what} refused: {reason}")]
    Refused {
        /// The kind of document.
        what: &'static str,
        /// What was refused, e.g. a DOCTYPE or the depth limit.
        reason: String,
    },
    /// The bytes are not well-formed XML.
    #[error("{what} is not well-formed XML: {reason}")]
    Xml {
        /// The kind of document.
        what: &'static str,
        /// Why, as the XML reader said it.
        reason: String,
    },
    /// The bytes are not valid JSON of the expected shape.
    #[error("{what} is not valid JSON: {reason}")]
    Json {
        /// The kind of document.
        what: &'static str,
        /// Why, as the JSON parser said it, or the shape that was expected.
        reason: String,
    },
    /// The root element is not one this parser reads.
    #[error("{what}: unexpected document root <{root}>")]
    UnexpectedDocument {
        /// The kind of document expected.
        what: &'static str,
        /// The local name of the root element found.
        root: String,
    },
    /// The registry answered with an empty (`i:nil`) document: no profile or
    /// agreement exists (REG-000002 / REG-000003 in the reference library).
    #[error("{what}: the registry returned an empty document (no such profile or agreement)")]
    EmptyDocument {
        /// The kind of document asked for.
        what: &'static str,
    },
    /// A required element or attribute is missing.
    #[error("missing {element} (party {party})")]
    Missing {
        /// The element or attribute that is missing.
        element: &'static str,
        /// The party concerned: its HER-id, else its name, else `unknown`.
        party: String,
    },
    /// An element holds a value that cannot be used.
    #[error("invalid {element} {value:?} (party {party})")]
    Invalid {
        /// The element or attribute holding the value.
        element: &'static str,
        /// The value as found, cut to its first characters.
        value: String,
        /// The party concerned: its HER-id, else its name, else `unknown`.
        party: String,
    },
    /// A certificate in a registry document could not be read.
    #[error("certificate {cert_id} of party {party} is unreadable: {source}")]
    Certificate {
        /// The party the certificate belongs to (HER-id, or its file's path).
        party: String,
        /// The certificate's id in the document, or its file's name.
        cert_id: String,
        /// Why it could not be read.
        #[source]
        source: helsemelding_protect::Error,
    },
    /// The registry knows nothing about this key (REG-000001..3).
    #[error("{what} not found: {key}")]
    NotFound {
        /// What was looked up, e.g. `communication party` or `CPA`.
        what: &'static str,
        /// The key it was looked up by (HER-id or CPA id).
        key: String,
    },
    /// The registry service could not be reached or answered with an error.
    #[error("registry request {url} failed: {reason}")]
    Http {
        /// The URL asked.
        url: String,
        /// Why: the HTTP client's error, or the status answered.
        reason: String,
    },
    /// The registry service did not answer in time.
    #[error("registry request {url} timed out")]
    Timeout {
        /// The URL asked.
        url: String,
    },
    /// Authentication against the registry service failed.
    #[error("registry authentication failed: {reason}")]
    Auth {
        /// Why: the status answered, or a token unusable in a header.
        reason: String,
    },
    /// Reading or writing the file registry failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory concerned.
        path: String,
        /// The operating system's error.
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
