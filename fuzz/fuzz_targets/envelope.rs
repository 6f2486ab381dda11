//! Header checks and error report parsing on arbitrary application
//! property values: no panics, and every refusal maps to a condition.
#![no_main]

use helsemelding_wire::envelope::{AmqpId, AppValue, Envelope};
use helsemelding_wire::error_report::ReceivedErrorReport;
use helsemelding_wire::HerId;
use libfuzzer_sys::fuzz_target;

const NAMES: [&str; 8] = [
    "fromHerId",
    "toHerId",
    "applicationTimeStamp",
    "cpaId",
    "enqueuedTimeUtc",
    "receiverTimeStamp",
    "errorCondition",
    "errorConditionData",
];

fn value(kind: u8, bytes: &[u8]) -> AppValue {
    let text = String::from_utf8_lossy(bytes).into_owned();
    let mut number = [0u8; 8];
    let n = bytes.len().min(8);
    number[..n].copy_from_slice(&bytes[..n]);
    let long = i64::from_le_bytes(number);
    match kind % 6 {
        0 => AppValue::String(text),
        1 => AppValue::Long(long),
        2 => AppValue::Int(long as i32),
        3 => AppValue::Timestamp(long),
        4 => AppValue::ULong(long as u64),
        _ => AppValue::Null,
    }
}

fuzz_target!(|data: &[u8]| {
    let mut envelope = Envelope::default();
    // Split the input into fields at 0xFF bytes: [kind, bytes...] per property.
    let mut fields = data.split(|b| *b == 0xFF);
    for name in NAMES {
        if let Some(field) = fields.next() {
            if let Some((kind, rest)) = field.split_first() {
                envelope
                    .application
                    .insert(name.to_string(), value(*kind, rest));
            }
        }
    }
    if let Some(field) = fields.next() {
        envelope.properties.subject = Some(String::from_utf8_lossy(field).into_owned());
    }
    if let Some(field) = fields.next() {
        envelope.properties.message_id =
            Some(AmqpId::String(String::from_utf8_lossy(field).into_owned()));
    }
    if let Some(field) = fields.next() {
        envelope.properties.content_type = Some(String::from_utf8_lossy(field).into_owned());
    }
    let ours = HerId::new(91462).unwrap();
    if let Err(error) = envelope.check_incoming(&[ours]) {
        assert!(error.condition().is_some(), "{error}");
    }
    let _ = ReceivedErrorReport::from_envelope(&envelope);
});
