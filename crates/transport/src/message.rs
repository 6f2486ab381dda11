//! The transport-level message: the AMQP 1.0 properties, header fields and
//! application properties the profile uses, and the body bytes. No
//! knowledge of what the properties mean (that is `wire`'s job).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A typed application-property value, as AMQP 1.0 carries it.
///
/// Receivers accept what peers send: an unsigned or narrower integer arrives
/// as [`Value::Int`] or [`Value::Long`], a symbol as [`Value::String`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "snake_case")]
pub enum Value {
    /// AMQP string.
    String(String),
    /// AMQP int (32-bit signed).
    Int(i32),
    /// AMQP long (64-bit signed).
    Long(i64),
    /// AMQP boolean.
    Bool(bool),
    /// AMQP timestamp, milliseconds since the Unix epoch.
    Timestamp(i64),
}

impl Value {
    /// The value as an integer when it is one, or a decimal string of one
    /// (HER-ids arrive as strings from NHN's library, as ints or longs from others).
    pub fn as_integer(&self) -> Option<i64> {
        match self {
            Value::Int(v) => Some(i64::from(*v)),
            Value::Long(v) => Some(*v),
            Value::String(s) => s.trim().parse().ok(),
            Value::Bool(_) | Value::Timestamp(_) => None,
        }
    }

    /// The value when it is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::String(s.to_owned())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::String(s)
    }
}

impl From<i32> for Value {
    fn from(v: i32) -> Self {
        Value::Int(v)
    }
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Long(v)
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Bool(v)
    }
}

/// One message as the transport moves it.
///
/// `durable` defaults to `true`: AMQP's default (false) makes RabbitMQ keep
/// the message in memory only, and it dies with the broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// properties.message-id (sent as a string).
    pub message_id: Option<String>,
    /// properties.to.
    pub to: Option<String>,
    /// properties.reply-to.
    pub reply_to: Option<String>,
    /// properties.correlation-id (sent as a string).
    pub correlation_id: Option<String>,
    /// properties.subject.
    pub subject: Option<String>,
    /// properties.content-type.
    pub content_type: Option<String>,
    /// header.ttl: the broker drops (dead-letters) the message after this long.
    #[serde(with = "opt_millis")]
    pub ttl: Option<Duration>,
    /// header.durable.
    pub durable: bool,
    /// application-properties.
    pub application_properties: BTreeMap<String, Value>,
    /// The body (one AMQP data section).
    #[serde(skip)]
    pub body: Vec<u8>,
}

impl Default for Message {
    fn default() -> Self {
        Message {
            message_id: None,
            to: None,
            reply_to: None,
            correlation_id: None,
            subject: None,
            content_type: None,
            ttl: None,
            durable: true,
            application_properties: BTreeMap::new(),
            body: Vec::new(),
        }
    }
}

impl Message {
    /// A durable message with this body and nothing else set.
    pub fn new(body: impl Into<Vec<u8>>) -> Self {
        Message {
            body: body.into(),
            ..Message::default()
        }
    }

    /// Sets an application property (builder style).
    pub fn with_property(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.application_properties
            .insert(name.to_owned(), value.into());
        self
    }
}

/// How a broker settled a message we sent.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// Stored by the broker (RabbitMQ: confirmed). Note that RabbitMQ also
    /// accepts (and drops) messages routed to no queue.
    Accepted,
    /// Refused by the broker; the description says why.
    Rejected {
        /// The broker's error condition and description, if any.
        reason: String,
    },
    /// Not taken by the broker this time; sending again may succeed.
    Released,
}

mod opt_millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(v: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(d) => s.serialize_some(&(d.as_millis() as u64)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_millis))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn her_ids_read_as_integers_from_strings_ints_and_longs() {
        assert_eq!(Value::from("91462").as_integer(), Some(91462));
        assert_eq!(Value::Int(91462).as_integer(), Some(91462));
        assert_eq!(Value::Long(8_093).as_integer(), Some(8093));
        assert_eq!(Value::from("91462x").as_integer(), None);
        assert_eq!(Value::Bool(true).as_integer(), None);
    }

    #[test]
    fn messages_are_durable_by_default() {
        assert!(Message::new(b"x".to_vec()).durable);
        assert!(Message::default().durable);
    }

    #[test]
    fn properties_survive_serialization_without_the_body() {
        let message = Message {
            message_id: Some("m-1".into()),
            ttl: Some(Duration::from_millis(1500)),
            ..Message::new(b"body".to_vec())
        }
        .with_property("fromHerId", "91462")
        .with_property("n", 7i64);
        let json = serde_json::to_string(&message).unwrap();
        assert!(!json.contains("body"));
        let back: Message = serde_json::from_str(&json).unwrap();
        assert_eq!(
            back,
            Message {
                body: Vec::new(),
                ..message
            }
        );
    }
}
