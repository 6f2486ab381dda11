//! Independent peers the tests talk to: Debian's python3-qpid-proton (an
//! AMQP 1.0 implementation that is not ours), run by /usr/bin/python3, and
//! the `openssl cms` command (a CMS implementation that is not ours).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use openssl::x509::X509;

use crate::pki::Issued;

/// The peer script (see its docstring for what it sends and prints).
pub fn proton_peer_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("peers/proton_peer.py")
}

/// Runs the proton peer (`send` or `receive`) against `url` and `address`;
/// returns its standard output. Panics with its stderr if it fails or runs
/// longer than `within`.
pub fn proton_peer(mode: &str, url: &str, address: &str, within: Duration) -> String {
    proton_peer_with(&[mode, url, address], within)
}

/// Runs the proton peer with `args` (mode first, see the script's
/// docstring); returns its standard output. Panics with its stderr if it
/// fails or runs longer than `within`.
pub fn proton_peer_with(args: &[&str], within: Duration) -> String {
    let mode = args.first().copied().unwrap_or("?");
    let mut child = Command::new("/usr/bin/python3")
        .arg(proton_peer_script())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running /usr/bin/python3 (scripts/broker install provides python3-qpid-proton)");
    // Read both pipes on threads: a chatty peer must not block on a full pipe.
    let mut stdout_pipe = child.stdout.take().unwrap();
    let mut stderr_pipe = child.stderr.take().unwrap();
    let stdout = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout_pipe.read_to_string(&mut text);
        text
    });
    let stderr = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr_pipe.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + within;
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for the proton peer") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "proton peer {mode} did not finish within {within:?}: {}",
                stderr.join().unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = stdout.join().expect("stdout reader");
    let stderr = stderr.join().expect("stderr reader");
    assert!(
        status.success(),
        "proton peer {mode} failed ({status}): {stderr}"
    );
    stdout
}

/// Runs `openssl` with `args` in `dir`; panics with its stderr on failure.
pub fn openssl(args: &[&str], dir: &Path) -> String {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("the openssl command runs");
    assert!(
        output.status.success(),
        "openssl {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// What NHN's reference library puts in a message body, made by the
/// openssl CLI: `openssl cms -sign` (SHA-256, attached, signer certificate
/// included) by `signer`, then `openssl cms -encrypt -aes256` to
/// `recipient`, both DER. `dir` holds the intermediate files.
pub fn openssl_protect(payload: &[u8], signer: &Issued, recipient: &X509, dir: &Path) -> Vec<u8> {
    let stem = format!("cms-{}", uuid::Uuid::new_v4().simple());
    let (signer_cert, signer_key) = signer.write_pem(dir, &format!("{stem}-signer"));
    let recipient_cert = dir.join(format!("{stem}-recipient.pem"));
    std::fs::write(&recipient_cert, recipient.to_pem().unwrap()).unwrap();
    let input = dir.join(format!("{stem}-payload.xml"));
    std::fs::write(&input, payload).unwrap();
    let signed = dir.join(format!("{stem}-signed.der"));
    let enveloped = dir.join(format!("{stem}-enveloped.der"));
    let path = |p: &Path| p.to_str().expect("UTF-8 temp path").to_owned();
    openssl(
        &[
            "cms",
            "-sign",
            "-binary",
            "-nodetach",
            "-md",
            "sha256",
            "-in",
            &path(&input),
            "-signer",
            &path(&signer_cert),
            "-inkey",
            &path(&signer_key),
            "-outform",
            "DER",
            "-out",
            &path(&signed),
        ],
        dir,
    );
    openssl(
        &[
            "cms",
            "-encrypt",
            "-aes256",
            "-binary",
            "-in",
            &path(&signed),
            "-outform",
            "DER",
            "-out",
            &path(&enveloped),
            &path(&recipient_cert),
        ],
        dir,
    );
    std::fs::read(enveloped).unwrap()
}

/// The reverse, as the receiving .NET library would do it with the openssl
/// CLI: `openssl cms -decrypt` with `recipient`'s key, then `openssl cms
/// -verify` against `ca`, requiring the signature to be by `signer`.
/// Returns the signed payload bytes; panics if either step fails.
pub fn openssl_unprotect(
    der: &[u8],
    recipient: &Issued,
    signer: &X509,
    ca: &X509,
    dir: &Path,
) -> Vec<u8> {
    let stem = format!("cms-{}", uuid::Uuid::new_v4().simple());
    let (recipient_cert, recipient_key) = recipient.write_pem(dir, &format!("{stem}-recipient"));
    let ca_file = dir.join(format!("{stem}-ca.pem"));
    std::fs::write(&ca_file, ca.to_pem().unwrap()).unwrap();
    let signer_file = dir.join(format!("{stem}-signer.pem"));
    let input = dir.join(format!("{stem}-enveloped.der"));
    std::fs::write(&input, der).unwrap();
    let signed = dir.join(format!("{stem}-signed.der"));
    let payload = dir.join(format!("{stem}-payload.xml"));
    let path = |p: &Path| p.to_str().expect("UTF-8 temp path").to_owned();
    openssl(
        &[
            "cms",
            "-decrypt",
            "-binary",
            "-inform",
            "DER",
            "-in",
            &path(&input),
            "-recip",
            &path(&recipient_cert),
            "-inkey",
            &path(&recipient_key),
            "-out",
            &path(&signed),
        ],
        dir,
    );
    openssl(
        &[
            "cms",
            "-verify",
            "-binary",
            "-inform",
            "DER",
            "-in",
            &path(&signed),
            "-CAfile",
            &path(&ca_file),
            "-purpose",
            "any",
            "-signer",
            &path(&signer_file),
            "-out",
            &path(&payload),
        ],
        dir,
    );
    let actual_signer = X509::from_pem(&std::fs::read(&signer_file).unwrap()).unwrap();
    assert_eq!(
        actual_signer.to_der().unwrap(),
        signer.to_der().unwrap(),
        "openssl cms -verify: signed by another certificate than expected"
    );
    std::fs::read(payload).unwrap()
}
