//! Issue 14: `helsemelding serve` with the folder drop, two processes (two
//! HER-ids) over the local transport, each with its own store, the EHR
//! played by the test writing and reading files:
//! - files dropped into one side's OUT arrive in the other's IN exactly
//!   once, byte for byte; bad ones go to FAILED with a reason, the
//!   original kept; a file sent again with the same MsgId and bytes is a
//!   replay, with other bytes a failure;
//! - SIGKILL in the middle of a stream and a restart: no file lost, none
//!   sent twice, none written twice to IN;
//! - a file still being written is not taken before it stands still;
//! - SIGTERM: exit 0 within 10 s, nothing half-written.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::served::{drop_file, folder, json_when, names, wait_until};
use common::{GatewayBroker, Setup};

const A: u32 = 8_143_001;
const B: u32 = 8_143_002;

/// Both parties' configurations, with a folder drop under `<dir>/folders`
/// and a short settle time.
fn two_parties(settle_ms: u64) -> (Setup, PathBuf, PathBuf) {
    let setup = Setup::new(GatewayBroker::Local);
    let root = setup.dir().join("folders");
    let configs = [A, B].map(|her_id| {
        let config = setup.party(her_id);
        let mut text = std::fs::read_to_string(&config).unwrap();
        text.push_str(&format!(
            "[folder]\nroot = \"{}\"\nsettle_ms = {settle_ms}\n",
            root.display()
        ));
        std::fs::write(&config, text).unwrap();
        config
    });
    let [a, b] = configs;
    (setup, a, b)
}

fn serve(setup: &Setup, config: &Path, log: &str) -> Child {
    let log = std::fs::File::create(setup.dir().join(log)).unwrap();
    setup
        .command(config)
        .arg("serve")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

fn log_of(setup: &Setup, log: &str) -> String {
    std::fs::read_to_string(setup.dir().join(log)).unwrap_or_default()
}

/// The named logs one after another, each under its name, for a failure message.
fn logs_of(setup: &Setup, names: &[&str]) -> String {
    names
        .iter()
        .map(|name| format!("{name}:\n{}\n", log_of(setup, name)))
        .collect()
}

/// A MsgHead from A to B with `msg_id` and a body of its own.
fn note(msg_id: &str, n: usize) -> String {
    common::msghead(A, B)
        .replace("2b1c7c86-64a4-4a38-a1b4-0f4f4b5d2c11", msg_id)
        .replace("Hei, æøå", &format!("Hei nr. {n}, æøå"))
}

/// Sends `signal`; its exit status within 10 s, else it is killed and `None`.
fn stop(child: &mut Child, signal: libc::c_int) -> Option<std::process::ExitStatus> {
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    None
}

/// SIGTERM to each: every one exits 0 within 10 s.
fn stop_gracefully<const N: usize>(children: [&mut Child; N], logs: &dyn Fn() -> String) {
    for child in children {
        let status = stop(child, libc::SIGTERM).expect("serve stops within 10 s of SIGTERM");
        assert!(status.success(), "{status}: {}", logs());
    }
}

/// No `.part` (half-written file) anywhere under `dir`.
fn assert_nothing_half_written(dir: &Path) {
    for entry in walk(dir) {
        let name = entry.to_string_lossy().into_owned();
        assert!(!name.ends_with(".part"), "half-written: {name}");
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                found.extend(walk(&path));
            } else {
                found.push(path);
            }
        }
    }
    found
}

#[test]
fn files_dropped_into_out_arrive_in_the_receivers_in_once_and_bad_ones_go_to_failed() {
    let (setup, a, b) = two_parties(200);
    let mut serve_a = serve(&setup, &a, "a.log");
    let mut serve_b = serve(&setup, &b, "b.log");
    let logs = || logs_of(&setup, &["a.log", "b.log"]);
    let out = folder(&setup, A, "OUT");
    const COUNT: usize = 40;
    let notes: Vec<(String, String)> = (0..COUNT)
        .map(|n| (uuid::Uuid::new_v4().to_string(), format!("note-{n}.xml")))
        .collect();
    for (n, (msg_id, name)) in notes.iter().enumerate() {
        drop_file(&out, name, note(msg_id, n).as_bytes());
    }
    drop_file(&out, "garbage.xml", b"this is not XML");
    drop_file(&out, "theirs.xml", common::msghead(5555, B).as_bytes());

    let inbox = folder(&setup, B, "IN");
    wait_until(
        "every note in B's IN",
        Duration::from_secs(90),
        || names(&inbox, ".xml").len() >= COUNT,
        logs,
    );
    wait_until(
        "both bad files in FAILED",
        Duration::from_secs(30),
        || names(&folder(&setup, A, "FAILED"), ".error.json").len() == 2,
        logs,
    );
    // Exactly once and byte for byte, named by sender and MsgId.
    assert_eq!(names(&inbox, ".xml").len(), COUNT, "{}", logs());
    for (n, (msg_id, name)) in notes.iter().enumerate() {
        let arrived = inbox.join(format!("{A}_{msg_id}.xml"));
        assert_eq!(
            std::fs::read_to_string(&arrived).unwrap(),
            note(msg_id, n),
            "{name}"
        );
        assert!(inbox.join(format!("{A}_{msg_id}.json")).exists(), "{name}");
        let stem = name.trim_end_matches(".xml");
        let sent = folder(&setup, A, "SENT").join(format!("{stem}_{msg_id}.xml"));
        assert_eq!(std::fs::read_to_string(&sent).unwrap(), note(msg_id, n));
    }
    assert!(names(&out, ".xml").is_empty(), "OUT emptied");
    // The originals of bad files are kept, each with what to do about it.
    let failed = folder(&setup, A, "FAILED");
    let garbage: serde_json::Value =
        serde_json::from_slice(&std::fs::read(failed.join("garbage_unknown.error.json")).unwrap())
            .unwrap();
    assert_eq!(garbage["code"], "not-a-msghead", "{garbage}");
    assert!(garbage["hint"].as_str().is_some_and(|h| !h.is_empty()));
    assert_eq!(
        std::fs::read(failed.join("garbage_unknown.xml")).unwrap(),
        b"this is not XML"
    );
    let theirs: serde_json::Value = serde_json::from_slice(
        &std::fs::read(failed.join("theirs_2b1c7c86-64a4-4a38-a1b4-0f4f4b5d2c11.error.json"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(theirs["code"], "sender-not-ours", "{theirs}");

    // The same MsgId and bytes again: a replay, not sent a second time;
    // the same MsgId with other bytes: a failure that says so.
    let (first_id, _) = &notes[0];
    drop_file(&out, "again.xml", note(first_id, 0).as_bytes());
    drop_file(&out, "other.xml", note(first_id, 999).as_bytes());
    wait_until(
        "the replay in SENT",
        Duration::from_secs(30),
        || {
            folder(&setup, A, "SENT")
                .join(format!("again_{first_id}.xml"))
                .exists()
        },
        logs,
    );
    wait_until(
        "the reuse in FAILED",
        Duration::from_secs(30),
        || failed.join(format!("other_{first_id}.error.json")).exists(),
        logs,
    );
    let reused: serde_json::Value = serde_json::from_slice(
        &std::fs::read(failed.join(format!("other_{first_id}.error.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(reused["code"], "msgid-reused", "{reused}");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        names(&inbox, ".xml").len(),
        COUNT,
        "nothing arrived twice: {}",
        logs()
    );

    // The store tells the same story: each note SENT on A's side and
    // AVAILABLE on B's, with its history and in the events feed.
    let records = |config: &Path, direction: &str| -> Vec<serde_json::Value> {
        let args = ["messages", "list", "--direction", direction, "--json"];
        let (ok, stdout, stderr) = setup.run(config, &args);
        assert!(ok, "{stderr}");
        serde_json::from_str(&stdout).unwrap()
    };
    let state_of = |rows: &[serde_json::Value], msg_id: &str| {
        let row = rows.iter().find(|row| row["id"] == msg_id);
        row.map(|row| row["state"].as_str().unwrap().to_owned())
    };
    let (sent, arrived) = (records(&a, "out"), records(&b, "in"));
    assert_eq!(sent.len(), COUNT, "one record each, the replay none");
    assert_eq!(arrived.len(), COUNT);
    for (msg_id, name) in &notes {
        assert_eq!(state_of(&sent, msg_id).as_deref(), Some("SENT"), "{name}");
        let state = state_of(&arrived, msg_id);
        assert_eq!(state.as_deref(), Some("AVAILABLE"), "{name}");
    }
    let (ok, shown, stderr) = setup.run(&a, &["messages", "show", first_id, "--json"]);
    assert!(ok, "{stderr}");
    let shown: serde_json::Value = serde_json::from_str(&shown).unwrap();
    let history: Vec<_> = shown["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| event["state"].as_str().unwrap())
        .collect();
    assert_eq!(history, ["ACCEPTED", "SENT"], "{shown}");
    assert_eq!(shown["peer_her_id"], B);
    let (ok, events, stderr) = setup.run(&a, &["messages", "events", "--json"]);
    assert!(ok, "{stderr}");
    let events: Vec<serde_json::Value> = serde_json::from_str(&events).unwrap();
    assert_eq!(events.len(), 2 * COUNT);
    let seqs: Vec<_> = events.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert!(seqs.windows(2).all(|pair| pair[0] < pair[1]), "{seqs:?}");
    let (ok, _, stderr) = setup.run(&a, &["messages", "show", "no-such-message"]);
    assert!(!ok && stderr.contains("no message is recorded as no-such-message"));

    // The EHR takes half of its IN files away: those become DELIVERED.
    let taken: Vec<_> = notes.iter().step_by(2).map(|(msg_id, _)| msg_id).collect();
    for msg_id in &taken {
        let file = inbox.join(format!("{A}_{msg_id}.xml"));
        std::fs::rename(&file, setup.dir().join(format!("ehr-{msg_id}.xml"))).unwrap();
    }
    wait_until(
        "the taken IN files DELIVERED",
        Duration::from_secs(20),
        || {
            let arrived = records(&b, "in");
            taken
                .iter()
                .all(|id| state_of(&arrived, id).as_deref() == Some("DELIVERED"))
        },
        logs,
    );
    let arrived = records(&b, "in");
    for (msg_id, _) in notes.iter().skip(1).step_by(2) {
        assert_eq!(state_of(&arrived, msg_id).as_deref(), Some("AVAILABLE"));
    }

    stop_gracefully([&mut serve_a, &mut serve_b], &logs);
    assert!(log_of(&setup, "a.log").contains("SIGTERM"), "{}", logs());
    assert_nothing_half_written(&setup.dir().join("folders"));
}

#[test]
fn serve_killed_mid_stream_loses_nothing_and_sends_nothing_twice() {
    let (setup, a, b) = two_parties(100);
    let mut serve_b = serve(&setup, &b, "b.log");
    let mut serve_a = serve(&setup, &a, "a1.log");
    let logs = || logs_of(&setup, &["a1.log", "a2.log", "b.log"]);
    let out = folder(&setup, A, "OUT");
    let sent = folder(&setup, A, "SENT");
    const COUNT: usize = 120;
    let ids: Vec<String> = (0..COUNT)
        .map(|_| uuid::Uuid::new_v4().to_string())
        .collect();
    for (n, msg_id) in ids.iter().enumerate() {
        drop_file(&out, &format!("n{n}.xml"), note(msg_id, n).as_bytes());
    }
    wait_until(
        "some sent",
        Duration::from_secs(60),
        || names(&sent, ".xml").len() >= 10,
        logs,
    );
    // Killed without a chance to tidy up.
    assert!(stop(&mut serve_a, libc::SIGKILL).is_some());
    let sent_before = names(&sent, ".xml").len();
    assert!(sent_before < COUNT, "all sent before the kill: raise COUNT");
    let mut serve_a = serve(&setup, &a, "a2.log");
    let inbox = folder(&setup, B, "IN");
    wait_until(
        "every note in B's IN",
        Duration::from_secs(120),
        || names(&inbox, ".xml").len() >= COUNT,
        logs,
    );
    wait_until(
        "every note in A's SENT",
        Duration::from_secs(30),
        || names(&sent, ".xml").len() >= COUNT,
        logs,
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(names(&inbox, ".xml").len(), COUNT, "{}", logs());
    assert_eq!(names(&sent, ".xml").len(), COUNT, "{}", logs());
    for (n, msg_id) in ids.iter().enumerate() {
        let arrived = std::fs::read_to_string(inbox.join(format!("{A}_{msg_id}.xml"))).unwrap();
        assert_eq!(arrived, note(msg_id, n));
        assert!(sent.join(format!("n{n}_{msg_id}.xml")).exists(), "n{n}");
    }
    // B handed each over once: a second delivery would say so.
    let b_log = log_of(&setup, "b.log");
    assert!(!b_log.contains("already in the out dir"), "{b_log}");
    assert!(names(&folder(&setup, A, ".work"), ".xml").is_empty());
    stop_gracefully([&mut serve_a, &mut serve_b], &logs);
}

#[test]
fn a_file_still_being_written_is_not_taken_before_it_stands_still() {
    let (setup, a, b) = two_parties(1500);
    let mut serve_a = serve(&setup, &a, "a.log");
    let mut serve_b = serve(&setup, &b, "b.log");
    let logs = || logs_of(&setup, &["a.log", "b.log"]);
    let out = folder(&setup, A, "OUT");
    std::fs::create_dir_all(&out).unwrap();
    let msg_id = uuid::Uuid::new_v4().to_string();
    let whole = note(&msg_id, 1);
    let path = out.join("slow.xml");
    // Written straight into OUT in five pieces, 800 ms apart: never still
    // for the 1.5 s settle time until the last piece.
    let pieces: Vec<&[u8]> = whole.as_bytes().chunks(whole.len() / 5 + 1).collect();
    for piece in pieces {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap();
        file.write_all(piece).unwrap();
        drop(file);
        std::thread::sleep(Duration::from_millis(800));
        assert!(path.exists(), "taken while being written: {}", logs());
    }
    let inbox = folder(&setup, B, "IN");
    let arrived = inbox.join(format!("{A}_{msg_id}.xml"));
    wait_until(
        "the file in B's IN",
        Duration::from_secs(30),
        || arrived.exists(),
        logs,
    );
    assert_eq!(std::fs::read_to_string(&arrived).unwrap(), whole);
    stop_gracefully([&mut serve_a, &mut serve_b], &logs);
}

#[test]
fn serve_without_a_folder_drop_says_what_to_configure() {
    let setup = Setup::new(GatewayBroker::Local);
    let config = setup.party(A);
    let (ok, _, stderr) = setup.run(&config, &["serve"]);
    assert!(!ok);
    assert!(stderr.contains("[folder] root"), "{stderr}");
}

#[test]
fn an_apprec_for_a_sent_file_lands_in_receipts_and_turns_its_state_to_apprec_ok() {
    let (setup, a, b) = two_parties(200);
    let mut serve_a = serve(&setup, &a, "a.log");
    let mut serve_b = serve(&setup, &b, "b.log");
    let logs = || logs_of(&setup, &["a.log", "b.log"]);
    let msg_id = uuid::Uuid::new_v4().to_string();
    let asking = testkit_msghead(&msg_id);
    drop_file(&folder(&setup, A, "OUT"), "asks.xml", asking.as_bytes());

    // B takes it into IN and answers at once (automatic receipts); the
    // AppRec reaches A's RECEIPTS, not A's IN.
    let receipt = folder(&setup, A, "RECEIPTS").join(format!("{msg_id}.json"));
    let receipt = json_when(
        "the AppRec in A's RECEIPTS",
        Duration::from_secs(60),
        &receipt,
        logs,
    );
    assert_eq!(receipt["kind"], "apprec", "{receipt}");
    assert_eq!(receipt["original_msg_id"], msg_id.as_str());
    assert_eq!(receipt["from_her_id"], B);
    assert_eq!(receipt["status"], "1", "{receipt}");
    assert!(
        names(&folder(&setup, A, "IN"), ".xml").is_empty(),
        "{}",
        logs()
    );
    assert!(folder(&setup, B, "IN")
        .join(format!("{A}_{msg_id}.xml"))
        .exists());

    let state = |config: &Path, direction: &str| {
        let (ok, shown, stderr) = setup.run(config, &["messages", "show", &msg_id, "--json"]);
        assert!(ok, "{stderr}");
        let shown: serde_json::Value = serde_json::from_str(&shown).unwrap();
        assert_eq!(shown["direction"], direction);
        shown["state"].as_str().unwrap().to_owned()
    };
    wait_until(
        "A's record APPREC_OK",
        Duration::from_secs(20),
        || state(&a, "out") == "APPREC_OK",
        logs,
    );
    // Answered at hand-over, but still the EHR's to take.
    assert_eq!(state(&b, "in"), "AVAILABLE");

    stop_gracefully([&mut serve_a, &mut serve_b], &logs);
    assert_nothing_half_written(&setup.dir().join("folders"));
}

/// A note from A to B that asks for an AppRec.
#[test]
fn with_receipts_by_the_ehr_an_answer_in_apprec_goes_back_and_an_owed_one_turns_overdue() {
    let (setup, a, b) = two_parties(200);
    let mut text = std::fs::read_to_string(&b).unwrap();
    text.push_str("[receipts]\nautomatic = false\ndeadline_hours = 0\n");
    std::fs::write(&b, text).unwrap();
    // A's files go to SENT only once their AppRec says OK.
    let mut text = std::fs::read_to_string(&a).unwrap();
    assert!(
        text.trim_end().ends_with("settle_ms = 200"),
        "[folder] is last"
    );
    text.push_str("sent_after = \"apprec\"\n");
    std::fs::write(&a, text).unwrap();
    let mut serve_a = serve(&setup, &a, "a.log");
    let mut serve_b = serve(&setup, &b, "b1.log");
    let logs = || logs_of(&setup, &["a.log", "b1.log", "b2.log"]);
    let msg_id = uuid::Uuid::new_v4().to_string();
    drop_file(
        &folder(&setup, A, "OUT"),
        "asks.xml",
        testkit_msghead(&msg_id).as_bytes(),
    );
    let kept = folder(&setup, B, ".answer").join(format!("{A}_{msg_id}.xml"));
    wait_until(
        "B keeps the original for its answer",
        Duration::from_secs(60),
        || kept.exists(),
        logs,
    );
    assert!(folder(&setup, B, "IN")
        .join(format!("{A}_{msg_id}.xml"))
        .exists());
    let shown = |config: &Path| {
        let (ok, shown, stderr) = setup.run(config, &["messages", "show", &msg_id, "--json"]);
        assert!(ok, "{stderr}");
        serde_json::from_str::<serde_json::Value>(&shown).unwrap()
    };
    // Nothing answers it by itself.
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        names(&folder(&setup, A, "SENT"), ".xml").is_empty(),
        "SENT before its AppRec"
    );
    assert_eq!(names(&folder(&setup, A, ".work"), ".xml").len(), 1);
    let receipt = folder(&setup, A, "RECEIPTS").join(format!("{msg_id}.json"));
    assert!(
        !receipt.exists(),
        "an AppRec went without the EHR: {}",
        logs()
    );
    assert_eq!(shown(&b)["state"], "AVAILABLE");
    // Owed past the deadline (0 hours): overdue, as seen at the next start.
    stop_gracefully([&mut serve_b], &logs);
    let mut serve_b = serve(&setup, &b, "b2.log");
    wait_until(
        "B's record overdue",
        Duration::from_secs(30),
        || shown(&b)["overdue"] == true,
        logs,
    );

    // The EHR takes the IN file and answers through APPREC.
    std::fs::remove_file(folder(&setup, B, "IN").join(format!("{A}_{msg_id}.xml"))).unwrap();
    let answer =
        r#"{"status": "2", "errors": [{"code": "E35", "description": "Pasienten er ukjent"}]}"#;
    drop_file(
        &folder(&setup, B, "APPREC"),
        &format!("{msg_id}.json"),
        answer.as_bytes(),
    );
    let receipt = json_when(
        "the AppRec in A's RECEIPTS",
        Duration::from_secs(60),
        &receipt,
        logs,
    );
    assert_eq!(receipt["status"], "2", "{receipt}");
    assert_eq!(receipt["errors"][0]["code"], "E35", "{receipt}");
    assert_eq!(receipt["errors"][0]["description"], "Pasienten er ukjent");
    wait_until(
        "A's record APPREC_REJECTED",
        Duration::from_secs(20),
        || shown(&a)["state"] == "APPREC_REJECTED",
        logs,
    );
    // Rejected by its AppRec: A's file goes to FAILED, saying so.
    let failed = folder(&setup, A, "FAILED").join(format!("asks_{msg_id}.error.json"));
    let failed = json_when("A's file in FAILED", Duration::from_secs(30), &failed, logs);
    assert_eq!(failed["code"], "apprec-rejected", "{failed}");
    assert!(names(&folder(&setup, A, "SENT"), ".xml").is_empty());
    let b_record = shown(&b);
    assert_eq!(b_record["state"], "APPREC_SENT", "{b_record}");
    assert!(
        !kept.exists(),
        "the kept original goes once the answer is sent"
    );
    assert!(folder(&setup, B, "APPREC/SENT")
        .join(format!("{msg_id}.json"))
        .exists());
    // A second answer to the same message is refused, the file kept.
    drop_file(
        &folder(&setup, B, "APPREC"),
        &format!("{msg_id}.json"),
        br#"{"status": "1"}"#,
    );
    let report = folder(&setup, B, "APPREC/FAILED").join(format!("{msg_id}.json.error.json"));
    let report = json_when(
        "the second answer in APPREC/FAILED",
        Duration::from_secs(30),
        &report,
        logs,
    );
    assert_eq!(report["code"], "not-owed", "{report}");
    assert!(folder(&setup, B, "APPREC/FAILED")
        .join(format!("{msg_id}.json"))
        .exists());
    // An answer that names no message we have.
    drop_file(
        &folder(&setup, B, "APPREC"),
        "nobody.json",
        br#"{"status": "1"}"#,
    );
    let report = folder(&setup, B, "APPREC/FAILED").join("nobody.json.error.json");
    wait_until(
        "the stray answer in APPREC/FAILED",
        Duration::from_secs(30),
        || report.exists(),
        logs,
    );

    stop_gracefully([&mut serve_a, &mut serve_b], &logs);
    assert_nothing_half_written(&setup.dir().join("folders"));
}

fn testkit_msghead(msg_id: &str) -> String {
    helsemelding_testkit::payload::msghead(A, B)
        .msg_id(msg_id)
        .ack()
        .build()
}
