//! The loop behind one HER-id's OUT folder: take each file that has stood
//! still, claim it into `.work`, judge it ([`outgoing::read`]), submit it
//! (signed, encrypted, recorded in the outbox and sent), and move it to
//! SENT once the broker took it or to FAILED with an `.error.json` when it
//! can never go. A file whose message waits in the outbox (the broker is
//! down) stays in `.work` until the outbox pump has sent it; a fault of
//! ours (the store, the registry unreachable) leaves it there to be tried
//! again. After a crash, what is in `.work` is picked up where it was: the
//! outbox says whether it was sent, and a message that is not in it is
//! submitted (once: its message-id comes from its MsgId).

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use helsemelding_messaging::{Error, Messenger, SendRequest, Submitted};
use helsemelding_store::messages::{Direction, MessageState};
use helsemelding_store::outbox::OutboxState;
use helsemelding_wire::HerId;
use serde::Serialize;

use super::files::{listed, move_into, safe_name, stem_of, write_atomic};
use super::outgoing::{self, refusal_of, Outgoing, Refusal};
use super::settle::{Seen, Settling};
use super::PartyFolders;

/// The AMQP message-id of a MsgHead sent from `from` with `msg_id`: the
/// MsgId itself when it is a GUID (the reference's convention: the
/// caller's id, "D" form), else a name-based UUID of the pair, so that the
/// same file always has the same id and is never sent twice.
pub fn message_id_for(from: HerId, msg_id: &str) -> String {
    match uuid::Uuid::parse_str(msg_id.trim()) {
        Ok(guid) => guid.hyphenated().to_string(),
        Err(_) => {
            let name = format!("{from}:{msg_id}");
            uuid::Uuid::new_v5(&MSG_ID_NAMESPACE, name.as_bytes())
                .hyphenated()
                .to_string()
        }
    }
}

/// The namespace of [`message_id_for`]'s name-based ids (fixed forever:
/// changing it would send old files again).
const MSG_ID_NAMESPACE: uuid::Uuid =
    uuid::Uuid::from_u128(0x6d1f_0c6a_8e4b_4f0e_9a53_2f6e_7c1d_4b21);

/// The record of the message a file holds.
async fn record_of(
    messenger: &Messenger,
    outgoing: &Outgoing,
) -> helsemelding_store::Result<Option<helsemelding_store::messages::MessageRecord>> {
    let ours = Some(outgoing.from.get());
    let messages = messenger.store().messages();
    messages
        .find(&outgoing.msg_id, Some(Direction::Out), ours)
        .await
}

/// How often a sent file that waits for its AppRec looks at its record.
const APPREC_LOOK: Duration = Duration::from_secs(2);

/// What one file came to, for the log and the tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Sent; now at this path in SENT.
    Sent(PathBuf),
    /// The same MsgId and bytes were submitted before: not sent again.
    Replay(PathBuf),
    /// In the outbox, to be sent when the broker can take it.
    Waiting(String),
    /// Refused for good; now at this path in FAILED.
    Failed(PathBuf),
    /// A fault of ours: it stays in `.work` and is tried again.
    Later(String),
}

/// `FAILED/<name>_<MsgId>.error.json`.
#[derive(Debug, Serialize)]
struct ErrorReport<'a> {
    code: &'a str,
    reason: &'a str,
    hint: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    msg_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message_id: Option<&'a str>,
    attempts: u32,
    file: &'a str,
    taken_at: DateTime<Utc>,
    failed_at: DateTime<Utc>,
}

/// A file claimed into `.work` and what is known of it.
#[derive(Debug, Clone)]
struct Claimed {
    work: PathBuf,
    /// The EHR's file name, made safe, without `.xml`.
    stem: String,
    taken_at: DateTime<Utc>,
    /// Set once it is judged a MsgHead of ours.
    outgoing: Option<Outgoing>,
    message_id: Option<String>,
    tries: u32,
    /// The broker took it; it waits in `.work` for its AppRec.
    sent: bool,
    /// While it waits for its AppRec: when to look at its record again.
    next_look: Option<Instant>,
}

/// The OUT folder of one HER-id and the files it is working on.
pub struct DropBox {
    folders: PartyFolders,
    settling: Settling,
    max_bytes: usize,
    sent_on_apprec: bool,
    claimed: HashMap<PathBuf, Claimed>,
}

impl DropBox {
    /// The drop box of `folders` (created if missing); files must stand
    /// still for `settle` and be at most `max_bytes` long. What an earlier
    /// run left in `.work` is taken up again.
    pub fn open(
        folders: PartyFolders,
        settle: Duration,
        max_bytes: usize,
    ) -> std::io::Result<DropBox> {
        folders.create()?;
        let mut drop_box = DropBox {
            folders,
            settling: Settling::new(settle),
            max_bytes,
            sent_on_apprec: false,
            claimed: HashMap::new(),
        };
        for work in listed(&drop_box.folders.work, &[".xml"])? {
            let stem = stem_of(&work);
            drop_box.claimed.insert(
                work.clone(),
                Claimed {
                    work,
                    stem,
                    taken_at: Utc::now(),
                    outgoing: None,
                    message_id: None,
                    tries: 0,
                    sent: false,
                    next_look: None,
                },
            );
        }
        Ok(drop_box)
    }

    /// The same, keeping a sent file that asked for an AppRec in `.work`
    /// until its AppRec came: to SENT when it says OK, to FAILED when it
    /// rejects the message (`[folder] sent_after = "apprec"`).
    pub fn sent_on_apprec(mut self) -> DropBox {
        self.sent_on_apprec = true;
        self
    }

    /// Whose drop box this is.
    pub fn her_id(&self) -> HerId {
        self.folders.her_id
    }

    /// Files claimed and not yet SENT or FAILED.
    pub fn in_work(&self) -> usize {
        self.claimed.len()
    }

    /// One pass: claim what has settled in OUT, then move every claimed
    /// file on as far as it goes now.
    pub async fn pass(&mut self, messenger: &Messenger) -> std::io::Result<Vec<Outcome>> {
        self.claim_settled(Instant::now())?;
        let mut outcomes = Vec::new();
        let claimed: Vec<PathBuf> = self.claimed.keys().cloned().collect();
        for work in claimed {
            if self.claimed[&work]
                .next_look
                .is_some_and(|at| at > Instant::now())
            {
                continue;
            }
            let Some(mut file) = self.claimed.remove(&work) else {
                continue;
            };
            let outcome = self.advance(messenger, &mut file).await?;
            if matches!(outcome, Outcome::Waiting(_) | Outcome::Later(_)) {
                self.claimed.insert(work, file);
            }
            outcomes.push(outcome);
        }
        Ok(outcomes)
    }

    /// Renames every OUT file that has stood still into `.work`.
    fn claim_settled(&mut self, now: Instant) -> std::io::Result<()> {
        let present = listed(&self.folders.out, &[".xml"])?;
        self.settling.keep_only(&present);
        for path in present {
            let Ok(meta) = std::fs::metadata(&path) else {
                continue; // Gone meanwhile: the EHR took it back.
            };
            let seen = Seen {
                len: meta.len(),
                modified: meta.modified()?,
            };
            if !self.settling.observe(path.clone(), seen, now) {
                continue;
            }
            self.settling.forget(&path);
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
            let name = safe_name(name.as_deref().unwrap_or("file.xml"));
            // A move, not a copy: the file is in exactly one folder at any time.
            let work = move_into(&path, &self.folders.work, &name)?;
            let stem = stem_of(&work);
            self.claimed.insert(
                work.clone(),
                Claimed {
                    work,
                    stem,
                    taken_at: Utc::now(),
                    outgoing: None,
                    message_id: None,
                    tries: 0,
                    sent: false,
                    next_look: None,
                },
            );
        }
        Ok(())
    }

    async fn advance(&self, messenger: &Messenger, file: &mut Claimed) -> std::io::Result<Outcome> {
        if file.outgoing.is_none() {
            let bytes = std::fs::read(&file.work)?;
            match outgoing::read(&bytes, &[self.folders.her_id], self.max_bytes) {
                Ok(outgoing) => {
                    file.message_id = Some(message_id_for(self.folders.her_id, &outgoing.msg_id));
                    file.outgoing = Some(outgoing);
                }
                Err(refusal) => return self.fail(file, &refusal),
            }
        }
        if file.sent {
            return self.after_sent(messenger, file, false).await;
        }
        self.submit(messenger, file).await
    }

    /// Submits a judged file: signed, encrypted, recorded and sent, or
    /// found in the outbox already (submitted by this run or an earlier
    /// one, or dropped again by the EHR) and followed to its state there.
    async fn submit(&self, messenger: &Messenger, file: &mut Claimed) -> std::io::Result<Outcome> {
        let outgoing = file
            .outgoing
            .clone()
            .expect("judged before it is submitted");
        let message_id = file.message_id.clone().unwrap_or_default();
        if self.cancelled(messenger, &outgoing).await {
            let refusal = Refusal::new(
                "cancelled",
                format!(
                    "message {} was cancelled through the API before it was sent",
                    outgoing.msg_id
                ),
                "drop it again with a new MsgId if it is still to be sent",
            );
            return self.fail(file, &refusal);
        }
        let payload = std::fs::read(&file.work)?;
        let request = SendRequest::new(outgoing.to, &outgoing.function, payload)
            .from(self.folders.her_id)
            .with_message_id(&message_id);
        let submitted = messenger.submit(request).await;
        let ours = file.tries > 0;
        file.tries += 1;
        match submitted {
            Ok(Submitted::Sent(_)) => self.after_sent(messenger, file, false).await,
            Ok(Submitted::Replay {
                state: OutboxState::Sent { .. },
                ..
            }) => self.after_sent(messenger, file, !ours).await,
            Ok(Submitted::Replay { state, .. }) => self.follow(file, &state),
            Err(Error::InOutbox { source, .. }) => Ok(Outcome::Waiting(source.to_string())),
            Err(error) => match refusal_of(&error) {
                Some(refusal) => self.fail(file, &refusal),
                None => Ok(Outcome::Later(error.to_string())),
            },
        }
    }

    /// Whether the message of a file was cancelled (its outbox entry is
    /// gone, so submitting the file again would send it after all). A
    /// store that cannot answer now is asked again at the next pass by
    /// the submission that follows.
    async fn cancelled(&self, messenger: &Messenger, outgoing: &Outgoing) -> bool {
        let found = record_of(messenger, outgoing).await;
        matches!(found, Ok(Some(record)) if record.state == MessageState::Cancelled)
    }

    /// A file whose message the broker took: to SENT, or (sent after its
    /// AppRec) kept until its AppRec came; `replay`: the file was not
    /// submitted by this run (a second drop of the same message, or what
    /// a crash left in `.work`).
    async fn after_sent(
        &self,
        messenger: &Messenger,
        file: &mut Claimed,
        replay: bool,
    ) -> std::io::Result<Outcome> {
        let outgoing = file.outgoing.clone().expect("judged before it is sent");
        if !self.sent_on_apprec || !outgoing.asks_receipt {
            return self.to_sent(file, replay);
        }
        file.sent = true;
        let found = record_of(messenger, &outgoing).await;
        match found {
            Ok(Some(record)) => match record.state {
                MessageState::AppRecOk | MessageState::AppRecPartial => self.to_sent(file, replay),
                MessageState::AppRecRejected => {
                    let refusal = Refusal::new(
                        "apprec-rejected",
                        format!(
                            "the receiver's AppRec rejects message {} (status {})",
                            outgoing.msg_id,
                            record.apprec_status.as_deref().unwrap_or("2")
                        ),
                        "see RECEIPTS/<MsgId>.json for the receiver's errors; correct and send it again with a new MsgId",
                    );
                    self.fail(file, &refusal)
                }
                _ => {
                    file.next_look = Some(Instant::now() + APPREC_LOOK);
                    Ok(Outcome::Waiting("sent; waiting for its AppRec".into()))
                }
            },
            Ok(None) => Ok(Outcome::Waiting("sent; its record is not found yet".into())),
            Err(error) => Ok(Outcome::Later(error.to_string())),
        }
    }

    /// Moves a file whose message waits in the outbox or was given up as
    /// far as its state says.
    fn follow(&self, file: &Claimed, state: &OutboxState) -> std::io::Result<Outcome> {
        match state {
            OutboxState::Sent { .. } => self.to_sent(file, true),
            OutboxState::Pending { last_error, .. } => Ok(Outcome::Waiting(
                last_error.clone().unwrap_or_else(|| "not sent yet".into()),
            )),
            OutboxState::Failed {
                reason, attempts, ..
            } => {
                let refusal = Refusal::new(
                    "send-failed",
                    format!("given up after {attempts} attempts: {reason}"),
                    "check the receiver's queue and registry record, then drop the file again with a new MsgId",
                );
                self.fail(file, &refusal)
            }
        }
    }

    /// `<name>_<MsgId>`, the MsgId as far as it is known.
    fn final_name(&self, file: &Claimed, msg_id: Option<&str>) -> String {
        let msg_id = file
            .outgoing
            .as_ref()
            .map(|o| o.msg_id.as_str())
            .or(msg_id)
            .map_or_else(|| "unknown".to_owned(), safe_name);
        format!("{}_{msg_id}", file.stem)
    }

    fn to_sent(&self, file: &Claimed, replay: bool) -> std::io::Result<Outcome> {
        let name = format!("{}.xml", self.final_name(file, None));
        let sent = move_into(&file.work, &self.folders.sent, &name)?;
        Ok(if replay {
            Outcome::Replay(sent)
        } else {
            Outcome::Sent(sent)
        })
    }

    /// Moves the original to FAILED and writes its `.error.json` beside it
    /// (the name is known only once the move found a free one). A crash
    /// between the two leaves the file in FAILED without its report: the
    /// file is never lost, and a report never names a file that is not there.
    fn fail(&self, file: &Claimed, refusal: &Refusal) -> std::io::Result<Outcome> {
        let stem = self.final_name(file, refusal.msg_id.as_deref());
        let original = file
            .work
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let report = ErrorReport {
            code: refusal.code,
            reason: &refusal.reason,
            hint: refusal.hint,
            msg_id: refusal
                .msg_id
                .as_deref()
                .or(file.outgoing.as_ref().map(|o| o.msg_id.as_str())),
            message_id: file.message_id.as_deref(),
            attempts: file.tries,
            file: &original,
            taken_at: file.taken_at,
            failed_at: Utc::now(),
        };
        let json = serde_json::to_vec_pretty(&report).map_err(std::io::Error::other)?;
        let failed = move_into(&file.work, &self.folders.failed, &format!("{stem}.xml"))?;
        let report_path = failed.with_extension("error.json");
        write_atomic(&report_path, &json)?;
        Ok(Outcome::Failed(failed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_guid_msgid_is_the_message_id_and_any_other_gives_a_stable_uuid() {
        let from = HerId::new(91462).unwrap();
        assert_eq!(
            message_id_for(from, "8325FCC2-89A9-11E3-BAA8-0800200C9A66"),
            "8325fcc2-89a9-11e3-baa8-0800200c9a66"
        );
        let a = message_id_for(from, "note-1");
        assert_eq!(a, message_id_for(from, "note-1"));
        assert_ne!(a, message_id_for(from, "note-2"));
        assert_ne!(a, message_id_for(HerId::new(91463).unwrap(), "note-1"));
        assert!(uuid::Uuid::parse_str(&a).is_ok());
    }
}
