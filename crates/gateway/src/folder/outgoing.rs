//! What a file in OUT must be to be sent: a MsgHead (v1.2) within the size
//! limit, with a MsgId and a message function, sent by the HER-id whose
//! folder it is in, to a receiver it names by HER-id. Everything that can
//! be judged from the bytes is judged here, before anything is looked up;
//! the receiver's registry record and certificate are judged when it is
//! sent. A refusal says what is wrong and what to do about it, for the
//! `.error.json` beside the file in FAILED.

use helsemelding_wire::msghead::MsgHead;
use helsemelding_wire::HerId;
use serde::Serialize;

/// A MsgHead ready to be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// `MsgInfo/MsgId`: the id the EHR knows the message by.
    pub msg_id: String,
    /// `MsgInfo/Type`: the message function (the AMQP subject).
    pub function: String,
    /// The receiving communication party: the most specific HER-id of
    /// `MsgInfo/Receiver` (the department or person, else the organisation).
    pub to: HerId,
}

/// Why a file cannot be sent, as a person can act on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refusal {
    /// A stable code (`not-a-msghead`, `too-large`, `sender-not-ours`, …).
    pub code: &'static str,
    /// What is wrong, naming the values (never the payload).
    pub reason: String,
    /// What to do about it.
    pub hint: &'static str,
    /// `MsgInfo/MsgId`, when the file has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub msg_id: Option<String>,
}

impl Refusal {
    /// A refusal with no MsgId known.
    pub fn new(code: &'static str, reason: impl Into<String>, hint: &'static str) -> Refusal {
        Refusal {
            code,
            reason: reason.into(),
            hint,
            msg_id: None,
        }
    }

    fn about(mut self, msg_id: &str) -> Refusal {
        self.msg_id = Some(msg_id.to_owned());
        self
    }
}

/// Judges the bytes of a file in the OUT folder of `ours`.
pub fn read(bytes: &[u8], ours: HerId, max_bytes: usize) -> Result<Outgoing, Refusal> {
    if bytes.len() > max_bytes {
        return Err(Refusal::new(
            "too-large",
            format!("{} bytes, above the limit of {max_bytes}", bytes.len()),
            "split the message or send the attachment by reference",
        ));
    }
    let head = MsgHead::parse(bytes).map_err(|e| {
        Refusal::new(
            "not-a-msghead",
            e.to_string(),
            "write a MsgHead v1.2 document (http://www.kith.no/xmlstds/msghead/2006-05-24)",
        )
    })?;
    let msg_id = head.msg_id.trim();
    if msg_id.is_empty() {
        return Err(Refusal::new(
            "no-msgid",
            "MsgInfo/MsgId is empty",
            "give every message a unique MsgId (a GUID)",
        ));
    }
    let function = head.function().trim().to_owned();
    if function.is_empty() {
        return Err(Refusal::new(
            "no-function",
            "MsgInfo/Type has no V",
            "set MsgInfo/Type V to the message function, e.g. DIALOG_NOTAT",
        )
        .about(msg_id));
    }
    if !head.sender.is(ours) {
        let named: Vec<String> = head
            .sender
            .her_ids()
            .iter()
            .map(|h| h.to_string())
            .collect();
        return Err(Refusal::new(
            "sender-not-ours",
            format!(
                "MsgInfo/Sender names HER-id {} but the file is in the folder of {ours}",
                if named.is_empty() {
                    "none".to_owned()
                } else {
                    named.join(" and ")
                }
            ),
            "put the file in the OUT folder of the HER-id that sends it",
        )
        .about(msg_id));
    }
    let receiver = &head.receiver;
    let to = receiver
        .sub
        .as_ref()
        .and_then(|sub| sub.her_id)
        .or(receiver.her_id)
        .ok_or_else(|| {
            Refusal::new(
                "no-receiver",
                "MsgInfo/Receiver names no HER-id",
                "give the receiving organisation (and department or person) its HER-id",
            )
            .about(msg_id)
        })?;
    Ok(Outgoing {
        msg_id: msg_id.to_owned(),
        function,
        to,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use helsemelding_wire::msghead::{NewMsgHead, Party};
    use helsemelding_wire::Code;

    const OURS: u32 = 91462;

    fn msghead(from: u32, to: u32, msg_id: &str) -> Vec<u8> {
        let party = |her_id: u32| Party {
            name: Some(format!("party {her_id}")),
            her_id: HerId::new(her_id),
            sub: None,
        };
        let head = NewMsgHead {
            msg_type: Code::new("DIALOG_NOTAT", "Notat"),
            msg_id: msg_id.into(),
            gen_date: chrono::Utc::now(),
            ack: true,
            ref_to_parent: None,
            ref_to_conversation: None,
            sender: party(from),
            receiver: party(to),
            content_description: None,
        };
        head.to_xml("<Notat xmlns=\"urn:test\"/>")
            .unwrap()
            .into_bytes()
    }

    fn ours() -> HerId {
        HerId::new(OURS).unwrap()
    }

    #[test]
    fn a_msghead_of_ours_is_read_with_its_id_function_and_receiver() {
        let outgoing = read(&msghead(OURS, 109989, "m-1"), ours(), 1 << 20).unwrap();
        assert_eq!(outgoing.msg_id, "m-1");
        assert_eq!(outgoing.function, "DIALOG_NOTAT");
        assert_eq!(outgoing.to.get(), 109989);
    }

    #[test]
    fn every_bad_file_is_refused_with_a_code_a_reason_and_a_hint() {
        let cases: [(&[u8], usize, &str); 5] = [
            (b"not xml at all", 1 << 20, "not-a-msghead"),
            (b"<Other xmlns=\"urn:x\"/>", 1 << 20, "not-a-msghead"),
            (b"", 1 << 20, "not-a-msghead"),
            (&[b'x'; 100], 10, "too-large"),
            (&[0xff, 0xfe, 0x00], 1 << 20, "not-a-msghead"),
        ];
        for (bytes, limit, code) in cases {
            let refusal = read(bytes, ours(), limit).unwrap_err();
            assert_eq!(refusal.code, code, "{refusal:?}");
            assert!(!refusal.reason.is_empty() && !refusal.hint.is_empty());
        }
        let theirs = read(&msghead(5555, 109989, "m-2"), ours(), 1 << 20).unwrap_err();
        assert_eq!(theirs.code, "sender-not-ours");
        assert!(
            theirs.reason.contains("5555") && theirs.reason.contains("91462"),
            "{theirs:?}"
        );
        assert_eq!(theirs.msg_id.as_deref(), Some("m-2"));
    }
}
