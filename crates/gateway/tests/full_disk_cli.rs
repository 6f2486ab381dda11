//! Issue 12, finding 1: a full disk is our fault, not the messages'. With
//! `listen --out-dir` on a full 64 KiB tmpfs, valid messages used to be
//! redelivered until their attempts ran out and then "dead-lettered"
//! (deleted on a default broker), with nothing on stderr. Now the listener
//! says once, loudly, that it is not taking messages and why, spends no
//! delivery attempts, leaves no `.part` file, and takes every message once
//! the disk has room again. Separate processes over the local transport
//! (which counts deliveries, as quorum queues do: a free release must not
//! be an attempt there either).
//!
//! Mounting a tmpfs needs root (CI runs as root); elsewhere the test says
//! it was skipped, and fails when `CI` is set.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

mod common;
use common::{GatewayBroker, Setup};

const MESSAGES: usize = 4;

/// A tmpfs of `size` at `dir`, unmounted on drop.
struct Tmpfs<'a>(&'a Path);

impl<'a> Tmpfs<'a> {
    fn mount(dir: &'a Path, size: &str) -> Option<Tmpfs<'a>> {
        std::fs::create_dir_all(dir).unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .stderr(Stdio::null())
            .status()
            .ok()?;
        status.success().then_some(Tmpfs(dir))
    }
}

impl Drop for Tmpfs<'_> {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.0)
            .status();
    }
}

/// Fills the file system of `dir` to the last byte with `dir/filler`.
fn fill(dir: &Path) {
    use std::io::Write;
    let mut filler = std::fs::File::create(dir.join("filler")).unwrap();
    let block = [0u8; 512];
    while filler.write_all(&block).is_ok() {}
    while filler.write_all(&[0]).is_ok() {}
    let _ = filler.sync_all();
}

fn files_ending(dir: &Path, suffix: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(suffix))
        .collect()
}

fn wait_for(what: &str, bound: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + bound;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {bound:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_full_out_dir_pauses_listen_without_spending_attempts_and_it_resumes() {
    let setup = Setup::new(GatewayBroker::Local);
    let out = setup.dir().join("out");
    let Some(_tmpfs) = Tmpfs::mount(&out, "64k") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "cannot mount a tmpfs (root is needed): the full-disk test cannot run"
        );
        eprintln!("SKIPPED: cannot mount a tmpfs here (root is needed)");
        return;
    };
    fill(&out);
    let (a_id, b_id) = (8_143_001, 8_143_002);
    let a = setup.party(a_id);
    let b = setup.party(b_id);
    // Tries every second: more than ten per message while the disk is full.
    let text = std::fs::read_to_string(&b).unwrap();
    std::fs::write(
        &b,
        format!("{text}[receive]\nfault_pause_max_seconds = 1\n"),
    )
    .unwrap();
    for n in 0..MESSAGES {
        let file = setup.dir().join(format!("note-{n}.xml"));
        let payload = common::msghead(a_id, b_id).replace("Hei, æøå", &format!("Hei nr. {n}"));
        std::fs::write(&file, payload).unwrap();
        let (ok, _, stderr) = setup.run(
            &a,
            &["send", "--to", &b_id.to_string(), file.to_str().unwrap()],
        );
        assert!(ok, "send {n}: {stderr}");
    }

    let log = setup.dir().join("listen.log");
    let mut listen = setup
        .command(&b)
        .args(["listen", "--count", &MESSAGES.to_string(), "--out-dir"])
        .arg(&out)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let stderr = || std::fs::read_to_string(&log).unwrap_or_default();
    wait_for("the pause said", Duration::from_secs(30), || {
        stderr().contains("NOT TAKING MESSAGES")
    });
    // Keep the disk full long enough for every message to be delivered
    // more often than the delivery limit (10): a spent attempt each would
    // dead-letter them all.
    std::thread::sleep(Duration::from_secs(16));
    assert!(listen.try_wait().unwrap().is_none(), "{}", stderr());
    assert_eq!(files_ending(&out, ".part"), Vec::<String>::new());
    assert_eq!(files_ending(&out, ".xml"), Vec::<String>::new());
    let said = stderr();
    assert_eq!(said.matches("NOT TAKING MESSAGES").count(), 1, "{said}");
    assert!(said.contains("No space left on device"), "{said}");

    std::fs::remove_file(out.join("filler")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = listen.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            listen.kill().unwrap();
            panic!(
                "listen did not take the messages once the disk had room: {}",
                stderr()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let said = stderr();
    assert!(status.success(), "{status}: {said}");
    assert_eq!(files_ending(&out, ".xml").len(), MESSAGES, "{said}");
    assert_eq!(files_ending(&out, ".part"), Vec::<String>::new());
    assert!(said.contains("taking messages again"), "{said}");
    let released: u64 = said
        .split(" deliveries released meanwhile")
        .next()
        .and_then(|head| head.rsplit('(').next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no count of released deliveries: {said}"));
    assert!(
        released > 10 * MESSAGES as u64,
        "only {released} releases: the test did not pass the delivery limit"
    );

    // Nothing was given up, and the fault and its end are in the audit log.
    let (ok, audit, stderr) = setup.run(&b, &["audit", "list", "--json"]);
    assert!(ok, "{stderr}");
    assert!(audit.contains("\"local-fault\""), "{audit}");
    assert!(audit.contains("\"local-fault-cleared\""), "{audit}");
    assert!(!audit.contains("dead-lettered"), "{audit}");
    assert!(!audit.contains("\"parked\""), "{audit}");
}
