//! The REST certificate answer with `includeHistoric=true`: current and
//! previous pairs, ordered newest first, previous signers still accepted.

use base64::Engine;
use chrono::{Duration, Utc};
use helsemelding_protect::Certificate;
use helsemelding_registry::certificates::parse_rest_certificates;
use helsemelding_registry::Error;
use helsemelding_testkit::pki::{LeafOptions, TestPki, Usage};

#[test]
fn previous_pair_is_kept_after_the_current_one() {
    let pki = TestPki::new("Rotation CA");
    let now = Utc::now();
    let window = |days_ago: i64| LeafOptions {
        not_before: now - Duration::days(days_ago),
        // Small keys: only the certificates matter here, and tests stay fast.
        key_bits: 1024,
        ..LeafOptions::default()
    };
    let old_sign = pki.issue_with("old sign", Usage::Signing, &window(400));
    let old_enc = pki.issue_with("old enc", Usage::Encryption, &window(400));
    let new_sign = pki.issue_with("new sign", Usage::Signing, &window(2));
    let new_enc = pki.issue_with("new enc", Usage::Encryption, &window(2));
    let entry = |issued: &helsemelding_testkit::pki::Issued| {
        serde_json::json!({
            "certificateValue": base64::engine::general_purpose::STANDARD.encode(issued.cert.to_der().unwrap())
        })
    };
    // Order in the answer does not matter; the use comes from key usage.
    let body = serde_json::json!([
        entry(&old_sign),
        entry(&new_enc),
        entry(&old_enc),
        entry(&new_sign)
    ]);
    let certificates = parse_rest_certificates(body.to_string().as_bytes(), "4242").unwrap();
    assert_eq!(certificates.signing.len(), 2);
    assert_eq!(certificates.encryption.len(), 2);
    assert_eq!(
        certificates.current_signing().unwrap().serial_hex(),
        new_sign.serial_hex()
    );
    assert_eq!(
        certificates.current_encryption().unwrap().serial_hex(),
        new_enc.serial_hex()
    );
    assert!(certificates.accepts_signer(&Certificate::from_x509(old_sign.cert.clone())));
    assert!(!certificates.accepts_signer(&Certificate::from_x509(old_enc.cert.clone())));

    let missing = parse_rest_certificates(br#"[{"usage": "signing"}]"#, "4242").unwrap_err();
    assert_eq!(missing.to_string(), "missing certificateValue (party 4242)");
    let broken = parse_rest_certificates(br#"{"certificateValue": "AAAA"}"#, "4242").unwrap_err();
    assert!(matches!(broken, Error::Certificate { .. }), "{broken}");
}
