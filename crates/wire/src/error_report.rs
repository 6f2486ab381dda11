//! Error conditions and the error report message.
//!
//! A receiver that refuses a message tells the sender on the sender's
//! error queue (the address registry's, often a parent's) with a message
//! built fresh (never a clone of the original: clones carried broker
//! annotations and headers over): new message-id, subject = the original
//! function, from/to swapped, the error fields as application properties,
//! and the protected content-type with one empty `data` section, the only
//! shape every deployed .NET listener takes in (it parses a `text/plain`
//! body as XML, and an empty one fails).

use chrono::{DateTime, Utc};

pub use crate::condition::{ErrorCondition, UnknownCondition};
use crate::envelope::{
    content_types, names, AmqpId, AppProperties, AppValue, Envelope, Properties,
};
use crate::error::{Error, Result};
use crate::herid::HerId;
use crate::time;

/// What to tell the sender: condition, description and data values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorReport {
    /// The condition.
    pub condition: ErrorCondition,
    /// A human-readable description (no payload content).
    pub description: String,
    /// The `errorConditionData` values (each followed by `;` on the wire).
    pub data: Vec<String>,
}

impl ErrorReport {
    /// The report for a rejected message's [`Error`], when it is one a
    /// sender should hear about.
    pub fn from_error(error: &Error) -> Option<ErrorReport> {
        Some(ErrorReport {
            condition: error.condition()?,
            description: error.to_string(),
            data: error.condition_data(),
        })
    }

    /// A report about a certificate problem, with the data the reference
    /// library sends: `Subject: <subject>;Thumbprint: <SHA-1 hex, upper case>;`.
    pub fn certificate(
        condition: ErrorCondition,
        description: impl Into<String>,
        subject: &str,
        sha1_thumbprint_hex: &str,
    ) -> ErrorReport {
        ErrorReport {
            condition,
            description: description.into(),
            data: vec![
                format!("Subject: {subject}"),
                format!("Thumbprint: {}", sha1_thumbprint_hex.to_ascii_uppercase()),
            ],
        }
    }

    /// A report about a header/payload mismatch: `<expected>;<received>;`.
    pub fn mismatch(
        description: impl Into<String>,
        expected: impl Into<String>,
        received: impl Into<String>,
    ) -> ErrorReport {
        ErrorReport {
            condition: ErrorCondition::InvalidFieldValue,
            description: description.into(),
            data: vec![expected.into(), received.into()],
        }
    }

    /// `errorConditionData` on the wire: every value followed by `;`.
    pub fn data_on_wire(&self) -> String {
        join_data(&self.data)
    }
}

/// Join values as `errorConditionData`: every value followed by `;`
/// (e.g. `toHerId;Label;`).
pub fn join_data(values: &[String]) -> String {
    values.iter().map(|value| format!("{value};")).collect()
}

/// Split `errorConditionData` back into its values.
pub fn split_data(text: &str) -> Vec<String> {
    let mut values: Vec<String> = text.split(';').map(str::to_string).collect();
    if values.last().is_some_and(|last| last.is_empty()) {
        values.pop();
    }
    values
}

/// The subject of a report about a message that had none: every released
/// .NET listener refuses a message without subject (`Label`), also on its
/// error queue, so the report needs one to be taken in.
pub const UNKNOWN_FUNCTION: &str = "UNKNOWN";

/// The HER-id whose error queue a report about `original` goes to: the
/// original's `fromHerId`. Fails when it is unreadable: then there is
/// nobody to tell.
pub fn report_recipient(original: &Envelope) -> Result<HerId> {
    original.her_id(names::FROM_HER_ID)
}

/// The error report envelope for `original`, to be sent with one empty
/// `data` section to `error_queue`: the original sender's error queue as
/// the address registry names it (never derived from the HER-id).
///
/// `ours` stands in for the original `toHerId` when that was unreadable.
/// Fails only when the original sender is unknown (no readable `fromHerId`).
///
/// ```
/// # use helsemelding_wire::envelope::{Envelope, AppValue, AmqpId};
/// # use helsemelding_wire::error_report::{build_error_report, ErrorCondition, ErrorReport};
/// # use helsemelding_wire::HerId;
/// let mut original = Envelope::default();
/// original.properties.message_id = Some(AmqpId::from("m-1"));
/// original.application.insert("fromHerId".into(), AppValue::string("8141705"));
/// let report = ErrorReport {
///     condition: ErrorCondition::NotWellFormedXml,
///     description: "not XML".into(),
///     data: vec![],
/// };
/// let ours = HerId::new(91462).unwrap();
/// let envelope =
///     build_error_report(&original, ours, &report, "e-1", "8141703_error", chrono::Utc::now())
///         .unwrap();
/// assert_eq!(envelope.properties.to.as_deref(), Some("8141703_error"));
/// assert!(envelope.app_str("errorConditionData").is_none(), "no data, no key");
/// ```
pub fn build_error_report(
    original: &Envelope,
    ours: HerId,
    report: &ErrorReport,
    message_id: &str,
    error_queue: &str,
    now: DateTime<Utc>,
) -> Result<Envelope> {
    let original_sender = report_recipient(original)?;
    let original_receiver = original.her_id(names::TO_HER_ID).unwrap_or(ours);
    let original_message_id = original
        .properties
        .message_id
        .as_ref()
        .and_then(AmqpId::as_text)
        .unwrap_or_default();
    let mut application = AppProperties::new();
    let mut put = |name: &str, value: String| {
        application.insert(name.to_string(), AppValue::String(value));
    };
    put(names::FROM_HER_ID, original_receiver.to_string());
    put(names::TO_HER_ID, original_sender.to_string());
    put(names::APPLICATION_TIMESTAMP, time::format_utc_seconds(now));
    put(names::ORIGINAL_MESSAGE_ID, original_message_id);
    put(
        names::RECEIVER_TIMESTAMP,
        time::format_receiver_timestamp(now),
    );
    put(
        names::ERROR_CONDITION,
        report.condition.as_str().to_string(),
    );
    put(names::ERROR_DESCRIPTION, report.description.clone());
    if !report.data.is_empty() {
        put(names::ERROR_CONDITION_DATA, report.data_on_wire());
    }
    put(
        names::EXECUTING_ASSEMBLY,
        crate::envelope::executing_assembly(),
    );
    Ok(Envelope {
        properties: Properties {
            message_id: Some(AmqpId::String(message_id.to_string())),
            to: Some(error_queue.to_string()),
            reply_to: None,
            correlation_id: None,
            subject: Some(
                original
                    .properties
                    .subject
                    .clone()
                    .filter(|subject| !subject.trim().is_empty())
                    .unwrap_or_else(|| UNKNOWN_FUNCTION.to_string()),
            ),
            content_type: Some(content_types::PROTECTED.to_string()),
            ttl_ms: None,
            durable: true,
        },
        application,
    })
}

/// An error report that arrived on our error queue, read leniently: the
/// reference library's reports have no content-type and a
/// `MM/dd/yyyy HH:mm:ss` receiver timestamp; fields a peer left out are `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedErrorReport {
    /// The report's own message-id.
    pub message_id: Option<String>,
    /// Who reports (the receiver of our original message).
    pub from: Option<HerId>,
    /// Us, normally.
    pub to: Option<HerId>,
    /// The original message function.
    pub function: Option<String>,
    /// The message-id of our message the report is about.
    pub original_message_id: Option<String>,
    /// When the reporting party received our message.
    pub receiver_time: Option<DateTime<Utc>>,
    /// The condition string exactly as sent.
    pub condition_text: Option<String>,
    /// The condition, when it is one of the profile's.
    pub condition: Option<ErrorCondition>,
    /// The description.
    pub description: Option<String>,
    /// The data values.
    pub data: Vec<String>,
}

impl ReceivedErrorReport {
    /// Read the error fields of a message from our error queue.
    pub fn from_envelope(envelope: &Envelope) -> ReceivedErrorReport {
        let text = |name: &str| {
            envelope
                .app_str(name)
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_string)
        };
        let condition_text = text(names::ERROR_CONDITION);
        ReceivedErrorReport {
            message_id: envelope
                .properties
                .message_id
                .as_ref()
                .and_then(AmqpId::as_text),
            from: envelope.her_id(names::FROM_HER_ID).ok(),
            to: envelope.her_id(names::TO_HER_ID).ok(),
            function: envelope.properties.subject.clone(),
            original_message_id: text(names::ORIGINAL_MESSAGE_ID),
            receiver_time: match envelope.application.get(names::RECEIVER_TIMESTAMP) {
                Some(AppValue::String(t)) => time::parse_lenient(t),
                Some(AppValue::Timestamp(ms)) => time::from_amqp_millis(*ms),
                _ => None,
            },
            condition: condition_text.as_deref().and_then(|c| c.parse().ok()),
            condition_text,
            description: text(names::ERROR_DESCRIPTION),
            data: envelope
                .app_str(names::ERROR_CONDITION_DATA)
                .map(split_data)
                .unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn her(n: u32) -> HerId {
        HerId::new(n).unwrap()
    }

    fn original() -> Envelope {
        let mut envelope = Envelope::default();
        envelope.properties.message_id = Some(AmqpId::from("orig-1"));
        envelope.properties.subject = Some("DIALOG_INNBYGGER_EKONTAKT".into());
        envelope.properties.reply_to = Some("93238_async".into());
        envelope.properties.correlation_id = Some(AmqpId::from("orig-1"));
        envelope.properties.content_type = Some(content_types::PROTECTED.into());
        envelope
            .application
            .insert("fromHerId".into(), AppValue::string("93238"));
        envelope
            .application
            .insert("toHerId".into(), AppValue::Long(91462));
        envelope.application.insert(
            "applicationTimeStamp".into(),
            AppValue::string("2026-01-02T03:04:00Z"),
        );
        envelope
            .application
            .insert("X-SystemIdentifier".into(), AppValue::string("EPJ"));
        envelope
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap()
    }

    #[test]
    fn condition_strings_are_exact() {
        let strings: Vec<&str> = ErrorCondition::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(
            strings,
            [
                "transport:not-well-formed-xml",
                "transport:invalid-field-value",
                "transport:invalid-certificate",
                "transport:expired-certificate",
                "transport:revoked-certificate",
                "transport:revoked-certificate-offline",
                "transport:missing-certificate",
                "transport:unverified-certificate",
                "transport:unsupported-message",
                "abuse:spoofing-attack",
                "transport:internal-error",
            ]
        );
        for condition in ErrorCondition::ALL {
            assert_eq!(
                condition.as_str().parse::<ErrorCondition>().unwrap(),
                condition
            );
            assert_eq!(condition.to_string(), condition.as_str());
        }
        assert!("transport:nonsense".parse::<ErrorCondition>().is_err());
    }

    #[test]
    fn report_is_built_fresh_with_swapped_parties() {
        let report = ErrorReport {
            condition: ErrorCondition::InvalidFieldValue,
            description: "missing fields".into(),
            data: vec!["toHerId".into(), "Label".into()],
        };
        let envelope = build_error_report(
            &original(),
            her(91462),
            &report,
            "err-1",
            "8141703_error",
            now(),
        )
        .unwrap();
        let p = &envelope.properties;
        assert_eq!(p.message_id, Some(AmqpId::from("err-1")));
        assert_eq!(
            p.to.as_deref(),
            Some("8141703_error"),
            "the registry's queue"
        );
        assert_eq!(p.reply_to, None);
        assert_eq!(p.correlation_id, None);
        assert_eq!(p.subject.as_deref(), Some("DIALOG_INNBYGGER_EKONTAKT"));
        assert_eq!(
            p.content_type.as_deref(),
            Some(content_types::PROTECTED),
            "the only shape every .NET listener takes in"
        );
        assert_eq!(p.ttl_ms, None);
        assert!(p.durable);
        let app = |k: &str| envelope.app_str(k).unwrap().to_string();
        assert_eq!(app("fromHerId"), "91462");
        assert_eq!(app("toHerId"), "93238");
        assert_eq!(app("applicationTimeStamp"), "2026-01-02T03:04:05Z");
        assert_eq!(app("originalMessageId"), "orig-1");
        assert_eq!(app("receiverTimeStamp"), "01/02/2026 03:04:05");
        assert_eq!(app("errorCondition"), "transport:invalid-field-value");
        assert_eq!(app("errorDescription"), "missing fields");
        assert_eq!(app("errorConditionData"), "toHerId;Label;");
        assert!(
            !envelope.application.contains_key("X-SystemIdentifier"),
            "never a clone"
        );
        assert!(!envelope.application.contains_key("cpaId"));
    }

    #[test]
    fn report_from_a_header_error() {
        let mut bad = original();
        bad.application.remove("toHerId");
        bad.properties.subject = None;
        let error = bad.check_incoming(&[her(91462)]).unwrap_err();
        let report = ErrorReport::from_error(&error).unwrap();
        assert_eq!(report.condition, ErrorCondition::InvalidFieldValue);
        assert_eq!(report.data_on_wire(), "toHerId;Label;");
        let envelope =
            build_error_report(&bad, her(91462), &report, "err-2", "q_error", now()).unwrap();
        assert_eq!(
            envelope.app_str("fromHerId"),
            Some("91462"),
            "ours stands in"
        );
        assert_eq!(
            envelope.properties.subject.as_deref(),
            Some(UNKNOWN_FUNCTION),
            "a .NET listener refuses a report without subject"
        );
    }

    #[test]
    fn no_sender_no_report() {
        let mut bad = original();
        bad.application
            .insert("fromHerId".into(), AppValue::string("x"));
        let report = ErrorReport {
            condition: ErrorCondition::InvalidFieldValue,
            description: String::new(),
            data: vec![],
        };
        assert!(build_error_report(&bad, her(91462), &report, "e", "q", now()).is_err());
        assert!(report_recipient(&bad).is_err());
    }

    #[test]
    fn round_trip() {
        let report = ErrorReport {
            condition: ErrorCondition::SpoofingAttack,
            description: "signer is not the sender".into(),
            data: vec!["Subject: CN=Someone, O=X".into(), "Thumbprint: 0A1B".into()],
        };
        let envelope =
            build_error_report(&original(), her(91462), &report, "err-3", "q", now()).unwrap();
        let read = ReceivedErrorReport::from_envelope(&envelope);
        assert_eq!(read.message_id.as_deref(), Some("err-3"));
        assert_eq!(read.from, Some(her(91462)));
        assert_eq!(read.to, Some(her(93238)));
        assert_eq!(read.original_message_id.as_deref(), Some("orig-1"));
        assert_eq!(read.receiver_time, Some(now()));
        assert_eq!(read.condition, Some(ErrorCondition::SpoofingAttack));
        assert_eq!(
            read.description.as_deref(),
            Some("signer is not the sender")
        );
        assert_eq!(read.data, report.data);
        assert_eq!(read.function.as_deref(), Some("DIALOG_INNBYGGER_EKONTAKT"));
    }

    #[test]
    fn no_data_no_condition_data_key() {
        let report = ErrorReport {
            condition: ErrorCondition::NotWellFormedXml,
            description: "not XML".into(),
            data: vec![],
        };
        let envelope =
            build_error_report(&original(), her(91462), &report, "e", "q", now()).unwrap();
        assert!(!envelope.application.contains_key("errorConditionData"));
        assert_eq!(
            ReceivedErrorReport::from_envelope(&envelope).data,
            Vec::<String>::new()
        );
    }

    #[test]
    fn reads_the_reference_library_report() {
        // As the .NET library sends it: no content-type, US date, clone-ish fields.
        let mut envelope = Envelope::default();
        envelope.properties.message_id = Some(AmqpId::from("5f7c"));
        envelope.properties.subject = Some("DIALOG_INNBYGGER_TEST".into());
        for (k, v) in [
            ("fromHerId", "93238"),
            ("toHerId", "91462"),
            ("applicationTimeStamp", "2015-07-30T13:16:55Z"),
            ("originalMessageId", "469eb15c-8e40-4720-9e0f-d83fcc4470e8"),
            ("receiverTimeStamp", "07/30/2015 13:16:55"),
            ("errorCondition", "transport:invalid-certificate"),
            ("errorDescription", "Signaturen lot seg ikke verifiseres"),
            ("errorConditionData", "Subject: CN=X;Thumbprint: ABC;"),
        ] {
            envelope.application.insert(k.into(), AppValue::string(v));
        }
        let read = ReceivedErrorReport::from_envelope(&envelope);
        assert_eq!(read.condition, Some(ErrorCondition::InvalidCertificate));
        assert_eq!(
            read.receiver_time,
            Some(Utc.with_ymd_and_hms(2015, 7, 30, 13, 16, 55).unwrap())
        );
        assert_eq!(read.data, ["Subject: CN=X", "Thumbprint: ABC"]);
        assert_eq!(
            read.original_message_id.as_deref(),
            Some("469eb15c-8e40-4720-9e0f-d83fcc4470e8")
        );
        assert!(envelope.read_headers(false).is_ok());

        let unknown = {
            let mut e = envelope.clone();
            e.application
                .insert("errorCondition".into(), AppValue::string("vendor:odd"));
            ReceivedErrorReport::from_envelope(&e)
        };
        assert_eq!(unknown.condition, None);
        assert_eq!(unknown.condition_text.as_deref(), Some("vendor:odd"));
        let empty = ReceivedErrorReport::from_envelope(&Envelope::default());
        assert_eq!(empty.condition_text, None);
        assert!(empty.data.is_empty());
    }

    #[test]
    fn certificate_and_mismatch_data() {
        let report = ErrorReport::certificate(
            ErrorCondition::ExpiredCertificate,
            "expired",
            "CN=DIGITAL DIALOG, O=NHN",
            "a1b2c3",
        );
        assert_eq!(
            report.data_on_wire(),
            "Subject: CN=DIGITAL DIALOG, O=NHN;Thumbprint: A1B2C3;"
        );
        let report = ErrorReport::mismatch("sender", "93238", "109989");
        assert_eq!(report.condition, ErrorCondition::InvalidFieldValue);
        assert_eq!(report.data_on_wire(), "93238;109989;");
    }

    #[test]
    fn data_join_split() {
        assert_eq!(
            join_data(&["Expected".into(), "Received".into()]),
            "Expected;Received;"
        );
        assert_eq!(split_data("a;b;"), ["a", "b"]);
        assert_eq!(split_data("a;b"), ["a", "b"]);
        assert!(split_data("").is_empty());
    }
}
