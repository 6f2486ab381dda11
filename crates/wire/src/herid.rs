//! HER-ids: the identifiers of parties in Helsetjenesteenhetsregisteret.
//!
//! On the wire they are decimal strings (as NHN's library sends them); peers
//! may also send AMQP ints or longs. Everything is read through [`HerId`],
//! which only holds a positive value that fits the reference library's
//! 32-bit signed `int`.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

/// A party's HER-id: a positive integer no larger than `i32::MAX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HerId(u32);

impl HerId {
    /// The largest HER-id the reference library (a .NET `int`) can carry.
    pub const MAX: u32 = i32::MAX as u32;

    /// A HER-id from a number; `None` when zero or above [`HerId::MAX`].
    pub const fn new(value: u32) -> Option<HerId> {
        if value == 0 || value > Self::MAX {
            None
        } else {
            Some(HerId(value))
        }
    }

    /// The numeric value.
    pub const fn get(self) -> u32 {
        self.0
    }

    /// Parse a decimal string read from `field` (named in the error).
    ///
    /// Surrounding ASCII whitespace is tolerated (as .NET's `int.Parse`
    /// does); signs, fractions and anything else are refused.
    pub fn parse_field(field: &str, text: &str) -> Result<HerId> {
        let digits = text.trim_ascii();
        if digits.is_empty() {
            return Err(invalid(field, text, "empty"));
        }
        if !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid(field, text, "not a decimal integer"));
        }
        let significant = digits.trim_start_matches('0');
        if significant.len() > 10 {
            return Err(invalid(field, text, "out of range"));
        }
        let value: i64 = if significant.is_empty() {
            0
        } else {
            significant
                .parse()
                .map_err(|_| invalid(field, text, "out of range"))?
        };
        Self::from_i64_field(field, value)
    }

    /// A HER-id from an integer value read from `field` (AMQP int or long).
    pub fn from_i64_field(field: &str, value: i64) -> Result<HerId> {
        if value <= 0 {
            return Err(invalid(field, &value.to_string(), "not positive"));
        }
        u32::try_from(value)
            .ok()
            .and_then(HerId::new)
            .ok_or_else(|| invalid(field, &value.to_string(), "out of range"))
    }
}

/// The error for a refused HER-id; the value is kept short, as it goes
/// into logs and error reports.
pub(crate) fn invalid(field: &str, value: &str, reason: &'static str) -> Error {
    Error::InvalidHerId {
        field: field.to_string(),
        value: value.chars().take(64).collect(),
        reason,
    }
}

impl fmt::Display for HerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for HerId {
    type Err = Error;

    fn from_str(text: &str) -> Result<HerId> {
        HerId::parse_field("HER-id", text)
    }
}

impl TryFrom<i64> for HerId {
    type Error = Error;

    fn try_from(value: i64) -> Result<HerId> {
        HerId::from_i64_field("HER-id", value)
    }
}

impl TryFrom<u32> for HerId {
    type Error = Error;

    fn try_from(value: u32) -> Result<HerId> {
        HerId::from_i64_field("HER-id", i64::from(value))
    }
}

impl From<HerId> for u32 {
    fn from(id: HerId) -> u32 {
        id.0
    }
}

impl serde::Serialize for HerId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u32(self.0)
    }
}

/// Configuration may write a HER-id as a number or a decimal string.
impl<'de> serde::Deserialize<'de> for HerId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<HerId, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(i64),
            Text(String),
        }
        let parsed = match Raw::deserialize(deserializer)? {
            Raw::Number(value) => HerId::from_i64_field("HER-id", value),
            Raw::Text(text) => HerId::parse_field("HER-id", &text),
        };
        parsed.map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_decimal_strings() {
        assert_eq!(
            HerId::parse_field("fromHerId", "93238").unwrap().get(),
            93238
        );
        assert_eq!(
            HerId::parse_field("fromHerId", " 91462\t").unwrap().get(),
            91462
        );
        assert_eq!(HerId::parse_field("fromHerId", "000059").unwrap().get(), 59);
        assert_eq!("2147483647".parse::<HerId>().unwrap().get(), HerId::MAX);
    }

    #[test]
    fn refuses_junk_and_names_the_field() {
        for junk in [
            "",
            "  ",
            "abc",
            "-5",
            "+5",
            "12.0",
            "0",
            "000",
            "2147483648",
            "99999999999999999999999",
            "1 2",
            "１２",
        ] {
            let err = HerId::parse_field("toHerId", junk).unwrap_err();
            match &err {
                Error::InvalidHerId { field, .. } => assert_eq!(field, "toHerId", "{junk:?}"),
                other => panic!("{junk:?}: {other:?}"),
            }
            assert!(
                err.to_string().starts_with("toHerId is not a valid HER-id"),
                "{err}"
            );
        }
    }

    #[test]
    fn error_carries_a_short_value() {
        let err = HerId::parse_field("fromHerId", "abc").unwrap_err();
        assert_eq!(err.condition_data(), ["fromHerId", "abc"]);
        let long = "9".repeat(500);
        let Error::InvalidHerId { value, .. } = HerId::parse_field("fromHerId", &long).unwrap_err()
        else {
            panic!()
        };
        assert_eq!(value.len(), 64);
        assert_eq!(
            HerId::try_from(-7_i64).unwrap_err().condition_data(),
            ["HER-id", "-7"]
        );
    }

    #[test]
    fn from_integers() {
        assert_eq!(HerId::try_from(109989_i64).unwrap().to_string(), "109989");
        assert!(HerId::try_from(0_i64).is_err());
        assert!(HerId::try_from(-1_i64).is_err());
        assert!(HerId::try_from(i64::from(u32::MAX)).is_err());
        assert!(HerId::try_from(0_u32).is_err());
        assert_eq!(HerId::new(1).unwrap().get(), 1);
        assert!(HerId::new(0).is_none());
    }

    #[test]
    fn serde_number_or_string() {
        let id: HerId = serde_json::from_str("91462").unwrap();
        assert_eq!(id.get(), 91462);
        let id: HerId = serde_json::from_str("\"93238\"").unwrap();
        assert_eq!(id.get(), 93238);
        assert_eq!(serde_json::to_string(&id).unwrap(), "93238");
        assert!(serde_json::from_str::<HerId>("0").is_err());
        assert!(serde_json::from_str::<HerId>("\"x\"").is_err());
        assert!(serde_json::from_str::<HerId>("1.5").is_err());
    }

    #[test]
    fn displays_as_decimal() {
        assert_eq!(HerId::new(8093244).unwrap().to_string(), "8093244");
        assert_eq!(u32::from(HerId::new(42).unwrap()), 42);
    }
}
