//! `helsemelding cert check` as an operator runs it: JSON shape, exit codes,
//! `--at`, `--offline`, `--crl`, and fetching from a distribution point on a
//! local HTTP server.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{Duration, Utc};
use helsemelding_testkit::fixtures;
use helsemelding_testkit::pki::{LeafOptions, TestPki, Usage};
use openssl::x509::X509;
use serde_json::Value;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn helsemelding(args: &[&str], cache_home: &Path) -> Run {
    let Output {
        status,
        stdout,
        stderr,
    } = Command::new(env!("CARGO_BIN_EXE_helsemelding"))
        .args(args)
        .env("XDG_CACHE_HOME", cache_home)
        .output()
        .unwrap();
    Run {
        code: status.code().unwrap(),
        stdout: String::from_utf8(stdout).unwrap(),
        stderr: String::from_utf8(stderr).unwrap(),
    }
}

fn json(run: &Run) -> serde_json::Map<String, Value> {
    match serde_json::from_str(run.stdout.trim()).unwrap() {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

fn errors(run: &Run) -> Vec<String> {
    json(run)["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap().to_string())
        .collect()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path.to_str().unwrap().to_string()
}

/// A temp dir with `ca.pem`, `signing.pem`, `revoked.pem`, `empty.crl`, `revoked.crl`.
struct Files {
    dir: tempfile::TempDir,
    signing_serial: String,
}

impl Files {
    fn new() -> Files {
        let dir = tempfile::tempdir().unwrap();
        let pki = TestPki::new("Cli CA");
        let signing = pki.issue("cli signing", Usage::Signing);
        let revoked = pki.issue("cli revoked", Usage::Signing);
        let next = Utc::now() + Duration::hours(24);
        write(dir.path(), "ca.pem", &pki.ca.cert.to_pem().unwrap());
        write(dir.path(), "signing.pem", &signing.cert.to_pem().unwrap());
        write(dir.path(), "signing.der", &signing.cert.to_der().unwrap());
        write(dir.path(), "revoked.pem", &revoked.cert.to_pem().unwrap());
        write(
            dir.path(),
            "empty.crl",
            &pki.crl(&[], next).to_der().unwrap(),
        );
        let revoking: [&X509; 1] = [&revoked.cert];
        write(
            dir.path(),
            "revoked.crl",
            &pki.crl(&revoking, next).to_pem().unwrap(),
        );
        Files {
            signing_serial: signing.serial_hex(),
            dir,
        }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_str().unwrap().to_string()
    }
}

#[test]
fn a_good_certificate_prints_exactly_the_documented_fields_and_exits_0() {
    let files = Files::new();
    let run = helsemelding(
        &[
            "cert",
            "check",
            &files.path("signing.der"),
            "--usage",
            "signing",
            "--trust",
            &files.path("ca.pem"),
            "--crl",
            &files.path("empty.crl"),
            "--json",
        ],
        files.dir.path(),
    );
    assert_eq!(run.code, 0, "stderr: {}", run.stderr);
    assert_eq!(run.stdout.trim().lines().count(), 1, "one JSON object");
    let object = json(&run);
    let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "errors",
            "issuer",
            "key_usage",
            "not_after",
            "not_before",
            "serial",
            "subject"
        ]
    );
    assert_eq!(object["subject"], "O=helsemelding test, CN=cli signing");
    assert_eq!(object["issuer"], "O=helsemelding test, CN=Cli CA");
    assert_eq!(object["serial"], files.signing_serial.as_str());
    assert_eq!(
        object["key_usage"],
        serde_json::json!(["digitalSignature", "nonRepudiation"])
    );
    assert_eq!(object["errors"], serde_json::json!([]));
    let not_before = object["not_before"].as_str().unwrap();
    assert!(
        chrono::DateTime::parse_from_rfc3339(not_before).is_ok(),
        "{not_before}"
    );
    assert!(not_before.ends_with('Z'));
}

#[test]
fn wrong_usage_and_revocation_from_a_crl_file_exit_1() {
    let files = Files::new();
    let trust = files.path("ca.pem");
    let crl = files.path("revoked.crl");
    let cache = files.dir.path();
    let run = helsemelding(
        &[
            "cert",
            "check",
            &files.path("revoked.pem"),
            "--usage",
            "encryption",
            "--trust",
            &trust,
            "--crl",
            &crl,
            "--json",
        ],
        cache,
    );
    assert_eq!(run.code, 1);
    assert_eq!(errors(&run), ["wrong-usage", "revoked"]);
    let run = helsemelding(
        &[
            "cert",
            "check",
            &files.path("signing.pem"),
            "--usage",
            "signing",
            "--trust",
            &trust,
            "--crl",
            &crl,
            "--json",
        ],
        cache,
    );
    assert_eq!(run.code, 0, "the CRL does not list this one");
}

#[test]
fn offline_without_crls_is_revocation_unknown_unless_warned_or_off() {
    let files = Files::new();
    let trust = files.path("ca.pem");
    let cert = files.path("signing.pem");
    let base = [
        "cert",
        "check",
        &cert,
        "--usage",
        "signing",
        "--trust",
        &trust,
        "--offline",
        "--json",
    ];
    let cache = files.dir.path();
    let require = helsemelding(&base, cache);
    assert_eq!(require.code, 1);
    assert_eq!(errors(&require), ["revocation-unknown"]);
    let warn = helsemelding(&[&base[..], &["--revocation", "warn"]].concat(), cache);
    assert_eq!(warn.code, 0);
    assert!(errors(&warn).is_empty());
    assert!(
        warn.stderr.contains("warning: revocation-unknown"),
        "{}",
        warn.stderr
    );
    let off = helsemelding(&[&base[..], &["--revocation", "off"]].concat(), cache);
    assert_eq!(off.code, 0);
}

#[test]
fn without_trust_anchors_the_certificate_is_untrusted() {
    let files = Files::new();
    let run = helsemelding(
        &[
            "cert",
            "check",
            &files.path("signing.pem"),
            "--usage",
            "signing",
            "--crl",
            &files.path("empty.crl"),
            "--json",
        ],
        files.dir.path(),
    );
    assert_eq!(run.code, 1);
    // Without the CA the CRL's signature cannot be checked either.
    assert_eq!(errors(&run), ["untrusted", "revocation-unknown"]);
}

#[test]
fn buypass_test_certificates_are_expired_now_and_valid_at_a_pinned_time() {
    let cache = tempfile::tempdir().unwrap();
    let signing = fixtures::nhn("certificates/Helsenorge_Signature.cer");
    let signing = signing.to_str().unwrap();
    let now = helsemelding(
        &[
            "cert",
            "check",
            signing,
            "--usage",
            "signing",
            "--offline",
            "--json",
        ],
        cache.path(),
    );
    assert_eq!(now.code, 1);
    assert_eq!(errors(&now), ["expired", "untrusted", "revocation-unknown"]);
    let object = json(&now);
    assert_eq!(object["serial"], "10a3f7e99720077e30aa");
    assert_eq!(object["key_usage"], serde_json::json!(["nonRepudiation"]));
    assert_eq!(object["not_before"], "2014-02-05T23:00:00Z");
    assert_eq!(object["not_after"], "2017-02-06T22:59:00Z");

    let encryption = fixtures::nhn("certificates/Counterparty_Encryption.cer");
    let pinned = helsemelding(
        &[
            "cert",
            "check",
            encryption.to_str().unwrap(),
            "--usage",
            "encryption",
            "--at",
            "2016-06-01T12:00:00+02:00",
            "--revocation",
            "off",
            "--json",
        ],
        cache.path(),
    );
    assert_eq!(errors(&pinned), ["untrusted"]);
    assert_eq!(
        json(&pinned)["key_usage"],
        serde_json::json!(["digitalSignature", "keyEncipherment", "dataEncipherment"])
    );
}

#[test]
fn text_output_names_every_field() {
    let files = Files::new();
    let run = helsemelding(
        &[
            "cert",
            "check",
            &files.path("signing.pem"),
            "--usage",
            "signing",
            "--offline",
        ],
        files.dir.path(),
    );
    assert_eq!(run.code, 1);
    for field in [
        "subject:",
        "issuer:",
        "serial:",
        "not_before:",
        "not_after:",
        "key_usage:",
    ] {
        assert!(
            run.stdout.contains(field),
            "{field} missing in {}",
            run.stdout
        );
    }
    assert!(run
        .stdout
        .contains(&format!("serial:     {}", files.signing_serial)));
    assert!(
        run.stdout
            .contains("errors:     untrusted, revocation-unknown"),
        "{}",
        run.stdout
    );
}

#[test]
fn bad_input_fails_with_a_message_naming_it() {
    let files = Files::new();
    let garbage = write(files.dir.path(), "garbage.pem", b"not a certificate");
    let run = helsemelding(
        &["cert", "check", &garbage, "--usage", "signing"],
        files.dir.path(),
    );
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("garbage.pem"), "{}", run.stderr);
    assert!(run.stdout.is_empty());
    let bad_time = helsemelding(
        &[
            "cert",
            "check",
            &files.path("signing.pem"),
            "--usage",
            "signing",
            "--at",
            "yesterday",
        ],
        files.dir.path(),
    );
    assert_eq!(bad_time.code, 2, "clap usage error");
    assert!(bad_time.stderr.contains("RFC 3339"), "{}", bad_time.stderr);
}

/// Finding 9: a PEM file with several certificates is not silently cut to
/// the first, and a directory is called one.
#[test]
fn several_certificates_or_a_directory_are_named() {
    let files = Files::new();
    let mut two = std::fs::read(files.path("signing.pem")).unwrap();
    two.extend(std::fs::read(files.path("ca.pem")).unwrap());
    let two = write(files.dir.path(), "two.pem", &two);
    let run = helsemelding(
        &["cert", "check", &two, "--usage", "signing", "--offline"],
        files.dir.path(),
    );
    assert_eq!(run.code, 1);
    assert!(run.stdout.is_empty(), "{}", run.stdout);
    assert!(
        run.stderr.contains("two.pem")
            && run.stderr.contains("holds 2 certificates")
            && run.stderr.contains("--intermediate"),
        "{}",
        run.stderr
    );
    let dir = files.dir.path().to_str().unwrap().to_string();
    let run = helsemelding(
        &["cert", "check", &dir, "--usage", "signing"],
        files.dir.path(),
    );
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("is a directory"), "{}", run.stderr);
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
}

/// Serves the body set later (the certificate needs the URL before the CRL
/// that lists it exists) to every request on 127.0.0.1, counting requests.
fn serve_crl() -> (String, Arc<Mutex<Vec<u8>>>, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/ca.crl", listener.local_addr().unwrap());
    let body = Arc::new(Mutex::new(Vec::new()));
    let count = Arc::new(AtomicUsize::new(0));
    let (served, counter) = (body.clone(), count.clone());
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut request = Vec::new();
            let mut buffer = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buffer) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buffer[..n]),
                }
            }
            counter.fetch_add(1, Ordering::SeqCst);
            let body = served.lock().unwrap().clone();
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&body);
        }
    });
    (url, body, count)
}

#[test]
fn without_crl_files_the_distribution_point_is_fetched_and_cached() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new("Fetch CA");
    let (url, body, requests) = serve_crl();
    let options = LeafOptions {
        crl_url: Some(url),
        ..LeafOptions::default()
    };
    let revoked = pki.issue_with("fetched revoked", Usage::Signing, &options);
    let crl = pki.crl(&[&revoked.cert], Utc::now() + Duration::hours(24));
    *body.lock().unwrap() = crl.to_der().unwrap();
    let cert = write(dir.path(), "revoked.pem", &revoked.cert.to_pem().unwrap());
    let trust = write(dir.path(), "ca.pem", &pki.ca.cert.to_pem().unwrap());
    let cache: PathBuf = dir.path().join("crl-cache");
    let cache_arg = cache.to_str().unwrap();
    let args = [
        "cert",
        "check",
        &cert,
        "--usage",
        "signing",
        "--trust",
        &trust,
        "--crl-cache",
        cache_arg,
        "--json",
    ];
    for _ in 0..2 {
        let run = helsemelding(&args, dir.path());
        assert_eq!(run.code, 1, "stderr: {}", run.stderr);
        assert_eq!(errors(&run), ["revoked"]);
    }
    assert_eq!(
        requests.load(Ordering::SeqCst),
        1,
        "the second run used the disk cache"
    );
    assert_eq!(std::fs::read_dir(&cache).unwrap().count(), 1);

    let offline = helsemelding(
        &[
            "cert",
            "check",
            &cert,
            "--usage",
            "signing",
            "--trust",
            &trust,
            "--offline",
            "--json",
        ],
        dir.path(),
    );
    assert_eq!(errors(&offline), ["revocation-unknown"]);
    assert_eq!(
        requests.load(Ordering::SeqCst),
        1,
        "--offline never fetches"
    );
}
