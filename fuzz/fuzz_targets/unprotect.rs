//! The receive path of a protected message on fuzzer input: decrypt, verify
//! and the payload checks that follow (`metadata::extract`, `MsgHead::parse`
//! and the party check), as `messaging::receive` runs them.
//!
//! The first input byte chooses what the rest is:
//!
//! - mode 0: the received body itself (arbitrary CMS);
//! - mode 1 and 3: a valid protected message is made of the rest (see
//!   [`Built`]: fuzzer-chosen signer, recipient, cipher, edits of the DER,
//!   HER-ids and payload), so decrypt and verify succeed and the payload
//!   checks run on fuzzer-chosen XML;
//! - mode 2: the rest is encrypted to us as it is, so `verify` reads an
//!   arbitrary SignedData.
//!
//! Oracles: nothing panics; whatever the fuzzer wrote without the sender's
//! key never verifies; a message the sender signed for us comes back with
//! exactly the signed payload, and any success returns exactly that payload.
//!
//! The identities are fixed throwaway test keys (1024-bit RSA: the key size
//! does not matter to the code under test, and smaller keys give more
//! executions per second), embedded here so that no key file is tracked and
//! every run of the target is the same.

#![no_main]

use std::sync::OnceLock;

use helsemelding_protect::{
    protect, unprotect, Certificate, ContentCipher, Identity, ProtectOptions, UnprotectOptions,
};
use helsemelding_wire::{metadata, msghead::MsgHead, HerId};
use libfuzzer_sys::fuzz_target;
use openssl::cms::{CMSOptions, CmsContentInfo};
use openssl::pkey::PKey;
use openssl::stack::Stack;
use openssl::symm::Cipher;

struct Identities {
    /// Our current decryption identity.
    receiver: Identity,
    /// Our previous decryption identity.
    legacy: Identity,
    /// The expected signer.
    sender: Identity,
}

fn identities() -> &'static Identities {
    static IDENTITIES: OnceLock<Identities> = OnceLock::new();
    IDENTITIES.get_or_init(|| {
        let load = |cert: &str, key: &str| {
            let certificate = Certificate::from_pem_or_der(cert.as_bytes()).expect("test cert");
            let key = PKey::private_key_from_pem(key.as_bytes()).expect("test key");
            Identity::new(certificate, key).expect("test key belongs to its cert")
        };
        Identities {
            receiver: load(RECEIVER_CERT, RECEIVER_KEY),
            legacy: load(LEGACY_CERT, LEGACY_KEY),
            sender: load(SENDER_CERT, SENDER_KEY),
        }
    })
}

/// Splits off the first `n` bytes (fewer when the input is shorter).
fn take<'a>(data: &mut &'a [u8], n: usize) -> &'a [u8] {
    let (head, rest) = data.split_at(n.min(data.len()));
    *data = rest;
    head
}

/// Mode 1: `[flags] [edit count] [edits: 3 bytes each] [from: 4] [to: 4] payload`.
struct Built<'a> {
    /// Signed by someone else than the expected sender (us).
    foreign_signer: bool,
    /// Encrypted to the legacy identity rather than the current one.
    to_legacy: bool,
    /// Encrypted to the sender, not to us.
    not_for_us: bool,
    /// Pass our legacy identity to `unprotect`.
    with_legacy: bool,
    triple_des: bool,
    reject_3des: bool,
    /// (offset, xor) changes of the protected DER; offset modulo its length.
    edits: Vec<(usize, u8)>,
    from: u32,
    to: u32,
    payload: &'a [u8],
}

impl<'a> Built<'a> {
    fn read(flags: u8, mut data: &'a [u8]) -> Built<'a> {
        let count = take(&mut data, 1).first().map_or(0, |n| n % 4);
        let edits = (0..count)
            .filter_map(|_| match take(&mut data, 3) {
                &[a, b, x] if x != 0 => Some((usize::from(u16::from_le_bytes([a, b])), x)),
                _ => None,
            })
            .collect();
        let mut number = || {
            let mut bytes = [0u8; 4];
            let got = take(&mut data, 4);
            bytes[..got.len()].copy_from_slice(got);
            u32::from_le_bytes(bytes)
        };
        let (from, to) = (number(), number());
        Built {
            foreign_signer: flags & 0x04 != 0,
            to_legacy: flags & 0x08 != 0,
            not_for_us: flags & 0x10 != 0,
            with_legacy: flags & 0x20 != 0,
            triple_des: flags & 0x40 != 0,
            reject_3des: flags & 0x80 != 0,
            edits,
            from,
            to,
            payload: data,
        }
    }

    /// Whether `unprotect` must give the payload back.
    fn must_succeed(&self) -> bool {
        !self.foreign_signer
            && !self.not_for_us
            && (!self.to_legacy || self.with_legacy)
            && !(self.triple_des && self.reject_3des)
            && self.edits.is_empty()
    }
}

fn protected(built: &Built<'_>, ids: &Identities) -> Vec<u8> {
    let signer = if built.foreign_signer {
        &ids.receiver
    } else {
        &ids.sender
    };
    let recipient = if built.not_for_us {
        &ids.sender
    } else if built.to_legacy {
        &ids.legacy
    } else {
        &ids.receiver
    };
    let options = ProtectOptions {
        cipher: if built.triple_des {
            ContentCipher::TripleDesCbc
        } else {
            ContentCipher::Aes256Cbc
        },
    };
    let mut der = protect(built.payload, signer, recipient.certificate(), &options)
        .expect("protect accepts any payload");
    let len = der.len();
    for &(offset, xor) in &built.edits {
        der[offset % len] ^= xor;
    }
    der
}

/// The payload checks `messaging::receive` runs after unprotect.
fn payload_checks(payload: &[u8], from: u32, to: u32) {
    let metadata = metadata::extract(payload);
    if let Ok(head) = MsgHead::parse(payload) {
        assert!(metadata.is_ok(), "a MsgHead is XML, so it has metadata");
        let _ = head.function();
        let _ = head.wants_receipt();
        let _ = head.business_document();
        let _ = head.attachments().len();
        if let (Some(from), Some(to)) = (HerId::new(from), HerId::new(to)) {
            let parties_match = head.sender.is(from) && head.receiver.is(to);
            assert_eq!(head.check_parties(from, to).is_ok(), parties_match);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let ids = identities();
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    match flags & 0x03 {
        0 => {
            let options = UnprotectOptions {
                allow_3des: flags & 0x80 == 0,
            };
            let legacy = (flags & 0x20 != 0).then_some(&ids.legacy);
            let result = unprotect(
                rest,
                &ids.receiver,
                legacy,
                ids.sender.certificate(),
                &options,
            );
            assert!(result.is_err(), "unsigned bytes verified");
        }
        2 => {
            let mut recipients = Stack::new().unwrap();
            recipients
                .push(ids.receiver.certificate().x509().clone())
                .unwrap();
            let Ok(der) = CmsContentInfo::encrypt(
                &recipients,
                rest,
                Cipher::aes_256_cbc(),
                CMSOptions::BINARY,
            )
            .and_then(|cms| cms.to_der()) else {
                return;
            };
            let result = unprotect(
                &der,
                &ids.receiver,
                None,
                ids.sender.certificate(),
                &UnprotectOptions::default(),
            );
            assert!(result.is_err(), "an unsigned SignedData verified");
        }
        _ => {
            let built = Built::read(flags, rest);
            let der = protected(&built, ids);
            let legacy = built.with_legacy.then_some(&ids.legacy);
            let options = UnprotectOptions {
                allow_3des: !built.reject_3des,
            };
            let result = unprotect(
                &der,
                &ids.receiver,
                legacy,
                ids.sender.certificate(),
                &options,
            );
            match result {
                Ok(payload) => {
                    assert_eq!(payload, built.payload, "verified, but not what was signed");
                    assert!(!built.foreign_signer, "someone else's signature verified");
                    assert!(!built.not_for_us, "decrypted a message for someone else");
                    payload_checks(&payload, built.from, built.to);
                }
                Err(error) => assert!(!built.must_succeed(), "{error}"),
            }
        }
    }
});

const RECEIVER_CERT: &str = "\
-----BEGIN CERTIFICATE-----
MIICRDCCAa2gAwIBAgICHwIwDQYJKoZIhvcNAQELBQAwNDEaMBgGA1UECgwRaGVs
c2VtZWxkaW5nIGZ1enoxFjAUBgNVBAMMDWZ1enogcmVjZWl2ZXIwIBcNMjYxMjAx
MjI1MDIyWhgPMjEyNjExMDcyMjUwMjJaMDQxGjAYBgNVBAoMEWhlbHNlbWVsZGlu
ZyBmdXp6MRYwFAYDVQQDDA1mdXp6IHJlY2VpdmVyMIGfMA0GCSqGSIb3DQEBAQUA
A4GNADCBiQKBgQCrVpxSn94kMOdYkW+iZNdhfySoY8XZr8l5I1F8OD5+DwVeBRLd
3g37aqQp29N/KkZ649i+4dfyBQkyf+NFP6q0YaQOraS7wNftGFhwwqyEo+uVvcra
p6zWCOF4spbo56g/fk6QMQzcsyRKVsBFMku/xILFt4WeWTH6imj/8FRYIwIDAQAB
o2MwYTAdBgNVHQ4EFgQU9qp5C/BdBfuapnjrPBQKc71OwQgwHwYDVR0jBBgwFoAU
9qp5C/BdBfuapnjrPBQKc71OwQgwDwYDVR0TAQH/BAUwAwEB/zAOBgNVHQ8BAf8E
BAMCBeAwDQYJKoZIhvcNAQELBQADgYEAgYBsEyT+k9+7jXDemHJUVt8DZEKWXK/s
0vnZ9rxcoXH73B69LWn9ZlEmk9S22IepgRxbHx4gja7J9fdFsU6lU0duNMFU3sGr
/l1AjK5fvTbj88HhO1N9Uom+vP1pT76HYI6iE39baqAa5IAmz6u+fyh4RjAjywzS
wUQerwsAM1M=
-----END CERTIFICATE-----
";
const RECEIVER_KEY: &str = "\
-----BEGIN PRIVATE KEY-----
MIICdgIBADANBgkqhkiG9w0BAQEFAASCAmAwggJcAgEAAoGBAKtWnFKf3iQw51iR
b6Jk12F/JKhjxdmvyXkjUXw4Pn4PBV4FEt3eDftqpCnb038qRnrj2L7h1/IFCTJ/
40U/qrRhpA6tpLvA1+0YWHDCrISj65W9ytqnrNYI4XiylujnqD9+TpAxDNyzJEpW
wEUyS7/EgsW3hZ5ZMfqKaP/wVFgjAgMBAAECgYALjDXS98VgCQ++j2bHuiYuAwS0
eK0AA/H/QRsf1SaZFmgVMyBXZbzpggF4dMFnY7EGXU7hZpVIUYCSL75gj27wxxPH
nI/lyAseq2Lzwr0qeIXKNuYqg+9oN7ufsyR1DZX9WZVUOiTD/A+00Qxc5eqiLWuu
lke7Bfpk5odz/C91qQJBANwpV3PwY37Q9gKQ+Rq53EYSrA6iLzOEGqfbTndhPm0f
eJbe1NNOkPg22rjB0N8xu+6eHg2BLBRwCl/dMLhJ0S8CQQDHOrC23S9mqY2/CcNA
Q/Xf1O3RN08e9ytJnkeDeVlzdgCYzmNb1MarPSKa+EGJjR0o9HochhSgIgoT7Aw2
KSNNAkB+2i8ydULOshXdWqy9MnPxyBZtBBPQSgCV0O3AKT6v3187Br931SAAdJLH
u5zezSgsj9xfCZtdV0UTAT5uINIvAkANTk0pGWKmD6Lo5GUG8MMGHPl5JKGDJuzc
MNcD3+HqhTILApW+N1rBawbZpMTzw9nzt0hEiWvtOfjEVdqG735tAkEApRxHauhH
GK+SvgrFPUw3gxmpJXgS2nuZ3dMbmcb2VeKhtFzv5NYMHni3x29GTEzQq0wozF7/
LksGdGvX7HlV6w==
-----END PRIVATE KEY-----
";
const LEGACY_CERT: &str = "\
-----BEGIN CERTIFICATE-----
MIICQDCCAamgAwIBAgICHwMwDQYJKoZIhvcNAQELBQAwMjEaMBgGA1UECgwRaGVs
c2VtZWxkaW5nIGZ1enoxFDASBgNVBAMMC2Z1enogbGVnYWN5MCAXDTI2MTIwMTIy
NTAyMloYDzIxMjYxMTA3MjI1MDIyWjAyMRowGAYDVQQKDBFoZWxzZW1lbGRpbmcg
ZnV6ejEUMBIGA1UEAwwLZnV6eiBsZWdhY3kwgZ8wDQYJKoZIhvcNAQEBBQADgY0A
MIGJAoGBAPcQHEJt2spWsDHtZPirrFoR64cT1LNMRWL0/9ZfUm63GgohClU2hTe/
33ClGavhG6OVDdJSESgT7gbGE6G0mjYPdOKTuOyt3rotCkIONweJaGhmF85hCIWn
ukMu7jkc5uLoAXko2PcY+eg8znUFGiz4NOuzpMV9hiLaq+PHOxp7AgMBAAGjYzBh
MB0GA1UdDgQWBBRmBMqaTxlTHBd9Mp12wWSRepFXpzAfBgNVHSMEGDAWgBRmBMqa
TxlTHBd9Mp12wWSRepFXpzAPBgNVHRMBAf8EBTADAQH/MA4GA1UdDwEB/wQEAwIF
4DANBgkqhkiG9w0BAQsFAAOBgQAEEYgR8KcclUkgCprdEOhjAXLuhkSsp8GLyvMS
PQcGbILl3ufHflBcYWqXMxwTAd3QtgSmtaTOJ/VnIDenQnH0PvupNv0RQ35pyy7r
OM87GilBt68rtPk5WzllBoTBjM+HgvUoGbdC6eedA9zcy0J+Hk6Z3zDNvo541BW6
j8pWLA==
-----END CERTIFICATE-----
";
const LEGACY_KEY: &str = "\
-----BEGIN PRIVATE KEY-----
MIICdwIBADANBgkqhkiG9w0BAQEFAASCAmEwggJdAgEAAoGBAPcQHEJt2spWsDHt
ZPirrFoR64cT1LNMRWL0/9ZfUm63GgohClU2hTe/33ClGavhG6OVDdJSESgT7gbG
E6G0mjYPdOKTuOyt3rotCkIONweJaGhmF85hCIWnukMu7jkc5uLoAXko2PcY+eg8
znUFGiz4NOuzpMV9hiLaq+PHOxp7AgMBAAECgYBmhTXkzucaTWyh2yuqELrdSVBd
5fm+SSkFzjqXf0iajrpsd5dtEsmm/6S9fpUvgKLSd5ibrNhXtCVyhCFDWckfUwOY
JSjcV4b/D80peblvV50MGyI4YGRMYgiORRO6CBZxIVYoKX2Pt9laUgUtSv91P6nM
n87cdJfy90tB/1yl6QJBAPztGT6BjQOjugS+5SjUy3PdIm/JR13njEk6CsyPAOMj
RtZ6PEbX33PctIuaIk6Ule5mPJfyrBvswmYaqMZ2s6UCQQD6EMUn1XMlsdcndFi8
gHOOs5M59V4MYDwizRG1KeaL5txzDw0QyrykDyCNEhoi355Lg1rB7vbd+dARoR4i
qLufAkBGtrdvHWNimB0DBKgnQU9cpn/hRyIX5Av50SuBw52Y450DjAtcNzC3QQaN
XVuoIqzEiXr5dJSf/hLf3yY+zqMtAkEAk3h6XKBzdKJpaPojLp9uBpT+WSrLmO7T
6A4ZyEX6kTzHew9APEvjbbkCEE/BnBlWJ+BCEKaVbZjaTNtAg14QrwJBAOQJ0CBq
vX7KZwKMAd34AtmfdVyBAILks9s5WQuNDfiuX/Ysxwr/o19Xogt4akTYnkqoK+/K
6vvsz29qsXuTYdE=
-----END PRIVATE KEY-----
";
const SENDER_CERT: &str = "\
-----BEGIN CERTIFICATE-----
MIICQDCCAamgAwIBAgICHwQwDQYJKoZIhvcNAQELBQAwMjEaMBgGA1UECgwRaGVs
c2VtZWxkaW5nIGZ1enoxFDASBgNVBAMMC2Z1enogc2VuZGVyMCAXDTI2MTIwMTIy
NTAyMloYDzIxMjYxMTA3MjI1MDIyWjAyMRowGAYDVQQKDBFoZWxzZW1lbGRpbmcg
ZnV6ejEUMBIGA1UEAwwLZnV6eiBzZW5kZXIwgZ8wDQYJKoZIhvcNAQEBBQADgY0A
MIGJAoGBAOEwX0RavN8bC0+SaBYNYstmr1hLGLyw3+8aVey1c5F8f0jIWvKFjI2r
BvwMQzIgYooS5yiqMIzjeutZvRD9bCj+sfH8t7s95XJae7k94yxRGpTtxQk4HxQ8
R3JDjlnFD4IWnJjDVrtiF3+AtoEiREGK+xEs7Kf8AG1SpVJ5DHvdAgMBAAGjYzBh
MB0GA1UdDgQWBBRSJ1z6rUqtE8x/fBP4JY8Ui7/mEjAfBgNVHSMEGDAWgBRSJ1z6
rUqtE8x/fBP4JY8Ui7/mEjAPBgNVHRMBAf8EBTADAQH/MA4GA1UdDwEB/wQEAwIF
4DANBgkqhkiG9w0BAQsFAAOBgQC+NkrJWJFwvaQ0e2NSi/vegRF4waAsDwbGdjPm
76LpRNoqlhHxd88WaxgJK4ruel1Ee2in8jPAIrvsOpMyNf1sCcifU858YRv4FVaT
wdLRTaDdWTcjh4UB9j7oQFgPIqYzrT34I8OeqaXsUcm2pved2Pzo4jBxRisPZzia
3nGFWQ==
-----END CERTIFICATE-----
";
const SENDER_KEY: &str = "\
-----BEGIN PRIVATE KEY-----
MIICdwIBADANBgkqhkiG9w0BAQEFAASCAmEwggJdAgEAAoGBAOEwX0RavN8bC0+S
aBYNYstmr1hLGLyw3+8aVey1c5F8f0jIWvKFjI2rBvwMQzIgYooS5yiqMIzjeutZ
vRD9bCj+sfH8t7s95XJae7k94yxRGpTtxQk4HxQ8R3JDjlnFD4IWnJjDVrtiF3+A
toEiREGK+xEs7Kf8AG1SpVJ5DHvdAgMBAAECgYBNjiZRWVrRD/ReTFMSvTt4R/49
z2dOnTASniRXqMqLobAIthA0lHAq3mtCZUrDOcoWOZppM+wSqcnMwpROBKm580kY
2lSA1jHd+66vnMrCTq+w5ng3Tnsk8yh7iBR+c9wXCWJ1SueC3G3A8gHa5V8qzTAR
rBvAlntSeJYSUN2xgQJBAPWCvDtKix7zqN1tV6aqjEPvHkeqgVAkUO/GnFPvLWeH
SAthw3141TsJbhJfQYqUJ4KaZN8cUo3bh5nbb/RfZuECQQDqz15dy2GcAS0WbSD7
OCLpBduuczSAKUWAXYJIUNnQeh5Ue2sEXnl2hXMZfmEd62sXAqB7zP3D75oVSadH
n0B9AkEA3LYUTGU+XqwEQlP7OW0XPjdojFr/d7G+RWDSxy49LlZS8VCJc3I+l51p
pACYpmF8h5APYPhQSxFxfWLl6dYeYQJBAKadJGG7mfRfpUWfg+Ker67XeE0t9Bfo
sSdnsrVroVLcBD+AH6zG+LsP8F8rnO/lB2UZeRS/nWV108i9LZSVvOUCQEY4dX+x
hAXVbLl06jWYo/Ub3QRChuFdE7U0ftWV7X7lSdx/uGT/8Hq0qvOJY/RhRoBpjsVj
j2RJhFGc/EpahtE=
-----END PRIVATE KEY-----
";
