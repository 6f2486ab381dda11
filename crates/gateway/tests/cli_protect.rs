//! `helsemelding protect` / `unprotect` through the built binary: files,
//! stdin/stdout, PKCS#12 with the password from the environment, and the
//! one-line failure report.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use helsemelding_testkit::fixtures;
use helsemelding_testkit::pki::{TestPki, Usage};

const BIN: &str = env!("CARGO_BIN_EXE_helsemelding");

struct Setup {
    dir: tempfile::TempDir,
    sender_serial: String,
    stranger_serial: String,
}

impl Setup {
    fn new() -> Self {
        let pki = TestPki::new("CLI CA");
        let dir = tempfile::tempdir().unwrap();
        let sender = pki.issue("cli sender", Usage::Signing);
        let receiver = pki.issue("cli receiver", Usage::Encryption);
        let stranger = pki.issue("cli stranger", Usage::Signing);
        sender.write_pem(dir.path(), "sender");
        receiver.write_pem(dir.path(), "receiver");
        stranger.write_pem(dir.path(), "stranger");
        // The receiver certificate also as DER, to show both forms work.
        std::fs::write(
            dir.path().join("receiver.cer"),
            receiver.cert.to_der().unwrap(),
        )
        .unwrap();
        Setup {
            dir,
            sender_serial: sender.serial_hex(),
            stranger_serial: stranger.serial_hex(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn run(dir: &Path, args: &[&str], stdin: Option<&[u8]>, env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .current_dir(dir)
        .env_remove("HELSEMELDING_P12_PASSWORD")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command.spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or_default()).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

fn ok(output: Output) -> Vec<u8> {
    assert!(
        output.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

const SIGN_AS_SENDER: [&str; 4] = [
    "--signing-cert",
    "sender.pem",
    "--signing-key",
    "sender.key",
];
const DECRYPT_AS_RECEIVER: [&str; 4] = [
    "--decryption-cert",
    "receiver.pem",
    "--decryption-key",
    "receiver.key",
];

#[test]
fn files_round_trip() {
    let s = Setup::new();
    let payload = "<Melding>æøå</Melding>\r\n".as_bytes();
    std::fs::write(s.path("in.xml"), payload).unwrap();
    let mut args = vec!["protect"];
    args.extend(SIGN_AS_SENDER);
    args.extend([
        "--recipient-cert",
        "receiver.cer",
        "--in",
        "in.xml",
        "--out",
        "msg.der",
    ]);
    ok(run(s.dir.path(), &args, None, &[]));
    let mut args = vec!["unprotect"];
    args.extend(DECRYPT_AS_RECEIVER);
    args.extend([
        "--sender-cert",
        "sender.pem",
        "--reject-3des",
        "--in",
        "msg.der",
        "--out",
        "out.xml",
    ]);
    ok(run(s.dir.path(), &args, None, &[]));
    assert_eq!(std::fs::read(s.path("out.xml")).unwrap(), payload);
}

#[test]
fn stdin_stdout_round_trip() {
    let s = Setup::new();
    let payload = b"<stdin/>";
    let mut args = vec!["protect"];
    args.extend(SIGN_AS_SENDER);
    args.extend(["--recipient-cert", "receiver.pem"]);
    let der = ok(run(s.dir.path(), &args, Some(payload), &[]));
    assert_eq!(der[0], 0x30, "DER on stdout");
    let mut args = vec!["unprotect"];
    args.extend(DECRYPT_AS_RECEIVER);
    args.extend(["--sender-cert", "sender.pem"]);
    assert_eq!(ok(run(s.dir.path(), &args, Some(&der), &[])), payload);
}

#[test]
fn wrong_signer_fails_with_one_line_naming_both_serials() {
    let s = Setup::new();
    let mut args = vec!["protect"];
    args.extend(SIGN_AS_SENDER);
    args.extend(["--recipient-cert", "receiver.pem"]);
    let der = ok(run(s.dir.path(), &args, Some(b"<x/>"), &[]));
    let mut args = vec!["unprotect"];
    args.extend(DECRYPT_AS_RECEIVER);
    args.extend(["--sender-cert", "stranger.pem"]);
    let output = run(s.dir.path(), &args, Some(&der), &[]);
    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty(), "no payload on failure");
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert_eq!(
        stderr.trim_end(),
        format!(
            "helsemelding: unprotect: message signed by certificate serial {}, expected sender certificate serial {}",
            s.sender_serial, s.stranger_serial
        )
    );
}

#[test]
fn garbage_input_fails_with_one_line() {
    let s = Setup::new();
    let mut args = vec!["unprotect"];
    args.extend(DECRYPT_AS_RECEIVER);
    args.extend(["--sender-cert", "sender.pem"]);
    let output = run(s.dir.path(), &args, Some(b"not cms at all"), &[]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("not a CMS EnvelopedData"), "{stderr}");
}

#[test]
fn missing_key_file_is_named() {
    let s = Setup::new();
    let args = [
        "protect",
        "--signing-cert",
        "sender.pem",
        "--signing-key",
        "nope.key",
        "--recipient-cert",
        "receiver.pem",
    ];
    let output = run(s.dir.path(), &args, Some(b"<x/>"), &[]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("signing identity") && stderr.contains("nope.key"),
        "{stderr}"
    );
}

#[test]
fn pkcs12_bundles_with_the_password_from_the_environment() {
    let certs = fixtures::nhn("certificates");
    let payload = b"<real/>";
    let signing_p12 = certs.join("Helsenorge_Signature.p12");
    let recipient = certs.join("Counterparty_Encryption.cer");
    let decryption_p12 = certs.join("Counterparty_Encryption.p12");
    let sender_cert = certs.join("Helsenorge_Signature.cer");
    let dir = tempfile::tempdir().unwrap();
    let der = ok(run(
        dir.path(),
        &[
            "protect",
            "--signing-p12",
            signing_p12.to_str().unwrap(),
            "--recipient-cert",
            recipient.to_str().unwrap(),
        ],
        Some(payload),
        &[(
            "HELSEMELDING_P12_PASSWORD",
            fixtures::HELSENORGE_P12_PASSWORD,
        )],
    ));
    let unprotect_args = [
        "unprotect",
        "--decryption-p12",
        decryption_p12.to_str().unwrap(),
        "--sender-cert",
        sender_cert.to_str().unwrap(),
    ];
    let plain = ok(run(
        dir.path(),
        &unprotect_args,
        Some(&der),
        &[(
            "HELSEMELDING_P12_PASSWORD",
            fixtures::COUNTERPARTY_P12_PASSWORD,
        )],
    ));
    assert_eq!(plain, payload);
    // Without the password: one line naming the bundle.
    let output = run(dir.path(), &unprotect_args, Some(&der), &[]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("Counterparty_Encryption.p12"), "{stderr}");
    assert!(stderr.contains("wrong password"), "{stderr}");
}

#[test]
fn bench_protect_prints_json_figures() {
    let dir = tempfile::tempdir().unwrap();
    let stdout = ok(run(
        dir.path(),
        &[
            "bench",
            "protect",
            "--size",
            "512",
            "--seconds",
            "0.2",
            "--json",
        ],
        None,
        &[],
    ));
    let report: serde_json::Value = serde_json::from_slice(&stdout).unwrap();
    assert_eq!(report["size"], 512);
    for key in [
        "protect_per_s",
        "unprotect_per_s",
        "rsa_private_per_s",
        "rsa_public_per_s",
        "ratio",
    ] {
        assert!(report[key].as_f64().unwrap() > 0.0, "{key}: {report}");
    }
    // A public-key operation is far cheaper than a private one, so the bound
    // it puts on the ratio is close to, but below, 1.
    let bound = report["rsa_bound"].as_f64().unwrap();
    assert!(bound > 0.5 && bound < 1.0, "{report}");
    assert!(
        report["rsa_public_per_s"].as_f64().unwrap()
            > report["rsa_private_per_s"].as_f64().unwrap(),
        "{report}"
    );
}
