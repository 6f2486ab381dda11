//! `helsemelding queues`: our five queues with message counts on the local
//! transport and on RabbitMQ's management API, and existence only over AMQP
//! when no management URL is configured.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use helsemelding_testkit::broker::Broker;
use helsemelding_testkit::party::Parties;
use helsemelding_transport::local::LocalTransport;
use helsemelding_transport::{Message, Outcome, Transport};
use helsemelding_transport_amqp::{AmqpOptions, AmqpTransport};
use serde_json::Value;

fn queues(config: &Path, json: bool, env: &[(&str, &str)]) -> (bool, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_helsemelding"));
    command.arg("--config").arg(config).arg("queues");
    if json {
        command.arg("--json");
    }
    let output = command.envs(env.iter().copied()).output().unwrap();
    (
        output.status.success(),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

fn json_report(config: &Path, env: &[(&str, &str)]) -> Value {
    let (ok, stdout, stderr) = queues(config, true, env);
    assert!(ok, "queues failed: {stderr}");
    serde_json::from_str(&stdout).unwrap()
}

/// (name, kind, exists, messages) of each queue in the report.
fn rows(report: &Value) -> Vec<(String, String, bool, Option<u64>)> {
    report["queues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| {
            (
                q["name"].as_str().unwrap().to_owned(),
                q["kind"].as_str().unwrap().to_owned(),
                q["exists"].as_bool().unwrap(),
                q["messages"].as_u64(),
            )
        })
        .collect()
}

/// A configuration for `her_id`, whose record (queues `<her_id>_*`, the
/// file registry's default) is in the file registry beside it: our queues
/// are the registry's, never derived.
fn write_config(parties: &Parties, her_id: u32, broker: &str) -> std::path::PathBuf {
    parties
        .party(her_id)
        .name("us")
        .common_names("us")
        .register();
    let path = parties.dir().join("gateway.toml");
    std::fs::write(
        &path,
        format!("her_id = {her_id}\n[broker]\n{broker}\n[registry]\ndir = \"registry\"\n"),
    )
    .unwrap();
    path
}

async fn put(transport: &dyn Transport, queue: &str, count: usize) {
    let mut sender = transport.sender(queue).await.unwrap();
    for i in 0..count {
        let message = Message {
            message_id: Some(format!("queues-test-{i}")),
            body: b"x".to_vec(),
            ..Message::default()
        };
        assert_eq!(sender.send(message).await.unwrap(), Outcome::Accepted);
    }
    sender.close().await.unwrap();
}

#[tokio::test]
async fn local_transport_counts_every_queue() {
    let parties = Parties::new("queues test CA");
    let config = write_config(&parties, 91462, "url = \"local:queues.db\"");
    let transport = LocalTransport::open(parties.dir().join("queues.db")).unwrap();
    put(&transport, "91462_async", 2).await;
    put(&transport, "91462_dl", 1).await;
    put(&transport, "109989_async", 5).await;

    let report = json_report(&config, &[]);
    assert_eq!(report["her_id"], 91462);
    assert_eq!(report["source"], "local");
    let expected = [
        ("91462_async", "async", 2),
        ("91462_sync", "sync", 0),
        ("91462_error", "error", 0),
        ("91462_syncreply", "syncreply", 0),
        ("91462_dl", "dl", 1),
    ];
    let got = rows(&report);
    assert_eq!(got.len(), expected.len());
    for ((name, kind, exists, messages), (want_name, want_kind, want)) in got.iter().zip(expected) {
        assert_eq!(
            (name.as_str(), kind.as_str(), *exists, *messages),
            (want_name, want_kind, true, Some(want))
        );
    }

    let (ok, text, stderr) = queues(&config, false, &[]);
    assert!(ok, "{stderr}");
    let async_line = text.lines().find(|l| l.contains("91462_async")).unwrap();
    assert!(async_line.trim_end().ends_with('2'), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_counts_through_the_management_api_and_checks_existence_without_it() {
    let broker = Broker::from_env();
    let her_id = 700_000_000 + fastrand::u32(0..100_000_000);
    let _queues = broker.party_queues(her_id);
    let transport = AmqpTransport::new(
        &format!("{}/{}", broker.amqp_url(), broker.exchange()),
        AmqpOptions::default(),
    )
    .unwrap();
    put(&transport, &format!("{her_id}_async"), 3).await;
    transport.close().await.unwrap();

    let parties = Parties::new("queues test CA");
    let (user, password) = broker.credentials();
    let mut amqp = url::Url::parse(broker.amqp_url()).unwrap();
    amqp.set_password(None).unwrap();
    amqp.set_username(user).unwrap();
    amqp.set_path(broker.exchange());
    let env = [("HELSEMELDING_BROKER_PASSWORD", password)];
    let with_management = write_config(
        &parties,
        her_id,
        &format!(
            "url = \"{amqp}\"\nmanagement_url = \"{}\"",
            broker.management_url()
        ),
    );
    // The management statistics lag the queue a little.
    let deadline = Instant::now() + Duration::from_secs(30);
    let report = loop {
        let report = json_report(&with_management, &env);
        if rows(&report)[0].3 == Some(3) || Instant::now() > deadline {
            break report;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(report["source"], "management");
    let got = rows(&report);
    assert_eq!(
        got[0],
        (format!("{her_id}_async"), "async".into(), true, Some(3))
    );
    for (name, _, exists, messages) in &got[1..] {
        assert!(*exists, "{name}");
        assert_eq!(*messages, Some(0), "{name}");
    }

    let wrong = [("HELSEMELDING_BROKER_PASSWORD", "wrong-password")];
    let (ok, _, stderr) = queues(&with_management, true, &wrong);
    assert!(!ok && stderr.contains("401"), "{stderr}");
    assert!(!stderr.contains("wrong-password"), "{stderr}");

    // Without the management API: existence only, and a missing queue says so.
    let without = Parties::new("queues test CA");
    let amqp_only = write_config(&without, her_id, &format!("url = \"{amqp}\""));
    let report = json_report(&amqp_only, &env);
    assert_eq!(report["source"], "amqp");
    for (name, _, exists, messages) in rows(&report) {
        assert!(exists, "{name}");
        assert_eq!(messages, None);
    }
    let nobody = Parties::new("queues test CA");
    let missing = write_config(&nobody, her_id + 1, &format!("url = \"{amqp}\""));
    let report = json_report(&missing, &env);
    assert!(rows(&report).iter().all(|(_, _, exists, _)| !exists));
}
