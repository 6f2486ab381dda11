//! Hostile and broken input is refused quickly, with bounded memory, and
//! never panics.

use std::time::{Duration, Instant};

use helsemelding_registry::certificates::{parse_certificate_details, parse_rest_certificates};
use helsemelding_registry::cppa::parse_collaboration_document;
use helsemelding_registry::party::parse_communication_party;
use helsemelding_registry::Error;
use helsemelding_testkit::fixtures::read_nhn;

fn fast<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let result = f();
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{what} took {:?}",
        start.elapsed()
    );
    result
}

#[test]
fn billion_laughs_is_refused() {
    let mut doc = String::from("<?xml version=\"1.0\"?><!DOCTYPE lolz [<!ENTITY lol \"lol\">");
    for i in 1..10 {
        let prev = if i == 1 {
            "lol".to_string()
        } else {
            format!("lol{}", i - 1)
        };
        doc.push_str(&format!(
            "<!ENTITY lol{i} \"{}\">",
            format!("&{prev};").repeat(10)
        ));
    }
    doc.push_str("]><tns:CollaborationProtocolProfile xmlns:tns=\"x\">&lol9;</tns:CollaborationProtocolProfile>");
    let error = fast("billion laughs", || {
        parse_collaboration_document(doc.as_bytes())
    })
    .unwrap_err();
    assert!(matches!(error, Error::Refused { .. }), "{error}");
    let error = fast("billion laughs", || {
        parse_communication_party(doc.as_bytes())
    })
    .unwrap_err();
    assert!(matches!(error, Error::Refused { .. }), "{error}");
}

#[test]
fn external_entities_are_refused() {
    let doc = r#"<?xml version="1.0"?><!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><CommunicationParty><HerId>&xxe;</HerId></CommunicationParty>"#;
    let error = parse_communication_party(doc.as_bytes()).unwrap_err();
    assert!(matches!(error, Error::Refused { .. }), "{error}");
    // Without a DOCTYPE, an entity reference is undeclared: refused as well.
    let doc = "<CommunicationParty><HerId>&xxe;</HerId></CommunicationParty>";
    assert!(matches!(
        parse_communication_party(doc.as_bytes()),
        Err(Error::Refused { .. })
    ));
    let doc = r#"<CertificateDetails><Certificate>&xxe;</Certificate></CertificateDetails>"#;
    assert!(matches!(
        parse_certificate_details(doc.as_bytes()),
        Err(Error::Refused { .. })
    ));
}

#[test]
fn fifty_megabytes_are_refused_before_parsing() {
    let mut doc = b"<tns:CollaborationProtocolProfile xmlns:tns=\"x\">".to_vec();
    doc.resize(50 * 1024 * 1024, b' ');
    let error = fast("50 MB CPP", || parse_collaboration_document(&doc)).unwrap_err();
    assert!(
        matches!(error, Error::TooLarge { size, .. } if size == 50 * 1024 * 1024),
        "{error}"
    );
    let error = fast("50 MB party", || parse_communication_party(&doc)).unwrap_err();
    assert!(matches!(error, Error::TooLarge { .. }), "{error}");
    doc[0] = b'{';
    let error = fast("50 MB JSON", || parse_communication_party(&doc)).unwrap_err();
    assert!(matches!(error, Error::TooLarge { .. }), "{error}");
    let error = fast("50 MB cert JSON", || parse_rest_certificates(&doc, "1")).unwrap_err();
    assert!(matches!(error, Error::TooLarge { .. }), "{error}");
}

#[test]
fn deep_nesting_is_refused() {
    let depth = 100_000;
    let doc = "<a>".repeat(depth) + &"</a>".repeat(depth);
    let error = fast("deep XML", || parse_collaboration_document(doc.as_bytes())).unwrap_err();
    assert!(matches!(error, Error::Refused { .. }), "{error}");
    let json = "[".repeat(depth) + &"]".repeat(depth);
    let json = format!("{{\"herId\": {json}}}");
    let error = fast("deep JSON", || parse_communication_party(json.as_bytes())).unwrap_err();
    assert!(matches!(error, Error::Json { .. }), "{error}");
}

#[test]
fn many_elements_are_refused() {
    let doc = format!(
        "<tns:CollaborationProtocolProfile xmlns:tns=\"x\">{}</tns:CollaborationProtocolProfile>",
        "<x/>".repeat(300_000)
    );
    let error = fast("wide XML", || parse_collaboration_document(doc.as_bytes())).unwrap_err();
    assert!(matches!(error, Error::Refused { .. }), "{error}");
}

#[test]
fn truncated_and_garbage_input_never_panics() {
    for file in [
        "registry/CPP_93238.xml",
        "registry/CPA_v2_51795e2c-9d39-44e0-9168-5bee38f20819.xml",
        "registry/CommunicationDetails_93238.xml",
        "registry/CommunicationDetailsRest_8141705.json",
        "registry/GetCertificateDetailsForEncryption_93238.xml",
    ] {
        let bytes = read_nhn(file);
        // Every prefix at a coarse stride, and a few byte flips.
        let stride = (bytes.len() / 97).max(1);
        for end in (0..bytes.len()).step_by(stride) {
            let prefix = &bytes[..end];
            assert!(
                parse_collaboration_document(prefix).is_err(),
                "{file} prefix {end} parsed"
            );
            let _ = parse_communication_party(prefix);
            let _ = parse_certificate_details(prefix);
        }
        let mut flipped = bytes.clone();
        for i in (0..flipped.len()).step_by(stride) {
            flipped[i] ^= 0x55;
        }
        let _ = parse_collaboration_document(&flipped);
        let _ = parse_communication_party(&flipped);
    }
    for garbage in [
        &b""[..],
        b"\xff\xfe\x00",
        b"{",
        b"[]",
        b"null",
        b"{\"herId\": -5}",
        b"<a",
        b"\xEF\xBB\xBF",
    ] {
        assert!(parse_collaboration_document(garbage).is_err());
        assert!(parse_communication_party(garbage).is_err());
        assert!(parse_rest_certificates(garbage, "1").is_err());
    }
}

#[test]
fn missing_required_elements_name_the_element_and_party() {
    let doc = r#"<tns:CollaborationProtocolProfile xmlns:tns="x" tns:cppid="c"><tns:PartyInfo tns:partyName="Legekontor"><tns:PartyId tns:type="ENH">1</tns:PartyId></tns:PartyInfo></tns:CollaborationProtocolProfile>"#;
    let error = parse_collaboration_document(doc.as_bytes()).unwrap_err();
    assert!(
        matches!(&error, Error::Missing { element, party } if element.contains("HER") && party == "Legekontor"),
        "{error}"
    );
    let doc = r#"<tns:CollaborationProtocolProfile xmlns:tns="x"><tns:PartyInfo tns:partyName="L"><tns:PartyId tns:type="HER">4242</tns:PartyId><tns:CollaborationRole><tns:Role tns:name="r"/></tns:CollaborationRole></tns:PartyInfo></tns:CollaborationProtocolProfile>"#;
    let error = parse_collaboration_document(doc.as_bytes()).unwrap_err();
    assert_eq!(
        error.to_string(),
        "missing ProcessSpecification (party 4242)"
    );
    let error = parse_communication_party(
        b"<CommunicationParty><HerId>77</HerId><Active>true</Active></CommunicationParty>",
    )
    .unwrap_err();
    assert_eq!(error.to_string(), "missing Name (party 77)");
    let error = parse_communication_party(br#"{"herId": 88, "name": "x"}"#).unwrap_err();
    assert_eq!(error.to_string(), "missing active (party 88)");
}
