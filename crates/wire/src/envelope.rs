//! The AMQP message envelope as pure data: properties, application
//! properties, and the rules for building and reading them.
//!
//! This module is independent of any AMQP library: the transport copies
//! [`Envelope`] to and from its own message type. Outgoing envelopes are
//! built exactly as NHN's reference library sends them (HER-ids and the
//! application timestamp as strings); incoming ones are read leniently, per
//! the "accepts" column of PROFILE.md, and checked in the reference
//! library's order, plus our stricter check that the message is for us.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::herid::HerId;
use crate::queue::{ttl_millis, SYNC_TTL};
use crate::time;

/// Application property names used by the profile.
pub mod names {
    /// Sender's HER-id (decimal string).
    pub const FROM_HER_ID: &str = "fromHerId";
    /// Receiver's HER-id (decimal string).
    pub const TO_HER_ID: &str = "toHerId";
    /// When the sender made the message, `yyyy-MM-ddTHH:mm:ssZ`.
    pub const APPLICATION_TIMESTAMP: &str = "applicationTimeStamp";
    /// The CPA used, a lowercase GUID; absent when none.
    pub const CPA_ID: &str = "cpaId";
    /// Set by the reference library on every transfer, `yyyy-MM-ddTHH:mm:ss`.
    pub const ENQUEUED_TIME_UTC: &str = "enqueuedTimeUtc";
    /// The sending library's identity.
    pub const EXECUTING_ASSEMBLY: &str = "X-ExecutingAssembly";
    /// The sending library's version (reference library only).
    pub const EXECUTING_ASSEMBLY_VERSION: &str = "X-ExecutingAssemblyVersion";
    /// The sending library's .NET target (reference library only).
    pub const TARGET_FRAMEWORK: &str = "X-TargetFramework";
    /// Error report: the message-id of the message reported on.
    pub const ORIGINAL_MESSAGE_ID: &str = "originalMessageId";
    /// Error report: when the reporting party received the message.
    pub const RECEIVER_TIMESTAMP: &str = "receiverTimeStamp";
    /// Error report: the error condition (`transport:...`).
    pub const ERROR_CONDITION: &str = "errorCondition";
    /// Error report: human-readable description.
    pub const ERROR_DESCRIPTION: &str = "errorDescription";
    /// Error report: values, each followed by `;`.
    pub const ERROR_CONDITION_DATA: &str = "errorConditionData";
    /// The reference library's name for the subject in error data.
    pub const LABEL: &str = "Label";
    /// Our name for the content type in error data.
    pub const CONTENT_TYPE: &str = "ContentType";
    /// Our name for the message-id in error data.
    pub const MESSAGE_ID: &str = "MessageId";

    /// The application-property names the profile itself sets, which a
    /// configured extra property must not shadow.
    pub const ALL: [&str; 13] = [
        FROM_HER_ID,
        TO_HER_ID,
        APPLICATION_TIMESTAMP,
        CPA_ID,
        ENQUEUED_TIME_UTC,
        EXECUTING_ASSEMBLY,
        EXECUTING_ASSEMBLY_VERSION,
        TARGET_FRAMEWORK,
        ORIGINAL_MESSAGE_ID,
        RECEIVER_TIMESTAMP,
        ERROR_CONDITION,
        ERROR_DESCRIPTION,
        ERROR_CONDITION_DATA,
    ];
}

/// Content types of the profile.
pub mod content_types {
    /// A CMS signed-then-encrypted payload.
    pub const PROTECTED: &str = "application/pkcs7-mime; smime-type=signed-and-enveloped-data";
    /// An unprotected payload, and (ours) error reports.
    pub const TEXT_PLAIN: &str = "text/plain";
    /// An unprotected SOAP payload (older peers).
    pub const SOAP_XML: &str = "application/soap+xml";
}

/// Whether a content type means the body is CMS-protected: `text/plain` and
/// `application/soap+xml` (any case, any parameters) mean unprotected, any
/// other value means protected.
pub fn is_protected_content_type(content_type: &str) -> bool {
    let media_type = content_type.split(';').next().unwrap_or_default().trim();
    !(media_type.eq_ignore_ascii_case(content_types::TEXT_PLAIN)
        || media_type.eq_ignore_ascii_case(content_types::SOAP_XML))
}

/// Our `X-ExecutingAssembly` value: `helsemelding <version>`.
pub fn executing_assembly() -> String {
    format!("helsemelding {}", env!("CARGO_PKG_VERSION"))
}

/// An AMQP message-id or correlation-id as it may arrive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AmqpId {
    /// A string (what the profile sends).
    String(String),
    /// A UUID.
    Uuid(Uuid),
    /// An unsigned long (refused by the profile).
    ULong(u64),
    /// Binary (refused by the profile).
    Binary(Vec<u8>),
}

impl AmqpId {
    /// The id as text when the profile accepts its type (string or UUID,
    /// a UUID in lowercase hyphenated form); `None` otherwise.
    pub fn as_text(&self) -> Option<String> {
        match self {
            AmqpId::String(text) => Some(text.clone()),
            AmqpId::Uuid(uuid) => Some(uuid.hyphenated().to_string()),
            AmqpId::ULong(_) | AmqpId::Binary(_) => None,
        }
    }
}

impl From<&str> for AmqpId {
    fn from(text: &str) -> AmqpId {
        AmqpId::String(text.to_string())
    }
}

/// A typed application property value.
#[derive(Debug, Clone, PartialEq)]
pub enum AppValue {
    /// AMQP null.
    Null,
    /// AMQP boolean.
    Bool(bool),
    /// AMQP string.
    String(String),
    /// AMQP int.
    Int(i32),
    /// AMQP long (what Python's qpid-proton sends for a plain int).
    Long(i64),
    /// AMQP uint.
    UInt(u32),
    /// AMQP ulong.
    ULong(u64),
    /// AMQP double.
    Double(f64),
    /// AMQP timestamp, milliseconds since the Unix epoch.
    Timestamp(i64),
    /// AMQP uuid.
    Uuid(Uuid),
    /// AMQP binary.
    Binary(Vec<u8>),
}

impl AppValue {
    /// The value when it is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            AppValue::String(text) => Some(text),
            _ => None,
        }
    }

    /// A string value.
    pub fn string(text: impl Into<String>) -> AppValue {
        AppValue::String(text.into())
    }

    fn is_blank(&self) -> bool {
        match self {
            AppValue::Null => true,
            AppValue::String(text) => text.trim().is_empty(),
            _ => false,
        }
    }
}

/// Application properties by name.
pub type AppProperties = BTreeMap<String, AppValue>;

/// The AMQP header and properties sections, as far as the profile uses them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Properties {
    /// `message-id`.
    pub message_id: Option<AmqpId>,
    /// `to`: the receiver's queue name.
    pub to: Option<String>,
    /// `reply-to`.
    pub reply_to: Option<String>,
    /// `correlation-id`.
    pub correlation_id: Option<AmqpId>,
    /// `subject`: the message function.
    pub subject: Option<String>,
    /// `content-type`.
    pub content_type: Option<String>,
    /// Header `ttl` in milliseconds.
    pub ttl_ms: Option<u32>,
    /// Header `durable`.
    pub durable: bool,
}

/// An AMQP message without its body.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Envelope {
    /// Header and properties.
    pub properties: Properties,
    /// Application properties.
    pub application: AppProperties,
}

/// An AMQP message body as it arrived.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    /// `data` sections (the profile sends exactly one).
    Data(Vec<Vec<u8>>),
    /// An `amqp-value` section.
    Value(AppValue),
    /// An `amqp-sequence` section or none at all.
    Other,
}

impl Body {
    /// The payload bytes: the `data` sections (concatenated, as AMQP
    /// defines a multi-section body), or an `amqp-value` binary or string.
    /// Anything else is refused as `transport:invalid-field-value`.
    pub fn into_payload(self) -> Result<Vec<u8>> {
        match self {
            // The usual one section becomes the payload as it is: a large
            // message is not copied on the way in.
            Body::Data(mut sections) if sections.len() == 1 => {
                Ok(sections.pop().unwrap_or_default())
            }
            Body::Data(sections) => Ok(sections.concat()),
            Body::Value(AppValue::Binary(bytes)) => Ok(bytes),
            Body::Value(AppValue::String(text)) => Ok(text.into_bytes()),
            Body::Value(_) | Body::Other => Err(Error::InvalidHeader {
                field: "Body",
                reason: "neither data sections nor a binary or string amqp-value".into(),
            }),
        }
    }
}

/// Where an outgoing message goes and how replies find their way back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Routing {
    /// An asynchronous message: replies to `reply_to` (our `_async` queue),
    /// correlation-id = message-id, TTL as configured (none by default).
    Async {
        /// Our async queue name.
        reply_to: String,
        /// Configured time-to-live, if any.
        ttl: Option<Duration>,
    },
    /// A synchronous request: reply to our reply queue, TTL 15 s,
    /// correlation-id = message-id.
    SyncRequest {
        /// This instance's sync-reply queue name.
        reply_to: String,
    },
    /// The reply to a synchronous request: no reply-to, TTL 15 s,
    /// correlation-id = the request's correlation-id.
    SyncReply {
        /// The request's correlation-id (its message-id).
        correlation_id: String,
    },
}

/// What the engine knows about a message it is about to send.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    /// A new unique message-id (a GUID, "D" form).
    pub message_id: String,
    /// Our HER-id.
    pub from: HerId,
    /// The receiver's HER-id.
    pub to: HerId,
    /// The receiver's queue name (`93252_async`).
    pub to_queue: String,
    /// The message function (`subject`), e.g. `DIALOG_INNBYGGER_TEST`.
    pub function: String,
    /// Reply and TTL rules.
    pub routing: Routing,
    /// Whether the body is CMS-protected (decides the content type).
    pub protected: bool,
    /// The CPA used, only when a real CPA was used.
    pub cpa_id: Option<Uuid>,
    /// The application timestamp (now, normally).
    pub sent_at: DateTime<Utc>,
    /// Further string properties: payload metadata and configured extras.
    /// They never override the profile's own properties.
    pub extra: Vec<(String, String)>,
}

impl Outgoing {
    /// The envelope exactly as the reference library would send it, plus our
    /// durable header and `X-ExecutingAssembly`.
    pub fn into_envelope(self) -> Envelope {
        let (reply_to, correlation_id, ttl) = match self.routing {
            Routing::Async { reply_to, ttl } => (Some(reply_to), self.message_id.clone(), ttl),
            Routing::SyncRequest { reply_to } => {
                (Some(reply_to), self.message_id.clone(), Some(SYNC_TTL))
            }
            Routing::SyncReply { correlation_id } => (None, correlation_id, Some(SYNC_TTL)),
        };
        let content_type = if self.protected {
            content_types::PROTECTED
        } else {
            content_types::TEXT_PLAIN
        };
        let mut application: AppProperties = self
            .extra
            .into_iter()
            .map(|(key, value)| (key, AppValue::String(value)))
            .collect();
        application.insert(
            names::FROM_HER_ID.into(),
            AppValue::string(self.from.to_string()),
        );
        application.insert(
            names::TO_HER_ID.into(),
            AppValue::string(self.to.to_string()),
        );
        application.insert(
            names::APPLICATION_TIMESTAMP.into(),
            AppValue::string(time::format_utc_seconds(self.sent_at)),
        );
        application.remove(names::CPA_ID);
        if let Some(cpa_id) = self.cpa_id {
            application.insert(
                names::CPA_ID.into(),
                AppValue::string(cpa_id.hyphenated().to_string()),
            );
        }
        application.insert(
            names::EXECUTING_ASSEMBLY.into(),
            AppValue::string(executing_assembly()),
        );
        Envelope {
            properties: Properties {
                message_id: Some(AmqpId::String(self.message_id)),
                to: Some(self.to_queue),
                reply_to,
                correlation_id: Some(AmqpId::String(correlation_id)),
                subject: Some(self.function),
                content_type: Some(content_type.to_string()),
                ttl_ms: ttl.map(ttl_millis),
                durable: true,
            },
            application,
        }
    }
}

/// The checked header of a received message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingHeaders {
    /// `message-id` as text.
    pub message_id: String,
    /// `fromHerId`.
    pub from: HerId,
    /// `toHerId`.
    pub to: HerId,
    /// `subject`: the message function.
    pub function: String,
    /// `applicationTimeStamp`.
    pub application_time: DateTime<Utc>,
    /// `content-type`, when present.
    pub content_type: Option<String>,
    /// Whether the body is CMS-protected, per the content type (a message
    /// without one counts as protected, which is what every sender sends).
    pub protected: bool,
    /// `cpaId`, when a CPA was used.
    pub cpa_id: Option<Uuid>,
    /// `correlation-id` as text.
    pub correlation_id: Option<String>,
    /// `reply-to`.
    pub reply_to: Option<String>,
    /// `enqueuedTimeUtc`, when present and readable (ignored otherwise).
    pub enqueued_time: Option<DateTime<Utc>>,
}

impl Envelope {
    /// Read a message that arrived on our async or sync queue, and check it:
    /// required fields in the reference library's order (`toHerId`,
    /// `fromHerId`, `Label`, `applicationTimeStamp`, `ContentType`, then
    /// ours: `MessageId`), their values, and that `toHerId` is one of `ours`
    /// (an installation serves several HER-ids).
    ///
    /// Every error maps to `transport:invalid-field-value`
    /// ([`Error::condition`]), with the names or values for `errorConditionData`.
    pub fn check_incoming(&self, ours: &[HerId]) -> Result<IncomingHeaders> {
        let headers = self.read_headers(true)?;
        if !ours.contains(&headers.to) {
            return Err(Error::NotForUs {
                expected: ours.iter().map(|h| h.get()).collect(),
                received: headers.to.get(),
            });
        }
        Ok(headers)
    }

    /// Read the header without judging whom it is for; `content_type_required`
    /// is false for error reports (the reference library sends them without).
    pub fn read_headers(&self, content_type_required: bool) -> Result<IncomingHeaders> {
        self.check_required(content_type_required)?;
        let to = self.her_id(names::TO_HER_ID)?;
        let from = self.her_id(names::FROM_HER_ID)?;
        let function = self
            .properties
            .subject
            .clone()
            .unwrap_or_default()
            .trim()
            .to_string();
        let application_time = self.application_time()?;
        let message_id =
            id_text(self.properties.message_id.as_ref(), names::MESSAGE_ID)?.unwrap_or_default();
        let correlation_id = id_text(self.properties.correlation_id.as_ref(), "CorrelationId")?;
        let content_type = self.properties.content_type.clone();
        Ok(IncomingHeaders {
            message_id,
            from,
            to,
            function,
            application_time,
            protected: content_type
                .as_deref()
                .is_none_or(is_protected_content_type),
            content_type,
            cpa_id: self.cpa_id()?,
            correlation_id,
            reply_to: self
                .properties
                .reply_to
                .clone()
                .filter(|r| !r.trim().is_empty()),
            enqueued_time: self.enqueued_time(),
        })
    }

    fn check_required(&self, content_type_required: bool) -> Result<()> {
        let blank_app = |name: &str| self.application.get(name).is_none_or(AppValue::is_blank);
        let blank = |value: &Option<String>| value.as_deref().is_none_or(|v| v.trim().is_empty());
        let mut missing = Vec::new();
        if blank_app(names::TO_HER_ID) {
            missing.push(names::TO_HER_ID);
        }
        if blank_app(names::FROM_HER_ID) {
            missing.push(names::FROM_HER_ID);
        }
        if blank(&self.properties.subject) {
            missing.push(names::LABEL);
        }
        if blank_app(names::APPLICATION_TIMESTAMP) {
            missing.push(names::APPLICATION_TIMESTAMP);
        }
        if content_type_required && blank(&self.properties.content_type) {
            missing.push(names::CONTENT_TYPE);
        }
        let message_id_blank = match &self.properties.message_id {
            None => true,
            Some(AmqpId::String(text)) => text.trim().is_empty(),
            Some(_) => false,
        };
        if message_id_blank {
            missing.push(names::MESSAGE_ID);
        }
        if missing.is_empty() {
            Ok(())
        } else {
            Err(Error::MissingHeaders { fields: missing })
        }
    }

    /// A HER-id property, from a decimal string, int or long.
    pub fn her_id(&self, name: &str) -> Result<HerId> {
        match self.application.get(name) {
            None | Some(AppValue::Null) => Err(crate::herid::invalid(name, "", "missing")),
            Some(AppValue::String(text)) => HerId::parse_field(name, text),
            Some(AppValue::Int(value)) => HerId::from_i64_field(name, i64::from(*value)),
            Some(AppValue::Long(value)) => HerId::from_i64_field(name, *value),
            Some(AppValue::UInt(value)) => HerId::from_i64_field(name, i64::from(*value)),
            Some(AppValue::ULong(value)) => {
                HerId::from_i64_field(name, i64::try_from(*value).unwrap_or(i64::MAX))
            }
            Some(other) => Err(crate::herid::invalid(
                name,
                &format!("{other:?}"),
                "neither a string nor an integer",
            )),
        }
    }

    fn application_time(&self) -> Result<DateTime<Utc>> {
        let parsed = match self.application.get(names::APPLICATION_TIMESTAMP) {
            Some(AppValue::String(text)) => time::parse_lenient(text),
            Some(AppValue::Timestamp(millis)) => time::from_amqp_millis(*millis),
            _ => None,
        };
        parsed.ok_or_else(|| Error::InvalidHeader {
            field: names::APPLICATION_TIMESTAMP,
            reason: "not a timestamp".into(),
        })
    }

    fn cpa_id(&self) -> Result<Option<Uuid>> {
        match self.application.get(names::CPA_ID) {
            None | Some(AppValue::Null) => Ok(None),
            Some(AppValue::String(text)) if text.trim().is_empty() => Ok(None),
            Some(AppValue::String(text)) => {
                Uuid::parse_str(text.trim())
                    .map(Some)
                    .map_err(|_| Error::InvalidHeader {
                        field: names::CPA_ID,
                        reason: "not a GUID".into(),
                    })
            }
            Some(AppValue::Uuid(uuid)) => Ok(Some(*uuid)),
            Some(_) => Err(Error::InvalidHeader {
                field: names::CPA_ID,
                reason: "not a string".into(),
            }),
        }
    }

    fn enqueued_time(&self) -> Option<DateTime<Utc>> {
        match self.application.get(names::ENQUEUED_TIME_UTC)? {
            AppValue::String(text) => time::parse_lenient(text),
            AppValue::Timestamp(millis) => time::from_amqp_millis(*millis),
            _ => None,
        }
    }

    /// A string application property, when present and a string.
    pub fn app_str(&self, name: &str) -> Option<&str> {
        self.application.get(name).and_then(AppValue::as_str)
    }
}

fn id_text(id: Option<&AmqpId>, field: &'static str) -> Result<Option<String>> {
    match id {
        None => Ok(None),
        Some(id) => id.as_text().map(Some).ok_or_else(|| Error::InvalidHeader {
            field,
            reason: "neither a string nor a uuid".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error_report::ErrorCondition;
    use chrono::TimeZone;

    fn her(n: u32) -> HerId {
        HerId::new(n).unwrap()
    }

    fn sent_at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 23, 13, 45, 9).unwrap() + chrono::Duration::milliseconds(512)
    }

    fn outgoing(routing: Routing) -> Outgoing {
        Outgoing {
            message_id: "0b7a9c3e-6f57-4a0e-9d0f-2f4c3b1a8e11".into(),
            from: her(91462),
            to: her(93252),
            to_queue: "93252_async".into(),
            function: "DIALOG_INNBYGGER_TEST".into(),
            routing,
            protected: true,
            cpa_id: None,
            sent_at: sent_at(),
            extra: vec![],
        }
    }

    #[test]
    fn async_envelope_matches_reference_format() {
        let mut message = outgoing(Routing::Async {
            reply_to: "91462_async".into(),
            ttl: Some(Duration::from_secs(4 * 24 * 3600)),
        });
        message.cpa_id = Some(Uuid::parse_str("49391409-E528-4919-B4A3-9CCDAB72C8C1").unwrap());
        message.extra = vec![
            ("X-MessageInfo-Type".into(), "DIALOG_INNBYGGER_TEST".into()),
            ("fromHerId".into(), "666".into()),
        ];
        let envelope = message.into_envelope();
        let p = &envelope.properties;
        assert_eq!(
            p.message_id,
            Some(AmqpId::from("0b7a9c3e-6f57-4a0e-9d0f-2f4c3b1a8e11"))
        );
        assert_eq!(p.correlation_id, p.message_id);
        assert_eq!(p.to.as_deref(), Some("93252_async"));
        assert_eq!(p.reply_to.as_deref(), Some("91462_async"));
        assert_eq!(p.subject.as_deref(), Some("DIALOG_INNBYGGER_TEST"));
        assert_eq!(
            p.content_type.as_deref(),
            Some("application/pkcs7-mime; smime-type=signed-and-enveloped-data")
        );
        assert_eq!(p.ttl_ms, Some(345_600_000));
        assert!(p.durable);
        let app = &envelope.application;
        assert_eq!(
            app["fromHerId"],
            AppValue::string("91462"),
            "extras never override"
        );
        assert_eq!(app["toHerId"], AppValue::string("93252"));
        assert_eq!(
            app["applicationTimeStamp"],
            AppValue::string("2026-11-23T13:45:09Z")
        );
        assert_eq!(
            app["cpaId"],
            AppValue::string("49391409-e528-4919-b4a3-9ccdab72c8c1")
        );
        assert_eq!(
            app["X-MessageInfo-Type"],
            AppValue::string("DIALOG_INNBYGGER_TEST")
        );
        assert_eq!(
            app["X-ExecutingAssembly"],
            AppValue::string(format!("helsemelding {}", env!("CARGO_PKG_VERSION")))
        );
        assert_eq!(app.len(), 6);
    }

    #[test]
    fn no_cpa_no_cpa_id_and_extras_cannot_forge_one() {
        let mut message = outgoing(Routing::Async {
            reply_to: "91462_async".into(),
            ttl: None,
        });
        message.extra = vec![("cpaId".into(), "forged".into())];
        message.protected = false;
        let envelope = message.into_envelope();
        assert!(!envelope.application.contains_key("cpaId"));
        assert_eq!(envelope.properties.ttl_ms, None);
        assert_eq!(
            envelope.properties.content_type.as_deref(),
            Some("text/plain")
        );
    }

    #[test]
    fn sync_request_and_reply_routing() {
        let request = outgoing(Routing::SyncRequest {
            reply_to: "91462_syncreply".into(),
        })
        .into_envelope();
        assert_eq!(request.properties.ttl_ms, Some(15_000));
        assert_eq!(
            request.properties.reply_to.as_deref(),
            Some("91462_syncreply")
        );
        assert_eq!(
            request.properties.correlation_id,
            request.properties.message_id
        );

        let reply = outgoing(Routing::SyncReply {
            correlation_id: "req-1".into(),
        })
        .into_envelope();
        assert_eq!(reply.properties.ttl_ms, Some(15_000));
        assert_eq!(reply.properties.reply_to, None);
        assert_eq!(reply.properties.correlation_id, Some(AmqpId::from("req-1")));
    }

    #[test]
    fn built_envelope_reads_back() {
        let envelope = outgoing(Routing::Async {
            reply_to: "91462_async".into(),
            ttl: None,
        })
        .into_envelope();
        let headers = envelope.check_incoming(&[her(93252)]).unwrap();
        assert_eq!(headers.from, her(91462));
        assert_eq!(headers.to, her(93252));
        assert_eq!(headers.function, "DIALOG_INNBYGGER_TEST");
        assert_eq!(headers.message_id, "0b7a9c3e-6f57-4a0e-9d0f-2f4c3b1a8e11");
        assert_eq!(
            headers.application_time,
            Utc.with_ymd_and_hms(2026, 11, 23, 13, 45, 9).unwrap()
        );
        assert!(headers.protected);
        assert_eq!(headers.cpa_id, None);
        assert_eq!(headers.reply_to.as_deref(), Some("91462_async"));
    }

    /// Exactly what NHN's .NET library puts on the wire.
    fn reference_envelope() -> Envelope {
        let mut application = AppProperties::new();
        for (key, value) in [
            ("fromHerId", "93238"),
            ("toHerId", "91462"),
            ("applicationTimeStamp", "2025-03-01T10:11:12Z"),
            ("cpaId", "49391409-e528-4919-b4a3-9ccdab72c8c1"),
            ("enqueuedTimeUtc", "2025-03-01T10:11:13"),
            (
                "X-ExecutingAssembly",
                "Helsenorge.Messaging, Version=6.0.0.0",
            ),
            ("X-ExecutingAssemblyVersion", "6.0.0.0"),
            ("X-TargetFramework", ".NETStandard,Version=v2.0"),
            ("X-SystemIdentifier", "EPJ-42"),
        ] {
            application.insert(key.into(), AppValue::string(value));
        }
        Envelope {
            properties: Properties {
                message_id: Some(AmqpId::from("c3d5ab0e-9a57-4e8e-8f60-2b1bd8a54a4f")),
                to: Some("91462_async".into()),
                reply_to: Some("93238_async".into()),
                correlation_id: Some(AmqpId::from("c3d5ab0e-9a57-4e8e-8f60-2b1bd8a54a4f")),
                subject: Some("DIALOG_INNBYGGER_EKONTAKT".into()),
                content_type: Some(content_types::PROTECTED.into()),
                ttl_ms: None,
                durable: false,
            },
            application,
        }
    }

    #[test]
    fn reads_the_reference_library_format() {
        let headers = reference_envelope().check_incoming(&[her(91462)]).unwrap();
        assert_eq!(headers.from, her(93238));
        assert_eq!(headers.to, her(91462));
        assert_eq!(headers.function, "DIALOG_INNBYGGER_EKONTAKT");
        assert_eq!(
            headers.application_time,
            Utc.with_ymd_and_hms(2025, 3, 1, 10, 11, 12).unwrap()
        );
        assert_eq!(
            headers.cpa_id,
            Some(Uuid::parse_str("49391409-e528-4919-b4a3-9ccdab72c8c1").unwrap())
        );
        assert_eq!(
            headers.enqueued_time,
            Some(Utc.with_ymd_and_hms(2025, 3, 1, 10, 11, 13).unwrap())
        );
        assert_eq!(
            headers.correlation_id.as_deref(),
            Some("c3d5ab0e-9a57-4e8e-8f60-2b1bd8a54a4f")
        );
        assert!(headers.protected);
    }

    #[test]
    fn reads_lenient_forms() {
        let mut envelope = reference_envelope();
        let uuid = Uuid::parse_str("c3d5ab0e-9a57-4e8e-8f60-2b1bd8a54a4f").unwrap();
        envelope.properties.message_id = Some(AmqpId::Uuid(uuid));
        envelope.properties.correlation_id = Some(AmqpId::Uuid(uuid));
        envelope
            .application
            .insert("fromHerId".into(), AppValue::Long(93238));
        envelope
            .application
            .insert("toHerId".into(), AppValue::Int(91462));
        envelope.application.insert(
            "applicationTimeStamp".into(),
            AppValue::Timestamp(1_740_823_872_000),
        );
        envelope
            .application
            .insert("enqueuedTimeUtc".into(), AppValue::string("junk"));
        envelope
            .application
            .insert("cpaId".into(), AppValue::string(""));
        let headers = envelope.check_incoming(&[her(91462)]).unwrap();
        assert_eq!(headers.message_id, "c3d5ab0e-9a57-4e8e-8f60-2b1bd8a54a4f");
        assert_eq!(headers.from, her(93238));
        assert_eq!(
            headers.application_time,
            Utc.with_ymd_and_hms(2025, 3, 1, 10, 11, 12).unwrap()
        );
        assert_eq!(headers.enqueued_time, None);
        assert_eq!(headers.cpa_id, None);

        envelope.application.insert(
            "applicationTimeStamp".into(),
            AppValue::string("2025-03-01T11:11:12.123+01:00"),
        );
        let headers = envelope.check_incoming(&[her(91462)]).unwrap();
        assert_eq!(headers.application_time.timestamp(), 1_740_823_872);
    }

    #[test]
    fn missing_fields_listed_in_reference_order() {
        let mut envelope = reference_envelope();
        envelope.application.remove("toHerId");
        envelope.properties.subject = None;
        let err = envelope.check_incoming(&[her(91462)]).unwrap_err();
        assert_eq!(
            err,
            Error::MissingHeaders {
                fields: vec!["toHerId", "Label"]
            }
        );
        assert_eq!(err.condition(), Some(ErrorCondition::InvalidFieldValue));
        assert_eq!(err.condition_data(), ["toHerId", "Label"]);

        let err = Envelope::default().check_incoming(&[her(1)]).unwrap_err();
        assert_eq!(
            err,
            Error::MissingHeaders {
                fields: vec![
                    "toHerId",
                    "fromHerId",
                    "Label",
                    "applicationTimeStamp",
                    "ContentType",
                    "MessageId"
                ]
            }
        );
    }

    #[test]
    fn blank_values_count_as_missing() {
        let mut envelope = reference_envelope();
        envelope
            .application
            .insert("fromHerId".into(), AppValue::string("  "));
        envelope
            .application
            .insert("applicationTimeStamp".into(), AppValue::Null);
        envelope.properties.content_type = Some(String::new());
        let err = envelope.check_incoming(&[her(91462)]).unwrap_err();
        assert_eq!(
            err.condition_data(),
            ["fromHerId", "applicationTimeStamp", "ContentType"]
        );
    }

    #[test]
    fn junk_values_are_invalid_field_values() {
        let cases: Vec<(&str, AppValue, &[&str])> = vec![
            ("fromHerId", AppValue::string("abc"), &["fromHerId", "abc"]),
            ("toHerId", AppValue::Long(-4), &["toHerId", "-4"]),
            (
                "toHerId",
                AppValue::Double(91462.0),
                &["toHerId", "Double(91462.0)"],
            ),
            (
                "applicationTimeStamp",
                AppValue::string("yesterday"),
                &["applicationTimeStamp"],
            ),
            (
                "applicationTimeStamp",
                AppValue::Long(5),
                &["applicationTimeStamp"],
            ),
            ("cpaId", AppValue::string("not-a-guid"), &["cpaId"]),
        ];
        for (key, value, field) in cases {
            let mut envelope = reference_envelope();
            envelope.application.insert(key.into(), value.clone());
            let err = envelope.check_incoming(&[her(91462)]).unwrap_err();
            assert_eq!(
                err.condition(),
                Some(ErrorCondition::InvalidFieldValue),
                "{key} {value:?}"
            );
            assert_eq!(err.condition_data(), field, "{key} {value:?}");
        }
        let mut envelope = reference_envelope();
        envelope.properties.message_id = Some(AmqpId::ULong(7));
        let err = envelope.check_incoming(&[her(91462)]).unwrap_err();
        assert_eq!(err.condition_data(), ["MessageId"]);
        envelope.properties.message_id = Some(AmqpId::Binary(vec![1, 2]));
        assert!(envelope.check_incoming(&[her(91462)]).is_err());
    }

    #[test]
    fn refuses_messages_for_others() {
        let err = reference_envelope()
            .check_incoming(&[her(93252)])
            .unwrap_err();
        assert_eq!(
            err,
            Error::NotForUs {
                expected: vec![93252],
                received: 91462
            }
        );
        assert_eq!(err.condition_data(), ["93252", "91462"]);
        let several = reference_envelope()
            .check_incoming(&[her(8141703), her(8141705)])
            .unwrap_err();
        assert_eq!(several.condition_data(), ["8141703,8141705", "91462"]);
        assert!(reference_envelope()
            .check_incoming(&[her(8141703), her(91462)])
            .is_ok());
    }

    #[test]
    fn error_reports_need_no_content_type() {
        let mut envelope = reference_envelope();
        envelope.properties.content_type = None;
        assert!(envelope.check_incoming(&[her(91462)]).is_err());
        let headers = envelope.read_headers(false).unwrap();
        assert!(headers.protected);
        assert_eq!(headers.content_type, None);
    }

    #[test]
    fn body_forms() {
        assert_eq!(
            Body::Data(vec![b"<a/>".to_vec()]).into_payload().unwrap(),
            b"<a/>"
        );
        assert_eq!(
            Body::Data(vec![b"<a".to_vec(), b"/>".to_vec()])
                .into_payload()
                .unwrap(),
            b"<a/>"
        );
        assert_eq!(Body::Data(vec![]).into_payload().unwrap(), b"");
        assert_eq!(
            Body::Value(AppValue::Binary(vec![1, 2]))
                .into_payload()
                .unwrap(),
            [1, 2]
        );
        assert_eq!(
            Body::Value(AppValue::string("x")).into_payload().unwrap(),
            b"x"
        );
        let err = Body::Value(AppValue::Long(1)).into_payload().unwrap_err();
        assert_eq!(err.condition(), Some(ErrorCondition::InvalidFieldValue));
        assert!(Body::Other.into_payload().is_err());
    }

    #[test]
    fn protected_content_type_rule() {
        assert!(!is_protected_content_type("text/plain"));
        assert!(!is_protected_content_type("Text/Plain; charset=utf-8"));
        assert!(!is_protected_content_type("application/soap+xml"));
        assert!(is_protected_content_type(content_types::PROTECTED));
        assert!(is_protected_content_type("application/xml"));
        assert!(is_protected_content_type("anything"));
    }
}
