//! Dialogmelding 1.1 (`http://www.kith.no/xmlstds/dialog/2013-01-23`), as
//! far as the communication test needs it.
//!
//! The communication test is a MsgHead of type `DIALOG_INNBYGGER_TEST` whose
//! Dialogmelding holds `Foresporsel/TypeForesp V="KT"` (kodeverk 7603). The
//! answer is a MsgHead of the same type whose `ConversationRef/RefToParent`
//! is the request's `MsgId`, carrying a Dialogmelding `Notat` (our choice of
//! content; the request is what peers recognise).

use chrono::{DateTime, Utc};

use crate::msghead::{DocumentContent, MsgHead, NewMsgHead, Party};
use crate::xml::{self, Code, Limits};

/// The Dialogmelding 1.1 namespace.
pub const NAMESPACE: &str = "http://www.kith.no/xmlstds/dialog/2013-01-23";
/// The message function of the communication test.
pub const COMMTEST_FUNCTION: &str = "DIALOG_INNBYGGER_TEST";
/// `TypeForesp V` of a communication test.
pub const COMMTEST_TYPE: &str = "KT";
/// The code system of `TypeForesp` for the communication test (kodeverk 7603).
pub const COMMTEST_SYSTEM: &str = "2.16.578.1.12.4.1.1.7603";

/// The `TypeForesp` codes of a Dialogmelding (direct `Foresporsel`s and those
/// inside a `Notat`); empty when `source` is not a Dialogmelding 1.1.
pub fn foresporsel_types(source: &str) -> Vec<Code> {
    let Ok(document) = xml::parse_text(source, &Limits::default()) else {
        return Vec::new();
    };
    let root = document.root_element();
    if !xml::is(&root, NAMESPACE, "Dialogmelding") {
        return Vec::new();
    }
    let direct = xml::children(root, NAMESPACE, "Foresporsel");
    let in_notes = xml::children(root, NAMESPACE, "Notat")
        .into_iter()
        .flat_map(|n| xml::children(n, NAMESPACE, "Foresporsel"));
    direct
        .into_iter()
        .chain(in_notes)
        .filter_map(|f| Code::read(xml::child(f, NAMESPACE, "TypeForesp")))
        .collect()
}

/// The business document's source when it is a Dialogmelding 1.1.
fn dialogmelding(msghead: &MsgHead) -> Option<&str> {
    match msghead.business_document()? {
        DocumentContent::Xml {
            namespace: Some(namespace),
            local_name,
            source,
        } if namespace == NAMESPACE && local_name == "Dialogmelding" => Some(source),
        _ => None,
    }
}

/// Whether a MsgHead is a communication test request: its Dialogmelding
/// asks `TypeForesp V="KT"`.
pub fn is_communication_test_request(msghead: &MsgHead) -> bool {
    dialogmelding(msghead).is_some_and(|source| {
        foresporsel_types(source)
            .iter()
            .any(|code| code.v == COMMTEST_TYPE)
    })
}

/// Whether a MsgHead is the answer to the communication test `request_msg_id`.
pub fn is_communication_test_response(msghead: &MsgHead, request_msg_id: &str) -> bool {
    msghead.function() == COMMTEST_FUNCTION
        && msghead.ref_to_parent.as_deref() == Some(request_msg_id)
}

fn commtest_type() -> Code {
    Code::new(COMMTEST_FUNCTION, "Dialog med innbygger - test")
}

/// A communication test request from `sender` to `receiver` (MsgHead with a
/// Dialogmelding `Foresporsel/TypeForesp V="KT"`), as XML.
pub fn communication_test_request(
    msg_id: &str,
    now: DateTime<Utc>,
    sender: Party,
    receiver: Party,
) -> String {
    let head = NewMsgHead {
        msg_type: commtest_type(),
        msg_id: msg_id.to_string(),
        gen_date: now,
        ack: false,
        ref_to_parent: None,
        ref_to_conversation: None,
        sender,
        receiver,
        content_description: Some("Kommunikasjonstest".into()),
    };
    head.write(|out| {
        out.start("Dialogmelding", &[("xmlns", NAMESPACE)]);
        out.start("Foresporsel", &[]);
        out.code(
            "TypeForesp",
            &Code::new(COMMTEST_TYPE, "Kommunikasjonstest").with_system(COMMTEST_SYSTEM),
        );
        out.end("Foresporsel");
        out.end("Dialogmelding");
    })
}

/// A Dialogmelding 1.1 `Notat` (a free-text dialogue message) in a MsgHead,
/// as XML: `tema` is the note's subject, `text` its content.
pub fn dialog_note(head: &NewMsgHead, tema: &str, text: &str) -> String {
    head.write(|out| {
        out.start("Dialogmelding", &[("xmlns", NAMESPACE)]);
        out.start("Notat", &[]);
        out.text_element("Tema", tema);
        out.text_element("TekstNotatInnhold", text);
        out.end("Notat");
        out.end("Dialogmelding");
    })
}

/// The answer to a communication test request: parties swapped,
/// `RefToParent` = the request's `MsgId`, as XML.
pub fn communication_test_response(request: &MsgHead, msg_id: &str, now: DateTime<Utc>) -> String {
    let head = NewMsgHead {
        msg_type: commtest_type(),
        msg_id: msg_id.to_string(),
        gen_date: now,
        ack: false,
        ref_to_parent: Some(request.msg_id.clone()),
        ref_to_conversation: Some(
            request
                .ref_to_conversation
                .clone()
                .unwrap_or_else(|| request.msg_id.clone()),
        ),
        sender: request.receiver.clone(),
        receiver: request.sender.clone(),
        content_description: Some("Kommunikasjonstest".into()),
    };
    head.write(|out| {
        out.start("Dialogmelding", &[("xmlns", NAMESPACE)]);
        out.start("Notat", &[]);
        out.code(
            "TemaKodet",
            &Code::new(COMMTEST_TYPE, "Kommunikasjonstest").with_system(COMMTEST_SYSTEM),
        );
        out.text_element("TekstNotatInnhold", "Kommunikasjonstest OK");
        out.end("Notat");
        out.end("Dialogmelding");
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msghead::{SubParty, SubPartyKind};
    use crate::HerId;
    use chrono::TimeZone;
    use helsemelding_testkit::fixtures::read_nhn;

    fn her(n: u32) -> HerId {
        HerId::new(n).unwrap()
    }

    fn party(name: &str, org: u32, sub: u32) -> Party {
        Party {
            name: Some(name.into()),
            her_id: Some(her(org)),
            sub: Some(SubParty {
                kind: SubPartyKind::Organisation,
                name: Some(format!("{name} sub")),
                her_id: Some(her(sub)),
            }),
        }
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 23, 14, 10, 0).unwrap()
    }

    #[test]
    fn detects_the_fixture_request() {
        let request = MsgHead::parse(&read_nhn(
            "messages/Dialogtjeneste12_Kommunikasjonstest_Request.xml",
        ))
        .unwrap();
        assert!(is_communication_test_request(&request));
        for other in [
            "DIALOG_INNBYGGER_EKONTAKT.xml",
            "DIALOG_INNBYGGER_RESEPTFORNYELSE.xml",
        ] {
            let m = MsgHead::parse(&read_nhn(&format!("messages/{other}"))).unwrap();
            assert!(!is_communication_test_request(&m), "{other}");
        }
    }

    #[test]
    fn reads_foresporsel_codes() {
        let m = MsgHead::parse(&read_nhn("messages/DIALOG_INNBYGGER_RESEPTFORNYELSE.xml")).unwrap();
        let DocumentContent::Xml { source, .. } = m.business_document().unwrap() else {
            panic!()
        };
        let codes = foresporsel_types(source);
        assert_eq!(codes.len(), 1);
        assert_eq!(codes[0].v, "RF");
        assert_eq!(codes[0].s.as_deref(), Some("2.16.578.1.12.4.1.1.7601"));
        assert!(foresporsel_types("<x/>").is_empty());
        assert!(foresporsel_types("<<<").is_empty());
    }

    #[test]
    fn dialog_note_round_trip() {
        let head = NewMsgHead {
            msg_type: Code::new("DIALOG_HELSEFAGLIG", "Helsefaglig dialog"),
            msg_id: "n-1".into(),
            gen_date: now(),
            ack: true,
            ref_to_parent: None,
            ref_to_conversation: None,
            sender: party("Kommune", 91462, 91463),
            receiver: party("Legekontor", 56704, 258521),
            content_description: None,
        };
        let xml = dialog_note(
            &head,
            "Oppfølging",
            "Pasienten & pårørende <ønsker> samtale",
        );
        let m = MsgHead::parse(xml.as_bytes()).unwrap();
        assert_eq!(m.function(), "DIALOG_HELSEFAGLIG");
        let DocumentContent::Xml {
            source, namespace, ..
        } = m.business_document().unwrap()
        else {
            panic!()
        };
        assert_eq!(namespace.as_deref(), Some(NAMESPACE));
        assert!(source.contains("<TekstNotatInnhold>Pasienten &amp; pårørende &lt;ønsker&gt; samtale</TekstNotatInnhold>"));
        assert!(!is_communication_test_request(&m));
        let metadata = crate::metadata::extract(xml.as_bytes()).unwrap();
        assert_eq!(metadata["X-MessageInfo-SchemaNamespace"], NAMESPACE);
        assert_eq!(metadata["X-Receiver-Lvl2Id"], "258521");
    }

    #[test]
    fn request_and_response_round_trip() {
        let xml = communication_test_request(
            "req-1",
            now(),
            party("Kommune", 91462, 91463),
            party("Helsenorge", 2359, 109989),
        );
        assert!(xml.starts_with(
            "<MsgHead xmlns=\"http://www.kith.no/xmlstds/msghead/2006-05-24\">\n  <MsgInfo>"
        ));
        let request = MsgHead::parse(xml.as_bytes()).unwrap();
        assert!(is_communication_test_request(&request));
        assert_eq!(request.function(), "DIALOG_INNBYGGER_TEST");
        assert_eq!(request.msg_id, "req-1");
        assert_eq!(request.gen_date.as_deref(), Some("2026-11-23T14:10:00Z"));
        request.check_parties(her(91463), her(109989)).unwrap();

        let answer = communication_test_response(&request, "resp-1", now());
        let response = MsgHead::parse(answer.as_bytes()).unwrap();
        assert!(is_communication_test_response(&response, "req-1"));
        assert!(!is_communication_test_response(&response, "req-2"));
        assert!(!is_communication_test_request(&response));
        assert_eq!(response.ref_to_conversation.as_deref(), Some("req-1"));
        response.check_parties(her(109989), her(91463)).unwrap();
    }
}
