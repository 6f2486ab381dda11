//! The EHR's answers through the folder (`[receipts] automatic = false`):
//! `APPREC/<MsgId>.json` (`{"status", "errors"}`) or a whole AppRec as
//! `APPREC/<MsgId>.xml`, where `<MsgId>` is the MsgId of the incoming
//! message answered. A file is taken once it has stood still for the
//! settle time, sent ([`super::replies::answer`]) and moved to
//! `APPREC/SENT`; one that can never go is moved to `APPREC/FAILED` with an
//! `.error.json` beside it; after a fault that passes it stays and is tried
//! again. [`AppRecDrop`] also flags overdue the messages whose AppRec is
//! owed past the deadline (`[receipts] deadline_hours`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::Utc;
use helsemelding_messaging::Messenger;
use helsemelding_store::messages::{Direction, MessageFilter, MessageState};
use serde_json::json;

use super::files::{listed, move_into, write_atomic};
use super::outgoing::Refusal;
use super::settle::{Seen, Settling};
use super::PartyFolders;
use crate::folder::replies::{self, NotSent, Reply};

/// How often owed AppRecs are compared with the deadline.
const OVERDUE_EVERY: Duration = Duration::from_secs(60);

/// What one answer file came to, for the log and the tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answered {
    /// Sent; now at this path in `APPREC/SENT`.
    Sent(PathBuf),
    /// Refused; now at this path in `APPREC/FAILED`.
    Failed(PathBuf),
    /// Not now (the store or the broker); it stays and is tried again.
    Later(String),
}

/// One HER-id's APPREC folder.
pub struct AppRecDrop {
    folders: PartyFolders,
    settling: Settling,
    deadline: chrono::Duration,
    last_overdue_look: Option<Instant>,
}

impl AppRecDrop {
    /// The APPREC folder of `folders`; files must stand still for
    /// `settle`; an AppRec owed longer than `deadline` is overdue.
    pub fn new(folders: PartyFolders, settle: Duration, deadline: Duration) -> AppRecDrop {
        AppRecDrop {
            folders,
            settling: Settling::new(settle),
            deadline: chrono::Duration::from_std(deadline).unwrap_or(chrono::Duration::MAX),
            last_overdue_look: None,
        }
    }

    /// One pass: every settled answer file sent or refused.
    pub async fn pass(&mut self, messenger: &Messenger) -> std::io::Result<Vec<Answered>> {
        let present = listed(&self.folders.apprec, &[".json", ".xml"])?;
        self.settling.keep_only(&present);
        let now = Instant::now();
        let mut outcomes = Vec::new();
        for path in present {
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            let seen = Seen {
                len: meta.len(),
                modified: meta.modified()?,
            };
            if !self.settling.observe(path.clone(), seen, now) {
                continue;
            }
            let outcome = self.take(messenger, &path).await?;
            if !matches!(outcome, Answered::Later(_)) {
                self.settling.forget(&path);
            }
            outcomes.push(outcome);
        }
        Ok(outcomes)
    }

    async fn take(&self, messenger: &Messenger, path: &Path) -> std::io::Result<Answered> {
        let bytes = std::fs::read(path)?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let (msg_id, is_xml) = match name.rsplit_once('.') {
            Some((stem, ext)) => (stem.to_owned(), ext.eq_ignore_ascii_case("xml")),
            None => (name.clone(), false),
        };
        let reply = if is_xml {
            Reply::AppRec(bytes)
        } else {
            match Reply::from_json(&bytes) {
                Ok(reply) => reply,
                Err(refusal) => return self.fail(path, &refusal),
            }
        };
        let ours = self.folders.her_id.get();
        let found = messenger
            .store()
            .messages()
            .find(&msg_id, Some(Direction::In), Some(ours))
            .await;
        let record = match found {
            Ok(Some(record)) => record,
            Ok(None) => {
                let refusal = Refusal::new(
                    "unknown-message",
                    format!("no message to {ours} is recorded with MsgId {msg_id}"),
                    "name the file after the MsgId of the incoming message it answers",
                );
                return self.fail(path, &refusal);
            }
            Err(error) => return Ok(Answered::Later(error.to_string())),
        };
        match replies::answer(messenger, &self.folders, &record, reply).await {
            Ok(_) => Ok(Answered::Sent(move_into(
                path,
                &self.folders.apprec_sent,
                &name,
            )?)),
            Err(NotSent::Refused(refusal)) => self.fail(path, &refusal),
            Err(NotSent::WrongState(reason)) => {
                let refusal = Refusal::new(
                    "not-owed",
                    reason,
                    "answer each incoming message once, while it is AVAILABLE, LEASED or DELIVERED",
                );
                self.fail(path, &refusal)
            }
            Err(NotSent::Later(reason)) => Ok(Answered::Later(reason)),
        }
    }

    /// To `APPREC/FAILED` with its `.error.json` (the file first: it is
    /// never lost, and a report never names a file that is not there).
    fn fail(&self, path: &Path, refusal: &Refusal) -> std::io::Result<Answered> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let failed = move_into(path, &self.folders.apprec_failed, &name)?;
        let report = json!({
            "code": refusal.code,
            "reason": refusal.reason,
            "hint": refusal.hint,
            "file": name,
            "failed_at": Utc::now().to_rfc3339(),
        });
        let report_path = failed.with_file_name(format!("{name}.error.json"));
        write_atomic(&report_path, &serde_json::to_vec_pretty(&report)?)?;
        Ok(Answered::Failed(failed))
    }

    /// Flags overdue, once a minute, each message of ours whose AppRec is
    /// owed (its original is kept) and older than the deadline; returns
    /// how many were flagged now.
    pub async fn flag_overdue(
        &mut self,
        messenger: &Messenger,
    ) -> helsemelding_store::Result<usize> {
        if self
            .last_overdue_look
            .is_some_and(|at| at.elapsed() < OVERDUE_EVERY)
        {
            return Ok(0);
        }
        self.last_overdue_look = Some(Instant::now());
        let messages = messenger.store().messages();
        let mut flagged = 0;
        for state in [
            MessageState::Available,
            MessageState::Leased,
            MessageState::Delivered,
        ] {
            let mut filter = MessageFilter {
                direction: Some(Direction::In),
                state: Some(state),
                ours: Some(self.folders.her_id.get()),
                to: Some(Utc::now() - self.deadline),
                ..MessageFilter::default()
            };
            loop {
                let page = messages.list(&filter, 500).await?;
                let Some(last) = page.last() else { break };
                filter.after = Some(last.id);
                for record in page.iter().filter(|r| !r.overdue) {
                    let stem = self.folders.incoming_stem(record.peer, record.public_id());
                    if self.folders.kept_original(&stem).exists()
                        && messages.flag_overdue(record.id).await?
                    {
                        flagged += 1;
                    }
                }
                if page.len() < 500 {
                    break;
                }
            }
        }
        Ok(flagged)
    }
}
