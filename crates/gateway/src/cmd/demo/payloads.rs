//! The demo's business messages, made up but shaped like the real ones: an
//! IPLOS-style statistics report (aggregate counts only, nothing about a
//! person) and a Dialogmelding note, each in a MsgHead that asks for an
//! application receipt.

use chrono::{DateTime, Utc};
use helsemelding_wire::dialog::dialog_note;
use helsemelding_wire::msghead::{NewMsgHead, Party};
use helsemelding_wire::{Code, HerId};

/// The message function of the statistics report (made up for the demo).
pub const STATISTICS_FUNCTION: &str = "IPLOS_STATISTIKK";
/// The message function of a dialogue note.
pub const DIALOGUE_FUNCTION: &str = "DIALOG_NOTAT";
/// The namespace of the made-up statistics document.
const STATISTICS_NAMESPACE: &str = "urn:helsemelding:demo:iplos-statistikk:1";

/// A sender or receiver in a MsgHead.
pub fn party(her_id: HerId, name: &str) -> Party {
    Party {
        name: Some(name.to_owned()),
        her_id: Some(her_id),
        sub: None,
    }
}

/// A MsgHead of `function` from `sender` to `receiver`, asking for an AppRec.
fn head(
    function: Code,
    msg_id: &str,
    now: DateTime<Utc>,
    sender: Party,
    receiver: Party,
) -> NewMsgHead {
    NewMsgHead {
        msg_type: function,
        msg_id: msg_id.to_owned(),
        gen_date: now,
        ack: true,
        ref_to_parent: None,
        ref_to_conversation: None,
        sender,
        receiver,
        content_description: None,
    }
}

/// Half a year of service statistics from a municipality, as counts per
/// service: what IPLOS reporting to Helsedirektoratet carries in aggregate.
pub fn statistics_report(
    msg_id: &str,
    now: DateTime<Utc>,
    sender: Party,
    receiver: Party,
) -> String {
    let document = format!(
        r#"<Statistikk xmlns="{STATISTICS_NAMESPACE}">
  <Periode fra="2026-01-01" til="2026-06-30"/>
  <Tjeneste kode="hjemmesykepleie" mottakere="412"/>
  <Tjeneste kode="praktisk-bistand" mottakere="187"/>
  <Tjeneste kode="langtidsopphold" mottakere="96"/>
</Statistikk>"#
    );
    let mut head = head(
        Code::new(STATISTICS_FUNCTION, "IPLOS-statistikk (demo)"),
        msg_id,
        now,
        sender,
        receiver,
    );
    head.content_description = Some("IPLOS-statistikk".into());
    head.to_xml(&document)
        .expect("the statistics document is well-formed")
}

/// A Dialogmelding note from a municipality's home care to a GP office.
pub fn dialogue_note(msg_id: &str, now: DateTime<Utc>, sender: Party, receiver: Party) -> String {
    let head = head(
        Code::new(DIALOGUE_FUNCTION, "Notat"),
        msg_id,
        now,
        sender,
        receiver,
    );
    dialog_note(
        &head,
        "Oppfølging etter utskrivning",
        "Hjemmesykepleien har startet oppfølging og ber om oppdatert legemiddelliste.",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use helsemelding_wire::msghead::{DocumentContent, MsgHead};

    fn her(id: u32) -> HerId {
        HerId::new(id).unwrap()
    }

    #[test]
    fn the_statistics_report_is_a_msghead_that_asks_for_a_receipt() {
        let xml = statistics_report(
            "id-1",
            Utc::now(),
            party(her(91462), "Eksempel kommune"),
            party(her(4210), "Helsedirektoratet"),
        );
        let head = MsgHead::parse(xml.as_bytes()).unwrap();
        assert_eq!(head.function(), STATISTICS_FUNCTION);
        assert_eq!(head.msg_id, "id-1");
        assert!(head.wants_receipt());
        head.check_parties(her(91462), her(4210)).unwrap();
        assert!(matches!(
            head.business_document(),
            Some(DocumentContent::Xml { namespace: Some(ns), local_name, .. })
                if ns == STATISTICS_NAMESPACE && local_name == "Statistikk"
        ));
    }

    #[test]
    fn the_dialogue_note_is_a_dialogmelding_that_asks_for_a_receipt() {
        let xml = dialogue_note(
            "id-2",
            Utc::now(),
            party(her(91462), "Eksempel kommune"),
            party(her(95950), "Legekontoret"),
        );
        let head = MsgHead::parse(xml.as_bytes()).unwrap();
        assert_eq!(head.function(), DIALOGUE_FUNCTION);
        assert!(head.wants_receipt());
        head.check_parties(her(91462), her(95950)).unwrap();
        assert!(matches!(
            head.business_document(),
            Some(DocumentContent::Xml { namespace: Some(ns), .. })
                if ns == helsemelding_wire::dialog::NAMESPACE
        ));
    }
}
