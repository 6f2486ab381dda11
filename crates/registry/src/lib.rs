//! Address registry and CPP/CPA collaboration profiles.
//!
//! - [`cppa`]: CPP and CPA documents (ebXML CPPA 2.0) as NHN's CPPA service
//!   returns them.
//! - [`party`]: communication party records from the address registry (SOAP
//!   XML and REST JSON).
//! - [`certificates`]: certificate look-ups (SOAP and REST).
//! - [`Registry`]: the one trait the messaging engine asks, with a
//!   file-backed implementation ([`FileRegistry`], the embedded default), an
//!   HTTP client for NHN's services ([`HttpRegistry`]) and a cache in front
//!   of either ([`CachingRegistry`]).
//! - [`resolve`](mod@resolve): the working profile for a counterpart: CPA, else CPP,
//!   else the address record.
//!
//! Every parser takes bytes from the network: XML is read with a bounded
//! reader that refuses DOCTYPEs and entity declarations, caps size, depth
//! and element count, and never panics on malformed input.

#![deny(missing_docs)]

pub mod cache;
pub mod certificates;
pub mod cppa;
mod error;
pub mod file;
pub mod http;
pub mod party;
pub mod resolve;
mod xml;

use std::sync::Arc;

use chrono::SecondsFormat;
use helsemelding_protect::Certificate;
use serde::Serialize;

pub use cache::CachingRegistry;
pub use certificates::{CertificateDetails, PartyCertificates};
pub use cppa::{CollaborationDocument, PartyProfile, ProfileKind};
pub use error::Error;
pub use file::FileRegistry;
pub use http::{AuthProvider, BearerToken, HttpRegistry, HttpRegistryConfig};
pub use party::{CommunicationParty, QueueAddresses};
pub use resolve::{resolve, Direction, ProfileSource, WorkingProfile};

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A HER-id (Helsetjenesteenhetsregisteret identifier).
pub type HerId = u32;

/// What the messaging engine asks of a registry. Implementations: the file
/// registry, the HTTP clients for NHN's services, and the cache in front of
/// either.
#[async_trait::async_trait]
pub trait Registry: Send + Sync {
    /// The address record of a party; [`Error::NotFound`] when there is none.
    async fn communication_party(&self, her_id: HerId) -> Result<CommunicationParty>;
    /// The party's signing and encryption certificates, current first and
    /// then previous ones; [`Error::NotFound`] when there are none.
    async fn certificates(&self, her_id: HerId) -> Result<PartyCertificates>;
    /// The party's CPP, if it has one.
    async fn cpp(&self, her_id: HerId) -> Result<Option<Arc<CollaborationDocument>>>;
    /// The CPA with this id, if it exists.
    async fn cpa_by_id(&self, cpa_id: &str) -> Result<Option<Arc<CollaborationDocument>>>;
    /// The CPA between two parties, if one exists.
    async fn cpa_for(
        &self,
        ours: HerId,
        theirs: HerId,
    ) -> Result<Option<Arc<CollaborationDocument>>>;

    /// Fetches the party's address record, certificates (historic ones
    /// included) and CPP once more past any cache, so that the next
    /// look-ups answer what the registry says now: for a signature that
    /// none of the party's known certificates verifies, before it is
    /// reported (a rotation the cache has not seen must not look like an
    /// attack). Registries without a cache have nothing to refresh: the
    /// default does nothing.
    async fn refresh_party(&self, her_id: HerId) -> Result<()> {
        let _ = her_id;
        Ok(())
    }
}

/// A certificate as the CLI prints it (`CERT`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CertificateSummary {
    /// Serial number, lowercase hex.
    pub serial: String,
    /// Subject distinguished name.
    pub subject: String,
    /// Start of validity, RFC 3339 UTC.
    pub not_before: String,
    /// End of validity, RFC 3339 UTC.
    pub not_after: String,
}

impl CertificateSummary {
    /// Summarise a certificate.
    pub fn of(certificate: &Certificate) -> Self {
        CertificateSummary {
            serial: certificate.serial_hex().to_ascii_lowercase(),
            subject: certificate.subject(),
            not_before: certificate
                .not_before()
                .to_rfc3339_opts(SecondsFormat::Secs, true),
            not_after: certificate
                .not_after()
                .to_rfc3339_opts(SecondsFormat::Secs, true),
        }
    }
}

/// A CPA id is a GUID; anything else is refused before it reaches a path
/// or a URL.
pub(crate) fn check_cpa_id(cpa_id: &str) -> Result<&str> {
    let ok = !cpa_id.is_empty()
        && cpa_id.len() <= 64
        && cpa_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(cpa_id)
    } else {
        Err(Error::Invalid {
            element: "cpaid",
            value: cpa_id.chars().take(64).collect(),
            party: "unknown".into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cppa::ChannelKind;
    use crate::party::queue_name;

    #[test]
    fn channel_kinds_of_both_naming_schemes() {
        let kind = ChannelKind::from_channel_id;
        assert_eq!(kind("AMQPAsync_81b6cff2"), Some(ChannelKind::AMQPAsync));
        assert_eq!(kind("AMQPSync_4d060363"), Some(ChannelKind::AMQPSync));
        assert_eq!(
            kind("asyncAMQPChannelC1_8093240"),
            Some(ChannelKind::AMQPAsync)
        );
        assert_eq!(
            kind("syncAMQPChannelC2_8093240"),
            Some(ChannelKind::AMQPSync)
        );
        assert_eq!(kind("SMTP_1"), None);
    }

    #[test]
    fn queue_names_and_cpa_ids() {
        assert_eq!(
            queue_name("sb.test.nhn.no/DigitalDialog/93238_async"),
            "93238_async"
        );
        assert_eq!(queue_name("93238_async"), "93238_async");
        assert!(check_cpa_id("49391409-e528-4919-b4a3-9ccdab72c8c1").is_ok());
        for bad in ["", "../x", "a/b", "a b", &"a".repeat(65)] {
            assert!(check_cpa_id(bad).is_err(), "{bad:?}");
        }
    }
}
