//! Issue 12, finding 4: systemd stops `listen` with SIGTERM. With messages
//! flowing (a sender keeps sending, each MsgHead asks for an AppRec), the
//! listener is sent SIGTERM: it stops taking deliveries, lets the hand-over
//! in hand finish and exits 0 within a bound, leaving no `.part` file. A
//! second `listen` then takes the rest: every message is in the out dir
//! exactly once, and the sender got exactly one AppRec per message.
//! Separate processes over the local transport.

use std::collections::HashSet;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{GatewayBroker, Setup};

/// How long `listen` may take to stop after SIGTERM (its drain is 10 s).
const STOP_BOUND: Duration = Duration::from_secs(20);
const MESSAGES: usize = 30;

/// A MsgHead from `from` to `to` with its own MsgId, asking for an AppRec.
fn msghead_wanting_receipt(from: u32, to: u32, n: usize) -> String {
    let msg_id = uuid::Uuid::new_v4();
    common::msghead(from, to)
        .replace(
            "<MsgId>2b1c7c86-64a4-4a38-a1b4-0f4f4b5d2c11</MsgId>",
            &format!("<MsgId>{msg_id}</MsgId>\n    <Ack V=\"J\" DN=\"Ja\" />"),
        )
        .replace("Hei, æøå", &format!("Hei nr. {n}, æøå"))
}

fn wait_for_exit(child: &mut Child, bound: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + bound;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// The files in `dir` whose name ends with `suffix`.
fn files_ending(dir: &Path, suffix: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(suffix))
        .collect()
}

#[test]
fn sigterm_drains_listen_and_a_restart_hands_over_each_message_once() {
    let setup = Setup::new(GatewayBroker::Local);
    let (a_id, b_id) = (8_142_001, 8_142_002);
    let a = setup.party(a_id);
    let b = setup.party(b_id);
    let dir = setup.dir().to_path_buf();

    // The sender sends while the listener runs; each payload is its own.
    let payloads: Vec<String> = (0..MESSAGES)
        .map(|n| msghead_wanting_receipt(a_id, b_id, n))
        .collect();
    for (n, payload) in payloads.iter().enumerate() {
        std::fs::write(dir.join(format!("note-{n}.xml")), payload).unwrap();
    }
    let sending = {
        let (a, dir) = (a.clone(), dir.clone());
        let binary = env!("CARGO_BIN_EXE_helsemelding");
        std::thread::spawn(move || {
            let mut ids = Vec::new();
            for n in 0..MESSAGES {
                let output = std::process::Command::new(binary)
                    .arg("--config")
                    .arg(&a)
                    .args(["send", "--to", &b_id.to_string()])
                    .arg(dir.join(format!("note-{n}.xml")))
                    .output()
                    .unwrap();
                assert!(
                    output.status.success(),
                    "send {n} failed: {}",
                    String::from_utf8_lossy(&output.stderr)
                );
                ids.push(String::from_utf8(output.stdout).unwrap().trim().to_owned());
            }
            ids
        })
    };

    let out = dir.join("out");
    let first_log = dir.join("first-listen.log");
    let mut first = setup
        .command(&b)
        .args(["listen", "--out-dir"])
        .arg(&out)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&first_log).unwrap())
        .spawn()
        .unwrap();
    // SIGTERM once a few messages have been handed over, while more come.
    let deadline = Instant::now() + Duration::from_secs(60);
    while files_ending(&out, ".xml").len() < 3 {
        if let Some(status) = first.try_wait().unwrap() {
            let log = std::fs::read_to_string(&first_log).unwrap_or_default();
            panic!("listen exited ({status}) before taking messages: {log}");
        }
        assert!(Instant::now() < deadline, "no hand-over within 60 s");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        !sending.is_finished(),
        "send all before SIGTERM: raise MESSAGES"
    );
    let pid = libc::pid_t::try_from(first.id()).unwrap();
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let Some(status) = wait_for_exit(&mut first, STOP_BOUND) else {
        first.kill().unwrap();
        first.wait().unwrap();
        panic!("listen did not stop within {STOP_BOUND:?} of SIGTERM");
    };
    let first_stderr = std::fs::read_to_string(&first_log).unwrap();
    assert!(
        status.success(),
        "listen after SIGTERM: {status}: {first_stderr}"
    );
    assert!(first_stderr.contains("SIGTERM: stopping"), "{first_stderr}");
    // The local transport dead-letters by itself: nothing to warn of.
    assert!(!first_stderr.contains("dead-letter"), "{first_stderr}");
    assert_eq!(files_ending(&out, ".part"), Vec::<String>::new());

    let ids = sending.join().unwrap();
    let second_stderr = setup.listen_until_idle(&b, &out);
    assert_eq!(files_ending(&out, ".part"), Vec::<String>::new());
    assert_eq!(files_ending(&out, ".xml").len(), MESSAGES);
    // Both runs took a share: the first stopped while messages came.
    let taken = |stderr: &str| {
        ids.iter()
            .filter(|id| common::hand_overs(stderr, id) > 0)
            .count()
    };
    assert!(taken(&first_stderr) >= 3, "{first_stderr}");
    assert!(taken(&second_stderr) >= 1, "{second_stderr}");
    // The drain settled what it handed over: nothing came again.
    assert!(
        !second_stderr.contains("already in the out dir"),
        "{second_stderr}"
    );
    for (id, payload) in ids.iter().zip(&payloads) {
        let handed = common::hand_overs(&first_stderr, id) + common::hand_overs(&second_stderr, id);
        assert_eq!(handed, 1, "{id}: {first_stderr}\n---\n{second_stderr}");
        assert_eq!(
            std::fs::read(out.join(format!("{id}.xml"))).unwrap(),
            payload.as_bytes(),
            "{id}"
        );
        assert!(out.join(format!("{id}.json")).exists(), "{id}");
    }

    // The sender counts its AppRecs: one per message, none twice.
    let receipts = dir.join("receipts");
    let sender_stderr = setup.listen_until_idle(&a, &receipts);
    let apprecs = files_ending(&receipts, ".xml");
    assert_eq!(apprecs.len(), MESSAGES, "{sender_stderr}");
    let mut answered = HashSet::new();
    for name in &apprecs {
        let apprec = std::fs::read_to_string(receipts.join(name)).unwrap();
        let about = payloads
            .iter()
            .position(|p| {
                let msg_id = p
                    .split("<MsgId>")
                    .nth(1)
                    .unwrap()
                    .split('<')
                    .next()
                    .unwrap();
                apprec.contains(msg_id)
            })
            .unwrap_or_else(|| panic!("{name} answers none of the messages sent"));
        assert!(answered.insert(about), "message {about} got two AppRecs");
    }
}

/// SIGTERM while `listen` is still starting (here: waiting for a broker
/// that took the connection and says nothing) stops it at once, exit 0:
/// nothing was taken yet.
#[test]
fn sigterm_during_start_up_stops_listen_at_once() {
    let setup = Setup::new(GatewayBroker::Local);
    let config = setup.party(8_142_003);
    // A "broker" that takes the connection and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let text = std::fs::read_to_string(&config).unwrap();
    let local = text.lines().find(|l| l.starts_with("url = ")).unwrap();
    let unreachable = text.replace(
        local,
        &format!("url = \"amqp://her@127.0.0.1:{port}/NHNTestServiceBus\""),
    );
    std::fs::write(&config, unreachable).unwrap();
    let log = setup.dir().join("listen.log");
    let mut listen = setup
        .command(&config)
        .env("HELSEMELDING_BROKER_PASSWORD", "x")
        .args(["listen", "--out-dir"])
        .arg(setup.dir().join("out"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    if let Some(status) = listen.try_wait().unwrap() {
        panic!(
            "listen ended before SIGTERM ({status}): {}",
            std::fs::read_to_string(&log).unwrap()
        );
    }
    let pid = libc::pid_t::try_from(listen.id()).unwrap();
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let Some(status) = wait_for_exit(&mut listen, Duration::from_secs(5)) else {
        listen.kill().unwrap();
        listen.wait().unwrap();
        panic!(
            "listen did not stop within 5 s of SIGTERM during start-up: {}",
            std::fs::read_to_string(&log).unwrap()
        );
    };
    let stderr = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "{status}: {stderr}");
    assert!(stderr.contains("SIGTERM"), "{stderr}");
    drop(silent);
}
