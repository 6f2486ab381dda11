//! Loading identities from PEM/DER files and (legacy) PKCS#12 bundles.

use helsemelding_protect::{Error, Identity};
use helsemelding_testkit::fixtures;
use helsemelding_testkit::pki::{TestPki, Usage};

#[test]
fn legacy_pkcs12_bundle_opens_with_its_password() {
    let identity = Identity::from_pkcs12_file(
        &fixtures::nhn("certificates/Helsenorge_Signature.p12"),
        fixtures::HELSENORGE_P12_PASSWORD,
    )
    .unwrap();
    assert_eq!(identity.certificate().serial_hex(), "10a3f7e99720077e30aa");
    let debug = format!("{identity:?}");
    assert!(debug.contains("10a3f7e99720077e30aa") && !debug.contains("PRIVATE"));
}

#[test]
fn wrong_password_names_the_file() {
    let path = fixtures::nhn("certificates/Helsenorge_Signature.p12");
    let err = Identity::from_pkcs12_file(&path, "wrong").unwrap_err();
    assert!(matches!(err, Error::P12 { .. }));
    let text = err.to_string();
    assert!(text.contains("Helsenorge_Signature.p12"), "{text}");
    assert!(text.contains("wrong password"), "{text}");
}

#[test]
fn missing_file_names_the_file() {
    let err =
        Identity::from_pkcs12_file(std::path::Path::new("/nonexistent/x.p12"), "").unwrap_err();
    assert!(err.to_string().contains("/nonexistent/x.p12"), "{err}");
}

#[test]
fn pem_and_der_files_with_pkcs8_and_pkcs1_keys_load() {
    let pki = TestPki::new("Identity CA");
    let issued = pki.issue("identity", Usage::Signing);
    let dir = tempfile::tempdir().unwrap();
    let (cert_pem, key_pkcs8_pem) = issued.write_pem(dir.path(), "id");
    let cert_der = dir.path().join("id.cer");
    std::fs::write(&cert_der, issued.cert.to_der().unwrap()).unwrap();
    let rsa = issued.key.rsa().unwrap();
    let key_pkcs1_pem = dir.path().join("pkcs1.pem");
    std::fs::write(&key_pkcs1_pem, rsa.private_key_to_pem().unwrap()).unwrap();
    let key_pkcs1_der = dir.path().join("pkcs1.der");
    std::fs::write(&key_pkcs1_der, rsa.private_key_to_der().unwrap()).unwrap();
    let key_pkcs8_der = dir.path().join("pkcs8.der");
    std::fs::write(&key_pkcs8_der, issued.key.private_key_to_pkcs8().unwrap()).unwrap();
    for cert in [&cert_pem, &cert_der] {
        for key in [
            &key_pkcs8_pem,
            &key_pkcs1_pem,
            &key_pkcs1_der,
            &key_pkcs8_der,
        ] {
            let identity = Identity::from_files(cert, key)
                .unwrap_or_else(|e| panic!("{} + {}: {e}", cert.display(), key.display()));
            assert_eq!(identity.certificate().serial_hex(), issued.serial_hex());
        }
    }
}

#[test]
fn a_key_of_another_certificate_is_refused() {
    let pki = TestPki::new("Mismatch CA");
    let one = pki.issue("one", Usage::Signing);
    let two = pki.issue("two", Usage::Signing);
    let dir = tempfile::tempdir().unwrap();
    let (cert, _) = one.write_pem(dir.path(), "one");
    let (_, key) = two.write_pem(dir.path(), "two");
    let err = Identity::from_files(&cert, &key).unwrap_err();
    assert!(matches!(err, Error::KeyLoad { .. }));
    assert!(err.to_string().contains("does not belong"), "{err}");
}

#[test]
fn garbage_key_file_is_a_key_load_error() {
    let pki = TestPki::new("Garbage CA");
    let one = pki.issue("one", Usage::Signing);
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = one.write_pem(dir.path(), "one");
    std::fs::write(&key, b"garbage").unwrap();
    let err = Identity::from_files(&cert, &key).unwrap_err();
    assert!(matches!(err, Error::KeyLoad { .. }), "{err:?}");
}
