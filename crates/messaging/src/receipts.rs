//! Application receipts (AppRec): which sent messages wait for one, the
//! AppRec we answer a received MsgHead with, and matching the AppRecs that
//! come back. Pure: the pipelines and the messenger do the I/O.
//!
//! Sent messages are tracked by their MsgHead `MsgId`, since that is what
//! an AppRec's `OriginalMsgId` names (the AMQP message-id is the transport's).

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use helsemelding_store::receipts::ExpectedReceipt;
use helsemelding_wire::apprec::{AppRec, Status, Version};
use helsemelding_wire::msghead::MsgHead;
use helsemelding_wire::{Code, HerId};

/// The message function AppRecs are sent under (the reference library's
/// convention: the AppRec's own MsgInfo type).
pub const APPREC_FUNCTION: &str = "APPREC";

/// The receipt a message sent as `function` to `to` now should get, when
/// its payload is a MsgHead that asks for one (`Ack` = J).
pub fn expected_receipt(
    payload: &[u8],
    to: HerId,
    function: &str,
    now: DateTime<Utc>,
    deadlines: &Deadlines,
) -> Option<ExpectedReceipt> {
    let head = MsgHead::parse(payload).ok()?;
    if !head.wants_receipt() {
        return None;
    }
    let deadline = deadlines.for_function(function);
    Some(ExpectedReceipt {
        message_id: head.msg_id,
        to_her_id: to.get(),
        function: function.to_owned(),
        sent_at: now,
        due_at: now + chrono::Duration::from_std(deadline).unwrap_or(chrono::Duration::days(1)),
    })
}

/// How long a sent message may wait for its AppRec before it is overdue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deadlines {
    /// For functions not listed in `per_function` (default 24 h).
    pub default: Duration,
    /// Per message function.
    pub per_function: HashMap<String, Duration>,
}

impl Default for Deadlines {
    fn default() -> Self {
        Deadlines {
            default: Duration::from_secs(24 * 3600),
            per_function: HashMap::new(),
        }
    }
}

impl Deadlines {
    /// The deadline of `function`.
    pub fn for_function(&self, function: &str) -> Duration {
        self.per_function
            .get(function)
            .copied()
            .unwrap_or(self.default)
    }
}

/// What the application said about a message that asked for a receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Taken: AppRec status OK.
    Ok,
    /// The content is wrong: AppRec status rejected, with these errors
    /// (code and text from kodeverk 8221, chosen by the application).
    Rejected(Vec<Code>),
}

/// The AppRec answering `original` (version 1.0, which every receiver
/// reads), as XML with a fresh `MsgId`.
pub fn answer(original: &MsgHead, verdict: &Verdict, id: &str, now: DateTime<Utc>) -> String {
    let (status, errors) = match verdict {
        Verdict::Ok => (Status::Ok, Vec::new()),
        Verdict::Rejected(errors) => (Status::Rejected, errors.clone()),
    };
    AppRec::answering(original, Version::V1_0, id, now, status, errors).to_xml()
}

#[cfg(test)]
mod tests {
    use super::*;
    use helsemelding_wire::msghead::{NewMsgHead, Party};

    fn head(ack: bool) -> String {
        NewMsgHead {
            msg_type: Code::new("DIALOG_HELSEFAGLIG", "Helsefaglig dialog"),
            msg_id: "6e0ed4e2-9d5c-4c2a-9a87-6b0c3bb8f0b1".into(),
            gen_date: "2026-11-23T10:00:00Z".parse().unwrap(),
            ack,
            ref_to_parent: None,
            ref_to_conversation: None,
            sender: party("Kommune", 91462),
            receiver: party("Legekontor", 109989),
            content_description: None,
        }
        .to_xml("<Note xmlns=\"urn:test\">x</Note>")
        .unwrap()
    }

    fn party(name: &str, her_id: u32) -> Party {
        Party {
            name: Some(name.into()),
            her_id: HerId::new(her_id),
            sub: None,
        }
    }

    fn config() -> Deadlines {
        Deadlines::default()
    }

    #[test]
    fn a_msghead_asking_for_a_receipt_is_tracked_by_its_msgid_with_the_function_deadline() {
        let mut config = config();
        config
            .per_function
            .insert("DIALOG_HELSEFAGLIG".into(), Duration::from_secs(3600));
        let now: DateTime<Utc> = "2026-11-23T10:00:00Z".parse().unwrap();
        let to = HerId::new(109989).unwrap();
        let expected = expected_receipt(
            head(true).as_bytes(),
            to,
            "DIALOG_HELSEFAGLIG",
            now,
            &config,
        )
        .unwrap();
        assert_eq!(expected.message_id, "6e0ed4e2-9d5c-4c2a-9a87-6b0c3bb8f0b1");
        assert_eq!(expected.to_her_id, 109989);
        assert_eq!(expected.due_at, now + chrono::Duration::hours(1));
        let other = expected_receipt(head(true).as_bytes(), to, "OTHER", now, &config).unwrap();
        assert_eq!(other.due_at, now + chrono::Duration::hours(24));
    }

    #[test]
    fn no_receipt_is_expected_without_ack_or_without_a_msghead() {
        let now = Utc::now();
        let to = HerId::new(109989).unwrap();
        assert!(expected_receipt(head(false).as_bytes(), to, "F", now, &config()).is_none());
        assert!(expected_receipt(b"<x/>", to, "F", now, &config()).is_none());
        assert!(expected_receipt(b"not xml", to, "F", now, &config()).is_none());
    }

    #[test]
    fn the_answer_swaps_the_parties_and_names_the_original() {
        let original = MsgHead::parse(head(true).as_bytes()).unwrap();
        let now: DateTime<Utc> = "2026-11-23T10:05:00Z".parse().unwrap();
        let rejected = Verdict::Rejected(vec![Code::new("E10", "Ugyldig innhold")]);
        let xml = answer(
            &original,
            &rejected,
            "b7d4f3a0-1111-4222-8333-944455556666",
            now,
        );
        let apprec = AppRec::parse(xml.as_bytes()).unwrap();
        assert_eq!(apprec.status, Status::Rejected);
        assert_eq!(apprec.original.id, original.msg_id);
        assert!(apprec.sender.is(HerId::new(109989).unwrap()));
        assert!(apprec.receiver.is(HerId::new(91462).unwrap()));
        assert_eq!(apprec.errors[0].v, "E10");
        let ok = AppRec::parse(answer(&original, &Verdict::Ok, "id", now).as_bytes()).unwrap();
        assert_eq!(ok.status, Status::Ok);
        assert!(ok.errors.is_empty());
    }
}
