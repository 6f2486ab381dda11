//! `helsemelding send` from one party and `helsemelding listen` on the
//! other, over the local transport: the payload arrives byte for byte.

mod common;
use common::{msghead, GatewayBroker, Setup};

#[test]
fn send_then_listen_delivers_the_payload_byte_for_byte() {
    let setup = Setup::new(GatewayBroker::Local);
    let a = setup.party(91462);
    let b = setup.party(109989);
    let payload = msghead(91462, 109989);
    let payload_file = setup.dir().join("note.xml");
    std::fs::write(&payload_file, &payload).unwrap();

    let (ok, stdout, stderr) = setup.run(
        &a,
        &[
            "send",
            "--to",
            "109989",
            "--function",
            "DIALOG_INNBYGGER_TEST",
            payload_file.to_str().unwrap(),
        ],
    );
    assert!(ok, "send failed: {stderr}");
    let id = stdout.trim().to_string();
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "{stdout}");

    let out = setup.dir().join("out");
    let (ok, _, stderr) = setup.run(
        &b,
        &[
            "listen",
            "--out-dir",
            out.to_str().unwrap(),
            "--count",
            "1",
            "--idle-exit",
            "30",
        ],
    );
    assert!(ok, "listen failed: {stderr}");
    let received = std::fs::read(out.join(format!("{id}.xml"))).unwrap();
    assert_eq!(received, payload.as_bytes());
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join(format!("{id}.json"))).unwrap()).unwrap();
    assert_eq!(meta["from_her_id"], 91462);
    assert_eq!(meta["to_her_id"], 109989);
    assert_eq!(meta["function"], "DIALOG_INNBYGGER_TEST");
    assert_eq!(meta["message_id"], id.as_str());
    assert_eq!(
        meta["metadata"]["X-MessageInfo-Type"],
        "DIALOG_INNBYGGER_TEST"
    );
}

/// `commtest` against a party whose `listen` runs: both paths answer in
/// time; `send --sync` to a listener that does not answer sync requests
/// fails after its timeout with a clear error.
#[test]
fn commtest_and_sync_send_against_a_running_listener() {
    let setup = Setup::new(GatewayBroker::Local);
    let a = setup.party(91462);
    let b = setup.party(109989);
    let out = setup.dir().join("out");
    let mut listener = setup
        .command(&b)
        .args(["listen", "--idle-exit", "60", "--out-dir"])
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();

    for mode in ["--sync", "--async"] {
        let (ok, stdout, stderr) = setup.run(&a, &["commtest", "--to", "109989", mode, "--json"]);
        assert!(ok, "commtest {mode} failed: {stdout} {stderr}");
        let result: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
        assert_eq!(result["passed"], true, "{result}");
        assert_eq!(result["mode"], &mode[2..]);
        let ms = result["round_trip_ms"].as_f64().unwrap();
        assert!(ms > 0.0 && ms < 5000.0, "{result}");
    }
    // A limit nobody can meet fails, with the time still reported.
    let (ok, stdout, _) = setup.run(&a, &["commtest", "--to", "109989", "--limit", "0.0001"]);
    assert!(!ok);
    assert!(stdout.contains("slower than the limit"), "{stdout}");

    let payload_file = setup.dir().join("note.xml");
    std::fs::write(&payload_file, msghead(91462, 109989)).unwrap();
    let started = std::time::Instant::now();
    let (ok, stdout, stderr) = setup.run(
        &a,
        &[
            "send",
            "--to",
            "109989",
            "--function",
            "DIALOG_INNBYGGER_TEST",
            "--sync",
            "--timeout",
            "2",
            payload_file.to_str().unwrap(),
        ],
    );
    assert!(!ok, "{stdout}");
    assert!(stdout.is_empty());
    assert!(stderr.contains("no reply from HER-id 109989"), "{stderr}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    // The listener wrote nothing: tests and refused requests are not messages.
    let written = std::fs::read_dir(&out).map(|d| d.count()).unwrap_or(0);
    assert_eq!(written, 0);
    listener.kill().unwrap();
    listener.wait().unwrap();
}

/// Finding 9: `listen --out-dir` naming a file says so, with the path
/// (it said `File exists (os error 17)`).
#[test]
fn listen_into_a_file_names_it_and_says_it_is_not_a_directory() {
    let setup = Setup::new(GatewayBroker::Local);
    let b = setup.party(109989);
    let file = setup.dir().join("inbox.txt");
    std::fs::write(&file, b"x").unwrap();
    let (ok, _, stderr) = setup.run(
        &b,
        &[
            "listen",
            "--out-dir",
            file.to_str().unwrap(),
            "--idle-exit",
            "1",
        ],
    );
    assert!(!ok);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains(&format!("--out-dir {}: is not a directory", file.display())),
        "{stderr}"
    );
    assert!(!stderr.contains("os error 17"), "{stderr}");
}
