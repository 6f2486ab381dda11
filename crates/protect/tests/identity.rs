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

#[test]
fn a_pem_file_with_several_certificates_gives_the_chain() {
    let root = TestPki::new("Chain File Root");
    let intermediate = root.intermediate("Chain File Intermediate");
    let leaf = intermediate.issue("chain file leaf", Usage::Signing);
    let dir = tempfile::tempdir().unwrap();
    let (_, key) = leaf.write_pem(dir.path(), "leaf");
    // The chain first and the leaf last: the key decides which one is ours.
    let bundle = dir.path().join("bundle.pem");
    let mut pem = intermediate.ca.cert.to_pem().unwrap();
    pem.extend(root.ca.cert.to_pem().unwrap());
    pem.extend(leaf.cert.to_pem().unwrap());
    std::fs::write(&bundle, pem).unwrap();
    let identity = Identity::from_files(&bundle, &key).unwrap();
    assert_eq!(identity.certificate().serial_hex(), leaf.serial_hex());
    let chain: Vec<String> = identity.chain().iter().map(|c| c.subject()).collect();
    assert_eq!(
        chain,
        vec![
            "O=helsemelding test, CN=Chain File Intermediate",
            "O=helsemelding test, CN=Chain File Root"
        ]
    );
    let embedded: Vec<String> = identity
        .chain_to_embed()
        .iter()
        .map(|c| c.subject())
        .collect();
    assert_eq!(
        embedded,
        vec!["O=helsemelding test, CN=Chain File Intermediate"],
        "the self-signed root is not embedded"
    );
    // A file with one certificate has no chain.
    let (single, _) = leaf.write_pem(dir.path(), "single");
    assert!(Identity::from_files(&single, &key)
        .unwrap()
        .chain()
        .is_empty());
    // A key that belongs to none of the certificates is still refused.
    let (_, other_key) = intermediate
        .issue("someone else", Usage::Signing)
        .write_pem(dir.path(), "other");
    let err = Identity::from_files(&bundle, &other_key).unwrap_err();
    assert!(err.to_string().contains("does not belong"), "{err}");
}

#[test]
fn a_pkcs12_bundle_with_ca_certificates_gives_the_chain() {
    let root = TestPki::new("P12 Root");
    let intermediate = root.intermediate("P12 Intermediate");
    let leaf = intermediate.issue("p12 leaf", Usage::Signing);
    let mut ca = openssl::stack::Stack::new().unwrap();
    ca.push(intermediate.ca.cert.clone()).unwrap();
    ca.push(root.ca.cert.clone()).unwrap();
    let bundle = openssl::pkcs12::Pkcs12::builder()
        .name("p12 leaf")
        .pkey(&leaf.key)
        .cert(&leaf.cert)
        .ca(ca)
        .build2("secret")
        .unwrap()
        .to_der()
        .unwrap();
    let identity = Identity::from_pkcs12(&bundle, "secret").unwrap();
    assert_eq!(identity.certificate().serial_hex(), leaf.serial_hex());
    let mut chain: Vec<String> = identity.chain().iter().map(|c| c.subject()).collect();
    chain.sort();
    assert_eq!(
        chain,
        vec![
            "O=helsemelding test, CN=P12 Intermediate",
            "O=helsemelding test, CN=P12 Root"
        ]
    );
    assert_eq!(identity.chain_to_embed().len(), 1);
    assert!(!identity.chain_to_embed()[0].is_self_signed());
    assert!(identity.chain()[0].is_self_signed() || identity.chain()[1].is_self_signed());
}
