//! `helsemelding send` with the NHN registry services configured
//! (`registry.address_url`): the receiver is resolved over HTTP from a real
//! server on 127.0.0.1 that serves the NHN address-registry fixture for
//! HER-id 8141705 and certificates made here, with the bearer token read
//! from `registry.token_file` or `HELSEMELDING_REGISTRY_TOKEN`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use helsemelding_testkit::fixtures::read_nhn;
use helsemelding_testkit::http::{serve, Request, Response};
use helsemelding_testkit::party::Parties;
use helsemelding_testkit::pki::Issued;
use helsemelding_transport::local::LocalTransport;

mod common;

const TOKEN: &str = "registry-test-token";
/// The fixture's party and the async queue its record names.
const RECEIVER: u32 = 8141705;
const RECEIVER_QUEUE: &str = "8141703_async";
const SENDER: u32 = 91462;

struct Setup {
    parties: Parties,
    config: PathBuf,
    requests: Arc<AtomicU32>,
}

impl Setup {
    fn dir(&self) -> &Path {
        self.parties.dir()
    }
}

/// The REST certificate answer for the receiver's two certificates.
fn certificate_json(signing: &Issued, encryption: &Issued) -> Vec<u8> {
    let value = |issued: &Issued| openssl::base64::encode_block(&issued.cert.to_der().unwrap());
    serde_json::json!([
        {"certificateValue": value(encryption), "usage": "encryption"},
        {"certificateValue": value(signing), "usage": "signing"},
    ])
    .to_string()
    .into_bytes()
}

/// Serves the receiver's record and `certificates`, and our own record and
/// `ours` (a receiver checks our signature against what the registry
/// publishes for us, so `send` does too).
fn registry_server(certificates: Vec<u8>, ours: Vec<u8>, requests: Arc<AtomicU32>) -> String {
    let address = serve(move |request: &Request| {
        requests.fetch_add(1, Ordering::SeqCst);
        if request.header("authorization") != Some(&format!("Bearer {TOKEN}")) {
            return Response::status(401);
        }
        let path = request.path.split('?').next().unwrap_or_default();
        if path == format!("/api/v1/communicationparty/{RECEIVER}") {
            let json = read_nhn(&format!(
                "registry/CommunicationDetailsRest_{RECEIVER}.json"
            ));
            return Response::ok("application/json", json);
        }
        if path == format!("/api/v1/communicationparty/{SENDER}") {
            // Our own record: the queues our replies and reports come back to.
            let json = String::from_utf8(read_nhn(&format!(
                "registry/CommunicationDetailsRest_{RECEIVER}.json"
            )))
            .unwrap()
            .replace(&RECEIVER.to_string(), &SENDER.to_string())
            .replace("8141703", &SENDER.to_string());
            return Response::ok("application/json", json.into_bytes());
        }
        if path == format!("/api/v1/certificate/{SENDER}") {
            return Response::ok("application/json", ours.clone());
        }
        if path == format!("/api/v1/certificate/{RECEIVER}") {
            return Response::ok("application/json", certificates.clone());
        }
        // No CPA and no CPP: the profile comes from the address record.
        Response::status(404)
    });
    format!("http://{address}")
}

fn setup(registry_auth: &str) -> Setup {
    let parties = Parties::builder()
        .ca_name("registry http CLI test CA")
        .serve_crl()
        .build();
    // Neither party is in a file registry: the HTTP registry serves both.
    let us = parties.party(SENDER).common_names("sender").issue();
    let them = parties.party(RECEIVER).common_names("receiver").issue();
    let requests = Arc::new(AtomicU32::new(0));
    let base = registry_server(
        certificate_json(&them.signing, &them.encryption),
        certificate_json(&us.signing, &us.encryption),
        requests.clone(),
    );
    std::fs::write(parties.dir().join("registry.token"), format!("{TOKEN}\n")).unwrap();
    let config = parties
        .gateway_config(&us)
        .registry_section(format!(
            "address_url = \"{base}\"\ncppa_url = \"{base}\"\n{registry_auth}\n"
        ))
        .store_at(parties.store_path("sender"))
        .file_name("sender.toml")
        .write();
    Setup {
        parties,
        config,
        requests,
    }
}

fn send(config: &Path, env: &[(&str, &str)]) -> (bool, String, String) {
    let payload = config.with_file_name("payload.xml");
    std::fs::write(&payload, common::msghead(SENDER, RECEIVER)).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_helsemelding"))
        .arg("--config")
        .arg(config)
        .args([
            "send",
            "--to",
            &RECEIVER.to_string(),
            "--function",
            "DIALOG_INNBYGGER_TEST",
        ])
        .arg(payload)
        .env_remove("HELSEMELDING_REGISTRY_TOKEN")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

fn queued(dir: &Path, queue: &str) -> u64 {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let transport = LocalTransport::open(dir.join("queues.db")).unwrap();
        transport.message_count(queue).await.unwrap()
    })
}

#[test]
fn send_resolves_the_receiver_through_the_http_registry_with_a_token_file() {
    let setup = setup(r#"token_file = "registry.token""#);
    let (ok, stdout, stderr) = send(&setup.config, &[]);
    assert!(ok, "send failed: {stderr}");
    assert!(uuid::Uuid::parse_str(stdout.trim()).is_ok(), "{stdout}");
    // The queue named by the fixture's address record, not <HER-id>_async.
    assert_eq!(queued(setup.dir(), RECEIVER_QUEUE), 1);
    assert_eq!(queued(setup.dir(), &format!("{RECEIVER}_async")), 0);
    assert!(setup.requests.load(Ordering::SeqCst) >= 2);
}

#[test]
fn the_token_may_come_from_the_environment_and_a_wrong_one_is_refused() {
    let setup = setup("");
    let (ok, _, stderr) = send(&setup.config, &[("HELSEMELDING_REGISTRY_TOKEN", "wrong")]);
    assert!(!ok, "a wrong token must not resolve the receiver");
    assert!(stderr.contains(&RECEIVER.to_string()), "{stderr}");
    assert!(!stderr.contains("wrong"), "the token leaked: {stderr}");
    assert_eq!(queued(setup.dir(), RECEIVER_QUEUE), 0);

    let (ok, _, stderr) = send(&setup.config, &[("HELSEMELDING_REGISTRY_TOKEN", TOKEN)]);
    assert!(ok, "send failed: {stderr}");
    assert_eq!(queued(setup.dir(), RECEIVER_QUEUE), 1);
}

#[test]
fn a_token_in_the_configuration_file_is_refused_without_showing_it() {
    let setup = setup(r#"token = "s3cret-in-file""#);
    let (ok, _, stderr) = send(&setup.config, &[]);
    assert!(!ok);
    assert!(stderr.contains("registry.token"), "{stderr}");
    assert!(!stderr.contains("s3cret-in-file"), "{stderr}");
}
