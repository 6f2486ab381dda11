//! Interoperability with the `openssl cms` command as an independent peer,
//! both ways: it reads what we write, we read what it writes.

use std::path::{Path, PathBuf};
use std::process::Command;

use helsemelding_protect::{
    protect, unprotect, Certificate, Error, Identity, ProtectOptions, UnprotectOptions,
};
use helsemelding_testkit::pki::{Issued, TestPki, Usage};

struct Setup {
    dir: tempfile::TempDir,
    ca: PathBuf,
    sender: Issued,
    receiver: Issued,
}

impl Setup {
    fn new() -> Self {
        let pki = TestPki::new("Interop CA");
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, pki.ca.cert.to_pem().unwrap()).unwrap();
        let sender = pki.issue("interop sender", Usage::Signing);
        let receiver = pki.issue("interop receiver", Usage::Encryption);
        sender.write_pem(dir.path(), "sender");
        receiver.write_pem(dir.path(), "receiver");
        Setup {
            dir,
            ca,
            sender,
            receiver,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn identity(issued: &Issued) -> Identity {
        Identity::new(
            Certificate::from_x509(issued.cert.clone()),
            issued.key.clone(),
        )
        .unwrap()
    }

    fn unprotect(&self, der: &[u8], allow_3des: bool) -> helsemelding_protect::Result<Vec<u8>> {
        unprotect(
            der,
            &Self::identity(&self.receiver),
            None,
            &Certificate::from_x509(self.sender.cert.clone()),
            &UnprotectOptions { allow_3des },
        )
    }

    /// openssl's sign-then-encrypt, with `extra` options on the encrypt step.
    fn openssl_protect(&self, payload: &[u8], cipher: &str, extra: &[&str]) -> Vec<u8> {
        std::fs::write(self.path("payload.xml"), payload).unwrap();
        openssl(
            &[
                "cms",
                "-sign",
                "-binary",
                "-nodetach",
                "-md",
                "sha256",
                "-in",
                "payload.xml",
                "-signer",
                "sender.pem",
                "-inkey",
                "sender.key",
                "-outform",
                "DER",
                "-out",
                "o_signed.der",
            ],
            self.dir.path(),
        );
        let mut args = vec!["cms", "-encrypt", cipher, "-binary", "-in", "o_signed.der"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["-outform", "DER", "-out", "o_env.der", "receiver.pem"]);
        openssl(&args, self.dir.path());
        std::fs::read(self.path("o_env.der")).unwrap()
    }
}

fn openssl(args: &[&str], dir: &Path) -> String {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
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

const PAYLOAD: &[u8] =
    "<?xml version=\"1.0\" encoding=\"utf-8\"?>\r\n<MsgHead>ærlig talt\r\n</MsgHead>\n".as_bytes();

#[test]
fn openssl_decrypts_and_verifies_what_we_protect() {
    let s = Setup::new();
    let der = protect(
        PAYLOAD,
        &Setup::identity(&s.sender),
        &Certificate::from_x509(s.receiver.cert.clone()),
        &ProtectOptions::default(),
    )
    .unwrap();
    std::fs::write(s.path("ours.der"), &der).unwrap();
    let envelope = openssl(
        &[
            "cms", "-cmsout", "-print", "-inform", "DER", "-in", "ours.der",
        ],
        s.dir.path(),
    );
    assert!(envelope.contains("aes-256-cbc"), "{envelope}");
    assert!(envelope.contains("issuerAndSerialNumber"), "{envelope}");
    assert!(envelope.contains("rsaEncryption"), "{envelope}");
    openssl(
        &[
            "cms",
            "-decrypt",
            "-binary",
            "-inform",
            "DER",
            "-in",
            "ours.der",
            "-recip",
            "receiver.pem",
            "-inkey",
            "receiver.key",
            "-out",
            "ours_signed.der",
        ],
        s.dir.path(),
    );
    let signed = openssl(
        &[
            "cms",
            "-cmsout",
            "-print",
            "-inform",
            "DER",
            "-in",
            "ours_signed.der",
        ],
        s.dir.path(),
    );
    assert!(signed.contains("algorithm: sha256"), "{signed}");
    assert!(signed.contains("issuerAndSerialNumber"), "{signed}");
    assert!(
        signed.contains("CN=interop sender"),
        "signer certificate included: {signed}"
    );
    openssl(
        &[
            "cms",
            "-verify",
            "-binary",
            "-inform",
            "DER",
            "-in",
            "ours_signed.der",
            "-CAfile",
            s.ca.to_str().unwrap(),
            "-out",
            "verified.xml",
        ],
        s.dir.path(),
    );
    assert_eq!(std::fs::read(s.path("verified.xml")).unwrap(), PAYLOAD);
}

#[test]
fn we_read_openssl_sign_then_encrypt() {
    let s = Setup::new();
    let der = s.openssl_protect(PAYLOAD, "-aes256", &[]);
    assert_eq!(s.unprotect(&der, false).unwrap(), PAYLOAD);
}

#[test]
fn we_read_openssl_streamed_ber() {
    let s = Setup::new();
    let der = s.openssl_protect(PAYLOAD, "-aes256", &["-stream"]);
    // Indefinite length: 0x30 0x80.
    assert_eq!(&der[..2], &[0x30, 0x80]);
    assert_eq!(s.unprotect(&der, false).unwrap(), PAYLOAD);
}

#[test]
fn openssl_triple_des_is_refused_by_default_and_read_when_allowed() {
    let s = Setup::new();
    let der = s.openssl_protect(PAYLOAD, "-des3", &[]);
    let envelope = openssl(
        &[
            "cms",
            "-cmsout",
            "-print",
            "-inform",
            "DER",
            "-in",
            "o_env.der",
        ],
        s.dir.path(),
    );
    assert!(envelope.contains("des-ede3-cbc"), "{envelope}");
    // The default options refuse it before any private-key operation.
    match unprotect(
        &der,
        &Setup::identity(&s.receiver),
        None,
        &Certificate::from_x509(s.sender.cert.clone()),
        &UnprotectOptions::default(),
    ) {
        Err(Error::RefusedCipher { algorithm }) => {
            assert_eq!(algorithm, "3DES-CBC (1.2.840.113549.3.7)")
        }
        other => panic!("expected RefusedCipher, got {other:?}"),
    }
    assert_eq!(s.unprotect(&der, true).unwrap(), PAYLOAD);
}

#[test]
fn openssl_single_des_is_always_refused() {
    let s = Setup::new();
    // OpenSSL 3 has DES only in its legacy provider.
    let der = s.openssl_protect(
        PAYLOAD,
        "-des",
        &["-provider", "legacy", "-provider", "default"],
    );
    match s.unprotect(&der, true) {
        Err(Error::RefusedCipher { algorithm }) => {
            assert_eq!(algorithm, "DES-CBC (1.3.14.3.2.7)")
        }
        other => panic!("expected RefusedCipher, got {other:?}"),
    }
}

#[test]
fn we_embed_the_signers_intermediate_but_not_the_root() {
    let root = TestPki::new("Interop Root");
    let intermediate = root.intermediate("Interop Intermediate");
    let sender = intermediate.issue("chained sender", Usage::Signing);
    let receiver = root.issue("chained receiver", Usage::Encryption);
    let dir = tempfile::tempdir().unwrap();
    receiver.write_pem(dir.path(), "receiver");
    std::fs::write(dir.path().join("root.pem"), root.ca.cert.to_pem().unwrap()).unwrap();
    // The chain as a PKCS#12 bundle or a PEM file lists it: root included.
    let signer = Setup::identity(&sender).with_chain(vec![
        Certificate::from_x509(intermediate.ca.cert.clone()),
        Certificate::from_x509(root.ca.cert.clone()),
    ]);
    let der = protect(
        PAYLOAD,
        &signer,
        &Certificate::from_x509(receiver.cert.clone()),
        &ProtectOptions::default(),
    )
    .unwrap();
    std::fs::write(dir.path().join("chained.der"), &der).unwrap();
    openssl(
        &[
            "cms",
            "-decrypt",
            "-binary",
            "-inform",
            "DER",
            "-in",
            "chained.der",
            "-recip",
            "receiver.pem",
            "-inkey",
            "receiver.key",
            "-out",
            "chained_signed.der",
        ],
        dir.path(),
    );
    let printed = openssl(
        &[
            "pkcs7",
            "-inform",
            "DER",
            "-in",
            "chained_signed.der",
            "-print_certs",
            "-noout",
        ],
        dir.path(),
    );
    let subjects: Vec<&str> = printed
        .lines()
        .filter(|line| line.starts_with("subject="))
        .collect();
    assert_eq!(subjects.len(), 2, "{printed}");
    assert!(
        subjects.iter().any(|s| s.contains("chained sender")),
        "{printed}"
    );
    assert!(
        subjects.iter().any(|s| s.contains("Interop Intermediate")),
        "{printed}"
    );
    assert!(
        !subjects.iter().any(|s| s.contains("Interop Root")),
        "the root is not embedded: {printed}"
    );
    // openssl builds the chain to the root through the embedded intermediate.
    openssl(
        &[
            "cms",
            "-verify",
            "-binary",
            "-inform",
            "DER",
            "-in",
            "chained_signed.der",
            "-CAfile",
            "root.pem",
            "-out",
            "chained_verified.xml",
        ],
        dir.path(),
    );
    assert_eq!(
        std::fs::read(dir.path().join("chained_verified.xml")).unwrap(),
        PAYLOAD
    );
}
