//! CPP and CPA documents (ebXML CPPA 2.0, as NHN's CPPA service returns them).
//!
//! A CPP says what one party can do; a CPA is the agreed subset for two
//! parties. Both hold, per `PartyInfo`: the HER-id, the name, collaboration
//! roles (process, version, role, actions it can send and receive and on
//! which delivery channel), the channels' transport endpoints (queue
//! addresses) and the party's certificates. This module reads exactly that
//! and ignores the rest (packaging, signatures, comments).

use std::collections::HashMap;

use base64::Engine;
use helsemelding_protect::{Certificate, KeyUsage};
use serde::Serialize;

use crate::xml::{self, Element, Limits};
use crate::{CertificateSummary, Error, HerId};

/// Whether a document is a profile of one party or an agreement of two.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProfileKind {
    /// Collaboration protocol profile (one party).
    Cpp,
    /// Collaboration protocol agreement (two parties).
    Cpa,
}

/// A parsed CPP or CPA.
#[derive(Clone, Debug)]
pub struct CollaborationDocument {
    /// CPP or CPA.
    pub kind: ProfileKind,
    /// `cppid` or `cpaid`.
    pub id: Option<String>,
    /// CPA validity start as written (`Start`), if any.
    pub start: Option<String>,
    /// CPA validity end as written (`End`), if any.
    pub end: Option<String>,
    /// The parties, in document order (one for a CPP, two for a CPA).
    pub parties: Vec<PartyProfile>,
}

/// What one party can do, according to a CPP or CPA.
#[derive(Clone, Debug)]
pub struct PartyProfile {
    /// `PartyId type="HER"`.
    pub her_id: HerId,
    /// `partyName`.
    pub name: String,
    /// Collaboration roles in document order.
    pub roles: Vec<CollaborationRole>,
    /// Delivery channels with their transport endpoints.
    pub channels: Vec<DeliveryChannel>,
    /// Encryption certificate: the one with key usage keyEncipherment.
    pub encryption_certificate: Option<Certificate>,
    /// Signing certificate: the one with key usage nonRepudiation (and no
    /// keyEncipherment), whatever `SigningCertificateRef` points at.
    pub signing_certificate: Option<Certificate>,
}

/// One `CollaborationRole`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CollaborationRole {
    /// `ProcessSpecification name`, e.g. `Dialog_Innbygger_Digitalbruker`.
    pub process: String,
    /// `ProcessSpecification version`, e.g. `1.1`.
    pub version: String,
    /// `Role name`.
    pub role: String,
    /// Actions (message functions) this party can send, in document order.
    pub can_send: Vec<ActionBinding>,
    /// Actions this party can receive, in document order.
    pub can_receive: Vec<ActionBinding>,
}

/// A `ThisPartyActionBinding`: a message function on a delivery channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActionBinding {
    /// The message function, e.g. `DIALOG_INNBYGGER_DIGITALBRUKER`, `APPREC`.
    pub action: String,
    /// The `ChannelId` it travels on.
    pub channel_id: String,
}

/// Synchronous or asynchronous AMQP channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum ChannelKind {
    /// `AMQPAsync…` / `asyncAMQP…` channels: the `_async` queue.
    AMQPAsync,
    /// `AMQPSync…` / `syncAMQP…` channels: the `_sync` queue.
    AMQPSync,
}

impl ChannelKind {
    /// Classify a channel id; NHN's older documents write `AMQPAsync_<guid>`,
    /// the v2 form `asyncAMQPChannelC1_<herid>`.
    pub fn from_channel_id(id: &str) -> Option<ChannelKind> {
        let id = id.to_ascii_lowercase();
        if id.starts_with("amqpasync") || id.starts_with("asyncamqp") {
            Some(ChannelKind::AMQPAsync)
        } else if id.starts_with("amqpsync") || id.starts_with("syncamqp") {
            Some(ChannelKind::AMQPSync)
        } else {
            None
        }
    }
}

/// A `DeliveryChannel` and the endpoint of its `Transport`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryChannel {
    /// `channelId`.
    pub id: String,
    /// Async or sync, when the id says so.
    pub kind: Option<ChannelKind>,
    /// The transport receiver endpoint, e.g. `sb.test.nhn.no/DigitalDialog/93238_async`.
    pub endpoint: Option<String>,
}

impl CollaborationDocument {
    /// The party with this HER-id.
    pub fn party(&self, her_id: HerId) -> Option<&PartyProfile> {
        self.parties.iter().find(|p| p.her_id == her_id)
    }
}

impl PartyProfile {
    /// The endpoint of the first channel of this kind.
    pub fn endpoint(&self, kind: ChannelKind) -> Option<&str> {
        self.channels
            .iter()
            .filter(|c| c.kind == Some(kind))
            .find_map(|c| c.endpoint.as_deref())
    }

    /// Whether this party can send the action (in any role).
    pub fn can_send(&self, action: &str) -> bool {
        self.roles
            .iter()
            .any(|r| r.can_send.iter().any(|b| b.action == action))
    }

    /// Whether this party can receive the action (in any role).
    pub fn can_receive(&self, action: &str) -> bool {
        self.roles
            .iter()
            .any(|r| r.can_receive.iter().any(|b| b.action == action))
    }

    /// The channel an action is received on, if this party can receive it.
    pub fn receive_channel(&self, action: &str) -> Option<&DeliveryChannel> {
        let binding = self
            .roles
            .iter()
            .flat_map(|r| r.can_receive.iter())
            .find(|b| b.action == action)?;
        self.channels.iter().find(|c| c.id == binding.channel_id)
    }
}

impl CollaborationRole {
    /// Sendable actions, each once, in document order.
    pub fn send_actions(&self) -> Vec<&str> {
        unique_actions(&self.can_send)
    }

    /// Receivable actions, each once, in document order.
    pub fn receive_actions(&self) -> Vec<&str> {
        unique_actions(&self.can_receive)
    }
}

fn unique_actions(bindings: &[ActionBinding]) -> Vec<&str> {
    let mut seen = Vec::new();
    for binding in bindings {
        if !seen.contains(&binding.action.as_str()) {
            seen.push(binding.action.as_str());
        }
    }
    seen
}

/// Certificates of a party in the `CERT` JSON form.
#[derive(Clone, Debug, Serialize)]
pub struct PartyCertificateSummaries {
    /// Encryption certificate.
    pub encryption: Option<CertificateSummary>,
    /// Signing certificate.
    pub signing: Option<CertificateSummary>,
}

/// Parse a CPP or CPA (detected by the root element).
pub fn parse_collaboration_document(bytes: &[u8]) -> Result<CollaborationDocument, Error> {
    const WHAT: &str = "CPP/CPA document";
    let root = xml::parse(bytes, Limits::DOCUMENT, WHAT)?;
    if root.attr("nil") == Some("true") {
        return Err(Error::EmptyDocument { what: WHAT });
    }
    let (kind, id) = match root.name.as_str() {
        "CollaborationProtocolProfile" => (ProfileKind::Cpp, root.attr("cppid")),
        "CollaborationProtocolAgreement" => (ProfileKind::Cpa, root.attr("cpaid")),
        other => {
            return Err(Error::UnexpectedDocument {
                what: WHAT,
                root: other.to_owned(),
            })
        }
    };
    let parties = root
        .children("PartyInfo")
        .map(party_profile)
        .collect::<Result<Vec<_>, _>>()?;
    if parties.is_empty() {
        return Err(Error::Missing {
            element: "PartyInfo",
            party: "unknown".into(),
        });
    }
    Ok(CollaborationDocument {
        kind,
        id: id.map(str::to_owned),
        start: root.child_text("Start").map(str::to_owned),
        end: root.child_text("End").map(str::to_owned),
        parties,
    })
}

fn party_profile(info: &Element) -> Result<PartyProfile, Error> {
    let her_text = info
        .children("PartyId")
        .find(|p| p.attr("type") == Some("HER"))
        .map(|p| p.text.trim());
    let label = her_text
        .or(info.attr("partyName"))
        .unwrap_or("unknown")
        .to_owned();
    let her_id = her_text.ok_or_else(|| Error::Missing {
        element: "PartyId type=\"HER\"",
        party: label.clone(),
    })?;
    let her_id = parse_her_id(her_id, "PartyId", &label)?;
    let name = info.attr("partyName").ok_or_else(|| Error::Missing {
        element: "PartyInfo partyName",
        party: label.clone(),
    })?;
    let roles = info
        .children("CollaborationRole")
        .map(|r| collaboration_role(r, &label))
        .collect::<Result<Vec<_>, _>>()?;
    let (encryption_certificate, signing_certificate) = certificates(info, &label)?;
    Ok(PartyProfile {
        her_id,
        name: name.to_owned(),
        roles,
        channels: delivery_channels(info),
        encryption_certificate,
        signing_certificate,
    })
}

pub(crate) fn parse_her_id(text: &str, element: &'static str, party: &str) -> Result<HerId, Error> {
    text.trim()
        .parse::<HerId>()
        .ok()
        .filter(|&id| id > 0)
        .ok_or_else(|| Error::Invalid {
            element,
            value: text.chars().take(40).collect(),
            party: party.to_owned(),
        })
}

fn collaboration_role(role: &Element, party: &str) -> Result<CollaborationRole, Error> {
    let missing = |element| Error::Missing {
        element,
        party: party.to_owned(),
    };
    let process = role
        .child("ProcessSpecification")
        .ok_or_else(|| missing("ProcessSpecification"))?;
    let name = process
        .attr("name")
        .ok_or_else(|| missing("ProcessSpecification name"))?;
    let version = process
        .attr("version")
        .ok_or_else(|| missing("ProcessSpecification version"))?;
    let role_name = role
        .child("Role")
        .and_then(|r| r.attr("name"))
        .ok_or_else(|| missing("Role name"))?;
    let binding = role.child("ServiceBinding");
    let bindings = |direction: &str| -> Result<Vec<ActionBinding>, Error> {
        binding
            .into_iter()
            .flat_map(|b| b.children(direction))
            .flat_map(|d| d.children("ThisPartyActionBinding"))
            .map(|b| {
                Ok(ActionBinding {
                    action: b
                        .attr("action")
                        .ok_or_else(|| missing("ThisPartyActionBinding action"))?
                        .to_owned(),
                    channel_id: b.child_text("ChannelId").unwrap_or_default().to_owned(),
                })
            })
            .collect()
    };
    Ok(CollaborationRole {
        process: name.to_owned(),
        version: version.to_owned(),
        role: role_name.to_owned(),
        can_send: bindings("CanSend")?,
        can_receive: bindings("CanReceive")?,
    })
}

fn delivery_channels(info: &Element) -> Vec<DeliveryChannel> {
    let endpoints: HashMap<&str, &str> = info
        .children("Transport")
        .filter_map(|t| {
            let endpoint = t.descendant("Endpoint")?.attr("uri")?;
            Some((t.attr("transportId")?, endpoint))
        })
        .collect();
    info.children("DeliveryChannel")
        .filter_map(|c| {
            let id = c.attr("channelId")?;
            Some(DeliveryChannel {
                id: id.to_owned(),
                kind: ChannelKind::from_channel_id(id),
                endpoint: c
                    .attr("transportId")
                    .and_then(|t| endpoints.get(t))
                    .map(|e| (*e).to_owned()),
            })
        })
        .collect()
}

/// The party's two certificates, told apart by key usage as the reference
/// library does (NHN's `SigningCertificateRef` often points at the
/// encryption certificate, and `certId` values are not a contract): a
/// certificate with keyEncipherment is the encryption certificate; else one
/// with nonRepudiation is the signing certificate; a certificate with
/// digitalSignature alone is the signing certificate only when no
/// nonRepudiation certificate exists. When several certificates fit one
/// use, the one the document's reference (`ApplicationCertificateRef`,
/// `SigningCertificateRef`) points at wins, else the last one (the
/// reference library keeps the last). Every `Certificate` must be readable.
fn certificates(
    info: &Element,
    party: &str,
) -> Result<(Option<Certificate>, Option<Certificate>), Error> {
    let mut all = Vec::new();
    for (index, element) in info.children("Certificate").enumerate() {
        let id = element
            .attr("certId")
            .map(str::to_owned)
            .unwrap_or_else(|| format!("#{}", index + 1));
        let certificate = certificate_in(element, party, &id)?;
        all.push((id, certificate));
    }
    fn referenced<'e>(info: &'e Element, reference: &str) -> Option<&'e str> {
        info.children("CollaborationRole")
            .find_map(|r| r.descendant(reference)?.attr("certId"))
            .or_else(|| info.descendant(reference)?.attr("certId"))
    }
    let has = |certificate: &Certificate, usage: KeyUsage| {
        certificate
            .key_usage()
            .is_some_and(|usages| usages.contains(&usage))
    };
    let pick = |fits: &dyn Fn(&Certificate) -> bool, reference: Option<&str>| {
        let candidates: Vec<&(String, Certificate)> = all.iter().filter(|(_, c)| fits(c)).collect();
        candidates
            .iter()
            .find(|(id, _)| Some(id.as_str()) == reference)
            .or(candidates.last())
            .map(|(_, c)| c.clone())
    };
    let encryption = pick(
        &|c| has(c, KeyUsage::KeyEncipherment),
        referenced(info, "ApplicationCertificateRef"),
    );
    let signing_reference = referenced(info, "SigningCertificateRef");
    let signing = pick(
        &|c| !has(c, KeyUsage::KeyEncipherment) && has(c, KeyUsage::NonRepudiation),
        signing_reference,
    )
    .or_else(|| {
        pick(
            &|c| !has(c, KeyUsage::KeyEncipherment) && has(c, KeyUsage::DigitalSignature),
            signing_reference,
        )
    });
    Ok((encryption, signing))
}

fn certificate_in(element: &Element, party: &str, cert_id: &str) -> Result<Certificate, Error> {
    let base64 = element
        .descendant("X509Certificate")
        .map(|e| e.text.as_str())
        .ok_or_else(|| Error::Missing {
            element: "X509Certificate",
            party: party.to_owned(),
        })?;
    certificate_from_base64(base64, party, cert_id)
}

/// Decode a base64 DER certificate (whitespace ignored).
pub(crate) fn certificate_from_base64(
    text: &str,
    party: &str,
    cert_id: &str,
) -> Result<Certificate, Error> {
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(compact)
        .map_err(|e| Error::Invalid {
            element: "certificate base64",
            value: e.to_string(),
            party: party.to_owned(),
        })?;
    Certificate::from_pem_or_der(&der).map_err(|source| Error::Certificate {
        party: party.to_owned(),
        cert_id: cert_id.to_owned(),
        source,
    })
}

impl PartyProfile {
    /// The two certificates as `CERT` summaries.
    pub fn certificate_summaries(&self) -> PartyCertificateSummaries {
        PartyCertificateSummaries {
            encryption: self
                .encryption_certificate
                .as_ref()
                .map(CertificateSummary::of),
            signing: self
                .signing_certificate
                .as_ref()
                .map(CertificateSummary::of),
        }
    }
}
