//! The README's quick start: `helsemelding sandbox DIR` makes two parties'
//! configurations on the embedded defaults, `serve` runs on each, the
//! example note dropped into OUT arrives in the other party's IN, and the
//! API (with the token the sandbox wrote) lists it as sent.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const OURS: u32 = 91462;
const THEIRS: u32 = 4210;

fn helsemelding() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_helsemelding"));
    command.env_remove("HELSEMELDING_BROKER_PASSWORD");
    command
}

fn serve(dir: &Path, her_id: u32) -> (Child, std::path::PathBuf) {
    let log = dir.join(format!("serve-{her_id}.log"));
    let child = helsemelding()
        .arg("--config")
        .arg(dir.join(format!("{her_id}.toml")))
        .arg("serve")
        // Any free port: the sandbox's own (8095, 8096) may be taken here.
        .env("HELSEMELDING_HTTP_LISTEN", "127.0.0.1:0")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    (child, log)
}

fn wait_for<T>(what: &str, mut found: impl FnMut() -> Option<T>, logs: &dyn Fn() -> String) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(value) = found() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "{what} not within 60 s:\n{}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn terminate(child: &mut Child) {
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    assert!(child.wait().unwrap().success());
}

#[test]
fn the_sandbox_runs_serve_on_the_embedded_defaults_through_the_folder_and_the_api() {
    use std::os::unix::fs::PermissionsExt as _;
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("sandbox");
    let made = helsemelding().arg("sandbox").arg(&dir).output().unwrap();
    let said = String::from_utf8_lossy(&made.stdout).into_owned();
    assert!(
        made.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&made.stderr)
    );
    assert!(said.contains("serve") && said.contains("curl"), "{said}");
    for her_id in [OURS, THEIRS] {
        for secret in [format!("{her_id}.tokens"), format!("{her_id}.token")] {
            let mode = std::fs::metadata(dir.join(&secret))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "{secret} is for its owner only");
        }
    }
    let again = helsemelding().arg("sandbox").arg(&dir).output().unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("not empty"));

    let (mut theirs, their_log) = serve(&dir, THEIRS);
    let (mut ours, our_log) = serve(&dir, OURS);
    let logs = || {
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        format!("ours:\n{}\ntheirs:\n{}", read(&our_log), read(&their_log))
    };
    let base = wait_for(
        "our API's address",
        || {
            let log = std::fs::read_to_string(&our_log).unwrap_or_default();
            log.lines()
                .find_map(|l| l.strip_prefix("HTTP API on "))
                .map(str::to_owned)
        },
        &logs,
    );
    let note = std::fs::read(dir.join("example-note.xml")).unwrap();
    let out = dir.join(format!("folders/{OURS}/OUT"));
    wait_for("our OUT folder", || out.is_dir().then_some(()), &logs);
    std::fs::write(dir.join("note.tmp"), &note).unwrap();
    std::fs::rename(dir.join("note.tmp"), out.join("note.xml")).unwrap();
    let inbox = dir.join(format!("folders/{THEIRS}/IN"));
    let arrived = wait_for(
        "the note in their IN",
        || {
            let entries = std::fs::read_dir(&inbox).ok()?;
            entries
                .flatten()
                .map(|e| e.path())
                .find(|p| p.extension().is_some_and(|e| e == "xml"))
        },
        &logs,
    );
    assert_eq!(std::fs::read(&arrived).unwrap(), note, "byte for byte");

    let token = std::fs::read_to_string(dir.join(format!("{OURS}.token"))).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let list = || -> serde_json::Value {
        runtime.block_on(async {
            let response = reqwest::Client::new()
                .get(format!("{base}/api/v1/messages?direction=out"))
                .bearer_auth(token.trim())
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            response.json().await.unwrap()
        })
    };
    // The example asks for an AppRec: Helsedirektoratet's gateway answers
    // it by itself (automatic receipts), and the state follows.
    let listed = wait_for(
        "the note APPREC_OK",
        || {
            let listed = list();
            (listed["messages"][0]["state"] == "APPREC_OK").then_some(listed)
        },
        &logs,
    );
    assert_eq!(listed["messages"][0]["peer_her_id"], THEIRS, "{listed}");

    terminate(&mut ours);
    terminate(&mut theirs);
}
