//! `helsemelding send` from one party and `helsemelding listen` on the
//! other, over the local transport: the payload arrives byte for byte.

use std::path::Path;
use std::process::Command;

use helsemelding_protect::Certificate;
use helsemelding_registry::file::NewParty;
use helsemelding_registry::FileRegistry;
use helsemelding_testkit::http::serve_crl;
use helsemelding_testkit::pki::{LeafOptions, TestPki, Usage};

const PAYLOAD: &str = r#"<MsgHead xmlns="http://www.kith.no/xmlstds/msghead/2006-05-24">
  <MsgInfo>
    <Type V="DIALOG_INNBYGGER_TEST" DN="Test" />
    <MIGversion>v1.2 2006-05-24</MIGversion>
    <GenDate>2026-11-23T10:00:00Z</GenDate>
    <MsgId>2b1c7c86-64a4-4a38-a1b4-0f4f4b5d2c11</MsgId>
    <Sender><Organisation><OrganisationName>A</OrganisationName><Ident><Id>91462</Id><TypeId V="HER" S="2.16.578.1.12.4.1.1.9051" DN="HER-id" /></Ident></Organisation></Sender>
    <Receiver><Organisation><OrganisationName>B</OrganisationName><Ident><Id>109989</Id><TypeId V="HER" S="2.16.578.1.12.4.1.1.9051" DN="HER-id" /></Ident></Organisation></Receiver>
  </MsgInfo>
  <Document><RefDoc><MsgType V="XML" DN="XML-instans" /><Content><Note xmlns="urn:test">Hei, æøå</Note></Content></RefDoc></Document>
</MsgHead>"#;

fn helsemelding(config: &Path, args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_helsemelding"))
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

fn party_config(
    dir: &Path,
    pki: &TestPki,
    registry: &FileRegistry,
    her_id: u32,
    crl_url: &str,
) -> std::path::PathBuf {
    let options = LeafOptions {
        crl_url: Some(crl_url.to_string()),
        ..LeafOptions::default()
    };
    let signing = pki.issue_with(&format!("{her_id} signing"), Usage::Signing, &options);
    let encryption = pki.issue_with(&format!("{her_id} encryption"), Usage::Encryption, &options);
    let (sign_cert, sign_key) = signing.write_pem(dir, &format!("{her_id}-sign"));
    let (enc_cert, enc_key) = encryption.write_pem(dir, &format!("{her_id}-enc"));
    registry
        .add_party(&NewParty {
            her_id,
            name: format!("party {her_id}"),
            signing_certificate: Certificate::from_x509(signing.cert.clone()),
            encryption_certificate: Certificate::from_x509(encryption.cert.clone()),
            cpp: None,
            queue_prefix: None,
        })
        .unwrap();
    let d = dir.display();
    let config = format!(
        r#"her_id = {her_id}
[broker]
url = "local:{d}/queues.db"
[identity]
signing_cert = "{}"
signing_key = "{}"
decryption_cert = "{}"
decryption_key = "{}"
[registry]
dir = "{d}/registry"
[trust]
anchors = ["{d}/ca.pem"]
revocation = "require"
[store]
path = "{d}/{her_id}.db"
"#,
        sign_cert.display(),
        sign_key.display(),
        enc_cert.display(),
        enc_key.display()
    );
    let path = dir.join(format!("{her_id}.toml"));
    std::fs::write(&path, config).unwrap();
    path
}

#[test]
fn send_then_listen_delivers_the_payload_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new("cli test CA");
    std::fs::write(dir.path().join("ca.pem"), pki.ca.cert.to_pem().unwrap()).unwrap();
    let registry = FileRegistry::new(dir.path().join("registry"));
    // Revocation is required, as by default: every certificate names a CRL
    // served here, which revokes nothing.
    let next_update = chrono::Utc::now() + chrono::Duration::days(1);
    let crl_url = serve_crl(pki.crl(&[], next_update).to_der().unwrap());
    let a = party_config(dir.path(), &pki, &registry, 91462, &crl_url);
    let b = party_config(dir.path(), &pki, &registry, 109989, &crl_url);
    let payload_file = dir.path().join("note.xml");
    std::fs::write(&payload_file, PAYLOAD).unwrap();

    let (ok, stdout, stderr) = helsemelding(
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

    let out = dir.path().join("out");
    let (ok, _, stderr) = helsemelding(
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
    assert_eq!(received, PAYLOAD.as_bytes());
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
