//! The profile's [`Envelope`] to and from the transport's [`Message`]:
//! property by property, with application property types kept (HER-ids as
//! strings out; strings, ints and longs in).

use std::time::Duration;

use helsemelding_transport::{Message, Value};
use helsemelding_wire::envelope::{AmqpId, AppValue, Envelope, Properties};

/// The transport message for `envelope` with `body` as its one data section.
pub fn to_message(envelope: &Envelope, body: Vec<u8>) -> Message {
    let p = &envelope.properties;
    Message {
        message_id: p.message_id.as_ref().and_then(AmqpId::as_text),
        to: p.to.clone(),
        reply_to: p.reply_to.clone(),
        correlation_id: p.correlation_id.as_ref().and_then(AmqpId::as_text),
        subject: p.subject.clone(),
        content_type: p.content_type.clone(),
        ttl: p.ttl_ms.map(|ms| Duration::from_millis(u64::from(ms))),
        durable: p.durable,
        application_properties: envelope
            .application
            .iter()
            .filter_map(|(k, v)| to_value(v).map(|v| (k.clone(), v)))
            .collect(),
        body,
    }
}

fn to_value(value: &AppValue) -> Option<Value> {
    Some(match value {
        AppValue::String(s) => Value::String(s.clone()),
        AppValue::Int(v) => Value::Int(*v),
        AppValue::Long(v) => Value::Long(*v),
        AppValue::UInt(v) => Value::Long(i64::from(*v)),
        AppValue::ULong(v) => Value::Long(i64::try_from(*v).ok()?),
        AppValue::Bool(v) => Value::Bool(*v),
        AppValue::Timestamp(v) => Value::Timestamp(*v),
        AppValue::Uuid(u) => Value::String(u.hyphenated().to_string()),
        AppValue::Double(v) => Value::String(v.to_string()),
        AppValue::Null | AppValue::Binary(_) => return None,
    })
}

/// The envelope of a received transport message (the body stays in the
/// message).
pub fn to_envelope(message: &Message) -> Envelope {
    Envelope {
        properties: Properties {
            message_id: message.message_id.as_deref().map(AmqpId::from),
            to: message.to.clone(),
            reply_to: message.reply_to.clone(),
            correlation_id: message.correlation_id.as_deref().map(AmqpId::from),
            subject: message.subject.clone(),
            content_type: message.content_type.clone(),
            ttl_ms: message
                .ttl
                .map(|t| u32::try_from(t.as_millis()).unwrap_or(u32::MAX)),
            durable: message.durable,
        },
        application: message
            .application_properties
            .iter()
            .map(|(k, v)| (k.clone(), from_value(v)))
            .collect(),
    }
}

fn from_value(value: &Value) -> AppValue {
    match value {
        Value::String(s) => AppValue::String(s.clone()),
        Value::Int(v) => AppValue::Int(*v),
        Value::Long(v) => AppValue::Long(*v),
        Value::Bool(v) => AppValue::Bool(*v),
        Value::Timestamp(v) => AppValue::Timestamp(*v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use helsemelding_wire::envelope::{Outgoing, Routing};
    use helsemelding_wire::HerId;

    #[test]
    fn an_outgoing_envelope_survives_the_round_trip_with_string_her_ids() {
        let envelope = Outgoing {
            message_id: "6c1b5a57-3a4f-4f43-9c6a-0d1e2f3a4b5c".into(),
            from: HerId::new(91462).unwrap(),
            to: HerId::new(109989).unwrap(),
            to_queue: "109989_async".into(),
            function: "DIALOG_INNBYGGER_TEST".into(),
            routing: Routing::Async {
                reply_to: "91462_async".into(),
                ttl: Some(Duration::from_secs(4 * 86400)),
            },
            protected: true,
            cpa_id: None,
            sent_at: chrono::Utc::now(),
            extra: vec![("X-MessageInfo-Type".into(), "DIALOG_INNBYGGER_TEST".into())],
        }
        .into_envelope();
        let message = to_message(&envelope, b"body".to_vec());
        assert_eq!(
            message.application_properties["fromHerId"],
            Value::String("91462".into())
        );
        assert_eq!(message.ttl, Some(Duration::from_secs(4 * 86400)));
        assert!(message.durable);
        assert_eq!(message.body, b"body");
        assert_eq!(to_envelope(&message), envelope);
    }

    #[test]
    fn integer_her_ids_from_other_peers_are_read() {
        let message = Message::new(b"x".to_vec())
            .with_property("fromHerId", 91462i64)
            .with_property("toHerId", 109989i32);
        let envelope = to_envelope(&message);
        assert_eq!(envelope.her_id("fromHerId").unwrap().get(), 91462);
        assert_eq!(envelope.her_id("toHerId").unwrap().get(), 109989);
    }
}
