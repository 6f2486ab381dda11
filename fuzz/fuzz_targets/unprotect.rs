//! Feeds arbitrary bytes to `unprotect` as a received message body: it must
//! return an error, never panic or hang.

#![no_main]

use std::sync::OnceLock;

use helsemelding_protect::{unprotect, Certificate, Identity, UnprotectOptions};
use libfuzzer_sys::fuzz_target;
use openssl::asn1::Asn1Time;
use openssl::bn::BigNum;
use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::rsa::Rsa;
use openssl::x509::{X509Builder, X509NameBuilder};

/// One self-signed identity, generated once: it decrypts and is the expected signer.
fn identity() -> &'static Identity {
    static IDENTITY: OnceLock<Identity> = OnceLock::new();
    IDENTITY.get_or_init(|| {
        let key = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
        let mut name = X509NameBuilder::new().unwrap();
        name.append_entry_by_text("CN", "fuzz").unwrap();
        let name = name.build();
        let mut builder = X509Builder::new().unwrap();
        builder.set_version(2).unwrap();
        let serial = BigNum::from_u32(7).unwrap().to_asn1_integer().unwrap();
        builder.set_serial_number(&serial).unwrap();
        builder.set_subject_name(&name).unwrap();
        builder.set_issuer_name(&name).unwrap();
        builder.set_pubkey(&key).unwrap();
        builder.set_not_before(&Asn1Time::days_from_now(0).unwrap()).unwrap();
        builder.set_not_after(&Asn1Time::days_from_now(1).unwrap()).unwrap();
        builder.sign(&key, MessageDigest::sha256()).unwrap();
        Identity::new(Certificate::from_x509(builder.build()), key).unwrap()
    })
}

fuzz_target!(|data: &[u8]| {
    let me = identity();
    let _ = unprotect(
        data,
        me,
        None,
        me.certificate(),
        &UnprotectOptions { reject_3des: true },
    );
});
