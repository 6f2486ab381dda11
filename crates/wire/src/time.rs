//! The timestamp formats of the profile.
//!
//! The reference library writes `applicationTimeStamp` as
//! `yyyy-MM-ddTHH:mm:ssZ`, `enqueuedTimeUtc` as `yyyy-MM-ddTHH:mm:ss` and the
//! error report's `receiverTimeStamp` as `MM/dd/yyyy HH:mm:ss`, all UTC.
//! We write them as the reference does and read all of them, plus RFC 3339
//! with fraction or offset.

use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};

/// Format a time as `yyyy-MM-ddTHH:mm:ssZ` (UTC, no fraction).
pub fn format_utc_seconds(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Format a time as the reference library's `receiverTimeStamp`:
/// `MM/dd/yyyy HH:mm:ss` (UTC, .NET's invariant culture).
pub fn format_receiver_timestamp(time: DateTime<Utc>) -> String {
    time.format("%m/%d/%Y %H:%M:%S").to_string()
}

/// Parse any timestamp form the profile's peers send: RFC 3339 (with or
/// without fraction, `Z` or an offset), a zone-less `yyyy-MM-ddTHH:mm:ss[.f]`
/// (read as UTC, as `enqueuedTimeUtc` is), or .NET's invariant
/// `MM/dd/yyyy HH:mm:ss` (UTC).
pub fn parse_lenient(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Some(time.with_timezone(&Utc));
    }
    const NAIVE_FORMATS: [&str; 3] = [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%m/%d/%Y %H:%M:%S",
    ];
    NAIVE_FORMATS
        .iter()
        .find_map(|format| NaiveDateTime::parse_from_str(text, format).ok())
        .map(|naive| naive.and_utc())
}

/// A time from an AMQP timestamp (milliseconds since the Unix epoch).
pub fn from_amqp_millis(millis: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_millis(millis)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
    }

    #[test]
    fn formats_without_fraction() {
        let t = at(2026, 11, 23, 9, 5, 7) + chrono::Duration::milliseconds(123);
        assert_eq!(format_utc_seconds(t), "2026-11-23T09:05:07Z");
    }

    #[test]
    fn parses_every_peer_form() {
        let want = at(2015, 7, 30, 13, 16, 55);
        for text in [
            "2015-07-30T13:16:55Z",
            "2015-07-30T13:16:55.000Z",
            "2015-07-30T15:16:55+02:00",
            "2015-07-30T13:16:55",
            "2015-07-30T13:16:55.0",
            "07/30/2015 13:16:55",
            " 2015-07-30T13:16:55Z ",
        ] {
            assert_eq!(parse_lenient(text), Some(want), "{text}");
        }
        let fractional = parse_lenient("2020-09-16T12:52:17.0009763Z").unwrap();
        assert_eq!(
            fractional.timestamp(),
            at(2020, 9, 16, 12, 52, 17).timestamp()
        );
    }

    #[test]
    fn refuses_junk() {
        for text in [
            "",
            "yesterday",
            "2015-13-30T13:16:55Z",
            "30/07/2015 13:16:55",
            "1438262215",
        ] {
            assert_eq!(parse_lenient(text), None, "{text}");
        }
    }

    #[test]
    fn amqp_millis() {
        assert_eq!(
            from_amqp_millis(1_438_262_215_000),
            Some(at(2015, 7, 30, 13, 16, 55))
        );
    }
}
