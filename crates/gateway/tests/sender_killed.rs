//! Issue 7: a sender killed between its outbox and the broker. With the
//! broker down, `helsemelding send` records the protected message in its
//! outbox and keeps retrying the transfer; it is SIGKILLed there. Once the
//! broker is back, `helsemelding outbox flush` sends it with the same
//! message id, a later `send` does not send it again, and the receiver's
//! `listen` gets it exactly once, byte for byte.
//!
//! Separate processes, the private RabbitMQ of scripts/test; its own test
//! binary with one test, because it stops the broker.

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use helsemelding_testkit::broker::Broker;

mod common;
use common::{msghead, GatewayBroker, Setup};

const WAIT: Duration = Duration::from_secs(30);

/// Starts the broker again if the test fails while it is down, so that the
/// test binaries after this one still have one.
struct BrokerDown(Broker);

impl Drop for BrokerDown {
    fn drop(&mut self) {
        self.0.start();
    }
}

fn send_args(to: u32, file: &Path) -> Vec<String> {
    vec![
        "send".into(),
        "--to".into(),
        to.to_string(),
        "--function".into(),
        "DIALOG_INNBYGGER_TEST".into(),
        file.display().to_string(),
    ]
}

#[test]
fn a_send_killed_before_the_broker_accepted_is_sent_once_after_the_broker_is_back() {
    let broker = Broker::from_env();
    let base = 600_000_000 + (uuid::Uuid::new_v4().as_u128() % 100_000_000) as u32;
    let (a_id, b_id) = (base, base + 1);
    let _queues = [broker.party_queues(a_id), broker.party_queues(b_id)];
    let setup = Setup::new(GatewayBroker::RabbitMq(broker.clone()));
    let a = setup.party(a_id);
    let b = setup.party(b_id);
    let payload = msghead(a_id, b_id);
    let payload_file = setup.dir().join("note.xml");
    std::fs::write(&payload_file, &payload).unwrap();

    broker.stop();
    let down = BrokerDown(broker.clone());
    let sender_log = setup.dir().join("send.log");
    let mut sender = setup
        .command(&a)
        .args(send_args(b_id, &payload_file))
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&sender_log).unwrap())
        .spawn()
        .unwrap();
    // Wait until the message is in the outbox (the operator's view of it).
    let deadline = Instant::now() + WAIT;
    let pending = loop {
        if let Some(status) = sender.try_wait().unwrap() {
            let log = std::fs::read_to_string(&sender_log).unwrap_or_default();
            panic!("send ended ({status}) while the broker was down: {log}");
        }
        let (ok, stdout, _) = setup.run(&a, &["outbox", "list", "--json"]);
        if ok {
            let rows: serde_json::Value = serde_json::from_str(&stdout).unwrap();
            if rows.as_array().is_some_and(|rows| !rows.is_empty()) {
                break rows;
            }
        }
        assert!(Instant::now() < deadline, "nothing reached the outbox");
        std::thread::sleep(Duration::from_millis(100));
    };
    sender.kill().unwrap(); // SIGKILL, mid-transfer
    let output = sender.wait_with_output().unwrap();
    assert_eq!(output.status.signal(), Some(libc::SIGKILL));
    assert!(
        output.stdout.is_empty(),
        "send must not have reported an id"
    );
    let rows = pending.as_array().unwrap();
    assert_eq!(rows.len(), 1, "{pending}");
    let id = rows[0]["message_id"].as_str().unwrap().to_owned();
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
    assert_eq!(rows[0]["to_her_id"], b_id);
    assert_eq!(rows[0]["queue"], format!("{b_id}_async"));
    assert_eq!(rows[0]["function"], "DIALOG_INNBYGGER_TEST");

    drop(down); // the broker starts again
    let b_async = format!("{b_id}_async");
    assert_eq!(broker.message_count(&b_async), 0, "nothing got through");

    let (ok, stdout, stderr) = setup.run(&a, &["outbox", "flush"]);
    assert!(ok, "outbox flush failed: {stderr}");
    assert_eq!(stdout.trim(), "sent 1; 0 pending");
    let (ok, stdout, _) = setup.run(&a, &["outbox", "flush"]);
    assert!(ok);
    assert_eq!(stdout.trim(), "sent 0; 0 pending", "sent once");
    let (ok, stdout, _) = setup.run(&a, &["outbox", "list"]);
    assert!(ok);
    assert_eq!(stdout.trim(), "the outbox is empty");
    broker.wait_for_count(&b_async, 1, Duration::from_secs(5));

    // The next send flushes first: nothing is left to send twice.
    let later = setup.dir().join("later.xml");
    let later_payload = msghead(a_id, b_id).replace("Hei", "Hei igjen");
    std::fs::write(&later, &later_payload).unwrap();
    let args = send_args(b_id, &later);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, stdout, stderr) = setup.run(&a, &args);
    assert!(ok, "send failed: {stderr}");
    let later_id = stdout.trim().to_owned();
    broker.wait_for_count(&b_async, 2, Duration::from_secs(5));

    let out = setup.dir().join("out");
    let stderr = setup.listen_until_idle(&b, &out);
    for (message_id, bytes) in [(&id, &payload), (&later_id, &later_payload)] {
        let hand_overs = common::hand_overs(&stderr, message_id);
        assert_eq!(hand_overs, 1, "{message_id}: {stderr}");
        assert_eq!(
            std::fs::read(out.join(format!("{message_id}.xml"))).unwrap(),
            bytes.as_bytes()
        );
    }
    broker.wait_for_count(&b_async, 0, Duration::from_secs(5));
    assert_eq!(broker.message_count(&format!("{a_id}_error")), 0);
}
