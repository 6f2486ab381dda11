//! protect/unprotect round trips and hostile input, with a test PKI.

use helsemelding_protect::{
    protect, unprotect, Certificate, ContentCipher, Error, Identity, ProtectOptions,
    UnprotectOptions,
};
use helsemelding_testkit::fixtures;
use helsemelding_testkit::pki::{Issued, TestPki, Usage};
use openssl::cms::{CMSOptions, CmsContentInfo};
use openssl::stack::Stack;
use openssl::symm::Cipher;

struct Parties {
    sender: Identity,
    receiver: Identity,
    receiver_legacy: Identity,
    stranger: Identity,
}

fn identity(issued: &Issued) -> Identity {
    Identity::new(
        Certificate::from_x509(issued.cert.clone()),
        issued.key.clone(),
    )
    .unwrap()
}

fn parties() -> Parties {
    let pki = TestPki::new("Roundtrip CA");
    Parties {
        sender: identity(&pki.issue("sender signing", Usage::Signing)),
        receiver: identity(&pki.issue("receiver encryption", Usage::Encryption)),
        receiver_legacy: identity(&pki.issue("receiver old encryption", Usage::Encryption)),
        stranger: identity(&pki.issue("stranger", Usage::Both)),
    }
}

fn round_trip(p: &Parties, payload: &[u8]) -> Vec<u8> {
    let der = protect(
        payload,
        &p.sender,
        p.receiver.certificate(),
        &ProtectOptions::default(),
    )
    .unwrap();
    unprotect(
        &der,
        &p.receiver,
        None,
        p.sender.certificate(),
        &UnprotectOptions::default(),
    )
    .unwrap()
}

#[test]
fn payloads_of_every_size_and_encoding_come_back_byte_for_byte() {
    let p = parties();
    let kib: Vec<u8> = (0..1024u32).map(|i| (i * 7) as u8).collect();
    let big: Vec<u8> = (0..64 * 1024u32).map(|i| (i * 31 + 5) as u8).collect();
    let huge: Vec<u8> = (0..5 * 1024 * 1024u32).map(|i| (i >> 3) as u8).collect();
    let utf8 = "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<Melding>Blåbærsyltetøy ÆØÅ – “quotes”</Melding>\r\n".as_bytes().to_vec();
    // ISO-8859-1: æ ø å as single bytes, invalid as UTF-8.
    let mut latin1 = b"<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><M>".to_vec();
    latin1.extend_from_slice(&[0xe6, 0xf8, 0xe5, 0xc6, 0xd8, 0xc5]);
    latin1.extend_from_slice(b"</M>\r\n");
    for payload in [Vec::new(), kib, big, huge, utf8, latin1] {
        assert_eq!(round_trip(&p, &payload), payload, "size {}", payload.len());
    }
}

#[test]
fn a_real_xml_fixture_comes_back_unchanged() {
    let p = parties();
    let xml = fixtures::read_nhn("messages/Dialogtjeneste12_Kommunikasjonstest_Request.xml");
    assert_eq!(round_trip(&p, &xml), xml);
}

#[test]
fn legacy_key_decrypts_a_message_encrypted_to_the_previous_certificate() {
    let p = parties();
    let der = protect(
        b"<old/>",
        &p.sender,
        p.receiver_legacy.certificate(),
        &ProtectOptions::default(),
    )
    .unwrap();
    let opts = UnprotectOptions::default();
    let payload = unprotect(
        &der,
        &p.receiver,
        Some(&p.receiver_legacy),
        p.sender.certificate(),
        &opts,
    )
    .unwrap();
    assert_eq!(payload, b"<old/>");
    // Without the legacy key it is not for us, and the error names both serials.
    let err = unprotect(&der, &p.receiver, None, p.sender.certificate(), &opts).unwrap_err();
    match err {
        Error::NotForUs {
            expected_serials,
            found_serials,
        } => {
            assert_eq!(
                expected_serials,
                vec![p.receiver.certificate().serial_hex()]
            );
            assert_eq!(
                found_serials,
                vec![p.receiver_legacy.certificate().serial_hex()]
            );
        }
        other => panic!("expected NotForUs, got {other:?}"),
    }
}

#[test]
fn a_message_for_someone_else_is_not_for_us() {
    let p = parties();
    let der = protect(
        b"<x/>",
        &p.sender,
        p.stranger.certificate(),
        &ProtectOptions::default(),
    )
    .unwrap();
    let err = unprotect(
        &der,
        &p.receiver,
        Some(&p.receiver_legacy),
        p.sender.certificate(),
        &UnprotectOptions::default(),
    )
    .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::NotForUs { .. }), "{err:?}");
    assert!(
        text.contains(&p.stranger.certificate().serial_hex()),
        "{text}"
    );
    assert!(
        text.contains(&p.receiver.certificate().serial_hex()),
        "{text}"
    );
    assert!(
        text.contains(&p.receiver_legacy.certificate().serial_hex()),
        "{text}"
    );
}

#[test]
fn a_message_signed_by_another_certificate_names_both_serials() {
    let p = parties();
    let der = protect(
        b"<spoof/>",
        &p.stranger,
        p.receiver.certificate(),
        &ProtectOptions::default(),
    )
    .unwrap();
    let err = unprotect(
        &der,
        &p.receiver,
        None,
        p.sender.certificate(),
        &UnprotectOptions::default(),
    )
    .unwrap_err();
    match &err {
        Error::WrongSigner {
            expected_serial,
            actual_serial,
        } => {
            assert_eq!(expected_serial, &p.sender.certificate().serial_hex());
            assert_eq!(actual_serial, &p.stranger.certificate().serial_hex());
        }
        other => panic!("expected WrongSigner, got {other:?}"),
    }
    assert_eq!(
        err.to_string(),
        format!(
            "message signed by certificate serial {}, expected sender certificate serial {}",
            p.stranger.certificate().serial_hex(),
            p.sender.certificate().serial_hex()
        )
    );
}

/// A SignedData whose content was altered after signing, then encrypted
/// properly: decryption works, the signature must not.
#[test]
fn altered_signed_content_is_a_bad_signature() {
    let p = parties();
    let payload = b"<Melding>pay 100 NOK</Melding>";
    let mut signed = CmsContentInfo::sign(
        Some(p.sender.certificate().x509()),
        Some(p.sender.private_key()),
        None,
        Some(payload),
        CMSOptions::BINARY,
    )
    .unwrap()
    .to_der()
    .unwrap();
    let at = signed
        .windows(payload.len())
        .position(|w| w == payload)
        .expect("attached content is in the DER");
    signed[at + 14] = b'9'; // "pay 100" → "pay 900"
    let mut recipients = Stack::new().unwrap();
    recipients
        .push(p.receiver.certificate().x509().clone())
        .unwrap();
    let der = CmsContentInfo::encrypt(
        &recipients,
        &signed,
        Cipher::aes_256_cbc(),
        CMSOptions::BINARY,
    )
    .unwrap()
    .to_der()
    .unwrap();
    let err = unprotect(
        &der,
        &p.receiver,
        None,
        p.sender.certificate(),
        &UnprotectOptions::default(),
    )
    .unwrap_err();
    match err {
        Error::BadSignature { signer_serial, .. } => {
            assert_eq!(signer_serial, p.sender.certificate().serial_hex())
        }
        other => panic!("expected BadSignature, got {other:?}"),
    }
}

#[test]
fn tampered_ciphertext_is_an_error_not_a_panic() {
    let p = parties();
    let der = protect(
        &[b'x'; 4096],
        &p.sender,
        p.receiver.certificate(),
        &ProtectOptions::default(),
    )
    .unwrap();
    // Flip bytes in the encrypted content (the tail) and in the wrapped key.
    for offset in [der.len() - 5, der.len() - 40, der.len() / 2, 400] {
        let mut tampered = der.clone();
        tampered[offset] ^= 0x55;
        let result = unprotect(
            &tampered,
            &p.receiver,
            None,
            p.sender.certificate(),
            &UnprotectOptions::default(),
        );
        assert!(result.is_err(), "tampering at {offset} went unnoticed");
    }
}

#[test]
fn garbage_and_truncated_input_is_not_cms() {
    let p = parties();
    let der = protect(
        b"<x/>",
        &p.sender,
        p.receiver.certificate(),
        &ProtectOptions::default(),
    )
    .unwrap();
    let mut inputs: Vec<Vec<u8>> = vec![
        Vec::new(),
        b"<xml/>".to_vec(),
        vec![0x30],
        vec![0x30, 0x84, 0xff, 0xff, 0xff, 0xff],
        vec![0u8; 10_000],
    ];
    for cut in [1, 10, 50, der.len() / 2, der.len() - 1] {
        inputs.push(der[..cut].to_vec());
    }
    for input in inputs {
        let err = unprotect(
            &input,
            &p.receiver,
            None,
            p.sender.certificate(),
            &UnprotectOptions::default(),
        )
        .unwrap_err();
        assert!(
            matches!(
                err,
                Error::NotCms {
                    layer: "EnvelopedData",
                    ..
                }
            ),
            "{} bytes: {err:?}",
            input.len()
        );
    }
}

#[test]
fn a_signed_only_message_is_not_an_envelope() {
    let p = parties();
    let signed = CmsContentInfo::sign(
        Some(p.sender.certificate().x509()),
        Some(p.sender.private_key()),
        None,
        Some(b"<x/>"),
        CMSOptions::BINARY,
    )
    .unwrap()
    .to_der()
    .unwrap();
    let err = unprotect(
        &signed,
        &p.receiver,
        None,
        p.sender.certificate(),
        &UnprotectOptions::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("not EnvelopedData"), "{err}");
}

#[test]
fn triple_des_is_refused_unless_allowed() {
    let p = parties();
    let options = ProtectOptions {
        cipher: ContentCipher::TripleDesCbc,
    };
    let der = protect(b"<x/>", &p.sender, p.receiver.certificate(), &options).unwrap();
    let lax = unprotect(
        &der,
        &p.receiver,
        None,
        p.sender.certificate(),
        &UnprotectOptions { allow_3des: true },
    );
    assert_eq!(lax.unwrap(), b"<x/>");
    let strict = unprotect(
        &der,
        &p.receiver,
        None,
        p.sender.certificate(),
        &UnprotectOptions::default(),
    );
    assert!(matches!(strict, Err(Error::RefusedCipher { .. })));
}

#[test]
fn real_buypass_certificates_round_trip() {
    let helsenorge_signing = Identity::from_pkcs12_file(
        &fixtures::nhn("certificates/Helsenorge_Signature.p12"),
        fixtures::HELSENORGE_P12_PASSWORD,
    )
    .unwrap();
    let counterparty_encryption_cert = Certificate::from_pem_or_der(&fixtures::read_nhn(
        "certificates/Counterparty_Encryption.cer",
    ))
    .unwrap();
    let counterparty_decryption = Identity::from_pkcs12_file(
        &fixtures::nhn("certificates/Counterparty_Encryption.p12"),
        fixtures::COUNTERPARTY_P12_PASSWORD,
    )
    .unwrap();
    let helsenorge_signing_cert =
        Certificate::from_pem_or_der(&fixtures::read_nhn("certificates/Helsenorge_Signature.cer"))
            .unwrap();
    assert_eq!(
        counterparty_decryption.certificate().serial_hex(),
        "1d5a932bb4694cdc8ec4"
    );

    let xml = fixtures::read_nhn("messages/Dialogtjeneste12_Kommunikasjonstest_Request.xml");
    let der = protect(
        &xml,
        &helsenorge_signing,
        &counterparty_encryption_cert,
        &ProtectOptions::default(),
    )
    .unwrap();
    let payload = unprotect(
        &der,
        &counterparty_decryption,
        None,
        &helsenorge_signing_cert,
        &UnprotectOptions::default(),
    )
    .unwrap();
    assert_eq!(payload, xml);
}

#[test]
fn detailed_unprotect_names_the_signer_and_hands_back_the_embedded_chain() {
    use helsemelding_protect::{
        check_certificate, check_certificate_with_intermediates, unprotect_detailed, CheckRequest,
        Problem, RevocationPolicy, TrustAnchors, Usage as CertUsage,
    };
    let root = TestPki::new("Detailed Root");
    let intermediate = root.intermediate("Detailed Intermediate");
    let sender_old = identity(&intermediate.issue("sender old signing", Usage::Signing));
    let sender = identity(&intermediate.issue("sender signing", Usage::Signing)).with_chain(vec![
        Certificate::from_x509(root.ca.cert.clone()),
        Certificate::from_x509(intermediate.ca.cert.clone()),
    ]);
    let receiver = identity(&root.issue("receiver encryption", Usage::Encryption));
    let der = protect(
        b"<chained/>",
        &sender,
        receiver.certificate(),
        &ProtectOptions::default(),
    )
    .unwrap();
    // Previous and current signing certificates accepted, one decryption.
    let accepted = [
        sender_old.certificate().clone(),
        sender.certificate().clone(),
    ];
    let opened = unprotect_detailed(
        &der,
        &receiver,
        None,
        &accepted,
        &UnprotectOptions::default(),
    )
    .unwrap();
    assert_eq!(opened.payload, b"<chained/>");
    assert_eq!(&opened.signer, sender.certificate());
    let serials: Vec<String> = opened.embedded.iter().map(|c| c.serial_hex()).collect();
    let mut expected = vec![
        sender.certificate().serial_hex(),
        intermediate.ca.serial_hex(),
    ];
    expected.sort();
    let mut sorted = serials.clone();
    sorted.sort();
    assert_eq!(sorted, expected, "signer and intermediate, not the root");
    assert!(
        !format!("{opened:?}").contains("chained"),
        "payload not in Debug"
    );

    // Only the root is an anchor: the embedded intermediate completes the chain.
    let only_root = TrustAnchors::new(vec![Certificate::from_x509(root.ca.cert.clone())]);
    let request = CheckRequest {
        usage: CertUsage::Signing,
        at: chrono::Utc::now(),
        trust: &only_root,
        crls: &[],
        revocation: RevocationPolicy::Off,
    };
    let with = check_certificate_with_intermediates(&opened.signer, &request, &opened.embedded);
    assert!(with.is_ok(), "{with:?}");
    let without = check_certificate(&opened.signer, &request);
    assert_eq!(without.errors, vec![Problem::Untrusted]);

    // A signer outside the accepted set is named, with the accepted serials.
    match unprotect_detailed(
        &der,
        &receiver,
        None,
        std::slice::from_ref(sender_old.certificate()),
        &UnprotectOptions::default(),
    ) {
        Err(Error::WrongSigner {
            expected_serial,
            actual_serial,
        }) => {
            assert_eq!(expected_serial, sender_old.certificate().serial_hex());
            assert_eq!(actual_serial, sender.certificate().serial_hex());
        }
        other => panic!("expected WrongSigner, got {other:?}"),
    }
    // Without a chain only the signer's own certificate is embedded.
    let plain = protect(
        b"<plain/>",
        &sender_old,
        receiver.certificate(),
        &ProtectOptions::default(),
    )
    .unwrap();
    let opened = unprotect_detailed(
        &plain,
        &receiver,
        None,
        &accepted,
        &UnprotectOptions::default(),
    )
    .unwrap();
    assert_eq!(opened.embedded, vec![sender_old.certificate().clone()]);
    assert_eq!(&opened.signer, sender_old.certificate());
}
