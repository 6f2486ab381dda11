//! Issue 14's end-to-end test: two `serve` processes (two HER-ids) over
//! the private RabbitMQ, an EHR simulator on each side (this test):
//! - 500 files dropped into one side's OUT (to SENT once their AppRec
//!   says OK; A's gateway SIGKILLed in the
//!   middle and started again) arrive in the other's IN exactly once, byte
//!   for byte; the receiving EHR answers each through APPREC
//!   (`[receipts] automatic = false`), the AppRecs come back into A's
//!   RECEIPTS and every sent message ends APPREC_OK;
//! - the same through the HTTP API: posted on one side; leased, read,
//!   acknowledged and answered on the other; followed on the events feed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use helsemelding_testkit::broker::Broker;

mod common;
use common::served::{drop_file, folder, names, wait_until, with_folder_and_api, Served};
use common::{GatewayBroker, Setup};

const FILES: usize = 500;
const POSTED: usize = 100;

fn xml_names(dir: &Path) -> BTreeSet<String> {
    names(dir, ".xml")
}

fn json_names(dir: &Path) -> BTreeSet<String> {
    names(dir, ".json")
}

/// The receiving EHR at its folders: each new IN file read, answered in
/// APPREC and taken away; a message seen twice fails the test.
struct FolderEhr {
    inbox: PathBuf,
    apprec: PathBuf,
    sender: u32,
    seen: BTreeMap<String, Vec<u8>>,
}

impl FolderEhr {
    fn step(&mut self) {
        for name in xml_names(&self.inbox) {
            let path = self.inbox.join(&name);
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            let msg_id = name
                .strip_prefix(&format!("{}_", self.sender))
                .and_then(|rest| rest.strip_suffix(".xml"))
                .unwrap()
                .to_owned();
            assert!(
                !self.seen.contains_key(&msg_id),
                "{msg_id} was written to IN twice"
            );
            let temp = self.apprec.join(format!(".{msg_id}.tmp"));
            std::fs::write(&temp, br#"{"status": "1"}"#).unwrap();
            std::fs::rename(&temp, self.apprec.join(format!("{msg_id}.json"))).unwrap();
            std::fs::remove_file(&path).unwrap();
            let _ = std::fs::remove_file(path.with_extension("json"));
            self.seen.insert(msg_id, bytes);
        }
    }
}

fn until(what: &str, within: Duration, logs: &dyn Fn() -> String, step: impl FnMut() -> bool) {
    wait_until(what, within, step, logs)
}

#[test]
fn five_hundred_files_and_a_hundred_posts_arrive_once_and_their_apprecs_come_back() {
    let broker = Broker::from_env();
    let base = 610_000_000 + (uuid::Uuid::new_v4().as_u128() % 100_000_000) as u32;
    let (a_id, b_id) = (base, base + 1);
    let _queues = [broker.party_queues(a_id), broker.party_queues(b_id)];
    let setup = Setup::new(GatewayBroker::RabbitMq(broker.clone()));
    let a = with_folder_and_api(&setup, a_id, "");
    // A's files go to SENT once their AppRec says OK: SENT then counts
    // the answers too, and the kill leaves files waiting for theirs.
    let text = std::fs::read_to_string(&a).unwrap();
    let text = text.replace(
        "settle_ms = 100\n",
        "settle_ms = 100\nsent_after = \"apprec\"\n",
    );
    std::fs::write(&a, text).unwrap();
    let b = with_folder_and_api(&setup, b_id, "[receipts]\nautomatic = false\n");
    let gateway_b = Served::start(&setup, &b, "b");
    let mut gateway_a = Served::start(&setup, &a, "a1");
    let logs_dir = setup.dir().to_owned();
    let logs = move || {
        ["a1.log", "a2.log", "b.log"]
            .iter()
            .map(|n| {
                format!(
                    "{n}:\n{}\n",
                    std::fs::read_to_string(logs_dir.join(n)).unwrap_or_default()
                )
            })
            .collect::<String>()
    };

    // Through the folders, A killed in the middle of the stream.
    let notes: Vec<(String, String)> = (0..FILES)
        .map(|n| {
            let msg_id = uuid::Uuid::new_v4().to_string();
            let note = helsemelding_testkit::payload::msghead(a_id, b_id)
                .msg_id(&msg_id)
                .ack()
                .note(format!("Notat nr. {n}, æøå"))
                .build();
            (msg_id, note)
        })
        .collect();
    let out = folder(&setup, a_id, "OUT");
    for (n, (_, note)) in notes.iter().enumerate() {
        drop_file(&out, &format!("note-{n}.xml"), note.as_bytes());
    }
    let mut ehr = FolderEhr {
        inbox: folder(&setup, b_id, "IN"),
        apprec: folder(&setup, b_id, "APPREC"),
        sender: a_id,
        seen: BTreeMap::new(),
    };
    let sent = folder(&setup, a_id, "SENT");
    until("a fifth sent", Duration::from_secs(120), &logs, || {
        ehr.step();
        xml_names(&sent).len() >= FILES / 5
    });
    gateway_a.kill();
    assert!(xml_names(&sent).len() < FILES, "all sent before the kill");
    let gateway_a = Served::start(&setup, &a, "a2");
    let receipts = folder(&setup, a_id, "RECEIPTS");
    until(
        "every note in B's IN and answered",
        Duration::from_secs(300),
        &logs,
        || {
            ehr.step();
            ehr.seen.len() >= FILES && json_names(&receipts).len() >= FILES
        },
    );
    for (msg_id, note) in &notes {
        assert_eq!(
            ehr.seen.get(msg_id).map(Vec::as_slice),
            Some(note.as_bytes()),
            "{msg_id}"
        );
    }
    until(
        "every file in A's SENT",
        Duration::from_secs(180),
        &logs,
        || xml_names(&sent).len() >= FILES,
    );
    assert_eq!(xml_names(&sent).len(), FILES, "{}", logs());
    assert!(xml_names(&out).is_empty() && xml_names(&folder(&setup, a_id, ".work")).is_empty());
    until(
        "every sent message APPREC_OK",
        Duration::from_secs(60),
        &logs,
        || gateway_a.count("out", "APPREC_OK") == FILES,
    );
    assert_eq!(gateway_b.count("in", "APPREC_SENT"), FILES);
    assert_eq!(
        json_names(&folder(&setup, b_id, "APPREC/SENT")).len(),
        FILES
    );

    // Through the API: posted on A; leased, read, acknowledged, answered on B.
    let (_, feed) = gateway_a.json("GET", "/api/v1/events?after=0&limit=1", None);
    let mut after = feed["next"].as_i64().unwrap();
    let mut posted = BTreeMap::new();
    for n in 0..POSTED {
        let msg_id = uuid::Uuid::new_v4().to_string();
        let note = helsemelding_testkit::payload::msghead(a_id, b_id)
            .msg_id(&msg_id)
            .ack()
            .note(format!("Via API nr. {n}"))
            .build();
        let body = Some(("application/xml", note.clone().into_bytes()));
        let (status, _, body) = gateway_a.call("POST", "/api/v1/messages", body, None);
        assert_eq!(status, 202, "{}", String::from_utf8_lossy(&body));
        posted.insert(msg_id, note);
    }
    let mut answered = BTreeSet::new();
    until(
        "every post answered through B's API",
        Duration::from_secs(180),
        &logs,
        || {
            let (status, leased) = gateway_b.json(
                "POST",
                "/api/v1/inbox/lease",
                Some(serde_json::json!({ "limit": 50 })),
            );
            assert_eq!(status, 200, "{leased}");
            for message in leased["messages"].as_array().unwrap() {
                let id = message["id"].as_str().unwrap().to_owned();
                let (status, _, bytes) =
                    gateway_b.call("GET", &format!("/api/v1/inbox/{id}"), None, None);
                assert_eq!(status, 200);
                assert_eq!(
                    Some(bytes.as_slice()),
                    posted.get(&id).map(|n| n.as_bytes()),
                    "{id}"
                );
                let (status, acked) =
                    gateway_b.json("POST", &format!("/api/v1/inbox/{id}/ack"), None);
                assert_eq!(status, 200, "{acked}");
                let (status, sent) = gateway_b.json(
                    "POST",
                    &format!("/api/v1/inbox/{id}/apprec"),
                    Some(serde_json::json!({ "status": "1" })),
                );
                assert_eq!(status, 200, "{sent}");
                assert!(answered.insert(id), "leased twice");
            }
            answered.len() == POSTED
        },
    );
    let mut come_back = BTreeSet::new();
    until(
        "every post APPREC_OK on A's events feed",
        Duration::from_secs(60),
        &logs,
        || {
            let (_, feed) =
                gateway_a.json("GET", &format!("/api/v1/events?after={after}&wait=2"), None);
            for event in feed["events"].as_array().unwrap() {
                if event["state"] == "APPREC_OK" {
                    come_back.insert(event["id"].as_str().unwrap().to_owned());
                }
            }
            after = feed["next"].as_i64().unwrap();
            posted.keys().all(|id| come_back.contains(id))
        },
    );
    assert_eq!(gateway_a.count("out", "APPREC_OK"), FILES + POSTED);
    gateway_a.stop();
    gateway_b.stop();
}
