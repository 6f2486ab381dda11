//! Communication party records from NHN's address registry.
//!
//! Two forms: the SOAP `CommunicationParty` XML (`CommunicationDetails_*`)
//! and the REST JSON (`CommunicationDetailsRest_*`, camelCase at the top,
//! the SOAP fields in PascalCase under `communicationParty`; the newer REST
//! form adds `amqpAddress` and `amqpTransportStatus` at the top). Both give
//! the same [`CommunicationParty`].

use serde::Serialize;
use serde_json::Value;

use crate::cppa::parse_her_id;
use crate::xml::{self, Element, Limits};
use crate::{Error, HerId};

/// Upper bound for a party record (real ones are ~10 kB).
const MAX_RECORD_BYTES: usize = 1024 * 1024;

/// A party in the address registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommunicationParty {
    /// HER-id.
    pub her_id: HerId,
    /// Name (`Name`; for a person the full name).
    pub name: String,
    /// Parent HER-id (`-1` in the registry means none).
    pub parent_her_id: Option<HerId>,
    /// `Service`, `Person`, `Organization`, … as the registry says.
    pub party_type: Option<String>,
    /// Whether the registry marks the party active.
    pub active: bool,
    /// Queue addresses by type code.
    pub queues: QueueAddresses,
    /// `amqpTransportStatus` (REST only).
    pub amqp_transport_status: Option<AmqpTransportStatus>,
    /// `E_DS`: LDAP URL of the party's certificates.
    pub certificate_ldap_url: Option<String>,
}

/// Full queue addresses, e.g. `sb.test.nhn.no/DigitalDialog/93238_async`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct QueueAddresses {
    /// `E_SB_ASYNC` / `amqpAsyncQueue`.
    #[serde(rename = "async")]
    pub async_queue: Option<String>,
    /// `E_SB_SYNC` / `amqpSyncQueue`.
    pub sync: Option<String>,
    /// `E_SB_ERROR` / `amqpErrorQueue`.
    pub error: Option<String>,
    /// `E_SB_SYNCREPLY` / `amqpSyncReplyQueue`.
    pub syncreply: Option<String>,
}

impl QueueAddresses {
    /// The same queues as names, the last path segment of each address (the
    /// form the bus uses).
    pub fn names(&self) -> QueueAddresses {
        let name = |a: &Option<String>| a.as_deref().map(queue_name).map(str::to_owned);
        QueueAddresses {
            async_queue: name(&self.async_queue),
            sync: name(&self.sync),
            error: name(&self.error),
            syncreply: name(&self.syncreply),
        }
    }

    fn set(&mut self, type_code: &str, address: &str) {
        let address = address.trim();
        if address.is_empty() {
            return;
        }
        let slot = match type_code {
            "E_SB_ASYNC" => &mut self.async_queue,
            "E_SB_SYNC" => &mut self.sync,
            "E_SB_ERROR" => &mut self.error,
            "E_SB_SYNCREPLY" => &mut self.syncreply,
            _ => return,
        };
        *slot = Some(address.to_owned());
    }
}

/// The queue name in a registry address: its last path segment.
pub fn queue_name(address: &str) -> &str {
    address.trim().rsplit('/').next().unwrap_or(address)
}

/// The REST registry's AMQP transport state of a party.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum AmqpTransportStatus {
    /// Inherited from the parent.
    Inherited,
    /// Do not send to this party over AMQP.
    Disabled,
    /// AMQP enabled.
    Enabled,
}

impl CommunicationParty {
    /// Whether the registry allows sending to this party over AMQP.
    pub fn amqp_allowed(&self) -> bool {
        self.amqp_transport_status != Some(AmqpTransportStatus::Disabled)
    }
}

/// Parse a record in either form (JSON if it starts with `{`).
pub fn parse_communication_party(bytes: &[u8]) -> Result<CommunicationParty, Error> {
    let trimmed = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    match trimmed.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => parse_rest_json(bytes),
        _ => parse_soap_xml(bytes),
    }
}

/// Parse the SOAP `CommunicationParty` XML.
pub fn parse_soap_xml(bytes: &[u8]) -> Result<CommunicationParty, Error> {
    const WHAT: &str = "communication party XML";
    let limits = Limits {
        max_bytes: MAX_RECORD_BYTES,
        ..Limits::DOCUMENT
    };
    let root = xml::parse(bytes, limits, WHAT)?;
    if root.name != "CommunicationParty" {
        return Err(Error::UnexpectedDocument {
            what: WHAT,
            root: root.name,
        });
    }
    let label = root.child_text("HerId").unwrap_or("unknown").to_owned();
    let missing = |element| Error::Missing {
        element,
        party: label.clone(),
    };
    let her_id = parse_her_id(
        root.child_text("HerId").ok_or_else(|| missing("HerId"))?,
        "HerId",
        &label,
    )?;
    let name = root.child_text("Name").ok_or_else(|| missing("Name"))?;
    let active = parse_bool(
        root.child_text("Active").ok_or_else(|| missing("Active"))?,
        "Active",
        &label,
    )?;
    let mut queues = QueueAddresses::default();
    let mut ldap = None;
    for address in root
        .child("ElectronicAddresses")
        .into_iter()
        .flat_map(|a| a.children("ElectronicAddress"))
    {
        let code = type_code(address);
        let value = address.child_text("Address").unwrap_or_default();
        if code == "E_DS" && !value.is_empty() {
            ldap = Some(value.to_owned());
        }
        queues.set(code, value);
    }
    Ok(CommunicationParty {
        her_id,
        name: name.to_owned(),
        parent_her_id: parent(root.child_text("ParentHerId")),
        party_type: root
            .child_text("Type")
            .or(root.attr("type"))
            .map(str::to_owned),
        active,
        queues,
        amqp_transport_status: None,
        certificate_ldap_url: ldap,
    })
}

fn type_code(address: &Element) -> &str {
    address
        .child_text("TypeCodeValue")
        .or_else(|| {
            address
                .child("Type")
                .and_then(|t| t.child_text("CodeValue"))
        })
        .unwrap_or_default()
}

fn parent(text: Option<&str>) -> Option<HerId> {
    text?.trim().parse::<HerId>().ok().filter(|&id| id > 0)
}

fn parse_bool(text: &str, element: &'static str, party: &str) -> Result<bool, Error> {
    match text.trim() {
        "true" | "True" | "1" => Ok(true),
        "false" | "False" | "0" => Ok(false),
        other => Err(Error::Invalid {
            element,
            value: other.chars().take(20).collect(),
            party: party.to_owned(),
        }),
    }
}

/// Parse the REST JSON record.
pub fn parse_rest_json(bytes: &[u8]) -> Result<CommunicationParty, Error> {
    const WHAT: &str = "communication party JSON";
    if bytes.len() > MAX_RECORD_BYTES {
        return Err(Error::TooLarge {
            what: WHAT,
            size: bytes.len(),
            limit: MAX_RECORD_BYTES,
        });
    }
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let json: Value = serde_json::from_slice(bytes).map_err(|e| Error::Json {
        what: WHAT,
        reason: e.to_string(),
    })?;
    let top = json.as_object().ok_or_else(|| Error::Json {
        what: WHAT,
        reason: "not a JSON object".into(),
    })?;
    let inner = top.get("communicationParty").and_then(Value::as_object);
    // A field from the top level (camelCase) or the nested record (PascalCase).
    let field = |camel: &str, pascal: &str| {
        top.get(camel)
            .filter(|v| !v.is_null())
            .or_else(|| inner.and_then(|i| i.get(pascal)).filter(|v| !v.is_null()))
    };
    let label = field("herId", "HerId")
        .map(|v| v.to_string())
        .unwrap_or_else(|| "unknown".into());
    let missing = |element| Error::Missing {
        element,
        party: label.clone(),
    };
    let invalid = |element, value: &Value| Error::Invalid {
        element,
        value: value.to_string().chars().take(40).collect(),
        party: label.clone(),
    };
    let her_value = field("herId", "HerId").ok_or_else(|| missing("herId"))?;
    let her_id = her_value
        .as_u64()
        .filter(|&id| id > 0 && id <= HerId::MAX as u64)
        .ok_or_else(|| invalid("herId", her_value))? as HerId;
    let name = field("name", "Name").ok_or_else(|| missing("name"))?;
    let name = name.as_str().ok_or_else(|| invalid("name", name))?;
    let active = field("active", "Active").ok_or_else(|| missing("active"))?;
    let active = active.as_bool().ok_or_else(|| invalid("active", active))?;
    let parent_her_id = field("parentHerId", "ParentHerId")
        .and_then(Value::as_i64)
        .filter(|&id| id > 0 && id <= HerId::MAX as i64)
        .map(|id| id as HerId);
    let amqp_transport_status = match field("amqpTransportStatus", "AmqpTransportStatus") {
        None => None,
        Some(v) => Some(match v.as_str() {
            Some("Inherited") => AmqpTransportStatus::Inherited,
            Some("Disabled") => AmqpTransportStatus::Disabled,
            Some("Enabled") => AmqpTransportStatus::Enabled,
            _ => return Err(invalid("amqpTransportStatus", v)),
        }),
    };
    let mut queues = QueueAddresses::default();
    let mut ldap = None;
    let addresses = field("electronicAddresses", "ElectronicAddresses").and_then(Value::as_array);
    for address in addresses.into_iter().flatten() {
        let text = |k: &str| address.get(k).and_then(Value::as_str);
        let code = text("TypeCodeValue")
            .or_else(|| text("typeCodeValue"))
            .or_else(|| address.get("Type")?.get("CodeValue")?.as_str())
            .unwrap_or_default();
        let value = text("Address")
            .or_else(|| text("address"))
            .unwrap_or_default();
        if code == "E_DS" && !value.is_empty() {
            ldap = Some(value.to_owned());
        }
        queues.set(code, value);
    }
    // The newer REST form's `amqpAddress` wins over the electronic addresses.
    if let Some(amqp) = top.get("amqpAddress").and_then(Value::as_object) {
        for (key, code) in [
            ("amqpAsyncQueue", "E_SB_ASYNC"),
            ("amqpSyncQueue", "E_SB_SYNC"),
            ("amqpErrorQueue", "E_SB_ERROR"),
            ("amqpSyncReplyQueue", "E_SB_SYNCREPLY"),
        ] {
            if let Some(address) = amqp.get(key).and_then(Value::as_str) {
                queues.set(code, address);
            }
        }
    }
    Ok(CommunicationParty {
        her_id,
        name: name.to_owned(),
        parent_her_id,
        party_type: field("type", "Type")
            .and_then(Value::as_str)
            .map(str::to_owned),
        active,
        queues,
        amqp_transport_status,
        certificate_ldap_url: ldap,
    })
}

/// The record as the REST JSON form that [`parse_rest_json`] reads: what the
/// file registry stores for parties it creates itself.
pub fn to_rest_json(party: &CommunicationParty) -> Value {
    let status = party.amqp_transport_status.map(|s| match s {
        AmqpTransportStatus::Inherited => "Inherited",
        AmqpTransportStatus::Disabled => "Disabled",
        AmqpTransportStatus::Enabled => "Enabled",
    });
    serde_json::json!({
        "herId": party.her_id,
        "name": party.name,
        "parentHerId": party.parent_her_id,
        "type": party.party_type,
        "active": party.active,
        "amqpTransportStatus": status,
        "amqpAddress": {
            "amqpAsyncQueue": party.queues.async_queue,
            "amqpSyncQueue": party.queues.sync,
            "amqpErrorQueue": party.queues.error,
            "amqpSyncReplyQueue": party.queues.syncreply,
        },
    })
}
