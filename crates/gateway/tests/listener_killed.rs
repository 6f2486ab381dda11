//! Issue 7: a receiver killed mid-processing. `helsemelding listen` takes
//! the delivery but cannot finish it (its out dir cannot take the file, so
//! the handler asks for a retry and the worker holds the unsettled delivery
//! during its backoff); it is SIGKILLed; a fresh `listen` with a good out
//! dir then receives the same message id exactly once, byte for byte.
//! Separate processes, the private RabbitMQ of scripts/test.

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use helsemelding_store::audit::{AuditFilter, AuditKind};
use helsemelding_store::Store;
use helsemelding_store_sqlite::SqliteStore;
use helsemelding_testkit::block_on;
use helsemelding_testkit::broker::Broker;

mod common;
use common::{msghead, GatewayBroker, Setup};

const WAIT: Duration = Duration::from_secs(30);

/// How many times the receiver's pipeline took delivery of `id` (audit).
fn deliveries_taken(store: &dyn Store, id: &str, kind: AuditKind) -> Vec<String> {
    block_on(store.audit().list(&AuditFilter {
        message_id: Some(id.to_owned()),
        ..AuditFilter::default()
    }))
    .unwrap()
    .into_iter()
    .filter(|record| record.event.kind == kind)
    .map(|record| record.event.outcome)
    .collect()
}

fn wait_until(what: &str, child: &mut Child, log: &Path, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        if let Some(status) = child.try_wait().unwrap() {
            let log = std::fs::read_to_string(log).unwrap_or_default();
            panic!("the listener exited ({status}) before {what}: {log}");
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_listener_killed_while_holding_a_delivery_leaves_it_for_the_next_exactly_once() {
    let broker = Broker::from_env();
    let (a_id, b_id) = {
        let base = 700_000_000 + random_offset();
        (base, base + 1)
    };
    let _queues = [broker.party_queues(a_id), broker.party_queues(b_id)];
    let setup = Setup::new(GatewayBroker::RabbitMq(broker.clone()));
    let a = setup.party(a_id);
    let b = setup.party(b_id);
    let payload = msghead(a_id, b_id);
    let payload_file = setup.dir().join("note.xml");
    std::fs::write(&payload_file, &payload).unwrap();
    let b_async = format!("{b_id}_async");

    let (ok, stdout, stderr) = setup.run(
        &a,
        &[
            "send",
            "--to",
            &b_id.to_string(),
            "--function",
            "DIALOG_INNBYGGER_TEST",
            payload_file.to_str().unwrap(),
        ],
    );
    assert!(ok, "send failed: {stderr}");
    let id = stdout.trim().to_string();
    broker.wait_for_count(&b_async, 1, Duration::from_secs(5));

    // An out dir that cannot take this message: where its file is written
    // first (`<id>.part`) there is a directory (EISDIR, even for root).
    let blocked = setup.dir().join("blocked");
    std::fs::create_dir_all(blocked.join(format!("{id}.part"))).unwrap();
    let first_log = setup.dir().join("first-listen.log");
    let mut first = setup
        .command(&b)
        .args(["listen", "--workers", "1", "--out-dir"])
        .arg(&blocked)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&first_log).unwrap())
        .spawn()
        .unwrap();
    let store = SqliteStore::open(&setup.store_path(b_id)).unwrap();
    // The second delivery proves the first one failed in the handler and
    // was released; the worker now holds the second during its backoff.
    wait_until("the second delivery", &mut first, &first_log, || {
        deliveries_taken(&store, &id, AuditKind::Received).len() >= 2
    });
    first.kill().unwrap(); // SIGKILL
    let status = first.wait().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status}");
    assert!(!blocked.join(format!("{id}.xml")).exists());
    assert!(deliveries_taken(&store, &id, AuditKind::Accepted).is_empty());
    // The broker gives the unsettled delivery back when the connection dies.
    broker.wait_for_count(&b_async, 1, Duration::from_secs(10));

    let good = setup.dir().join("good");
    let stderr = setup.listen_until_idle(&b, &good);
    assert_eq!(common::hand_overs(&stderr, &id), 1, "{stderr}");
    assert_eq!(
        std::fs::read(good.join(format!("{id}.xml"))).unwrap(),
        payload.as_bytes()
    );
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(good.join(format!("{id}.json"))).unwrap()).unwrap();
    assert_eq!(meta["message_id"], id.as_str());
    assert_eq!(meta["from_her_id"], a_id);
    assert_eq!(
        deliveries_taken(&store, &id, AuditKind::Accepted),
        vec!["ok"]
    );
    broker.wait_for_count(&b_async, 0, Duration::from_secs(5));
    assert_eq!(broker.message_count(&format!("{a_id}_error")), 0);
}

/// A per-run random offset for the HER-ids (their queues are per test).
fn random_offset() -> u32 {
    uuid::Uuid::new_v4().as_u128() as u32 % 100_000_000
}
