//! Payloads in the encoding their XML declaration names: KITH messages are
//! often ISO-8859-1, and must read exactly as their UTF-8 twins.

use helsemelding_testkit::fixtures::read_nhn;
use helsemelding_wire::{metadata, msghead::MsgHead, Error};

/// The fixture re-encoded as ISO-8859-1, its declaration saying so.
fn as_latin1(relative: &str) -> Vec<u8> {
    let utf8 = String::from_utf8(read_nhn(relative)).unwrap();
    let declared = utf8.replacen("encoding=\"UTF-8\"", "encoding=\"ISO-8859-1\"", 1);
    assert_ne!(declared, utf8, "the fixture declares UTF-8");
    let (bytes, _, unmappable) = encoding_rs::WINDOWS_1252.encode(&declared);
    assert!(!unmappable);
    bytes.into_owned()
}

#[test]
fn an_iso_8859_1_msghead_reads_like_its_utf8_twin() {
    let name = "messages/DIALOG_INNBYGGER_RESEPTFORNYELSE.xml";
    let latin1 = as_latin1(name);
    assert!(
        std::str::from_utf8(&latin1).is_err(),
        "æøå make it invalid UTF-8"
    );
    let from_latin1 = MsgHead::parse(&latin1).unwrap();
    let from_utf8 = MsgHead::parse(&read_nhn(name)).unwrap();
    assert_eq!(from_latin1, from_utf8);
    assert!(
        format!("{from_latin1:?}").contains('ø')
            || format!("{from_latin1:?}").contains('å')
            || format!("{from_latin1:?}").contains('æ')
    );
    assert_eq!(
        metadata::extract(&latin1).unwrap(),
        metadata::extract(&read_nhn(name)).unwrap()
    );
}

#[test]
fn latin1_bytes_without_a_declaration_are_not_well_formed() {
    let latin1 = as_latin1("messages/DIALOG_INNBYGGER_EKONTAKT.xml");
    let undeclared = String::from_utf8_lossy(&latin1)
        .find("?>")
        .map(|end| latin1[end + 2..].to_vec())
        .unwrap();
    let error = MsgHead::parse(&undeclared).unwrap_err();
    assert!(matches!(error, Error::NotWellFormed { .. }), "{error:?}");
}

#[test]
fn an_unknown_declared_encoding_falls_back_to_strict_utf8() {
    let payload = b"<?xml version=\"1.0\" encoding=\"x-no-such\"?><a>\xE6</a>";
    assert!(matches!(
        MsgHead::parse(payload),
        Err(Error::NotWellFormed { .. })
    ));
}
