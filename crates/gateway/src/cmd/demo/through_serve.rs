//! `helsemelding demo --serve`: the demo through the gateway daemon an
//! EHR runs, not the library: a sandbox of two parties (the municipality
//! and Helsedirektoratet, [`sandbox::make`]), a `serve` process for each,
//! and this process playing both EHR systems: a note through the folders
//! (OUT → IN, the AppRec back into RECEIPTS), a note through the HTTP API
//! (posted; leased, read, acknowledged; APPREC_OK), a communication test
//! through the API, and a request with a wrong token (refused, audited).
//! Both gateways are stopped with SIGTERM and must exit 0.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use chrono::Utc;
use serde_json::{json, Value};

use super::report::{short_id, Actor, Line, Reporter};
use crate::cmd::sandbox::{self, Sandbox, SandboxParty};

/// A `serve` process of the demo and its API.
struct Gateway {
    actor: Actor,
    child: Child,
    log: PathBuf,
    base: String,
    token: String,
}

impl Gateway {
    /// Starts `serve` for `party`, its API on a free loopback port, and
    /// waits until it answers.
    async fn start(party: &SandboxParty, dir: &Path, within: Duration) -> Result<Gateway> {
        let log = dir.join(format!("serve-{}.log", party.her_id));
        let child = std::process::Command::new(std::env::current_exe()?)
            .arg("--config")
            .arg(&party.config)
            .arg("serve")
            .env("HELSEMELDING_HTTP_LISTEN", "127.0.0.1:0")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .context("starting helsemelding serve")?;
        let mut gateway = Gateway {
            actor: Actor {
                her_id: party.her_id.get(),
                name: party.name.clone(),
            },
            child,
            log,
            base: String::new(),
            token: std::fs::read_to_string(&party.token)?.trim().to_owned(),
        };
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = gateway.child.try_wait()? {
                bail!(
                    "serve of {} ended at start ({status}):\n{}",
                    gateway.actor,
                    gateway.said()
                );
            }
            let said = gateway.said();
            if let Some(base) = said.lines().find_map(|l| l.strip_prefix("HTTP API on ")) {
                gateway.base = base.to_owned();
                if gateway
                    .get("/readyz")
                    .await
                    .is_ok_and(|(status, _)| status == 200)
                {
                    return Ok(gateway);
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "serve of {} did not answer within {within:?}:\n{said}",
                    gateway.actor
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn said(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<(&str, Vec<u8>)>,
        token: &str,
    ) -> Result<(u16, Vec<u8>)> {
        let mut request = client()
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some((content_type, bytes)) = body {
            request = request.header("content-type", content_type).body(bytes);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        Ok((status, response.bytes().await?.to_vec()))
    }

    async fn get(&self, path: &str) -> Result<(u16, Value)> {
        let (status, bytes) = self
            .request(reqwest::Method::GET, path, None, &self.token)
            .await?;
        Ok((status, serde_json::from_slice(&bytes).unwrap_or_default()))
    }

    async fn post(&self, path: &str, body: Value) -> Result<(u16, Value)> {
        let body = Some(("application/json", body.to_string().into_bytes()));
        let (status, bytes) = self
            .request(reqwest::Method::POST, path, body, &self.token)
            .await?;
        Ok((status, serde_json::from_slice(&bytes).unwrap_or_default()))
    }

    /// SIGTERM; true when it exited 0 within 10 s.
    fn stop(mut self) -> bool {
        let Ok(pid) = libc::pid_t::try_from(self.child.id()) else {
            return false;
        };
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        false
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("an HTTP client")
}

/// Waits for `found` to give something, at most `within`.
async fn wait_for<T>(within: Duration, mut found: impl AsyncFnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = found().await {
            return Some(value);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn line(
    step: &str,
    from: &Actor,
    to: Option<&Actor>,
    what: String,
    outcome: String,
    ok: bool,
) -> Line {
    Line {
        step: step.to_owned(),
        at: Utc::now(),
        from: from.clone(),
        to: to.cloned(),
        what,
        outcome,
        ok,
        message_id: None,
    }
}

/// Runs the demo through `serve` in `dir`; true when every step had its
/// expected outcome.
pub async fn run(dir: &Path, reporter: &mut Reporter, within: Duration) -> Result<bool> {
    let sandbox = sandbox::make(&dir.join("sandbox"))?;
    reporter.note(&format!(
        "helsemelding demo through `serve`: two gateway daemons on the local queue, in {}",
        sandbox.dir.display()
    ));
    let ours = Gateway::start(&sandbox.parties[0], &sandbox.dir, within * 3).await?;
    let theirs = Gateway::start(&sandbox.parties[1], &sandbox.dir, within * 3).await?;
    reporter.note("\n1. The municipality's EHR writes a dialogue note into its OUT folder.");
    through_the_folders(&sandbox, &ours, &theirs, reporter, within).await?;
    reporter.note("\n2. The same through the HTTP API: posted; leased, read and acknowledged by the other side.");
    through_the_api(&sandbox, &ours, &theirs, reporter, within).await?;
    reporter.note("\n3. A communication test through the API, and a request with a wrong token.");
    checks(&ours, &theirs, reporter).await?;
    reporter
        .note("\n4. Both gateways are stopped (SIGTERM): they finish what is in hand and exit 0.");
    for gateway in [ours, theirs] {
        let actor = gateway.actor.clone();
        let ok = gateway.stop();
        let outcome = if ok {
            "exited 0"
        } else {
            "did not exit 0 within 10 s"
        };
        reporter.line(line(
            "serve.stopped",
            &actor,
            None,
            "SIGTERM".into(),
            outcome.into(),
            ok,
        ));
    }
    Ok(reporter.finish())
}

/// A dialogue note from the municipality to the directorate with a MsgId
/// of its own.
fn fresh_note(sandbox: &Sandbox) -> (String, String) {
    let msg_id = uuid::Uuid::new_v4().hyphenated().to_string();
    let note = sandbox::note(&sandbox.parties[0], &sandbox.parties[1], &msg_id);
    (msg_id, note)
}

async fn through_the_folders(
    sandbox: &Sandbox,
    ours: &Gateway,
    theirs: &Gateway,
    reporter: &mut Reporter,
    within: Duration,
) -> Result<()> {
    let (from, to) = (&sandbox.parties[0], &sandbox.parties[1]);
    let (msg_id, note) = fresh_note(sandbox);
    let folders = sandbox.dir.join("folders");
    let out = folders.join(from.her_id.to_string()).join("OUT");
    let temp = out.join(format!(".{msg_id}.tmp"));
    std::fs::write(&temp, &note)?;
    std::fs::rename(&temp, out.join("note.xml"))?;
    let what = format!("dialogue note (MsgId {})", short_id(&msg_id));
    let dropped = "written to OUT/note.xml".to_owned();
    reporter.line(line(
        "folder.dropped",
        &ours.actor,
        Some(&theirs.actor),
        what.clone(),
        dropped,
        true,
    ));
    let arrived = folders
        .join(to.her_id.to_string())
        .join("IN")
        .join(format!("{}_{msg_id}.xml", from.her_id));
    let bytes = wait_for(within, async || std::fs::read(&arrived).ok()).await;
    let (ok, outcome) = match bytes {
        Some(bytes) if bytes == note.as_bytes() => (
            true,
            "in IN, byte for byte as written: signed, encrypted, decrypted, verified".to_owned(),
        ),
        Some(_) => (false, "in IN with other bytes".to_owned()),
        None => (false, format!("not in IN within {within:?}")),
    };
    reporter.line(line(
        "folder.delivered",
        &theirs.actor,
        None,
        what.clone(),
        outcome,
        ok,
    ));
    let receipt = folders
        .join(from.her_id.to_string())
        .join("RECEIPTS")
        .join(format!("{msg_id}.json"));
    let answer = wait_for(within, async || {
        let bytes = std::fs::read(&receipt).ok()?;
        serde_json::from_slice::<Value>(&bytes).ok()
    })
    .await;
    let (ok, outcome) = match answer {
        Some(answer) if answer["status"] == "1" => (
            true,
            format!(
                "RECEIPTS/{}.json: status 1 (OK), sent by {}'s gateway as it took the note",
                short_id(&msg_id),
                theirs.actor.her_id
            ),
        ),
        Some(answer) => (false, format!("status {}", answer["status"])),
        None => (false, format!("no AppRec within {within:?}")),
    };
    reporter.line(line(
        "folder.apprec",
        &theirs.actor,
        Some(&ours.actor),
        "AppRec".into(),
        outcome,
        ok,
    ));
    Ok(())
}

async fn through_the_api(
    sandbox: &Sandbox,
    ours: &Gateway,
    theirs: &Gateway,
    reporter: &mut Reporter,
    within: Duration,
) -> Result<()> {
    let (msg_id, note) = fresh_note(sandbox);
    let what = format!("dialogue note (MsgId {})", short_id(&msg_id));
    let body = Some(("application/xml", note.clone().into_bytes()));
    let (status, _) = ours
        .request(reqwest::Method::POST, "/api/v1/messages", body, &ours.token)
        .await?;
    let outcome = format!("POST /api/v1/messages: {status}");
    reporter.line(line(
        "api.posted",
        &ours.actor,
        Some(&theirs.actor),
        what.clone(),
        outcome,
        status == 202,
    ));
    let leased = wait_for(within, async || {
        let (_, leased) = theirs
            .post("/api/v1/inbox/lease", json!({ "limit": 10 }))
            .await
            .ok()?;
        leased["messages"]
            .as_array()?
            .iter()
            .any(|m| m["id"] == msg_id.as_str())
            .then_some(())
    })
    .await;
    let path = format!("/api/v1/inbox/{msg_id}");
    let read = match leased {
        Some(()) => theirs
            .request(reqwest::Method::GET, &path, None, &theirs.token)
            .await
            .ok(),
        None => None,
    };
    let (ok, outcome) = match read {
        Some((200, bytes)) if bytes == note.as_bytes() => {
            (true, "leased and read: exactly the signed bytes".to_owned())
        }
        Some((status, _)) => (false, format!("GET {path}: {status}")),
        None => (false, format!("not leased within {within:?}")),
    };
    reporter.line(line(
        "api.read",
        &theirs.actor,
        None,
        what.clone(),
        outcome,
        ok,
    ));
    let (status, acked) = theirs.post(&format!("{path}/ack"), json!({})).await?;
    let outcome = format!("acknowledged: {}", acked["state"].as_str().unwrap_or("?"));
    reporter.line(line(
        "api.acknowledged",
        &theirs.actor,
        None,
        what.clone(),
        outcome,
        status == 200 && acked["state"] == "DELIVERED",
    ));
    let state = wait_for(within, async || {
        let (_, shown) = ours.get(&format!("/api/v1/messages/{msg_id}")).await.ok()?;
        (shown["state"] == "APPREC_OK").then_some(shown)
    })
    .await;
    let (ok, outcome) = match state {
        Some(shown) => (
            true,
            format!(
                "GET /api/v1/messages/{}: APPREC_OK after {} state changes",
                short_id(&msg_id),
                shown["history"].as_array().map_or(0, Vec::len)
            ),
        ),
        None => (false, format!("not APPREC_OK within {within:?}")),
    };
    reporter.line(line(
        "api.apprec",
        &ours.actor,
        Some(&theirs.actor),
        what,
        outcome,
        ok,
    ));
    Ok(())
}

async fn checks(ours: &Gateway, theirs: &Gateway, reporter: &mut Reporter) -> Result<()> {
    let (status, tested) = ours
        .post("/api/v1/commtest", json!({ "her_id": theirs.actor.her_id }))
        .await?;
    let ok = status == 200 && tested["within_limit"] == true;
    let outcome = match status {
        200 => format!("answered in {} ms (limit 5 s)", tested["round_trip_ms"]),
        other => format!("{other}: {}", tested["detail"]),
    };
    reporter.line(line(
        "api.commtest",
        &ours.actor,
        Some(&theirs.actor),
        "communication test".into(),
        outcome,
        ok,
    ));
    let wrong = "not-the-token-0123456789abcdef0123456789abcdef";
    let (status, _) = ours
        .request(reqwest::Method::GET, "/api/v1/messages", None, wrong)
        .await?;
    let outcome = format!("{status}: refused, and in the audit log with the caller's address");
    reporter.line(line(
        "api.refused",
        &ours.actor,
        None,
        "a request with a wrong token".into(),
        outcome,
        status == 401,
    ));
    Ok(())
}
