//! The folder drop of `serve`: one tree per HER-id of the installation,
//! shaped after the NHS MESH client and Domibus's file-system plugin, so an
//! EHR that can write and read files needs nothing else:
//!
//! ```text
//! <root>/<her-id>/OUT/<name>.xml                 the EHR writes a MsgHead (unprotected)
//! <root>/<her-id>/SENT/<name>_<MsgId>.xml        once the broker took it
//! <root>/<her-id>/FAILED/<name>_<MsgId>.xml      a permanent failure, the original kept,
//! <root>/<her-id>/FAILED/<name>_<MsgId>.error.json   beside it what went wrong and what to do
//! <root>/<her-id>/IN/<sender>_<MsgId>.xml        verified and decrypted: exactly the signed bytes
//! <root>/<her-id>/IN/<sender>_<MsgId>.json       who, what, when (never the payload)
//! <root>/<her-id>/RECEIPTS/<MsgId>.json          an AppRec or error report about what we sent
//! <root>/<her-id>/APPREC/<MsgId>.json            the EHR's answer to an incoming message
//!                                                ([receipts] automatic = false), or a whole
//! <root>/<her-id>/APPREC/<MsgId>.xml             AppRec; then moved to APPREC/SENT or, with an
//!                                                .error.json, to APPREC/FAILED
//! <root>/<her-id>/.work/                         files being sent (claimed by rename)
//! <root>/<her-id>/.answer/<sender>_<MsgId>.xml   the original of a message whose AppRec the
//!                                                EHR owes, kept until it is sent
//! ```
//!
//! A file in OUT is taken only when its size and time have stood still
//! for the settle time ([`settle`]), claimed by a rename into `.work` (so
//! an EHR never sees it half-taken and two gateways never both take it),
//! and from then on moved, never copied or deleted: whatever happens, the
//! original is in `.work`, SENT or FAILED. Every file we write is written
//! under a temporary name, synced and renamed ([`files`]). File names
//! carry the EHR's own name, the MsgId and HER-ids: no personal data.
//!
//! # Layout
//! - [`settle`]: when a file has stood still long enough (pure, own clock);
//! - [`outgoing`]: what a file in OUT must be to be sent (pure);
//! - [`files`]: names, atomic writes, claims and moves;
//! - [`drop_box`]: the loop that takes OUT files and sends them;
//! - [`taken`]: an IN file the EHR took away makes its message `DELIVERED`;
//! - [`replies`]: the EHR's own AppRecs, built from the kept original and sent;
//! - [`apprec`]: the APPREC folder, and owed AppRecs that became overdue.

pub mod apprec;
pub mod drop_box;
pub mod files;
pub mod outgoing;
pub mod replies;
pub mod settle;
pub mod taken;

use std::path::{Path, PathBuf};

use helsemelding_wire::HerId;

/// The folders of one HER-id.
#[derive(Debug, Clone)]
pub struct PartyFolders {
    /// Whose folders these are.
    pub her_id: HerId,
    /// Where the EHR puts MsgHeads to send.
    pub out: PathBuf,
    /// Where they go once sent.
    pub sent: PathBuf,
    /// Where they go when they cannot be sent, with an `.error.json`.
    pub failed: PathBuf,
    /// Where received messages are written.
    pub inbox: PathBuf,
    /// Where AppRecs and error reports about what we sent are written.
    pub receipts: PathBuf,
    /// Where the EHR puts its answers to incoming messages.
    pub apprec: PathBuf,
    /// Answers sent from [`PartyFolders::apprec`].
    pub apprec_sent: PathBuf,
    /// Answers that cannot be sent, with an `.error.json`.
    pub apprec_failed: PathBuf,
    /// Files claimed from OUT and not yet SENT or FAILED.
    pub work: PathBuf,
    /// The originals of messages whose AppRec the EHR owes.
    pub answers: PathBuf,
}

impl PartyFolders {
    /// The folders of `her_id` under `root`.
    pub fn new(root: &Path, her_id: HerId) -> PartyFolders {
        let base = root.join(her_id.to_string());
        PartyFolders {
            her_id,
            out: base.join("OUT"),
            sent: base.join("SENT"),
            failed: base.join("FAILED"),
            inbox: base.join("IN"),
            receipts: base.join("RECEIPTS"),
            apprec: base.join("APPREC"),
            apprec_sent: base.join("APPREC").join("SENT"),
            apprec_failed: base.join("APPREC").join("FAILED"),
            work: base.join(".work"),
            answers: base.join(".answer"),
        }
    }

    /// The file stem of a message from `sender` known as `id` (its MsgId,
    /// else its message-id) in [`PartyFolders::inbox`]: `<sender>_<id>`
    /// with only safe characters.
    pub fn incoming_stem(&self, sender: impl std::fmt::Display, id: &str) -> String {
        format!("{sender}_{}", files::safe_name(id))
    }

    /// Where the original of the message `stem` waits for the EHR's AppRec.
    pub fn kept_original(&self, stem: &str) -> PathBuf {
        self.answers.join(format!("{stem}.xml"))
    }

    /// Creates every folder that is missing; an error names the folder.
    pub fn create(&self) -> std::io::Result<()> {
        let dirs = [
            &self.out,
            &self.sent,
            &self.failed,
            &self.inbox,
            &self.receipts,
            &self.apprec,
            &self.apprec_sent,
            &self.apprec_failed,
        ];
        for dir in dirs.into_iter().chain([&self.work, &self.answers]) {
            std::fs::create_dir_all(dir).map_err(|e| {
                std::io::Error::new(e.kind(), format!("creating {}: {e}", dir.display()))
            })?;
        }
        Ok(())
    }
}
