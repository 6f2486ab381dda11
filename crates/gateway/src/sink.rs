//! Where `listen` and `serve` put what they accept: [`ToDirectory`] writes
//! each accepted message as `<dir>/<message-id>.xml` (payload bytes exactly)
//! and `<dir>/<message-id>.json` (who, what, when), atomically and before
//! the message is accepted; for `serve` ([`ToDirectory::per_party`]) as
//! `<root>/<our her-id>/IN/<sender>_<MsgId>.xml` and `.json`. A redelivered message whose `.xml` file is there
//! with the same bytes is not written again; with other bytes the file is
//! kept and the message waits (the error names the file). A failure of the
//! directory itself (a full disk, a folder not writable) is ours, not the
//! message's: the listener pauses and spends no attempts.

use std::path::PathBuf;

use crate::folder::files::{safe_name, write_atomic};
use helsemelding_wire::apprec::AppRec;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use helsemelding_messaging::{ErrorHandler, Handler, HandlerError, Received};
use helsemelding_wire::error_report::ReceivedErrorReport;
use helsemelding_wire::text::{for_display, for_display_or};
use serde_json::json;

/// The out-dir writer: the handler and error handler of `listen`.
pub struct ToDirectory {
    naming: Naming,
    /// Keep the original of each message asking for an AppRec until the
    /// EHR answers it (`[receipts] automatic = false`).
    keep_originals: bool,
    accepted: AtomicU64,
    last: std::sync::Mutex<Instant>,
}

/// What writing a message into the out dir came to.
#[derive(Debug, PartialEq, Eq)]
enum Written {
    /// Its files were written.
    New,
    /// `<id>.xml` was there already with the same bytes: an earlier run
    /// wrote it and stopped before the delivery was settled. Nothing is
    /// rewritten.
    AlreadyThere,
}

/// Where a message's files go and what they are called.
#[derive(Debug, Clone)]
enum Naming {
    /// `<dir>/<message-id>` (`listen --out-dir`).
    ById(PathBuf),
    /// `<root>/<to>/IN/<from>_<MsgId>` (`serve`'s folder drop); the AMQP
    /// message-id where the payload has no MsgHead MsgId.
    PerParty(PathBuf),
}

impl Naming {
    /// The directory and the file stem (safe characters only) of `message`.
    fn place(&self, message: &Received) -> (PathBuf, String) {
        match self {
            Naming::ById(dir) => (dir.clone(), safe_name(&message.message_id)),
            Naming::PerParty(root) => {
                let msg_id = helsemelding_wire::msghead::MsgHead::parse(&message.payload)
                    .map(|head| head.msg_id)
                    .unwrap_or_else(|_| message.message_id.clone());
                let folders = crate::folder::PartyFolders::new(root, message.to);
                let stem = folders.incoming_stem(message.from, &msg_id);
                (folders.inbox, stem)
            }
        }
    }
}

impl ToDirectory {
    /// A writer into `dir`, which must exist.
    pub fn new(dir: impl Into<PathBuf>) -> ToDirectory {
        Self::with(Naming::ById(dir.into()))
    }

    /// A writer into the IN folder of the HER-id each message is addressed
    /// to, under the folder drop's `root` (the folders must exist).
    pub fn per_party(root: impl Into<PathBuf>) -> ToDirectory {
        Self::with(Naming::PerParty(root.into()))
    }

    fn with(naming: Naming) -> ToDirectory {
        ToDirectory {
            naming,
            keep_originals: false,
            accepted: AtomicU64::new(0),
            last: std::sync::Mutex::new(Instant::now()),
        }
    }

    /// The same, keeping the original of every message that asks for an
    /// AppRec in `.answer/` until the EHR's AppRec for it is sent (the EHR
    /// may take its IN file before it answers).
    pub fn keeping_originals(mut self) -> ToDirectory {
        self.keep_originals = true;
        self
    }

    /// Where the original of `message` is kept for the EHR's AppRec, when
    /// it is kept.
    fn kept_original(&self, message: &Received) -> Option<PathBuf> {
        let Naming::PerParty(root) = &self.naming else {
            return None;
        };
        if !self.keep_originals {
            return None;
        }
        let head = helsemelding_wire::msghead::MsgHead::parse(&message.payload).ok()?;
        if !head.wants_receipt() {
            return None;
        }
        let folders = crate::folder::PartyFolders::new(root, message.to);
        Some(folders.kept_original(&folders.incoming_stem(message.from, &head.msg_id)))
    }

    /// How many messages it has taken (written, or found already there).
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }

    /// How long since it was made or last given a message or an error
    /// report.
    pub fn idle(&self) -> Duration {
        self.last.lock().unwrap().elapsed()
    }

    /// Writes `<id>.json`, then `<id>.xml`, each atomically: an `.xml`
    /// file is there only when both are complete. A message whose `.xml`
    /// file exists with the same bytes is not written again; with other
    /// bytes it is an error that names the file, which is kept.
    fn write(&self, message: &Received) -> std::io::Result<Written> {
        let (dir, stem) = self.naming.place(message);
        let xml = dir.join(format!("{stem}.xml"));
        let json = dir.join(format!("{stem}.json"));
        match std::fs::read(&xml) {
            Ok(existing) if existing == message.payload => {
                if !json.exists() {
                    // Written by hand or by an older version: complete it.
                    write_atomic(&json, &meta_json(message)?)?;
                }
                return Ok(Written::AlreadyThere);
            }
            Ok(_) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    format!(
                        "{} already exists with other content than message {} from {}; \
                         it is not overwritten: move it away to take this message",
                        xml.display(),
                        for_display(&message.message_id, ID_CHARS),
                        message.from
                    ),
                ))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(std::io::Error::new(
                    e.kind(),
                    format!("reading {}: {e}", xml.display()),
                ))
            }
        }
        // The kept original first: once the IN file is there the EHR may
        // answer, and its answer needs it.
        if let Some(kept) = self.kept_original(message) {
            write_atomic(&kept, &message.payload)?;
        }
        write_atomic(&json, &meta_json(message)?)?;
        if let Err(error) = write_atomic(&xml, &message.payload) {
            // No `.json` without its `.xml`: on a full disk it only takes room.
            let _ = std::fs::remove_file(&json);
            return Err(error);
        }
        Ok(Written::New)
    }
}

/// Why the out dir did not take a message. A file already there with
/// other bytes is about this message: it waits, spending attempts. Any
/// other failure (a full disk, a folder not writable) is ours, not the
/// message's: the listener pauses and says so, and spends no attempts.
fn refusal(error: std::io::Error) -> HandlerError {
    if error.kind() == std::io::ErrorKind::AlreadyExists {
        eprintln!("not taken: {error}");
        return HandlerError::Retry {
            reason: error.to_string(),
        };
    }
    HandlerError::Unavailable {
        reason: error.to_string(),
    }
}

/// Who, what, when: the `<id>.json` beside the payload (never the payload).
fn meta_json(message: &Received) -> std::io::Result<Vec<u8>> {
    let meta = json!({
        "message_id": message.message_id,
        "from_her_id": message.from.get(),
        "to_her_id": message.to.get(),
        "function": message.function,
        "cpa_id": message.cpa_id.map(|c| c.to_string()),
        "correlation_id": message.correlation_id,
        "application_time": message.application_time.to_rfc3339(),
        "enqueued_time": message.enqueued_time.map(|t| t.to_rfc3339()),
        "received_at": message.received_at.to_rfc3339(),
        "metadata": message.metadata,
    });
    Ok(serde_json::to_string_pretty(&meta)?.into_bytes())
}

impl ToDirectory {
    /// `serve`'s folder drop: an AppRec goes to `RECEIPTS/<OriginalMsgId>.json`
    /// of the HER-id it is addressed to (what it says, never a payload)
    /// rather than to IN. `None` when this is not a folder drop or not an
    /// AppRec.
    fn write_receipt(&self, message: &Received) -> Option<std::io::Result<PathBuf>> {
        let Naming::PerParty(root) = &self.naming else {
            return None;
        };
        let apprec = AppRec::parse(&message.payload).ok()?;
        let folders = crate::folder::PartyFolders::new(root, message.to);
        let errors: Vec<_> = apprec
            .errors
            .iter()
            .map(|code| json!({"code": code.v, "description": code.dn}))
            .collect();
        let receipt = json!({
            "kind": "apprec",
            "original_msg_id": apprec.original.id,
            "from_her_id": message.from.get(),
            "status": apprec.status.code(),
            "status_text": apprec.status.display_name(),
            "errors": errors,
            "apprec_msg_id": apprec.id,
            "message_id": message.message_id,
            "received_at": message.received_at.to_rfc3339(),
        });
        let name = format!("{}.json", safe_name(&apprec.original.id));
        Some(write_json(&folders.receipts.join(name), &receipt))
    }

    /// An error report about what we sent, into `RECEIPTS/<id>.json` of the
    /// HER-id it is addressed to (`serve`'s folder drop only).
    fn write_error_report(&self, report: &ReceivedErrorReport) -> Option<std::io::Result<PathBuf>> {
        let Naming::PerParty(root) = &self.naming else {
            return None;
        };
        let (to, original) = (report.to?, report.original_message_id.as_deref()?);
        let folders = crate::folder::PartyFolders::new(root, to);
        let receipt = json!({
            "kind": "error-report",
            "original_message_id": original,
            "from_her_id": report.from.map(|h| h.get()),
            "condition": report.condition_text,
            "description": report.description,
            "data": report.data,
            "message_id": report.message_id,
            "receiver_time": report.receiver_time.map(|t| t.to_rfc3339()),
        });
        let name = format!("{}.json", safe_name(original));
        Some(write_json(&folders.receipts.join(name), &receipt))
    }
}

fn write_json(path: &std::path::Path, value: &serde_json::Value) -> std::io::Result<PathBuf> {
    let bytes = serde_json::to_string_pretty(value)?.into_bytes();
    write_atomic(path, &bytes)?;
    Ok(path.to_owned())
}

#[async_trait]
impl Handler for ToDirectory {
    async fn handle(&self, message: &Received) -> Result<(), HandlerError> {
        if let Some(written) = tokio::task::block_in_place(|| self.write_receipt(message)) {
            let path = written.map_err(refusal)?;
            *self.last.lock().unwrap() = Instant::now();
            eprintln!("AppRec from {} written to {}", message.from, path.display());
            return Ok(());
        }
        let written = tokio::task::block_in_place(|| self.write(message));
        let written = written.map_err(refusal)?;
        *self.last.lock().unwrap() = Instant::now();
        let n = self.accepted.fetch_add(1, Ordering::SeqCst) + 1;
        // The message-id is the peer's text: shown escaped and bounded.
        let (id, from) = (for_display(&message.message_id, ID_CHARS), message.from);
        match written {
            Written::New => eprintln!("received {id} from {from} ({n})"),
            Written::AlreadyThere => {
                eprintln!("already in the out dir: {id} from {from} ({n}); not written again")
            }
        }
        Ok(())
    }
}

#[async_trait]
impl ErrorHandler for ToDirectory {
    async fn handle_error(&self, report: &ReceivedErrorReport) -> Result<(), HandlerError> {
        *self.last.lock().unwrap() = Instant::now();
        eprintln!("{}", error_report_line(report));
        if let Some(written) = tokio::task::block_in_place(|| self.write_error_report(report)) {
            written.map_err(refusal)?;
        }
        Ok(())
    }
}

/// How much of a peer's message-id or condition is shown.
const ID_CHARS: usize = 100;
/// How much of a peer's error description is shown.
const DESCRIPTION_CHARS: usize = 200;

/// One line about a received error report. Every field but the HER-id is
/// the peer's text, shown escaped and bounded: a description cannot forge
/// lines of our output, move the cursor or fill the log.
fn error_report_line(report: &ReceivedErrorReport) -> String {
    let from = report
        .from
        .map_or_else(|| "unknown".to_owned(), |h| h.to_string());
    let about = for_display_or(
        report.original_message_id.as_deref(),
        ID_CHARS,
        "an unknown message",
    );
    let condition = for_display_or(report.condition_text.as_deref(), ID_CHARS, "no condition");
    let mut line = format!("error report from {from} about {about}: {condition}");
    if let Some(description) = report.description.as_deref() {
        line.push_str(" (");
        line.push_str(&for_display(description, DESCRIPTION_CHARS));
        line.push(')');
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use helsemelding_wire::HerId;

    fn sink(dir: &std::path::Path) -> ToDirectory {
        ToDirectory::new(dir)
    }

    fn message(payload: &[u8]) -> Received {
        let now = chrono::Utc::now();
        Received {
            from: HerId::new(8_142_001).unwrap(),
            to: HerId::new(8_142_002).unwrap(),
            function: "DIALOG_INNBYGGER_TEST".into(),
            message_id: "4f0c3c1e-id".into(),
            correlation_id: None,
            cpa_id: None,
            payload: payload.to_vec(),
            metadata: Default::default(),
            application_time: now,
            enqueued_time: None,
            received_at: now,
            queue: "8142002_async".into(),
        }
    }

    #[test]
    fn serve_writes_into_the_in_folder_of_the_receiver_named_by_sender_and_msgid() {
        let root = tempfile::tempdir().unwrap();
        let to = HerId::new(8_142_002).unwrap();
        let folders = crate::folder::PartyFolders::new(root.path(), to);
        folders.create().unwrap();
        let payload = br#"<MsgHead xmlns="http://www.kith.no/xmlstds/msghead/2006-05-24"><MsgInfo><Type V="DIALOG_NOTAT" DN="Notat"/><MIGversion>v1.2 2006-05-24</MIGversion><GenDate>2026-12-01T10:00:00</GenDate><MsgId>m/../1</MsgId><Sender><Organisation><OrganisationName>A</OrganisationName><Ident><Id>8142001</Id><TypeId V="HER" S="2.16.578.1.12.4.1.1.9051" DN="HER-id"/></Ident></Organisation></Sender><Receiver><Organisation><OrganisationName>B</OrganisationName><Ident><Id>8142002</Id><TypeId V="HER" S="2.16.578.1.12.4.1.1.9051" DN="HER-id"/></Ident></Organisation></Receiver></MsgInfo></MsgHead>"#;
        let sink = ToDirectory::per_party(root.path());
        let message = message(payload);
        assert_eq!(sink.write(&message).unwrap(), Written::New);
        let xml = folders.inbox.join("8142001_m_.._1.xml");
        assert_eq!(std::fs::read(&xml).unwrap(), payload);
        assert!(folders.inbox.join("8142001_m_.._1.json").exists());
        // Not a MsgHead: named by the AMQP message-id.
        assert_eq!(
            sink.write(&super::tests::message(b"<x/>")).unwrap(),
            Written::New
        );
        assert!(folders.inbox.join("8142001_4f0c3c1e-id.xml").exists());
    }

    #[test]
    fn a_message_whose_file_is_there_with_the_same_bytes_is_not_written_again() {
        let dir = tempfile::tempdir().unwrap();
        let sink = sink(dir.path());
        let first = message(b"<MsgHead/>");
        assert_eq!(sink.write(&first).unwrap(), Written::New);
        let json = dir.path().join("4f0c3c1e-id.json");
        let meta = std::fs::read(&json).unwrap();
        let mut again = message(b"<MsgHead/>");
        again.received_at += chrono::Duration::seconds(5);
        assert_eq!(sink.write(&again).unwrap(), Written::AlreadyThere);
        assert_eq!(std::fs::read(&json).unwrap(), meta, "rewritten");
        // A .json lost beside a complete .xml is written again.
        std::fs::remove_file(&json).unwrap();
        assert_eq!(sink.write(&again).unwrap(), Written::AlreadyThere);
        assert!(json.exists());
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(!names.iter().any(|n| n.ends_with(".part")), "{names:?}");
    }

    #[test]
    fn a_message_whose_file_is_there_with_other_bytes_is_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let sink = sink(dir.path());
        let xml = dir.path().join("4f0c3c1e-id.xml");
        std::fs::write(&xml, b"<other/>").unwrap();
        let error = sink.write(&message(b"<MsgHead/>")).unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::AlreadyExists);
        let text = error.to_string();
        assert!(text.contains(&xml.display().to_string()), "{text}");
        assert!(text.contains("move it away"), "{text}");
        assert!(!text.contains("MsgHead"), "payload in the error: {text}");
        assert_eq!(std::fs::read(&xml).unwrap(), b"<other/>");
    }
}
