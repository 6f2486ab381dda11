//! `helsemelding --config F config`: the effective configuration, secrets hidden.

use std::process::Command;

fn helsemelding() -> Command {
    Command::new(env!("CARGO_BIN_EXE_helsemelding"))
}

#[test]
fn shows_the_effective_configuration_without_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gw.toml");
    std::fs::write(
        &path,
        "her_id = 91462\n[broker]\nurl = \"amqp://her@127.0.0.1:5672/NHNTestServiceBus\"\n[registry]\ndir = \"reg\"\n",
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("reg")).unwrap();
    let output = helsemelding()
        .args(["--config", path.to_str().unwrap(), "config", "--json"])
        .env("HELSEMELDING_BROKER_PASSWORD", "hunter2")
        .env("HELSEMELDING_TRUST_REVOCATION", "warn")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(!stdout.contains("hunter2"));
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(json["her_id"], 91462);
    assert_eq!(json["broker"]["exchange"], "NHNTestServiceBus");
    assert_eq!(json["broker"]["password"], "set");
    assert_eq!(json["trust"]["revocation"], "warn");
    // Not derived from the HER-id: the registry's syncreply queue is used.
    assert_eq!(json["reply_queue"], serde_json::Value::Null);
    assert_eq!(json["her_ids"], serde_json::json!([91462]));
    assert_eq!(json["receive"]["strict_message_functions"], false);
    assert_eq!(json["send"]["payload_metadata"], true);
}

#[test]
fn a_bad_key_fails_with_one_line_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gw.toml");
    std::fs::write(&path, "her_id = 91462\n[broker]\nurl = \"local:q.db\"\ncolour = \"red\"\n[registry]\ndir = \"reg\"\n").unwrap();
    let output = helsemelding()
        .args(["--config", path.to_str().unwrap(), "config"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("colour"), "{stderr}");
}

/// Issue 12, finding 6: a registry that is not there would make `listen`
/// bounce every valid message as missing-certificate. Refused at start.
#[test]
fn a_registry_dir_that_does_not_exist_is_refused_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gw.toml");
    std::fs::write(
        &path,
        "her_id = 91462\n[broker]\nurl = \"local:q.db\"\n[registry]\ndir = \"reg\"\n",
    )
    .unwrap();
    let out = dir.path().join("out");
    let output = helsemelding()
        .args([
            "--config",
            path.to_str().unwrap(),
            "listen",
            "--idle-exit",
            "1",
        ])
        .arg("--out-dir")
        .arg(&out)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("key registry.dir"), "{stderr}");
    let missing = dir.path().join("reg");
    assert!(stderr.contains(&missing.display().to_string()), "{stderr}");
    assert!(!missing.exists(), "the registry was created: {stderr}");
    assert!(
        !dir.path().join("q.db").exists(),
        "the queue was opened: {stderr}"
    );
}
