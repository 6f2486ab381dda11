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
    // A command that refuses its arguments may exit before it reads its
    // input: a broken pipe here is that, not a failure of the test.
    match input.write_all(stdin.unwrap_or_default()) {
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => {}
        other => other.unwrap(),
    }
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
    // NHN's sample certificates expired in 2017: refused, and used with a
    // warning under --force.
    let protect_args = [
        "protect",
        "--signing-p12",
        signing_p12.to_str().unwrap(),
        "--recipient-cert",
        recipient.to_str().unwrap(),
    ];
    let password = [(
        "HELSEMELDING_P12_PASSWORD",
        fixtures::HELSENORGE_P12_PASSWORD,
    )];
    let refused = run(dir.path(), &protect_args, Some(payload), &password);
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8(refused.stderr).unwrap();
    assert!(
        stderr.contains("the signing certificate") && stderr.contains("expired on 2017-02-06"),
        "{stderr}"
    );
    let mut forced_args = protect_args.to_vec();
    forced_args.push("--force");
    let forced = run(dir.path(), &forced_args, Some(payload), &password);
    let stderr = String::from_utf8_lossy(&forced.stderr).into_owned();
    assert_eq!(stderr.matches("warning: ").count(), 2, "{stderr}");
    let der = ok(forced);
    let unprotect_args = [
        "unprotect",
        "--decryption-p12",
        decryption_p12.to_str().unwrap(),
        "--sender-cert",
        sender_cert.to_str().unwrap(),
        "--force",
    ];
    let password = [(
        "HELSEMELDING_P12_PASSWORD",
        fixtures::COUNTERPARTY_P12_PASSWORD,
    )];
    // The bundle's certificate is judged as a file's would be.
    let refused = run(
        dir.path(),
        &unprotect_args[..unprotect_args.len() - 1],
        Some(&der),
        &password,
    );
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8(refused.stderr).unwrap();
    let named = format!("--decryption-p12 {} (serial", decryption_p12.display());
    assert!(
        stderr.contains(&named) && stderr.contains("expired on 2017-08-14"),
        "{stderr}"
    );
    let forced = run(dir.path(), &unprotect_args, Some(&der), &password);
    let stderr = String::from_utf8_lossy(&forced.stderr).into_owned();
    assert_eq!(stderr.matches("warning: ").count(), 2, "{stderr}");
    assert_eq!(ok(forced), payload);
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

/// Finding 9: `protect` signs only with a signing certificate and encrypts
/// only to an encryption certificate, both valid now; a file with several
/// certificates or a directory is named as such.
#[test]
fn protect_refuses_certificates_unfit_for_their_role() {
    let pki = TestPki::new("CLI CA");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    pki.issue("sender", Usage::Signing).write_pem(d, "sender");
    pki.issue("receiver", Usage::Encryption)
        .write_pem(d, "receiver");
    pki.issue("enc only", Usage::Encryption)
        .write_pem(d, "enconly");
    let expired = helsemelding_testkit::pki::LeafOptions {
        not_before: chrono::Utc::now() - chrono::Duration::days(400),
        not_after: chrono::Utc::now() - chrono::Duration::days(1),
        ..Default::default()
    };
    pki.issue_with("old", Usage::Signing, &expired)
        .write_pem(d, "old");
    let protect = |cert: &str, key: &str, recipient: &str, extra: &[&str]| {
        let mut args = vec![
            "protect",
            "--signing-cert",
            cert,
            "--signing-key",
            key,
            "--recipient-cert",
            recipient,
        ];
        args.extend(extra);
        run(d, &args, Some(b"<x/>"), &[])
    };
    let refused = |output: Output| {
        assert_eq!(output.status.code(), Some(1));
        assert!(output.stdout.is_empty(), "nothing protected");
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        stderr
    };

    let stderr = refused(protect("enconly.pem", "enconly.key", "receiver.pem", &[]));
    assert!(
        stderr.contains("the signing certificate") && stderr.contains("without nonRepudiation"),
        "{stderr}"
    );
    let stderr = refused(protect("old.pem", "old.key", "receiver.pem", &[]));
    assert!(stderr.contains("expired on"), "{stderr}");
    let stderr = refused(protect("sender.pem", "sender.key", "sender.pem", &[]));
    assert!(
        stderr.contains("the recipient certificate")
            && stderr.contains("without keyEncipherment")
            && stderr.contains("swapped"),
        "{stderr}"
    );
    // --force: a warning, and the message is made.
    let forced = protect("old.pem", "old.key", "receiver.pem", &["--force"]);
    let stderr = String::from_utf8_lossy(&forced.stderr).into_owned();
    assert!(
        stderr.starts_with("warning: the signing certificate"),
        "{stderr}"
    );
    assert_eq!(ok(forced)[0], 0x30);

    // Two certificates in the signing certificate's file.
    let mut two = std::fs::read(d.join("sender.pem")).unwrap();
    two.extend(pki.ca.cert.to_pem().unwrap());
    std::fs::write(d.join("two.pem"), two).unwrap();
    let stderr = refused(protect("two.pem", "sender.key", "receiver.pem", &[]));
    assert!(
        stderr.contains("two.pem") && stderr.contains("holds 2 certificates"),
        "{stderr}"
    );
    let stderr = refused(protect("sender.pem", "sender.key", "two.pem", &[]));
    assert!(stderr.contains("holds 2 certificates"), "{stderr}");
    // A directory where a file belongs.
    std::fs::create_dir(d.join("adir")).unwrap();
    let stderr = refused(protect("adir", "sender.key", "receiver.pem", &[]));
    assert!(
        stderr.contains("adir: is a directory") && !stderr.contains("does not exist"),
        "{stderr}"
    );
}

/// The one line of a refused command, which wrote nothing on stdout.
fn refused(output: Output) -> String {
    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty(), "nothing written");
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    stderr
}

/// `unprotect --decryption-cert CERT.pem --decryption-key CERT.key
/// --sender-cert SENDER` of `der` (plus `extra`) in `dir`.
fn unprotect_with(dir: &Path, cert: &str, sender: &str, extra: &[&str], der: &[u8]) -> Output {
    let (cert_file, key_file) = (format!("{cert}.pem"), format!("{cert}.key"));
    let mut args = vec![
        "unprotect",
        "--decryption-cert",
        &cert_file,
        "--decryption-key",
        &key_file,
        "--sender-cert",
        sender,
    ];
    args.extend(extra);
    run(dir, &args, Some(der), &[])
}

/// `protect` of `payload`, signed by `signer` (stem of .pem/.key), to the
/// certificate `recipient`, taking whatever it is given (--force).
fn protect_forced(dir: &Path, signer: &str, recipient: &str, payload: &[u8]) -> Vec<u8> {
    let (cert, key) = (format!("{signer}.pem"), format!("{signer}.key"));
    let args = [
        "protect",
        "--signing-cert",
        &cert,
        "--signing-key",
        &key,
        "--recipient-cert",
        recipient,
        "--force",
    ];
    ok(run(dir, &args, Some(payload), &[]))
}

/// Finding 9: `unprotect` decrypts only with a certificate whose key usage
/// allows it (keyEncipherment or dataEncipherment, or no key usage
/// extension) and verifies only against a signing certificate, all valid
/// now; --force uses them anyway with a warning.
#[test]
fn unprotect_refuses_certificates_unfit_for_their_role() {
    let pki = TestPki::new("CLI CA");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let expired = helsemelding_testkit::pki::LeafOptions {
        not_before: chrono::Utc::now() - chrono::Duration::days(400),
        not_after: chrono::Utc::now() - chrono::Duration::days(1),
        ..Default::default()
    };
    pki.issue("sender", Usage::Signing).write_pem(d, "sender");
    pki.issue("receiver", Usage::Encryption)
        .write_pem(d, "receiver");
    pki.issue("signing only", Usage::Signing)
        .write_pem(d, "signonly");
    pki.issue("agreement only", Usage::Neither)
        .write_pem(d, "neither");
    pki.issue("no key usage", Usage::Unstated)
        .write_pem(d, "unstated");
    pki.issue_with("old receiver", Usage::Encryption, &expired)
        .write_pem(d, "oldreceiver");
    pki.issue_with("old sender", Usage::Signing, &expired)
        .write_pem(d, "oldsender");
    let payload = b"<x/>";

    // Our decryption certificate says it is for signing, or for neither.
    let der = protect_forced(d, "sender", "signonly.pem", payload);
    let stderr = refused(unprotect_with(d, "signonly", "sender.pem", &[], &der));
    assert!(
        stderr.contains("--decryption-cert signonly.pem")
            && stderr.contains("without keyEncipherment or dataEncipherment")
            && stderr.contains("swapped")
            && stderr.contains("--force"),
        "{stderr}"
    );
    let forced = unprotect_with(d, "signonly", "sender.pem", &["--force"], &der);
    let stderr = String::from_utf8_lossy(&forced.stderr).into_owned();
    assert!(
        stderr.starts_with("warning: --decryption-cert signonly.pem"),
        "{stderr}"
    );
    assert_eq!(ok(forced), payload);
    let stderr = refused(unprotect_with(d, "neither", "sender.pem", &[], &der));
    assert!(
        stderr.contains("has key usage keyAgreement without keyEncipherment")
            && !stderr.contains("swapped"),
        "{stderr}"
    );

    // No key usage extension restricts nothing: decrypted, no warning.
    let der = protect_forced(d, "sender", "unstated.pem", payload);
    let output = unprotect_with(d, "unstated", "sender.pem", &[], &der);
    assert!(output.stderr.is_empty(), "{output:?}");
    assert_eq!(ok(output), payload);

    // Our decryption certificate expired.
    let der = protect_forced(d, "sender", "oldreceiver.pem", payload);
    let stderr = refused(unprotect_with(d, "oldreceiver", "sender.pem", &[], &der));
    assert!(
        stderr.contains("--decryption-cert oldreceiver.pem") && stderr.contains("expired on"),
        "{stderr}"
    );
    let forced = unprotect_with(d, "oldreceiver", "sender.pem", &["--force"], &der);
    assert_eq!(ok(forced), payload);

    // The sender's certificate: an encryption certificate, or expired.
    let der = protect_forced(d, "oldsender", "receiver.pem", payload);
    let stderr = refused(unprotect_with(d, "receiver", "receiver.pem", &[], &der));
    assert!(
        stderr.contains("--sender-cert receiver.pem")
            && stderr.contains("without nonRepudiation")
            && stderr.contains("swapped"),
        "{stderr}"
    );
    let stderr = refused(unprotect_with(d, "receiver", "oldsender.pem", &[], &der));
    assert!(
        stderr.contains("--sender-cert oldsender.pem") && stderr.contains("expired on"),
        "{stderr}"
    );
    let forced = unprotect_with(d, "receiver", "oldsender.pem", &["--force"], &der);
    let stderr = String::from_utf8_lossy(&forced.stderr).into_owned();
    assert!(
        stderr.starts_with("warning: --sender-cert oldsender.pem"),
        "{stderr}"
    );
    assert_eq!(ok(forced), payload);

    // The legacy identity is judged as the current one.
    let legacy = [
        "--legacy-decryption-cert",
        "signonly.pem",
        "--legacy-decryption-key",
        "signonly.key",
    ];
    let der = protect_forced(d, "sender", "receiver.pem", payload);
    let stderr = refused(unprotect_with(d, "receiver", "sender.pem", &legacy, &der));
    assert!(
        stderr.contains("--legacy-decryption-cert signonly.pem")
            && stderr.contains("without keyEncipherment"),
        "{stderr}"
    );
    assert_eq!(
        ok(unprotect_with(d, "receiver", "sender.pem", &[], &der)),
        payload
    );
}

/// Finding 9: a file with several certificates, or a directory, given to
/// `unprotect` is named as such.
#[test]
fn unprotect_names_bundles_and_directories() {
    let pki = TestPki::new("CLI CA");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    pki.issue("sender", Usage::Signing).write_pem(d, "sender");
    pki.issue("receiver", Usage::Encryption)
        .write_pem(d, "receiver");
    let der = protect_forced(d, "sender", "receiver.pem", b"<x/>");
    for (stem, other) in [("sender", "sender2"), ("receiver", "receiver2")] {
        let mut two = std::fs::read(d.join(format!("{stem}.pem"))).unwrap();
        two.extend(pki.ca.cert.to_pem().unwrap());
        std::fs::write(d.join(format!("{other}.pem")), two).unwrap();
        std::fs::copy(
            d.join(format!("{stem}.key")),
            d.join(format!("{other}.key")),
        )
        .unwrap();
    }
    let stderr = refused(unprotect_with(d, "receiver2", "sender.pem", &[], &der));
    assert!(
        stderr.contains("--decryption-cert receiver2.pem")
            && stderr.contains("holds 2 certificates"),
        "{stderr}"
    );
    let stderr = refused(unprotect_with(d, "receiver", "sender2.pem", &[], &der));
    assert!(
        stderr.contains("sender2.pem") && stderr.contains("holds 2 certificates"),
        "{stderr}"
    );
    std::fs::create_dir(d.join("adir")).unwrap();
    let stderr = refused(unprotect_with(d, "receiver", "adir", &[], &der));
    assert!(stderr.contains("adir: is a directory"), "{stderr}");
    let stderr = refused(unprotect_with(
        d,
        "receiver",
        "sender.pem",
        &["--in", "adir"],
        &der,
    ));
    assert!(stderr.contains("input adir: is a directory"), "{stderr}");
}
