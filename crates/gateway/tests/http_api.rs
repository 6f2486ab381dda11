//! Issue 14, item 3: `serve`'s HTTP API, two processes (two HER-ids) over
//! the local transport, the EHR played by this test speaking HTTP:
//! - a MsgHead posted on one side arrives on the other, where it is
//!   leased, read byte for byte, given back, leased again and
//!   acknowledged; the states and the events feed follow;
//! - every refusal has its status and problem+json code: a missing or
//!   wrong token (401, and a row in the audit log), not a MsgHead (400), a
//!   replay (200), the same MsgId with other bytes (409), too large (413),
//!   a sender not ours or a receiver unknown (422), a wrong state (409),
//!   an unknown id (404), a lease that ran out (409);
//! - every operation of the OpenAPI document is a route;
//! - a token file others can read stops `serve` before it starts;
//! - over TLS (`tls_cert`, `tls_key`) the same API answers HTTPS.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

mod common;
use common::served::{self, call, client, runtime, wait_until, Served, TOKEN};
use common::{GatewayBroker, Setup};

const A: u32 = 8_144_001;
const B: u32 = 8_144_002;

fn party(setup: &Setup, her_id: u32, extra: &str) -> PathBuf {
    served::with_folder_and_api(setup, her_id, extra)
}

/// A MsgHead from `from` to `to` with `msg_id` and a body of its own.
fn note(from: u32, to: u32, msg_id: &str, n: usize) -> Vec<u8> {
    common::msghead(from, to)
        .replace("2b1c7c86-64a4-4a38-a1b4-0f4f4b5d2c11", msg_id)
        .replace("Hei, æøå", &format!("Hei nr. {n}, æøå"))
        .into_bytes()
}

fn xml(bytes: Vec<u8>) -> Option<(&'static str, Vec<u8>)> {
    Some(("application/xml", bytes))
}

fn assert_problem(status: u16, body: &serde_json::Value, want_status: u16, want_code: &str) {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["code"], want_code, "{body}");
    assert_eq!(body["status"], want_status, "{body}");
    assert!(
        body["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{body}"
    );
}

#[test]
fn what_is_posted_on_one_side_is_leased_read_and_acknowledged_on_the_other() {
    let setup = Setup::new(GatewayBroker::Local);
    let (a, b) = (party(&setup, A, ""), party(&setup, B, ""));
    let served_a = Served::start(&setup, &a, "a");
    let served_b = Served::start(&setup, &b, "b");
    let logs = || format!("a:\n{}\nb:\n{}", served_a.log(), served_b.log());

    // Submitted as XML: 202 and its record; again: 200, a replay.
    let msg_id = uuid::Uuid::new_v4().to_string();
    let bytes = note(A, B, &msg_id, 1);
    let (status, headers, body) =
        served_a.call("POST", "/api/v1/messages", xml(bytes.clone()), None);
    let record: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(status, 202, "{record}");
    assert_eq!(record["id"], msg_id.as_str());
    assert_eq!(record["direction"], "out");
    assert_eq!(record["peer_her_id"], B);
    assert_eq!(
        headers["location"],
        format!("/api/v1/messages/{msg_id}").as_str()
    );
    let (status, _, body) = served_a.call("POST", "/api/v1/messages", xml(bytes.clone()), None);
    assert_eq!(status, 200, "a replay: {}", String::from_utf8_lossy(&body));
    // As JSON, a second message.
    let second = uuid::Uuid::new_v4().to_string();
    let text = String::from_utf8(note(A, B, &second, 2)).unwrap();
    let (status, record) = served_a.json(
        "POST",
        "/api/v1/messages",
        Some(serde_json::json!({ "msghead": text })),
    );
    assert_eq!(status, 202, "{record}");

    // What A sent: listed a page at a time, shown with its history.
    let (status, page) = served_a.json("GET", "/api/v1/messages?direction=out&limit=1", None);
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["messages"].as_array().unwrap().len(), 1);
    assert_eq!(page["messages"][0]["id"], msg_id.as_str());
    let cursor = page["next_cursor"]
        .as_i64()
        .expect("a full page has a next cursor");
    let (_, next) = served_a.json(
        "GET",
        &format!("/api/v1/messages?direction=out&limit=1&cursor={cursor}"),
        None,
    );
    assert_eq!(next["messages"][0]["id"], second.as_str(), "{next}");
    let (_, last) = served_a.json(
        "GET",
        &format!("/api/v1/messages?direction=out&cursor={cursor}"),
        None,
    );
    assert!(last["next_cursor"].is_null(), "{last}");
    wait_until(
        "both SENT",
        Duration::from_secs(30),
        || {
            let (_, sent) = served_a.json("GET", "/api/v1/messages?direction=out&state=SENT", None);
            sent["messages"].as_array().is_some_and(|m| m.len() == 2)
        },
        logs,
    );
    let (status, shown) = served_a.json("GET", &format!("/api/v1/messages/{msg_id}"), None);
    assert_eq!(status, 200);
    let history: Vec<_> = shown["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["state"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(history, ["ACCEPTED", "SENT"], "{shown}");

    // On B: leased, read byte for byte, given back, leased again, acknowledged.
    wait_until(
        "both AVAILABLE on B",
        Duration::from_secs(30),
        || {
            let (_, arrived) =
                served_b.json("GET", "/api/v1/messages?direction=in&state=AVAILABLE", None);
            arrived["messages"].as_array().is_some_and(|m| m.len() == 2)
        },
        logs,
    );
    let (status, leased) = served_b.json(
        "POST",
        "/api/v1/inbox/lease",
        Some(serde_json::json!({ "limit": 1, "seconds": 60 })),
    );
    assert_eq!(status, 200, "{leased}");
    assert_eq!(leased["messages"].as_array().unwrap().len(), 1, "{leased}");
    assert_eq!(leased["messages"][0]["id"], msg_id.as_str());
    assert_eq!(leased["messages"][0]["state"], "LEASED");
    let (status, headers, payload) =
        served_b.call("GET", &format!("/api/v1/inbox/{msg_id}"), None, None);
    assert_eq!(status, 200);
    assert_eq!(payload, bytes, "exactly the signed bytes");
    assert_eq!(headers["x-helsemelding-sender"], A.to_string().as_str());
    assert_eq!(headers["x-helsemelding-msg-id"], msg_id.as_str());
    assert_eq!(headers["content-type"], "application/xml");
    let (status, released) =
        served_b.json("POST", &format!("/api/v1/inbox/{msg_id}/release"), None);
    assert_eq!(
        (status, released["state"].as_str()),
        (200, Some("AVAILABLE")),
        "{released}"
    );
    let (status, again) = served_b.json("POST", &format!("/api/v1/inbox/{msg_id}/release"), None);
    assert_problem(status, &again, 409, "wrong-state");
    let (_, leased) = served_b.json("POST", "/api/v1/inbox/lease", None);
    assert_eq!(
        leased["messages"].as_array().unwrap().len(),
        2,
        "both: {leased}"
    );
    let (status, acked) = served_b.json("POST", &format!("/api/v1/inbox/{msg_id}/ack"), None);
    assert_eq!(
        (status, acked["state"].as_str()),
        (200, Some("DELIVERED")),
        "{acked}"
    );
    let in_file = setup.dir().join(format!("folders/{B}/IN/{A}_{msg_id}.xml"));
    assert!(
        !in_file.exists(),
        "an acknowledged message's IN file is removed"
    );
    let (status, again) = served_b.json("POST", &format!("/api/v1/inbox/{msg_id}/ack"), None);
    assert_problem(status, &again, 409, "wrong-state");
    let (status, gone) = served_b.json("GET", &format!("/api/v1/inbox/{msg_id}"), None);
    assert_problem(status, &gone, 410, "gone");
    // A lease that ran out goes to the next client; the old holder's ack is refused.
    let (_, _) = served_b.json("POST", &format!("/api/v1/inbox/{second}/release"), None);
    let (_, short) = served_b.json(
        "POST",
        "/api/v1/inbox/lease",
        Some(serde_json::json!({ "seconds": 1 })),
    );
    assert_eq!(short["messages"][0]["id"], second.as_str(), "{short}");
    std::thread::sleep(Duration::from_millis(1100));
    let (_, taken_over) = served_b.json(
        "POST",
        "/api/v1/inbox/lease",
        Some(serde_json::json!({ "seconds": 60 })),
    );
    assert_eq!(
        taken_over["messages"][0]["id"],
        second.as_str(),
        "{taken_over}"
    );

    // The events feed: every change in order, followed by its cursor.
    let (status, feed) = served_b.json("GET", "/api/v1/events?after=0", None);
    assert_eq!(status, 200);
    let of_first: Vec<_> = feed["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["id"] == msg_id.as_str())
        .map(|e| e["state"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        of_first,
        ["AVAILABLE", "LEASED", "AVAILABLE", "LEASED", "DELIVERED"],
        "{feed}"
    );
    let next = feed["next"].as_i64().unwrap();
    let started = Instant::now();
    let (_, empty) = served_b.json("GET", &format!("/api/v1/events?after={next}&wait=1"), None);
    assert!(empty["events"].as_array().unwrap().is_empty(), "{empty}");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "it waited for an event"
    );
    assert_eq!(empty["next"], next);

    // Refusals, each with its status and code.
    let (status, _, body) = served_a.call("GET", "/api/v1/messages", None, Some(""));
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_problem(status, &body, 401, "unauthorized");
    let wrong = "wrong-token-9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b";
    let (status, headers, body) =
        served_a.call("POST", "/api/v1/messages", xml(bytes.clone()), Some(wrong));
    assert_eq!(status, 401);
    assert_eq!(headers["content-type"], "application/problem+json");
    assert!(headers.contains_key("www-authenticate"));
    assert!(!String::from_utf8_lossy(&body).contains(wrong));
    let reuse = note(A, B, &msg_id, 99);
    let (status, _, body) = served_a.call("POST", "/api/v1/messages", xml(reuse), None);
    assert_problem(
        status,
        &serde_json::from_slice(&body).unwrap(),
        409,
        "msgid-reused",
    );
    let (status, _, body) = served_a.call(
        "POST",
        "/api/v1/messages",
        xml(b"not xml at all".to_vec()),
        None,
    );
    assert_problem(
        status,
        &serde_json::from_slice(&body).unwrap(),
        400,
        "not-a-msghead",
    );
    let (status, body) = served_a.json(
        "POST",
        "/api/v1/messages",
        Some(serde_json::json!({ "msghead": 7 })),
    );
    assert_problem(status, &body, 400, "bad-request");
    // Above the limit (1 MiB here): judged by its length, or refused
    // before it is read when it is far above.
    for size in [(1 << 20) + 1000, 2 << 20] {
        let huge = xml(vec![b' '; size]);
        let (status, _, body) = served_a.call("POST", "/api/v1/messages", huge, None);
        let body = serde_json::from_slice(&body).unwrap_or_default();
        assert_problem(status, &body, 413, "too-large");
    }
    let theirs = note(5555, B, &uuid::Uuid::new_v4().to_string(), 3);
    let (status, _, body) = served_a.call("POST", "/api/v1/messages", xml(theirs), None);
    assert_problem(
        status,
        &serde_json::from_slice(&body).unwrap(),
        422,
        "sender-not-ours",
    );
    let nobody = note(A, 7_777_777, &uuid::Uuid::new_v4().to_string(), 4);
    let (status, _, body) = served_a.call("POST", "/api/v1/messages", xml(nobody), None);
    assert_problem(
        status,
        &serde_json::from_slice(&body).unwrap(),
        422,
        "receiver-unknown",
    );
    let (status, body) = served_a.json("GET", "/api/v1/messages/no-such-message", None);
    assert_problem(status, &body, 404, "not-found");
    let (status, body) = served_a.json("DELETE", &format!("/api/v1/messages/{msg_id}"), None);
    assert_problem(status, &body, 409, "wrong-state");
    let (status, body) = served_a.json("POST", &format!("/api/v1/messages/{msg_id}/retry"), None);
    assert_problem(status, &body, 409, "wrong-state");
    let (status, body) = served_a.json("GET", "/api/v1/messages?state=LOST", None);
    assert_problem(status, &body, 400, "bad-request");
    let (status, body) = served_a.json("GET", "/api/v1/nothing-here", None);
    assert_problem(status, &body, 404, "no-such-route");

    // The communication test and the probes.
    let (status, tested) = served_a.json(
        "POST",
        "/api/v1/commtest",
        Some(serde_json::json!({ "her_id": B })),
    );
    assert_eq!(status, 200, "{tested}");
    assert_eq!(tested["within_limit"], true, "{tested}");
    let (status, ready) = served_a.json("GET", "/readyz", None);
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["checks"]["store"], "ok");

    // Every operation of the document is a route.
    let (status, document) = served_a.json("GET", "/api/v1/openapi.json", None);
    assert_eq!(status, 200);
    let paths = document["paths"].as_object().unwrap();
    assert!(paths.len() >= 12, "{document}");
    for (path, item) in paths {
        for method in ["get", "post", "delete"] {
            if item.get(method).is_none() {
                continue;
            }
            let concrete = path.replace("{id}", "no-such-message");
            let body = (method == "post").then(|| ("application/json", b"{}".to_vec()));
            let (status, _, answer) =
                served_a.call(&method.to_ascii_uppercase(), &concrete, body, None);
            let answer = String::from_utf8_lossy(&answer);
            assert!(
                status != 405 && !answer.contains("no-such-route"),
                "{method} {path}: {status} {answer}"
            );
        }
    }

    served_a.stop();
    served_b.stop();

    // The audit log: the refused tokens with where they came from, the
    // accepted changes under the token's name.
    let (ok, audit, stderr) = setup.run(&a, &["audit", "list", "--json"]);
    assert!(ok, "{stderr}");
    assert!(
        !audit.contains(TOKEN) && !audit.contains(wrong),
        "no token in the log"
    );
    let rows: Vec<serde_json::Value> = audit
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let rows = if rows.is_empty() {
        serde_json::from_str::<Vec<serde_json::Value>>(&audit).unwrap()
    } else {
        rows
    };
    let refused: Vec<_> = rows
        .iter()
        .filter(|r| r["kind"] == "authentication-failed")
        .collect();
    assert_eq!(refused.len(), 2, "{audit}");
    assert!(
        refused
            .iter()
            .all(|r| r["reason"].as_str().unwrap().contains("127.0.0.1")),
        "{audit}"
    );
    assert!(
        refused[0]["reason"]
            .as_str()
            .unwrap()
            .contains("no bearer token"),
        "{audit}"
    );
    assert!(
        refused[1]["reason"]
            .as_str()
            .unwrap()
            .contains("bearer token "),
        "{audit}"
    );
    let accepted: Vec<_> = rows.iter().filter(|r| r["kind"] == "api-request").collect();
    assert!(
        accepted
            .iter()
            .any(|r| r["actor"] == "api:ehr" && r["outcome"] == "202"),
        "{audit}"
    );
}

#[test]
fn a_token_file_others_can_read_stops_serve_before_it_starts() {
    use std::os::unix::fs::PermissionsExt as _;
    let setup = Setup::new(GatewayBroker::Local);
    let config = party(&setup, A, "");
    let tokens = setup.dir().join(format!("{A}.tokens"));
    std::fs::set_permissions(&tokens, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (ok, _, stderr) = setup.run(&config, &["serve"]);
    assert!(!ok);
    assert!(
        stderr.contains("http.token_file") && stderr.contains("chmod 600"),
        "{stderr}"
    );
}

#[test]
fn over_tls_the_api_answers_https_and_plain_http_is_not_served() {
    let setup = Setup::new(GatewayBroker::Local);
    let (cert, key) = (setup.dir().join("api.pem"), setup.dir().join("api.key"));
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
        ])
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let extra = format!(
        "tls_cert = \"{}\"\ntls_key = \"{}\"\n",
        cert.display(),
        key.display()
    );
    let config = party(&setup, A, &extra);
    let log = setup.dir().join("tls.log");
    let mut child = setup
        .command(&config)
        .arg("serve")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    let mut base = None;
    wait_until(
        "the API said where it is",
        Duration::from_secs(30),
        || {
            base = read_log()
                .lines()
                .find_map(|l| l.strip_prefix("HTTP API on "))
                .map(str::to_owned);
            base.is_some()
        },
        read_log,
    );
    let base = base.unwrap();
    assert!(base.starts_with("https://"), "{base}");
    let tls = client(Some(&cert));
    let mut ready = 0;
    wait_until(
        "an HTTPS answer",
        Duration::from_secs(30),
        || {
            ready = call(&tls, &format!("{base}/healthz"), "GET", None, None).0;
            ready == 200
        },
        read_log,
    );
    let (status, _, _) = call(&tls, &format!("{base}/healthz"), "GET", None, Some(""));
    assert_eq!(status, 401, "the token is needed over TLS too");
    let plain = base.replace("https://", "http://");
    let refused = runtime().block_on(async {
        client(None)
            .get(format!("{plain}/healthz"))
            .bearer_auth(TOKEN)
            .send()
            .await
    });
    assert!(
        refused.is_err() || refused.unwrap().status() != 200,
        "plain HTTP is not served"
    );
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let status = child.wait().unwrap();
    assert!(status.success(), "{}", read_log());
}

#[test]
fn with_receipts_by_the_ehr_its_apprec_posted_to_the_api_goes_back_once() {
    let setup = Setup::new(GatewayBroker::Local);
    let a = party(&setup, A, "");
    let b = party(&setup, B, "[receipts]\nautomatic = false\n");
    let served_a = Served::start(&setup, &a, "a");
    let served_b = Served::start(&setup, &b, "b");
    let logs = || format!("a:\n{}\nb:\n{}", served_a.log(), served_b.log());
    let msg_id = uuid::Uuid::new_v4().to_string();
    let asking = helsemelding_testkit::payload::msghead(A, B)
        .msg_id(&msg_id)
        .ack()
        .build();
    let (status, _, _) = served_a.call(
        "POST",
        "/api/v1/messages",
        xml(asking.clone().into_bytes()),
        None,
    );
    assert_eq!(status, 202);
    wait_until(
        "AVAILABLE on B",
        Duration::from_secs(30),
        || {
            served_b
                .json(
                    "GET",
                    &format!("/api/v1/messages/{msg_id}?direction=in"),
                    None,
                )
                .0
                == 200
        },
        logs,
    );
    let path = format!("/api/v1/inbox/{msg_id}/apprec");
    let (status, body) = served_b.json("POST", &path, Some(serde_json::json!({ "status": "2" })));
    assert_problem(status, &body, 400, "bad-apprec");
    // A whole AppRec that answers another message.
    let other = helsemelding_testkit::payload::msghead(A, B)
        .msg_id("another")
        .ack()
        .build();
    let other = helsemelding_wire::msghead::MsgHead::parse(other.as_bytes()).unwrap();
    let wrong = helsemelding_wire::apprec::AppRec::answering(
        &other,
        helsemelding_wire::apprec::Version::V1_0,
        "x-1",
        chrono::Utc::now(),
        helsemelding_wire::apprec::Status::Ok,
        Vec::new(),
    )
    .to_xml();
    let (status, _, body) = served_b.call("POST", &path, xml(wrong.into_bytes()), None);
    assert_problem(
        status,
        &serde_json::from_slice(&body).unwrap(),
        400,
        "apprec-mismatch",
    );
    let (status, body) = served_b.json("POST", &path, Some(serde_json::json!({ "status": "1" })));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"], "APPREC_SENT", "{body}");
    let (status, body) = served_b.json("POST", &path, Some(serde_json::json!({ "status": "1" })));
    assert_problem(status, &body, 409, "wrong-state");
    wait_until(
        "APPREC_OK on A",
        Duration::from_secs(30),
        || {
            served_a
                .json("GET", &format!("/api/v1/messages/{msg_id}"), None)
                .1["state"]
                == "APPREC_OK"
        },
        logs,
    );
    served_a.stop();
    served_b.stop();
}
