//! Issue 14's end-to-end test: two `serve` processes (two HER-ids) over
//! the private RabbitMQ, an EHR simulator on each side (this test):
//! - 500 files dropped into one side's OUT (A's gateway SIGKILLed in the
//!   middle and started again) arrive in the other's IN exactly once, byte
//!   for byte; the receiving EHR answers each through APPREC
//!   (`[receipts] automatic = false`), the AppRecs come back into A's
//!   RECEIPTS and every sent message ends APPREC_OK;
//! - the same through the HTTP API: posted on one side; leased, read,
//!   acknowledged and answered on the other; followed on the events feed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use helsemelding_testkit::broker::Broker;

mod common;
use common::{GatewayBroker, Setup};

const TOKEN: &str = "b7e1c0d2a3f4958677889900aabbccddeeff00112233445566778899aabbccdd";
const FILES: usize = 500;
const POSTED: usize = 100;

struct Gateway {
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    base: String,
}

impl Gateway {
    fn start(setup: &Setup, config: &Path, log_name: &str) -> Gateway {
        let log = setup.dir().join(log_name);
        let child = setup
            .command(config)
            .arg("serve")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut gateway = Gateway {
            config: config.to_owned(),
            log,
            child: Some(child),
            base: String::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let said = gateway.log_text();
            if let Some(base) = said.lines().find_map(|l| l.strip_prefix("HTTP API on ")) {
                gateway.base = base.to_owned();
                if gateway.get("/readyz").0 == 200 {
                    return gateway;
                }
            }
            assert!(Instant::now() < deadline, "serve did not start:\n{said}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn request(&self, method: &str, path: &str, body: Option<(&str, Vec<u8>)>) -> (u16, Vec<u8>) {
        runtime().block_on(async {
            let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
            let mut request = client()
                .request(method, format!("{}{path}", self.base))
                .bearer_auth(TOKEN);
            if let Some((content_type, bytes)) = body {
                request = request.header("content-type", content_type).body(bytes);
            }
            match request.send().await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    (status, response.bytes().await.unwrap_or_default().to_vec())
                }
                Err(_) => (0, Vec::new()),
            }
        })
    }

    fn get(&self, path: &str) -> (u16, serde_json::Value) {
        let (status, bytes) = self.request("GET", path, None);
        (status, serde_json::from_slice(&bytes).unwrap_or_default())
    }

    fn post_json(&self, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        let (status, bytes) = self.request(
            "POST",
            path,
            Some(("application/json", body.to_string().into_bytes())),
        );
        (status, serde_json::from_slice(&bytes).unwrap_or_default())
    }

    /// Every record of a direction in a state, all pages.
    fn count(&self, direction: &str, state: &str) -> usize {
        let mut count = 0;
        let mut cursor = 0;
        loop {
            let (status, page) = self.get(&format!(
                "/api/v1/messages?direction={direction}&state={state}&limit=1000&cursor={cursor}"
            ));
            assert_eq!(status, 200, "{page}");
            count += page["messages"].as_array().unwrap().len();
            match page["next_cursor"].as_i64() {
                Some(next) => cursor = next,
                None => return count,
            }
        }
    }

    fn kill(&mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }

    fn terminate(&mut self) {
        let mut child = self.child.take().unwrap();
        let pid = libc::pid_t::try_from(child.id()).unwrap();
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        let deadline = Instant::now() + Duration::from_secs(10);
        let stopped = loop {
            if child.try_wait().unwrap().is_some() || Instant::now() >= deadline {
                break child.try_wait().unwrap().is_some();
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        if !stopped {
            child.kill().unwrap();
        }
        let status = child.wait().unwrap();
        assert!(
            stopped,
            "serve did not stop within 10 s of SIGTERM:\n{}",
            self.log_text()
        );
        assert!(status.success(), "{status}:\n{}", self.log_text());
    }
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RUNTIME.get_or_init(|| tokio::runtime::Runtime::new().unwrap())
}

fn client() -> reqwest::Client {
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    CLIENT
        .get_or_init(|| {
            reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap()
        })
        .clone()
}

fn configure(setup: &Setup, her_id: u32, extra: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    let config = setup.party(her_id);
    let tokens = setup.dir().join(format!("{her_id}.tokens"));
    std::fs::write(&tokens, format!("ehr {TOKEN}\n")).unwrap();
    std::fs::set_permissions(&tokens, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        "[folder]\nroot = \"{}\"\nsettle_ms = 100\n[http]\nlisten = \"127.0.0.1:0\"\ntoken_file = \"{}\"\n{extra}",
        setup.dir().join("folders").display(),
        tokens.display()
    ));
    std::fs::write(&config, text).unwrap();
    config
}

fn folder(setup: &Setup, her_id: u32, name: &str) -> PathBuf {
    setup
        .dir()
        .join("folders")
        .join(her_id.to_string())
        .join(name)
}

fn xml_names(dir: &Path) -> BTreeSet<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return BTreeSet::new();
    };
    entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".xml") && !name.starts_with('.'))
        .collect()
}

fn json_names(dir: &Path) -> BTreeSet<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return BTreeSet::new();
    };
    entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".json"))
        .collect()
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

fn drop_file(out: &Path, name: &str, bytes: &[u8]) {
    let temp = out.join(format!(".{name}.tmp"));
    std::fs::write(&temp, bytes).unwrap();
    std::fs::rename(&temp, out.join(name)).unwrap();
}

fn until(what: &str, within: Duration, logs: &dyn Fn() -> String, mut step: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !step() {
        assert!(
            Instant::now() < deadline,
            "{what} not within {within:?}:\n{}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn five_hundred_files_and_a_hundred_posts_arrive_once_and_their_apprecs_come_back() {
    let broker = Broker::from_env();
    let base = 610_000_000 + (uuid::Uuid::new_v4().as_u128() % 100_000_000) as u32;
    let (a_id, b_id) = (base, base + 1);
    let _queues = [broker.party_queues(a_id), broker.party_queues(b_id)];
    let setup = Setup::new(GatewayBroker::RabbitMq(broker.clone()));
    let a = configure(&setup, a_id, "");
    let b = configure(&setup, b_id, "[receipts]\nautomatic = false\n");
    let mut gateway_b = Gateway::start(&setup, &b, "b.log");
    let mut gateway_a = Gateway::start(&setup, &a, "a1.log");
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
    gateway_a = Gateway::start(&setup, &gateway_a.config.clone(), "a2.log");
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
    let (_, feed) = gateway_a.get("/api/v1/events?after=0&limit=1");
    let mut after = feed["next"].as_i64().unwrap();
    let mut posted = BTreeMap::new();
    for n in 0..POSTED {
        let msg_id = uuid::Uuid::new_v4().to_string();
        let note = helsemelding_testkit::payload::msghead(a_id, b_id)
            .msg_id(&msg_id)
            .ack()
            .note(format!("Via API nr. {n}"))
            .build();
        let (status, body) = gateway_a.request(
            "POST",
            "/api/v1/messages",
            Some(("application/xml", note.clone().into_bytes())),
        );
        assert_eq!(status, 202, "{}", String::from_utf8_lossy(&body));
        posted.insert(msg_id, note);
    }
    let mut answered = BTreeSet::new();
    until(
        "every post answered through B's API",
        Duration::from_secs(180),
        &logs,
        || {
            let (status, leased) =
                gateway_b.post_json("/api/v1/inbox/lease", serde_json::json!({ "limit": 50 }));
            assert_eq!(status, 200, "{leased}");
            for message in leased["messages"].as_array().unwrap() {
                let id = message["id"].as_str().unwrap().to_owned();
                let (status, bytes) =
                    gateway_b.request("GET", &format!("/api/v1/inbox/{id}"), None);
                assert_eq!(status, 200);
                assert_eq!(
                    Some(bytes.as_slice()),
                    posted.get(&id).map(|n| n.as_bytes()),
                    "{id}"
                );
                let (status, acked) =
                    gateway_b.post_json(&format!("/api/v1/inbox/{id}/ack"), serde_json::json!({}));
                assert_eq!(status, 200, "{acked}");
                let (status, sent) = gateway_b.post_json(
                    &format!("/api/v1/inbox/{id}/apprec"),
                    serde_json::json!({ "status": "1" }),
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
            let (_, feed) = gateway_a.get(&format!("/api/v1/events?after={after}&wait=2"));
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
    gateway_a.terminate();
    gateway_b.terminate();
}
