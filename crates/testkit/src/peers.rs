//! Independent peers the tests talk to: Debian's python3-qpid-proton (an
//! AMQP 1.0 implementation that is not ours), run by /usr/bin/python3.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The peer script (see its docstring for what it sends and prints).
pub fn proton_peer_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("peers/proton_peer.py")
}

/// Runs the proton peer (`send` or `receive`) against `url` and `address`;
/// returns its standard output. Panics with its stderr if it fails or runs
/// longer than `within`.
pub fn proton_peer(mode: &str, url: &str, address: &str, within: Duration) -> String {
    let mut child = Command::new("/usr/bin/python3")
        .arg(proton_peer_script())
        .args([mode, url, address])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running /usr/bin/python3 (scripts/broker install provides python3-qpid-proton)");
    let deadline = Instant::now() + within;
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for the proton peer") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("proton peer {mode} did not finish within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(
        status.success(),
        "proton peer {mode} failed ({status}): {stderr}"
    );
    stdout
}
