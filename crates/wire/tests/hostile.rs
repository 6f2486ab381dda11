//! Hostile payloads against every XML reader: truncations and byte flips of
//! the real fixtures, entity bombs, DOCTYPEs, deep nesting and huge input.
//! None may panic; each must end in a clean error or a clean parse.

use helsemelding_testkit::fixtures::read_nhn;
use helsemelding_wire::{apprec::AppRec, dialog, metadata, msghead::MsgHead, Error, Limits};

const FIXTURES: [&str; 9] = [
    "DIALOG_INNBYGGER_EKONTAKT.xml",
    "DIALOG_INNBYGGER_RESEPTFORNYELSE.xml",
    "Dialogtjeneste12_Kommunikasjonstest_Request.xml",
    "Helsenorge_Message.xml",
    "MetadataTestsDialogmelding11.xml",
    "MetadataTests_Apprec10.xml",
    "MetadataTests_Apprec11.xml",
    "SampleMessage.xml",
    "SoapFault.xml",
];

fn every_reader(bytes: &[u8]) {
    if let Ok(head) = MsgHead::parse(bytes) {
        let _ = dialog::is_communication_test_request(&head);
    }
    if let Ok(apprec) = AppRec::parse(bytes) {
        assert_eq!(AppRec::parse(apprec.to_xml().as_bytes()).unwrap(), apprec);
    }
    let _ = metadata::extract(bytes);
}

#[test]
fn truncated_fixtures() {
    for name in FIXTURES {
        let bytes = read_nhn(&format!("messages/{name}"));
        for cut in (0..bytes.len()).step_by(7) {
            every_reader(&bytes[..cut]);
        }
        // A truncated MsgHead is never accepted as a MsgHead.
        if name.starts_with("DIALOG") {
            assert!(MsgHead::parse(&bytes[..bytes.len() / 2]).is_err());
        }
    }
}

#[test]
fn byte_flipped_fixtures() {
    // A fixed pseudo-random walk so failures reproduce.
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    for name in FIXTURES {
        let original = read_nhn(&format!("messages/{name}"));
        for _ in 0..300 {
            let mut bytes = original.clone();
            for _ in 0..4 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let at = (state as usize) % bytes.len();
                bytes[at] = (state >> 32) as u8;
            }
            every_reader(&bytes);
        }
    }
}

#[test]
fn entity_bombs_and_doctypes_are_refused() {
    let bomb = r#"<?xml version="1.0"?>
<!DOCTYPE MsgHead [
 <!ENTITY a "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa">
 <!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">
 <!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">
]>
<MsgHead xmlns="http://www.kith.no/xmlstds/msghead/2006-05-24">&c;</MsgHead>"#;
    assert_eq!(
        MsgHead::parse(bomb.as_bytes()).unwrap_err(),
        Error::DoctypeForbidden
    );
    assert_eq!(
        metadata::extract(bomb.as_bytes()).unwrap_err(),
        Error::DoctypeForbidden
    );
    let xxe = r#"<!DOCTYPE AppRec [<!ENTITY x SYSTEM "file:///etc/passwd">]><AppRec xmlns="http://www.kith.no/xmlstds/apprec/2012-02-15">&x;</AppRec>"#;
    assert_eq!(
        AppRec::parse(xxe.as_bytes()).unwrap_err(),
        Error::DoctypeForbidden
    );
    let undefined =
        r#"<MsgHead xmlns="http://www.kith.no/xmlstds/msghead/2006-05-24">&x;</MsgHead>"#;
    assert!(matches!(
        MsgHead::parse(undefined.as_bytes()).unwrap_err(),
        Error::NotWellFormed { .. }
    ));
}

#[test]
fn deep_and_huge_payloads_are_capped() {
    let deep = format!(
        r#"<MsgHead xmlns="http://www.kith.no/xmlstds/msghead/2006-05-24">{}{}</MsgHead>"#,
        "<x>".repeat(1_000_000),
        "</x>".repeat(1_000_000)
    );
    assert_eq!(
        MsgHead::parse(deep.as_bytes()).unwrap_err(),
        Error::TooDeep { limit: 128 }
    );
    assert_eq!(
        metadata::extract(deep.as_bytes()).unwrap_err(),
        Error::TooDeep { limit: 128 }
    );

    let limits = Limits {
        max_bytes: 1024,
        ..Limits::default()
    };
    let big = vec![b' '; 2048];
    assert_eq!(
        MsgHead::parse_with_limits(&big, &limits).unwrap_err(),
        Error::TooLarge {
            size: 2048,
            limit: 1024
        }
    );
    let wide = format!(
        r#"<MsgHead xmlns="http://www.kith.no/xmlstds/msghead/2006-05-24">{}</MsgHead>"#,
        "<x/>".repeat(200)
    );
    let few_nodes = Limits {
        max_nodes: 100,
        ..Limits::default()
    };
    assert!(MsgHead::parse_with_limits(wide.as_bytes(), &few_nodes).is_err());
}

#[test]
fn non_utf8_and_binary_are_not_well_formed() {
    for bytes in [
        &b"\xFF\xFE<\x00M\x00"[..],
        b"\x30\x82\x01\x00\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x07\x03",
        b"<MsgHead>\xC3</MsgHead>",
    ] {
        assert!(matches!(
            MsgHead::parse(bytes).unwrap_err(),
            Error::NotWellFormed { .. }
        ));
        assert!(metadata::extract(bytes).is_err());
    }
}
