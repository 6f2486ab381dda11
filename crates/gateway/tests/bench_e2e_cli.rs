//! `helsemelding bench e2e --json` runs the whole stack on the local
//! transport and on the private RabbitMQ and reports every figure. The ratio
//! itself is not asserted: the CI machine is loaded.

use std::process::Command;

use helsemelding_testkit::broker::Broker;
use serde_json::Value;

fn bench(extra: &[&str], env: &[(&str, &str)]) -> Value {
    let output = Command::new(env!("CARGO_BIN_EXE_helsemelding"))
        .args(["bench", "e2e", "--messages", "200", "--json"])
        .args(extra)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "bench e2e failed: {stderr}");
    serde_json::from_slice(&output.stdout).unwrap()
}

fn assert_figures(report: &Value, transport: &str) {
    assert_eq!(report["transport"], transport);
    assert_eq!(report["messages"], 200);
    assert_eq!(report["size"], 4096);
    for figure in ["e2e_per_s", "raw_per_s", "crypto_per_s", "ratio"] {
        let value = report[figure].as_f64().unwrap_or(-1.0);
        assert!(
            value > 0.0 && value.is_finite(),
            "{figure} = {value} in {report}"
        );
    }
    let (e2e, raw, crypto) = (
        report["e2e_per_s"].as_f64().unwrap(),
        report["raw_per_s"].as_f64().unwrap(),
        report["crypto_per_s"].as_f64().unwrap(),
    );
    let ratio = report["ratio"].as_f64().unwrap();
    assert!((ratio - e2e / raw.min(crypto)).abs() < 1e-9, "{report}");
    assert_eq!(report["goal"], 0.7);
}

#[test]
fn local_transport() {
    assert_figures(&bench(&[], &[]), "local");
}

#[test]
fn rabbitmq() {
    let broker = Broker::from_env();
    let base = 600_000_000 + fastrand::u32(0..100_000_000);
    let _queues = [broker.party_queues(base), broker.party_queues(base + 1)];
    let (user, password) = broker.credentials();
    let mut url = url::Url::parse(broker.amqp_url()).unwrap();
    url.set_password(None).unwrap();
    url.set_username(user).unwrap();
    url.set_path(broker.exchange());
    let her_ids = format!("{base},{}", base + 1);
    let report = bench(
        &["--broker", url.as_str(), "--her-ids", &her_ids],
        &[("HELSEMELDING_BROKER_PASSWORD", password)],
    );
    assert_figures(&report, "amqp");
    // Every message was taken off the queue (the statistics lag a little).
    broker.wait_for_count(
        &format!("{}_async", base + 1),
        0,
        std::time::Duration::from_secs(20),
    );
}
