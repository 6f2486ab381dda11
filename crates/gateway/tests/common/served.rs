//! What the tests of `serve` share: a running `serve` process with its
//! log and the base URL of its API ([`Served`]), an HTTP client on a
//! runtime of its own, and the EHR's side of the folders (a file dropped
//! as an EHR should, the names in a folder, waiting for a condition).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use super::Setup;

/// The token the tests' token files hold for the `ehr` client.
pub const TOKEN: &str = "3f9d1c0b7a6e5d4c3b2a19080706050403020100ffeeddccbbaa998877665544";

/// `<dir>/<her_id>.tokens`, readable by its owner only, with [`TOKEN`] as `ehr`.
pub fn token_file(setup: &Setup, her_id: u32) -> PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    let path = setup.dir().join(format!("{her_id}.tokens"));
    std::fs::write(&path, format!("# the EHR\nehr {TOKEN}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

/// A party's configuration with a folder drop under `<dir>/folders`
/// (settle 100 ms, files up to 1 MiB), the API on a free loopback port and
/// `extra` lines (in `[http]` unless they start a section).
pub fn with_folder_and_api(setup: &Setup, her_id: u32, extra: &str) -> PathBuf {
    let config = setup.party(her_id);
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        "[folder]\nroot = \"{}\"\nsettle_ms = 100\nmax_mib = 1\n[http]\nlisten = \"127.0.0.1:0\"\ntoken_file = \"{}\"\n{extra}",
        setup.dir().join("folders").display(),
        token_file(setup, her_id).display()
    ));
    std::fs::write(&config, text).unwrap();
    config
}

/// `<dir>/folders/<her_id>/<name>`.
pub fn folder(setup: &Setup, her_id: u32, name: &str) -> PathBuf {
    setup
        .dir()
        .join("folders")
        .join(her_id.to_string())
        .join(name)
}

/// A running `serve` and where its API answers.
pub struct Served {
    child: Option<Child>,
    log: PathBuf,
    /// `http://127.0.0.1:PORT` (or https), as `serve` said.
    pub base: String,
}

impl Served {
    /// Starts `serve` for `config`, its stderr in `<dir>/<name>.log`, and
    /// waits until its API answers.
    pub fn start(setup: &Setup, config: &Path, name: &str) -> Served {
        let log = setup.dir().join(format!("{name}.log"));
        let child = setup
            .command(config)
            .arg("serve")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut served = Served {
            child: Some(child),
            log,
            base: String::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let log = served.log();
            let said = log
                .lines()
                .find_map(|line| line.strip_prefix("HTTP API on "))
                .map(str::to_owned);
            if let Some(base) = said {
                // Listening is said before the messenger opens: wait for it.
                served.base = base;
                if served.call("GET", "/healthz", None, None).0 == 200 {
                    return served;
                }
            }
            assert!(Instant::now() < deadline, "serve did not start:\n{log}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// What it has said on stderr.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// One request with [`TOKEN`], or `token` when given ("" for none).
    pub fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<(&str, Vec<u8>)>,
        token: Option<&str>,
    ) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
        let url = format!("{}{path}", self.base);
        call(&client(None), &url, method, body, token)
    }

    /// One request with a JSON body (or none); the answer as JSON (a
    /// string when it is not JSON).
    pub fn json(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let body = body.map(|b| ("application/json", b.to_string().into_bytes()));
        let (status, _, bytes) = self.call(method, path, body, None);
        let value = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
            serde_json::Value::String(String::from_utf8_lossy(&bytes).into_owned())
        });
        (status, value)
    }

    /// How many records of `direction` are in `state`, over all pages.
    pub fn count(&self, direction: &str, state: &str) -> usize {
        let (mut count, mut cursor) = (0, 0);
        loop {
            let path = format!(
                "/api/v1/messages?direction={direction}&state={state}&limit=1000&cursor={cursor}"
            );
            let (status, page) = self.json("GET", &path, None);
            assert_eq!(status, 200, "{page}");
            count += page["messages"].as_array().unwrap().len();
            match page["next_cursor"].as_i64() {
                Some(next) => cursor = next,
                None => return count,
            }
        }
    }

    /// SIGKILL: no chance to tidy up.
    pub fn kill(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// SIGTERM: it must exit 0 within 10 s.
    pub fn stop(mut self) {
        let mut child = self.child.take().expect("running");
        let pid = libc::pid_t::try_from(child.id()).unwrap();
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        let deadline = Instant::now() + Duration::from_secs(10);
        let stopped = loop {
            if child.try_wait().unwrap().is_some() || Instant::now() >= deadline {
                break child.try_wait().unwrap().is_some();
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        if !stopped {
            child.kill().unwrap();
        }
        let status = child.wait().unwrap();
        assert!(
            stopped,
            "serve did not stop within 10 s of SIGTERM:\n{}",
            self.log()
        );
        assert!(status.success(), "{status}:\n{}", self.log());
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The tests' runtime for the HTTP client.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RUNTIME.get_or_init(|| tokio::runtime::Runtime::new().unwrap())
}

/// A client that trusts `ca` besides the system's roots.
pub fn client(ca: Option<&Path>) -> reqwest::Client {
    let mut builder = reqwest::Client::builder().timeout(Duration::from_secs(60));
    if let Some(ca) = ca {
        let pem = std::fs::read(ca).unwrap();
        builder = builder.add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap());
    }
    builder.build().unwrap()
}

/// One request: status (0 when it could not be made), headers, body.
pub fn call(
    client: &reqwest::Client,
    url: &str,
    method: &str,
    body: Option<(&str, Vec<u8>)>,
    token: Option<&str>,
) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    runtime().block_on(async {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = client.request(method, url);
        match token.unwrap_or(TOKEN) {
            "" => {}
            token => request = request.bearer_auth(token),
        }
        if let Some((content_type, bytes)) = body {
            request = request.header("content-type", content_type).body(bytes);
        }
        let Ok(response) = request.send().await else {
            return (0, reqwest::header::HeaderMap::new(), Vec::new());
        };
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        (
            status,
            headers,
            response.bytes().await.unwrap_or_default().to_vec(),
        )
    })
}

/// As an EHR should: written under another name, then renamed into `dir`.
pub fn drop_file(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::create_dir_all(dir).unwrap();
    let temp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&temp, bytes).unwrap();
    std::fs::rename(&temp, dir.join(name)).unwrap();
}

/// Names in `dir` ending with `suffix`, hidden ones left out.
pub fn names(dir: &Path, suffix: &str) -> BTreeSet<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return BTreeSet::new();
    };
    entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(suffix) && !name.starts_with('.'))
        .collect()
}

/// Waits until `done`, failing with `logs` after `within`.
pub fn wait_until(
    what: &str,
    within: Duration,
    mut done: impl FnMut() -> bool,
    logs: impl Fn() -> String,
) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "{what} not within {within:?}:\n{}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The JSON file at `path`, once it is there (within `within`).
pub fn json_when(
    what: &str,
    within: Duration,
    path: &Path,
    logs: impl Fn() -> String,
) -> serde_json::Value {
    wait_until(what, within, || path.exists(), logs);
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}
