//! The EHR's own AppRecs (`[receipts] automatic = false`): what it may say
//! (`{"status": "1"|"2"|"3", "errors": [{"code", "description"}]}`, kodeverk
//! 8258 and 8221, or a whole AppRec it made), and how it goes back: built
//! from the original (kept in `.answer/` from hand-over until the answer
//! is sent), signed, encrypted and queued to the sender with the
//! hand-over in one unit of work, after which the message is
//! `APPREC_SENT`. The same path serves the APPREC folder and
//! `POST /api/v1/inbox/{id}/apprec`.

use chrono::Utc;
use helsemelding_messaging::{Answering, Error, Messenger};
use helsemelding_store::messages::{MessageRecord, MessageState};
use helsemelding_wire::apprec::{AppRec, Status, Version};
use helsemelding_wire::msghead::MsgHead;
use helsemelding_wire::{Code, HerId};
use serde::Deserialize;

use super::outgoing::{refusal_of, Refusal};
use super::PartyFolders;

/// What the EHR answers, before it is an AppRec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// A status and its errors; the gateway writes the AppRec.
    Status {
        /// OK, rejected, or OK with errors in parts.
        status: Status,
        /// Kodeverk 8221 codes and what they say.
        errors: Vec<Code>,
    },
    /// A whole AppRec (v1.0 or v1.1) the EHR made.
    AppRec(Vec<u8>),
}

/// The JSON form of [`Reply::Status`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusJson {
    status: String,
    #[serde(default)]
    errors: Vec<ErrorJson>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ErrorJson {
    code: String,
    description: Option<String>,
}

/// The kodeverk of AppRec error codes.
const ERROR_CODES: &str = "2.16.578.1.12.4.1.1.8221";

impl Reply {
    /// Reads the JSON form, judging status and errors.
    pub fn from_json(bytes: &[u8]) -> Result<Reply, Refusal> {
        let parsed: StatusJson = serde_json::from_slice(bytes).map_err(|e| {
            Refusal::new(
                "bad-apprec",
                format!("not an answer: {e}"),
                "write {\"status\": \"1\"} (OK), or \"2\" (rejected) or \"3\" (OK with errors in parts) with \"errors\": [{\"code\": \"…\", \"description\": \"…\"}]",
            )
        })?;
        let status = Status::from_code(&parsed.status).ok_or_else(|| {
            Refusal::new(
                "bad-apprec",
                format!(
                    "status {:?} is not 1, 2 or 3 (kodeverk 8258)",
                    parsed.status
                ),
                "use 1 (OK), 2 (rejected) or 3 (OK with errors in parts)",
            )
        })?;
        if status != Status::Ok && parsed.errors.is_empty() {
            return Err(Refusal::new(
                "bad-apprec",
                format!("status {} names no error", parsed.status),
                "say what is wrong: \"errors\": [{\"code\": \"…\", \"description\": \"…\"}] (kodeverk 8221)",
            ));
        }
        let mut errors = Vec::new();
        for error in parsed.errors {
            let code = error.code.trim();
            if code.is_empty() || code.len() > 20 {
                return Err(Refusal::new(
                    "bad-apprec",
                    format!("error code {:?} is not a kodeverk 8221 code", error.code),
                    "give each error its kodeverk 8221 code, e.g. \"E10\"",
                ));
            }
            errors.push(Code {
                v: code.to_owned(),
                dn: error.description,
                s: Some(ERROR_CODES.to_owned()),
            });
        }
        Ok(Reply::Status { status, errors })
    }
}

/// Why an answer was not sent: refused for good (`code` says why), or a
/// fault that passes (try again).
#[derive(Debug)]
pub enum NotSent {
    /// It can never go as it is.
    Refused(Refusal),
    /// The message was answered already (or is not in a state to be).
    WrongState(String),
    /// The store, the registry or the broker failed now.
    Later(String),
}

/// Sends the EHR's `reply` to the incoming message `record`, returning
/// the record as it is then (`APPREC_SENT`).
pub async fn answer(
    messenger: &Messenger,
    folders: &PartyFolders,
    record: &MessageRecord,
    reply: Reply,
) -> Result<MessageRecord, NotSent> {
    if !matches!(
        record.state,
        MessageState::Available | MessageState::Leased | MessageState::Delivered
    ) {
        return Err(NotSent::WrongState(format!(
            "message {} is {}: only a message handed over and not yet answered can be answered",
            record.public_id(),
            record.state
        )));
    }
    let stem = folders.incoming_stem(record.peer, record.public_id());
    let kept = folders.kept_original(&stem);
    let original = match tokio::fs::read(&kept).await {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(NotSent::WrongState(format!(
                "no AppRec is owed for message {}: it did not ask for one, or it was \
                 answered when it came ([receipts] automatic = true)",
                record.public_id()
            )))
        }
        Err(e) => return Err(NotSent::Later(format!("reading {}: {e}", kept.display()))),
    };
    let head = MsgHead::parse(&original)
        .map_err(|e| NotSent::Later(format!("the kept original {}: {e}", kept.display())))?;
    let answer_id = answer_id_for(record);
    let payload = match reply {
        Reply::Status { status, errors } => {
            AppRec::answering(&head, Version::V1_0, &answer_id, Utc::now(), status, errors)
                .to_xml()
                .into_bytes()
        }
        Reply::AppRec(bytes) => judge_own(bytes, &head, record).map_err(NotSent::Refused)?,
    };
    let (Some(ours), Some(sender)) = (HerId::new(record.ours), HerId::new(record.peer)) else {
        return Err(NotSent::Later(format!(
            "record {} names HER-id 0",
            record.id
        )));
    };
    let answering = Answering {
        ours,
        sender,
        message_id: record.message_id.clone(),
        msg_id: record.msg_id.clone(),
        function: record.function.clone(),
    };
    match messenger
        .send_application_receipt(&answering, &answer_id, payload)
        .await
    {
        Ok(_) | Err(Error::InOutbox { .. }) => {}
        Err(Error::Store(helsemelding_store::Error::DuplicateMessageId { .. })) => {
            return Err(NotSent::WrongState(format!(
                "message {} was answered already",
                record.public_id()
            )))
        }
        Err(error) => {
            return Err(match refusal_of(&error) {
                Some(refusal) => NotSent::Refused(refusal),
                None => NotSent::Later(error.to_string()),
            })
        }
    }
    // Sent or queued, and on record: the original is no longer needed.
    if let Err(error) = tokio::fs::remove_file(&kept).await {
        tracing::warn!(%error, "removing a kept original after its AppRec");
    }
    let updated = messenger
        .store()
        .messages()
        .find(
            &record.message_id,
            Some(record.direction),
            Some(record.ours),
        )
        .await
        .map_err(|e| NotSent::Later(e.to_string()))?;
    Ok(updated.unwrap_or_else(|| record.clone()))
}

/// An AppRec the EHR made must answer this message, from us to its sender.
fn judge_own(bytes: Vec<u8>, head: &MsgHead, record: &MessageRecord) -> Result<Vec<u8>, Refusal> {
    let apprec = AppRec::parse(&bytes).map_err(|e| {
        Refusal::new(
            "bad-apprec",
            format!("not an AppRec: {e}"),
            "write an AppRec v1.0 or v1.1, or the JSON form {\"status\": \"1\"}",
        )
    })?;
    let mismatch = |what: String| {
        Refusal::new(
            "apprec-mismatch",
            what,
            "an AppRec answers one message: OriginalMsgId/Id its MsgId, Sender us, Receiver its sender",
        )
    };
    if apprec.original.id.trim() != head.msg_id.trim() {
        return Err(mismatch(format!(
            "OriginalMsgId/Id is {:?}, not the MsgId {:?} of the message answered",
            apprec.original.id, head.msg_id
        )));
    }
    let (ours, peer) = (HerId::new(record.ours), HerId::new(record.peer));
    if !ours.is_some_and(|h| apprec.sender.is(h)) || !peer.is_some_and(|h| apprec.receiver.is(h)) {
        return Err(mismatch(format!(
            "its Sender and Receiver are not {} and {}",
            record.ours, record.peer
        )));
    }
    Ok(bytes)
}

/// The AppRec's message-id: one per answered message, so that an answer
/// given twice is known as such.
fn answer_id_for(record: &MessageRecord) -> String {
    let name = format!(
        "apprec:{}:{}:{}",
        record.ours, record.peer, record.message_id
    );
    uuid::Uuid::new_v5(&APPREC_NAMESPACE, name.as_bytes())
        .hyphenated()
        .to_string()
}

/// The namespace of [`answer_id_for`] (fixed forever).
const APPREC_NAMESPACE: uuid::Uuid =
    uuid::Uuid::from_u128(0x2c4e_71a0_5b3d_4f8e_8d21_93c6_0e5a_7f14);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_is_a_status_with_the_errors_a_rejection_needs() {
        let ok = Reply::from_json(br#"{"status": "1"}"#).unwrap();
        assert_eq!(
            ok,
            Reply::Status {
                status: Status::Ok,
                errors: vec![]
            }
        );
        let Reply::Status { status, errors } = Reply::from_json(
            br#"{"status": "2", "errors": [{"code": "E10", "description": "Ugyldig"}]}"#,
        )
        .unwrap() else {
            panic!("a status")
        };
        assert_eq!(status, Status::Rejected);
        assert_eq!(errors[0].v, "E10");
        assert_eq!(errors[0].s.as_deref(), Some(ERROR_CODES));
        for (bad, says) in [
            (&br#"{"status": "4"}"#[..], "not 1, 2 or 3"),
            (br#"{"status": "2"}"#, "names no error"),
            (
                br#"{"status": "3", "errors": [{"code": ""}]}"#,
                "not a kodeverk 8221 code",
            ),
            (br#"not json"#, "not an answer"),
            (br#"{"status": "1", "extra": 1}"#, "unknown field"),
        ] {
            let refusal = Reply::from_json(bad).unwrap_err();
            assert_eq!(refusal.code, "bad-apprec");
            assert!(refusal.reason.contains(says), "{refusal:?}");
        }
    }

    #[test]
    fn hostile_answers_are_refused_never_a_panic() {
        let mut rng = fastrand::Rng::with_seed(8221);
        let seeds: [&[u8]; 4] = [
            br#"{"status": "2", "errors": [{"code": "E10", "description": "x"}]}"#,
            br#"{"status": "1"}"#,
            br#"{"status": ["1"], "errors": {"code": 1}}"#,
            b"\xff\xfe{\"status\":\"\\u0000\"}",
        ];
        for _ in 0..20_000 {
            let mut bytes = seeds[rng.usize(..seeds.len())].to_vec();
            for _ in 0..rng.usize(1..8) {
                match rng.u8(..3) {
                    0 if !bytes.is_empty() => {
                        let at = rng.usize(..bytes.len());
                        bytes[at] = rng.u8(..);
                    }
                    1 => bytes.insert(rng.usize(..=bytes.len()), rng.u8(..)),
                    _ if !bytes.is_empty() => {
                        bytes.remove(rng.usize(..bytes.len()));
                    }
                    _ => {}
                }
            }
            if let Err(refusal) = Reply::from_json(&bytes) {
                assert_eq!(refusal.code, "bad-apprec");
            }
        }
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(Reply::from_json(deep.as_bytes()).is_err());
    }
}
