//! What a file in OUT (or a body posted to the API) must be to be sent: a
//! MsgHead (v1.2) within the size limit, with a MsgId and a message
//! function, sent by a HER-id of ours (the one whose folder it is in), to a
//! receiver it names by HER-id. Everything that can
//! be judged from the bytes is judged here, before anything is looked up;
//! the receiver's registry record and certificate are judged when it is
//! sent. A refusal says what is wrong and what to do about it, for the
//! `.error.json` beside the file in FAILED.

use helsemelding_messaging::Error;
use helsemelding_wire::msghead::MsgHead;
use helsemelding_wire::HerId;
use serde::Serialize;

/// A MsgHead ready to be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// The HER-id of ours that sends it (`MsgInfo/Sender`).
    pub from: HerId,
    /// `MsgInfo/MsgId`: the id the EHR knows the message by.
    pub msg_id: String,
    /// `MsgInfo/Type`: the message function (the AMQP subject).
    pub function: String,
    /// The receiving communication party: the most specific HER-id of
    /// `MsgInfo/Receiver` (the department or person, else the organisation).
    pub to: HerId,
    /// `MsgInfo/Ack` asks for an AppRec.
    pub asks_receipt: bool,
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

/// Judges the bytes of a message to be sent by one of `ours` (the owner
/// of the OUT folder; every HER-id of the installation for the API).
pub fn read(bytes: &[u8], ours: &[HerId], max_bytes: usize) -> Result<Outgoing, Refusal> {
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
    let Some(from) = ours.iter().copied().find(|h| head.sender.is(*h)) else {
        return Err(sender_not_ours(&head, ours).about(msg_id));
    };
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
        from,
        msg_id: msg_id.to_owned(),
        function,
        to,
        asks_receipt: head.wants_receipt(),
    })
}

fn sender_not_ours(head: &MsgHead, ours: &[HerId]) -> Refusal {
    let named: Vec<String> = head
        .sender
        .her_ids()
        .iter()
        .map(|h| h.to_string())
        .collect();
    let named = if named.is_empty() {
        "none".to_owned()
    } else {
        named.join(" and ")
    };
    let ours_said = match ours {
        [one] => format!("the file is in the folder of {one}"),
        many => format!(
            "this gateway sends for {}",
            many.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    Refusal::new(
        "sender-not-ours",
        format!("MsgInfo/Sender names HER-id {named} but {ours_said}"),
        "send it from (put it in the OUT folder of) the HER-id that is its sender",
    )
}

/// A refusal for an error of sending that no retry can mend; `None` for
/// faults that pass (the store, the registry or the broker unreachable
/// now).
pub fn refusal_of(error: &Error) -> Option<Refusal> {
    let reason = error.to_string();
    let (code, hint) = match error {
        Error::Registry { source, .. } => match source {
            helsemelding_registry::Error::NotFound { .. } => (
                "receiver-unknown",
                "check the receiver's HER-id in MsgInfo/Receiver against the address registry",
            ),
            helsemelding_registry::Error::Http { .. }
            | helsemelding_registry::Error::Timeout { .. }
            | helsemelding_registry::Error::Io { .. } => return None,
            _ => (
                "registry-record-unusable",
                "the receiver's registry record cannot be used; ask the receiver or NHN to correct it",
            ),
        },
        Error::TransportDisabled { .. } => (
            "receiver-without-amqp",
            "the receiver does not take messages over the service bus; use another channel",
        ),
        Error::FunctionNotAllowed { .. } => (
            "function-not-allowed",
            "the receiver's collaboration profile does not take this message function",
        ),
        Error::Incomplete { .. } => (
            "receiver-incomplete",
            "the receiver's registry record lacks a certificate or queue; ask the receiver to complete it",
        ),
        Error::Certificate { .. } => (
            "certificate-unusable",
            "a certificate (ours or the receiver's) is expired, revoked or of the wrong kind",
        ),
        Error::Payload(_) | Error::MsgHeadParty { .. } => (
            "payload-refused",
            "correct the MsgHead (well-formed, Sender and Receiver as sent)",
        ),
        Error::MessageIdConflict { .. } => (
            "msgid-reused",
            "this MsgId was sent before with other content: give the message a new MsgId",
        ),
        Error::NotOurs { .. } | Error::SigningNotRegistered { .. } => (
            "sender-unusable",
            "our HER-id or signing certificate is not as the registry has it; see `helsemelding preflight`",
        ),
        _ => return None,
    };
    Some(Refusal::new(code, reason, hint))
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

    fn ours() -> [HerId; 1] {
        [HerId::new(OURS).unwrap()]
    }

    #[test]
    fn a_msghead_of_ours_is_read_with_its_id_function_and_receiver() {
        let outgoing = read(&msghead(OURS, 109989, "m-1"), &ours(), 1 << 20).unwrap();
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
            let refusal = read(bytes, &ours(), limit).unwrap_err();
            assert_eq!(refusal.code, code, "{refusal:?}");
            assert!(!refusal.reason.is_empty() && !refusal.hint.is_empty());
        }
        let theirs = read(&msghead(5555, 109989, "m-2"), &ours(), 1 << 20).unwrap_err();
        assert_eq!(theirs.code, "sender-not-ours");
        assert!(
            theirs.reason.contains("5555") && theirs.reason.contains("91462"),
            "{theirs:?}"
        );
        assert_eq!(theirs.msg_id.as_deref(), Some("m-2"));
        let several = [ours()[0], HerId::new(8141705).unwrap()];
        let second = read(&msghead(8141705, 109989, "m-3"), &several, 1 << 20).unwrap();
        assert_eq!(
            second.from, several[1],
            "the sender picks which of ours sends"
        );
        let none = read(&msghead(5555, 109989, "m-4"), &several, 1 << 20).unwrap_err();
        assert!(none.reason.contains("91462, 8141705"), "{none:?}");
    }
}
