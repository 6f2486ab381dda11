//! The working profile for one counterpart, as the messaging engine needs
//! it: which queues, which certificates, which message functions.
//!
//! Resolution order (as NHN's reference library): the CPA for the HER-id
//! pair; when there is none, the counterpart's CPP; when it has none either,
//! its address-registry record alone. The profile says which was used.

use std::sync::Arc;

use helsemelding_protect::Certificate;
use serde::Serialize;

use crate::certificates::PartyCertificates;
use crate::cppa::{ChannelKind, CollaborationDocument, PartyProfile};
use crate::party::{queue_name, AmqpTransportStatus};
use crate::{CommunicationParty, Error, HerId, QueueAddresses, Registry, Result};

/// Where a working profile came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum ProfileSource {
    /// An agreement between the two parties.
    Cpa,
    /// The counterpart's profile (no agreement exists).
    Cpp,
    /// Only the counterpart's address record (no CPP either).
    AddressRecord,
}

/// Direction of a message, seen from us.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// We send to the counterpart.
    Send,
    /// We receive from the counterpart.
    Receive,
}

/// What we need to exchange messages with one counterpart.
#[derive(Clone, Debug)]
pub struct WorkingProfile {
    /// Which source was used.
    pub source: ProfileSource,
    /// Our HER-id.
    pub our_her_id: HerId,
    /// The counterpart's HER-id.
    pub counterpart_her_id: HerId,
    /// The CPA id, when a CPA was used (sent as `cpaId`).
    pub cpa_id: Option<String>,
    /// The counterpart's queue names.
    pub queues: QueueAddresses,
    /// The certificate to encrypt to.
    pub encryption_certificate: Option<Certificate>,
    /// Signing certificates accepted from the counterpart: current first,
    /// then previous ones (rotation).
    pub signing_certificates: Vec<Certificate>,
    /// The address registry's AMQP transport state of the counterpart, when
    /// known: never send to a party whose transport is `Disabled`.
    pub amqp_transport_status: Option<AmqpTransportStatus>,
    counterpart: Option<PartyProfile>,
    ours: Option<PartyProfile>,
}

impl WorkingProfile {
    /// Whether a message function may travel in this direction.
    ///
    /// With a CPA, the sending party must be able to send it and the
    /// receiving party to receive it. With a CPP, the counterpart's side is
    /// checked (it can receive what we send, it can send what we receive).
    /// With only an address record there is nothing to check against, and
    /// every function is allowed (as the reference library's stand-in
    /// profile does).
    pub fn allows(&self, action: &str, direction: Direction) -> bool {
        let Some(counterpart) = &self.counterpart else {
            return self.source == ProfileSource::AddressRecord;
        };
        let theirs = match direction {
            Direction::Send => counterpart.can_receive(action),
            Direction::Receive => counterpart.can_send(action),
        };
        let ours = match (&self.ours, direction) {
            (Some(ours), Direction::Send) => ours.can_send(action),
            (Some(ours), Direction::Receive) => ours.can_receive(action),
            (None, _) => true,
        };
        theirs && ours
    }

    /// Whether the address registry allows sending to the counterpart over
    /// AMQP (false only when it says `Disabled`).
    pub fn amqp_allowed(&self) -> bool {
        self.amqp_transport_status != Some(AmqpTransportStatus::Disabled)
    }

    /// Whether a signature by `signer` is one of the counterpart's.
    pub fn accepts_signer(&self, signer: &Certificate) -> bool {
        self.signing_certificates.iter().any(|c| c == signer)
    }
}

/// Build the profile from a CPA (pure). `record` fills the queues the CPA
/// does not name (error, syncreply).
pub fn from_cpa(
    cpa: &CollaborationDocument,
    ours: HerId,
    theirs: HerId,
    record: Option<&CommunicationParty>,
) -> Result<WorkingProfile> {
    let counterpart = cpa.party(theirs).ok_or_else(|| Error::Missing {
        element: "PartyInfo of the counterpart in the CPA",
        party: theirs.to_string(),
    })?;
    let mut profile = from_party(ProfileSource::Cpa, ours, counterpart, record, None);
    profile.cpa_id = cpa.id.clone();
    profile.ours = cpa.party(ours).cloned();
    Ok(profile)
}

/// Build the profile from the counterpart's CPP (pure). `certificates` from
/// the address registry add previous signing certificates.
pub fn from_cpp(
    cpp: &CollaborationDocument,
    ours: HerId,
    theirs: HerId,
    record: Option<&CommunicationParty>,
    certificates: Option<&PartyCertificates>,
) -> Result<WorkingProfile> {
    let counterpart = cpp.party(theirs).ok_or_else(|| Error::Missing {
        element: "PartyInfo of the counterpart in its CPP",
        party: theirs.to_string(),
    })?;
    Ok(from_party(
        ProfileSource::Cpp,
        ours,
        counterpart,
        record,
        certificates,
    ))
}

/// Build the profile from the address record and certificates alone (pure).
pub fn from_record(
    ours: HerId,
    record: &CommunicationParty,
    certificates: Option<&PartyCertificates>,
) -> WorkingProfile {
    WorkingProfile {
        source: ProfileSource::AddressRecord,
        our_her_id: ours,
        counterpart_her_id: record.her_id,
        cpa_id: None,
        queues: record.queues.names(),
        encryption_certificate: certificates.and_then(|c| c.current_encryption().cloned()),
        signing_certificates: certificates.map(|c| c.signing.clone()).unwrap_or_default(),
        amqp_transport_status: record.amqp_transport_status,
        counterpart: None,
        ours: None,
    }
}

fn from_party(
    source: ProfileSource,
    ours: HerId,
    counterpart: &PartyProfile,
    record: Option<&CommunicationParty>,
    certificates: Option<&PartyCertificates>,
) -> WorkingProfile {
    let endpoint = |kind| counterpart.endpoint(kind).map(|e| queue_name(e).to_owned());
    let recorded = record.map(|r| r.queues.names()).unwrap_or_default();
    let mut signing: Vec<Certificate> = counterpart.signing_certificate.iter().cloned().collect();
    for previous in certificates
        .map(|c| c.signing.as_slice())
        .unwrap_or_default()
    {
        if !signing.contains(previous) {
            signing.push(previous.clone());
        }
    }
    WorkingProfile {
        source,
        our_her_id: ours,
        counterpart_her_id: counterpart.her_id,
        cpa_id: None,
        queues: QueueAddresses {
            async_queue: endpoint(ChannelKind::AMQPAsync).or(recorded.async_queue),
            sync: endpoint(ChannelKind::AMQPSync).or(recorded.sync),
            error: recorded.error,
            syncreply: recorded.syncreply,
        },
        encryption_certificate: counterpart
            .encryption_certificate
            .clone()
            .or_else(|| certificates.and_then(|c| c.current_encryption().cloned())),
        signing_certificates: signing,
        amqp_transport_status: record.and_then(|r| r.amqp_transport_status),
        counterpart: Some(counterpart.clone()),
        ours: None,
    }
}

/// Resolve the working profile for (ours, theirs) from a registry.
pub async fn resolve(
    registry: &dyn Registry,
    ours: HerId,
    theirs: HerId,
) -> Result<WorkingProfile> {
    let record = optional(registry.communication_party(theirs).await)?;
    if let Some(cpa) = registry.cpa_for(ours, theirs).await? {
        return from_cpa(&cpa, ours, theirs, record.as_ref());
    }
    let certificates = optional(registry.certificates(theirs).await)?;
    if let Some(cpp) = registry.cpp(theirs).await? {
        return from_cpp(&cpp, ours, theirs, record.as_ref(), certificates.as_ref());
    }
    let record = record.ok_or_else(|| Error::NotFound {
        what: "communication party",
        key: theirs.to_string(),
    })?;
    Ok(from_record(ours, &record, certificates.as_ref()))
}

/// Resolve the profile a received message names by its `cpaId`: that CPA's
/// certificates, even when a newer CPA exists.
pub async fn resolve_by_cpa_id(
    registry: &dyn Registry,
    cpa_id: &str,
    ours: HerId,
    theirs: HerId,
) -> Result<WorkingProfile> {
    let cpa: Arc<CollaborationDocument> =
        registry
            .cpa_by_id(cpa_id)
            .await?
            .ok_or_else(|| Error::NotFound {
                what: "CPA",
                key: cpa_id.to_owned(),
            })?;
    let record = optional(registry.communication_party(theirs).await)?;
    from_cpa(&cpa, ours, theirs, record.as_ref())
}

fn optional<T>(result: Result<T>) -> Result<Option<T>> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}
