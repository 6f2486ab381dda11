//! CMS protection as the NHN profile wants it: sign-then-encrypt on send,
//! decrypt-then-verify on receive.
//!
//! [`protect`] makes a SignedData over the payload (attached content,
//! SHA-256, signer named by issuer and serial, signer certificate included)
//! and wraps its DER in an EnvelopedData (AES-256-CBC, RSA PKCS#1 v1.5 key
//! transport, recipient named by issuer and serial).
//!
//! [`unprotect`] reads the envelope's structure first — who it is for and
//! which cipher it uses — so a refused cipher or a message for someone else
//! is rejected before any private-key operation; then decrypts with the
//! current key or the legacy one, and verifies the signature against the
//! expected sender certificate only. Chain, dates and revocation are judged
//! elsewhere (the certificate checks), not here.

mod structure;

use openssl::cms::{CMSOptions, CmsContentInfo};
use openssl::error::ErrorStack;
use openssl::stack::Stack;
use openssl::symm::Cipher;

use crate::{Certificate, Error, Identity, Result};

/// AMQP content-type of a protected (signed and encrypted) message body.
pub const CONTENT_TYPE_PROTECTED: &str =
    "application/pkcs7-mime; smime-type=signed-and-enveloped-data";
/// AMQP content-type of an unprotected message body (plain XML).
pub const CONTENT_TYPE_UNPROTECTED: &str = "text/plain";

const OID_DES_CBC: &str = "1.3.14.3.2.7";
const OID_DES_EDE3_CBC: &str = "1.2.840.113549.3.7";
const OID_RC2_CBC: &str = "1.2.840.113549.3.2";

/// The content-encryption cipher used when protecting.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ContentCipher {
    /// AES-256-CBC (2.16.840.1.101.3.4.1.42), the profile's default.
    #[default]
    Aes256Cbc,
    /// 3DES-CBC (1.2.840.113549.3.7), only for peers that cannot do AES.
    TripleDesCbc,
}

/// How to protect a message.
#[derive(Clone, Debug, Default)]
pub struct ProtectOptions {
    /// Content-encryption cipher (AES-256-CBC unless a peer needs 3DES).
    pub cipher: ContentCipher,
}

/// How strict to be when unprotecting a message.
#[derive(Clone, Debug, Default)]
pub struct UnprotectOptions {
    /// Refuse 3DES-encrypted messages (DES and RC2 are always refused).
    pub reject_3des: bool,
}

/// Signs `payload` as `signer`, then encrypts the signed DER to
/// `recipient`. Returns the DER of the EnvelopedData.
pub fn protect(
    payload: &[u8],
    signer: &Identity,
    recipient: &Certificate,
    options: &ProtectOptions,
) -> Result<Vec<u8>> {
    // BINARY: sign the exact bytes, no MIME canonicalisation. The digest is
    // the RSA key's default, SHA-256 (asserted by the tests).
    let signed = CmsContentInfo::sign(
        Some(signer.certificate().x509()),
        Some(signer.private_key()),
        None,
        Some(payload),
        CMSOptions::BINARY | CMSOptions::NOSMIMECAP,
    )
    .and_then(|cms| cms.to_der())
    .map_err(protect_error("sign"))?;

    let mut recipients = Stack::new().map_err(protect_error("encrypt"))?;
    recipients
        .push(recipient.x509().clone())
        .map_err(protect_error("encrypt"))?;
    let cipher = match options.cipher {
        ContentCipher::Aes256Cbc => Cipher::aes_256_cbc(),
        ContentCipher::TripleDesCbc => Cipher::des_ede3_cbc(),
    };
    CmsContentInfo::encrypt(&recipients, &signed, cipher, CMSOptions::BINARY)
        .and_then(|cms| cms.to_der())
        .map_err(protect_error("encrypt"))
}

/// Decrypts `der` with `decryption` (or, when the message was encrypted to
/// the previous certificate, `legacy_decryption`), verifies that
/// `expected_signer` signed it, and returns the signed payload bytes exactly
/// as they were signed.
pub fn unprotect(
    der: &[u8],
    decryption: &Identity,
    legacy_decryption: Option<&Identity>,
    expected_signer: &Certificate,
    options: &UnprotectOptions,
) -> Result<Vec<u8>> {
    let envelope = structure::read_envelope(der)?;
    refuse_weak_cipher(&envelope.cipher_oid, options)?;

    let candidates: Vec<&Identity> = std::iter::once(decryption)
        .chain(legacy_decryption)
        .filter(|identity| {
            envelope
                .recipients
                .iter()
                .any(|recipient| recipient.matches(identity.certificate()))
        })
        .collect();
    if candidates.is_empty() {
        return Err(Error::NotForUs {
            expected_serials: std::iter::once(decryption)
                .chain(legacy_decryption)
                .map(|identity| identity.certificate().serial_hex())
                .collect(),
            found_serials: envelope.recipients.iter().map(|r| r.describe()).collect(),
        });
    }

    let signed_der = decrypt(der, &candidates)?;
    verify(&signed_der, expected_signer)
}

fn refuse_weak_cipher(oid: &str, options: &UnprotectOptions) -> Result<()> {
    let refused = match oid {
        OID_DES_CBC => Some("DES-CBC"),
        OID_RC2_CBC => Some("RC2-CBC"),
        OID_DES_EDE3_CBC if options.reject_3des => Some("3DES-CBC"),
        _ => None,
    };
    match refused {
        Some(name) => Err(Error::RefusedCipher {
            algorithm: format!("{name} ({oid})"),
        }),
        None => Ok(()),
    }
}

/// Tries each candidate key in turn; the error names the last one tried.
fn decrypt(der: &[u8], candidates: &[&Identity]) -> Result<Vec<u8>> {
    let envelope = CmsContentInfo::from_der(der).map_err(|e| Error::NotCms {
        layer: "EnvelopedData",
        reason: first_reason(&e),
    })?;
    let mut last_error = None;
    for identity in candidates {
        match envelope.decrypt(identity.private_key(), identity.certificate().x509()) {
            Ok(plain) => return Ok(plain),
            Err(e) => {
                last_error = Some(Error::DecryptFailed {
                    recipient_serial: identity.certificate().serial_hex(),
                    reason: first_reason(&e),
                })
            }
        }
    }
    Err(last_error.expect("unprotect passes at least one candidate"))
}

/// Verifies the SignedData against `expected_signer` alone: the certificates
/// carried in the message are not trusted (NOINTERN), and no chain is built
/// here (NOVERIFY).
fn verify(signed_der: &[u8], expected_signer: &Certificate) -> Result<Vec<u8>> {
    let signed = structure::read_signed(signed_der)?;
    let [signer] = signed.signers.as_slice() else {
        return Err(Error::SignerCount {
            count: signed.signers.len(),
        });
    };
    let expected_serial = expected_signer.serial_hex();
    if !signer.matches(expected_signer) {
        return Err(Error::WrongSigner {
            expected_serial,
            actual_serial: signer.describe(),
        });
    }
    let bad_signature = |e: ErrorStack| Error::BadSignature {
        signer_serial: expected_serial.clone(),
        reason: first_reason(&e),
    };
    let mut cms =
        CmsContentInfo::from_der(&signed.der_without_certificates).map_err(|e| Error::NotCms {
            layer: "SignedData",
            reason: first_reason(&e),
        })?;
    let mut trusted = Stack::new().map_err(bad_signature)?;
    trusted
        .push(expected_signer.x509().clone())
        .map_err(bad_signature)?;
    let mut payload = Vec::new();
    cms.verify(
        Some(&trusted),
        None,
        None,
        Some(&mut payload),
        CMSOptions::NOINTERN | CMSOptions::NOVERIFY | CMSOptions::BINARY,
    )
    .map_err(bad_signature)?;
    Ok(payload)
}

fn protect_error(step: &'static str) -> impl Fn(ErrorStack) -> Error {
    move |e| Error::Protect {
        step,
        reason: first_reason(&e),
    }
}

/// OpenSSL's first reason string: says what failed, never carries data.
fn first_reason(stack: &ErrorStack) -> String {
    stack
        .errors()
        .first()
        .and_then(|e| e.reason().map(str::to_string))
        .unwrap_or_else(|| "OpenSSL reported no reason".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn des_and_rc2_always_refused_3des_when_configured() {
        let lax = UnprotectOptions::default();
        let strict = UnprotectOptions { reject_3des: true };
        assert!(refuse_weak_cipher(OID_DES_CBC, &lax).is_err());
        assert!(refuse_weak_cipher(OID_RC2_CBC, &lax).is_err());
        assert!(refuse_weak_cipher(OID_DES_EDE3_CBC, &lax).is_ok());
        let refused = refuse_weak_cipher(OID_DES_EDE3_CBC, &strict).unwrap_err();
        assert_eq!(
            refused.to_string(),
            "refused content-encryption algorithm 3DES-CBC (1.2.840.113549.3.7)"
        );
        assert!(refuse_weak_cipher("2.16.840.1.101.3.4.1.42", &strict).is_ok());
    }
}
