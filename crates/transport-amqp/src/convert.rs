//! [`Message`] to fe2o3's message and back, and the broker's outcome of a
//! send. What is sent is exact (string ids, one data section, the durable
//! header as given); what arrives is read leniently, since peers differ.
//! The body and TTL rules are wire's.

use std::time::Duration;

use fe2o3_amqp::types::messaging::{
    ApplicationProperties, Body, Data, Header, Message as AmqpMessage, MessageId,
    Outcome as AmqpOutcome, Properties,
};
use fe2o3_amqp::types::primitives::{Binary, SimpleValue, Symbol, Timestamp, Value as AmqpValue};
use helsemelding_transport::{Message, Outcome, Value};
use helsemelding_wire::envelope::{AppValue, Body as WireBody};
use helsemelding_wire::queue::ttl_millis;

/// The broker's disposition of a message we sent.
pub(crate) fn from_amqp_outcome(outcome: AmqpOutcome) -> Outcome {
    match outcome {
        AmqpOutcome::Accepted(_) => Outcome::Accepted,
        AmqpOutcome::Rejected(r) => Outcome::Rejected {
            reason: r
                .error
                .map(|e| format!("{:?}: {}", e.condition, e.description.unwrap_or_default()))
                .unwrap_or_default(),
        },
        AmqpOutcome::Released(_) | AmqpOutcome::Modified(_) => Outcome::Released,
        #[allow(unreachable_patterns)]
        _ => Outcome::Released,
    }
}

/// Our message as fe2o3's: strings for ids, header.durable as given, one data section.
pub(crate) fn to_amqp(message: &Message) -> AmqpMessage<Data> {
    let properties = Properties {
        message_id: message.message_id.clone().map(MessageId::String),
        to: message.to.clone(),
        subject: message.subject.clone(),
        reply_to: message.reply_to.clone(),
        correlation_id: message.correlation_id.clone().map(MessageId::String),
        content_type: message.content_type.clone().map(Symbol::from),
        ..Properties::default()
    };
    let header = Header {
        durable: message.durable,
        ttl: message.ttl.map(ttl_millis),
        ..Header::default()
    };
    let mut application = ApplicationProperties::default();
    for (name, value) in &message.application_properties {
        let value = match value {
            Value::String(s) => SimpleValue::String(s.clone()),
            Value::Int(v) => SimpleValue::Int(*v),
            Value::Long(v) => SimpleValue::Long(*v),
            Value::Bool(v) => SimpleValue::Bool(*v),
            Value::Timestamp(ms) => SimpleValue::Timestamp(Timestamp::from_milliseconds(*ms)),
        };
        application.0.insert(name.clone(), value);
    }
    AmqpMessage {
        header: Some(header),
        delivery_annotations: None,
        message_annotations: None,
        properties: Some(properties),
        application_properties: Some(application),
        body: Data(Binary::from(message.body.clone())),
        footer: None,
    }
}

fn message_id_text(id: MessageId) -> String {
    match id {
        MessageId::String(s) => s,
        MessageId::Ulong(n) => n.to_string(),
        MessageId::Uuid(u) => uuid::Uuid::from_bytes(u.into_inner()).to_string(),
        MessageId::Binary(b) => b.iter().map(|byte| format!("{byte:02x}")).collect(),
    }
}

/// What peers send, read leniently: any id type as text, narrower and unsigned
/// integers widened, symbols as strings; other property types are skipped.
pub(crate) fn from_amqp(amqp: AmqpMessage<Body<AmqpValue>>) -> Message {
    let mut message = Message {
        durable: false,
        ..Message::default()
    };
    if let Some(h) = amqp.header {
        message.durable = h.durable;
        message.ttl = h.ttl.map(|ms| Duration::from_millis(u64::from(ms)));
    }
    if let Some(p) = amqp.properties {
        message.message_id = p.message_id.map(message_id_text);
        message.correlation_id = p.correlation_id.map(message_id_text);
        message.to = p.to;
        message.reply_to = p.reply_to;
        message.subject = p.subject;
        message.content_type = p.content_type.map(|s| s.0);
    }
    for (name, value) in amqp.application_properties.map(|a| a.0).unwrap_or_default() {
        let value = match value {
            SimpleValue::String(s) => Value::String(s),
            SimpleValue::Symbol(s) => Value::String(s.0),
            SimpleValue::Bool(b) => Value::Bool(b),
            SimpleValue::Byte(v) => Value::Int(i32::from(v)),
            SimpleValue::Short(v) => Value::Int(i32::from(v)),
            SimpleValue::Int(v) => Value::Int(v),
            SimpleValue::Ubyte(v) => Value::Int(i32::from(v)),
            SimpleValue::Ushort(v) => Value::Int(i32::from(v)),
            SimpleValue::Uint(v) => Value::Long(i64::from(v)),
            SimpleValue::Long(v) => Value::Long(v),
            SimpleValue::Ulong(v) => match i64::try_from(v) {
                Ok(v) => Value::Long(v),
                Err(_) => Value::String(v.to_string()),
            },
            SimpleValue::Timestamp(t) => Value::Timestamp(t.milliseconds()),
            other => {
                tracing::debug!(property = %name, kind = ?std::mem::discriminant(&other), "skipping application property of unsupported type");
                continue;
            }
        };
        message.application_properties.insert(name, value);
    }
    message.body = payload(amqp.body);
    message
}

/// The body by wire's rule ([`WireBody::into_payload`]). A body the rule
/// refuses still arrives, empty: the message has to reach the layers above,
/// which report it to its sender (an unreadable payload) instead of the
/// transport dropping it or leaving it unsettled.
fn payload(body: Body<AmqpValue>) -> Vec<u8> {
    let body = match body {
        Body::Data(sections) => {
            WireBody::Data(sections.into_iter().map(|d| d.0.into_vec()).collect())
        }
        Body::Value(value) => match value.0 {
            AmqpValue::Binary(b) => WireBody::Value(AppValue::Binary(b.into_vec())),
            AmqpValue::String(s) => WireBody::Value(AppValue::String(s)),
            // Only a binary or string value carries a payload; wire refuses
            // the rest alike, so their type does not matter here.
            _ => WireBody::Other,
        },
        _ => WireBody::Other,
    };
    body.into_payload().unwrap_or_else(|error| {
        tracing::debug!(%error, "message body unreadable; passed on empty");
        Vec::new()
    })
}

#[cfg(test)]
mod tests {
    use fe2o3_amqp::types::messaging::{AmqpSequence, AmqpValue as ValueSection};

    use super::*;

    fn with_body(body: Body<AmqpValue>) -> AmqpMessage<Body<AmqpValue>> {
        AmqpMessage {
            header: None,
            delivery_annotations: None,
            message_annotations: None,
            properties: None,
            application_properties: None,
            body,
            footer: None,
        }
    }

    #[test]
    fn messages_convert_both_ways_with_all_properties() {
        let message = Message {
            message_id: Some("id-1".into()),
            to: Some("93252_async".into()),
            reply_to: Some("91462_async".into()),
            correlation_id: Some("c-1".into()),
            subject: Some("DIALOG_INNBYGGER_EKONTAKT".into()),
            content_type: Some(
                "application/pkcs7-mime; smime-type=signed-and-enveloped-data".into(),
            ),
            ttl: Some(Duration::from_secs(15)),
            ..Message::new(b"payload".to_vec())
        }
        .with_property("fromHerId", "91462")
        .with_property("n", 5i32)
        .with_property("big", 1i64 << 40)
        .with_property("flag", true)
        .with_property("at", Value::Timestamp(1_700_000_000_123));
        let amqp = to_amqp(&message);
        assert!(amqp.header.as_ref().unwrap().durable);
        let back = AmqpMessage {
            header: amqp.header,
            delivery_annotations: None,
            message_annotations: None,
            properties: amqp.properties,
            application_properties: amqp.application_properties,
            body: Body::Data(vec![amqp.body].into()),
            footer: None,
        };
        assert_eq!(from_amqp(back), message);
    }

    #[test]
    fn a_ttl_beyond_the_header_field_is_clamped() {
        let message = Message {
            ttl: Some(Duration::from_secs(100 * 24 * 3600)),
            ..Message::new(b"x".to_vec())
        };
        assert_eq!(to_amqp(&message).header.unwrap().ttl, Some(u32::MAX));
    }

    #[test]
    fn bodies_follow_wire_and_an_unreadable_one_arrives_empty() {
        let sections = vec![
            Data(Binary::from(b"<a".to_vec())),
            Data(Binary::from(b"/>".to_vec())),
        ];
        assert_eq!(
            from_amqp(with_body(Body::Data(sections.into()))).body,
            b"<a/>"
        );
        let binary = ValueSection(AmqpValue::Binary(Binary::from(vec![1u8, 2])));
        assert_eq!(from_amqp(with_body(Body::Value(binary))).body, [1, 2]);
        let text = ValueSection(AmqpValue::String("x".into()));
        assert_eq!(from_amqp(with_body(Body::Value(text))).body, b"x");
        let number = ValueSection(AmqpValue::Long(1));
        assert!(from_amqp(with_body(Body::Value(number))).body.is_empty());
        let sequence = AmqpSequence(vec![AmqpValue::Long(1)]);
        assert!(from_amqp(with_body(Body::Sequence(vec![sequence].into())))
            .body
            .is_empty());
        assert!(from_amqp(with_body(Body::Empty)).body.is_empty());
    }

    #[test]
    fn ids_of_any_type_read_as_text_and_a_missing_header_is_not_durable() {
        let mut amqp = with_body(Body::Empty);
        amqp.properties = Some(Properties {
            message_id: Some(MessageId::Ulong(42)),
            correlation_id: Some(MessageId::Binary(Binary::from(vec![0xab, 0x01]))),
            ..Properties::default()
        });
        let message = from_amqp(amqp);
        assert_eq!(message.message_id.as_deref(), Some("42"));
        assert_eq!(message.correlation_id.as_deref(), Some("ab01"));
        assert!(!message.durable);
    }
}
