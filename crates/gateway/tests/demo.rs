//! `helsemelding demo` as a user runs it: on the embedded local queue, and
//! through the private RabbitMQ of scripts/test with `--broker`. Every step
//! must report its expected outcome, and the exit code must say so.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use helsemelding_store::Store;
use helsemelding_store_sqlite::SqliteStore;
use helsemelding_testkit::block_on;
use helsemelding_testkit::broker::Broker;
use serde_json::Value;

/// Every event the demo must report, in order, each with `ok: true`.
const STEPS: [&str; 11] = [
    "statistics.sent",
    "statistics.delivered",
    "statistics.receipt",
    "dialogue.sent",
    "dialogue.delivered",
    "dialogue.receipt",
    "commtest.sync",
    "commtest.async",
    "spoof.sent",
    "spoof.refused",
    "spoof.reported",
];

fn demo(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_helsemelding"));
    command.arg("demo").args(args);
    command.env_remove("HELSEMELDING_BROKER_PASSWORD");
    for (key, value) in envs {
        command.env(key, value);
    }
    command.output().unwrap()
}

fn json_lines(output: &Output) -> Vec<Value> {
    String::from_utf8(output.stdout.clone())
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}

fn step<'a>(events: &'a [Value], name: &str) -> &'a Value {
    events
        .iter()
        .find(|e| e["step"] == name)
        .unwrap_or_else(|| panic!("no {name} event in {events:#?}"))
}

/// The outcomes a run with parties `[municipality, directorate, gp, attacker]` must report.
fn assert_outcomes(output: &Output, ids: [u64; 4]) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    let events = json_lines(output);
    assert!(output.status.success(), "{events:#?}\n{stderr}");
    let [municipality, directorate, gp, attacker] = ids;
    let names: Vec<&str> = events.iter().map(|e| e["step"].as_str().unwrap()).collect();
    let mut expected: Vec<String> = STEPS.iter().map(|s| s.to_string()).collect();
    expected.extend([municipality, directorate, gp].map(|id| format!("audit.{id}")));
    expected.push("summary".into());
    assert_eq!(names, expected, "{events:#?}");
    for event in &events {
        assert_eq!(event["ok"], true, "{event}");
    }
    assert_eq!(step(&events, "summary")["failed"], serde_json::json!([]));

    for (name, to) in [("statistics", directorate), ("dialogue", gp)] {
        let sent = step(&events, &format!("{name}.sent"));
        let delivered = step(&events, &format!("{name}.delivered"));
        assert_eq!(sent["from"]["her_id"], municipality);
        assert_eq!(sent["to"]["her_id"], to);
        assert!(sent["message_id"].as_str().unwrap().len() == 36, "{sent}");
        assert_eq!(sent["message_id"], delivered["message_id"]);
        let outcome = delivered["outcome"].as_str().unwrap();
        assert!(outcome.contains("byte for byte"), "{outcome}");
        // The receiver's pipeline answered with an AppRec, matched by the sender.
        let receipt = step(&events, &format!("{name}.receipt"));
        assert_eq!(receipt["from"]["her_id"], to);
        assert_eq!(receipt["to"]["her_id"], municipality);
        assert_ne!(receipt["message_id"], sent["message_id"]);
        let outcome = receipt["outcome"].as_str().unwrap();
        assert!(
            outcome.starts_with("status OK")
                && outcome.contains(&format!("matched in {municipality}'s receipts store")),
            "{outcome}"
        );
    }

    for (mode, to) in [("sync", directorate), ("async", gp)] {
        let test = step(&events, &format!("commtest.{mode}"));
        assert_eq!(test["to"]["her_id"], to);
        let outcome = test["outcome"].as_str().unwrap();
        assert!(
            outcome.starts_with("answered in ") && outcome.ends_with("(limit 5 s)"),
            "{outcome}"
        );
    }

    let forged = step(&events, "spoof.sent");
    assert_eq!(forged["from"]["her_id"], attacker);
    assert_eq!(forged["to"]["her_id"], directorate);
    let refused = step(&events, "spoof.refused");
    assert_eq!(refused["message_id"], forged["message_id"]);
    assert_eq!(refused["from"]["her_id"], directorate);
    assert_eq!(refused["to"]["her_id"], municipality);
    let outcome = refused["outcome"].as_str().unwrap();
    assert!(
        outcome.contains("refused: abuse:spoofing-attack"),
        "{outcome}"
    );
    assert!(
        outcome.contains(&format!("{municipality}_error")),
        "{outcome}"
    );
    let reported = step(&events, "spoof.reported");
    assert_eq!(reported["from"]["her_id"], municipality);
    let outcome = reported["outcome"].as_str().unwrap();
    assert!(outcome.contains("abuse:spoofing-attack"), "{outcome}");

    // Sent: 2 messages, 2 communication tests; received: 2 AppRecs, a
    // sync reply and an async test answer; one error report.
    let audit = |id: u64| step(&events, &format!("audit.{id}"))["outcome"].clone();
    assert_eq!(
        audit(municipality),
        "17 events (4 accepted, 2 commtest, 1 error-received, 2 receipt-matched, 4 received, 4 sent), hash chain intact"
    );
    assert_eq!(
        audit(directorate),
        "9 events (2 accepted, 1 commtest, 1 error-reported, 3 received, 2 sent), hash chain intact"
    );
    assert_eq!(
        audit(gp),
        "7 events (2 accepted, 1 commtest, 2 received, 2 sent), hash chain intact"
    );
    assert_no_secrets(output);
}

/// Neither key material nor payload content ever reaches the output.
fn assert_no_secrets(output: &Output) {
    let all = [&output.stdout[..], &output.stderr[..]].concat();
    let all = String::from_utf8_lossy(&all);
    for secret in [
        "PRIVATE KEY",
        "hjemmesykepleie",
        "legemiddelliste",
        "<MsgHead",
    ] {
        assert!(!all.contains(secret), "{secret} in the output:\n{all}");
    }
}

#[test]
fn the_demo_runs_on_the_local_queue_and_reports_every_outcome() {
    let kept = tempfile::tempdir().unwrap();
    let dir = kept.path().join("demo");
    let output = demo(&["--json", "--keep", dir.to_str().unwrap()], &[]);
    assert_outcomes(&output, [91462, 4210, 95950, 66666]);

    // What --keep leaves behind can be inspected with the other commands.
    for path in [
        "pki/ca.pem",
        "pki/ca.crl",
        "pki/91462-signing.pem",
        "registry/parties/66666/signing.pem",
        "queues.sqlite",
    ] {
        assert!(dir.join(path).is_file(), "{path} missing");
    }
    let store = SqliteStore::open(&dir.join("4210.sqlite")).unwrap();
    let report = block_on(store.audit().verify()).unwrap();
    assert!(report.is_intact());
    assert_eq!(report.rows_checked, 9);
    let again = demo(&["--keep", dir.to_str().unwrap()], &[]);
    assert!(!again.status.success(), "a used directory is refused");
    assert!(String::from_utf8_lossy(&again.stderr).contains("not empty"));
}

#[test]
fn the_text_output_reads_one_event_per_line() {
    let output = demo(&[], &[]);
    let text = String::from_utf8(output.stdout.clone()).unwrap();
    assert!(output.status.success(), "{text}");
    let line = |needle: &str| {
        text.lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle:?} in\n{text}"))
            .to_owned()
    };
    let sent = line("IPLOS statistics");
    assert!(
        sent.contains("91462 Eksempel kommune → 4210 Helsedirektoratet"),
        "{sent}"
    );
    // HH:MM:SS.mmm first.
    let time = &sent[..12];
    assert!(
        time.len() == 12 && time.as_bytes()[2] == b':' && time.as_bytes()[8] == b'.',
        "{sent}"
    );
    assert!(line("Mallory AS → 4210").contains("on the queue"));
    assert!(line("refused:").contains("abuse:spoofing-attack"));
    assert_eq!(
        text.lines()
            .filter(|l| l.contains("hash chain intact"))
            .count(),
        3
    );
    assert!(!text.contains("FAILED"));
    assert!(text.contains("Every step had the expected outcome (14 events)."));
    assert_no_secrets(&output);
}

#[test]
fn a_step_without_its_outcome_fails_the_demo_and_is_named() {
    // No time at all to wait: a sync communication test cannot be answered.
    let output = demo(&["--json", "--step-timeout", "0"], &[]);
    assert_eq!(output.status.code(), Some(1));
    let events = json_lines(&output);
    let test = step(&events, "commtest.sync");
    assert_eq!(test["ok"], false);
    assert!(
        test["outcome"]
            .as_str()
            .unwrap()
            .starts_with("not answered"),
        "{test}"
    );
    let summary = step(&events, "summary");
    assert_eq!(summary["ok"], false);
    let failed: Vec<&str> = summary["failed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert!(failed.contains(&"commtest.sync"), "{failed:?}");
    assert_no_secrets(&output);
}

#[test]
fn an_unreachable_broker_fails_within_the_step_timeout() {
    // Port 1 on loopback: nothing listens there.
    let started = Instant::now();
    let output = demo(
        &[
            "--broker",
            "amqp://her@127.0.0.1:1/NHNTestServiceBus",
            "--step-timeout",
            "2",
        ],
        &[],
    );
    assert!(!output.status.success());
    assert!(started.elapsed() < Duration::from_secs(60));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with("helsemelding: setting up the demo: the broker cannot be reached"),
        "{stderr}"
    );
    let refused = demo(&["--broker", "amqp://her:secret@127.0.0.1:1/x"], &[]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("HELSEMELDING_BROKER_PASSWORD"));
}

/// `amqp://user@host:port/<exchange>` of the private broker (the password
/// goes through the environment, as the demo requires).
fn broker_url(broker: &Broker) -> (String, String) {
    let mut url = url::Url::parse(broker.amqp_url()).unwrap();
    let password = url.password().unwrap_or_default().to_owned();
    url.set_password(None).unwrap();
    url.set_path(broker.exchange());
    (url.to_string(), password)
}

fn run_through(url: &str, password: &str, ids: [u64; 4]) -> Output {
    let her_ids = ids.map(|id| id.to_string()).join(",");
    demo(
        &["--broker", url, "--her-ids", &her_ids, "--json"],
        &[("HELSEMELDING_BROKER_PASSWORD", password)],
    )
}

#[test]
fn the_demo_runs_through_rabbitmq() {
    let broker = Broker::from_env();
    let (url, password) = broker_url(&broker);
    // HER-ids of this run only: the queues are the real `<her-id>_*` names.
    let base = 700_000_000 + u64::from(fastrand::u32(0..100_000_000));
    let ids = [base, base + 1, base + 2, base + 3];

    // Without the parties' queues the demo stops before sending, and says which.
    let output = run_through(&url, &password, ids);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!(
            "the broker lacks queues the demo needs: {base}_async, {base}_sync, {base}_error"
        )),
        "{stderr}"
    );

    let _queues: Vec<_> = ids[..3]
        .iter()
        .map(|id| broker.party_queues(u32::try_from(*id).unwrap()))
        .collect();
    let output = run_through(&url, &password, ids);
    assert_outcomes(&output, ids);
    // Everything was taken off the queues.
    for id in &ids[..3] {
        for kind in ["async", "error"] {
            broker.wait_for_count(&format!("{id}_{kind}"), 0, Duration::from_secs(10));
        }
    }
}

#[test]
fn the_demo_runs_through_two_serve_processes_by_the_folders_and_the_api() {
    let kept = tempfile::tempdir().unwrap();
    let dir = kept.path().join("demo");
    let output = demo(&["--serve", "--json", "--keep", dir.to_str().unwrap()], &[]);
    let events = json_lines(&output);
    let summary = step(&events, "summary");
    assert_eq!(summary["ok"], true, "{events:#?}");
    assert!(output.status.success());
    for name in [
        "folder.dropped",
        "folder.delivered",
        "folder.apprec",
        "api.posted",
        "api.read",
        "api.acknowledged",
        "api.apprec",
        "api.commtest",
        "api.refused",
    ] {
        assert_eq!(step(&events, name)["ok"], true, "{name}: {events:#?}");
    }
    let stopped = events
        .iter()
        .filter(|e| e["step"] == "serve.stopped" && e["ok"] == true);
    assert_eq!(stopped.count(), 2, "both exited 0 on SIGTERM");
    assert_no_secrets(&output);
    // The gateways' own records say the same: the kept sandbox holds them.
    assert!(dir.join("sandbox/91462.sqlite").exists());
}
