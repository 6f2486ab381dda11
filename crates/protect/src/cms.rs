//! CMS protection as the NHN profile wants it: sign-then-encrypt on send,
//! decrypt-then-verify on receive.
//!
//! [`protect`] makes a SignedData over the payload (attached content,
//! SHA-256, signer named by issuer and serial, signer certificate and its
//! chain except self-signed roots included) and wraps its DER in an
//! EnvelopedData (AES-256-CBC, RSA PKCS#1 v1.5 key transport, recipient
//! named by issuer and serial).
//!
//! [`unprotect`] reads the envelope's structure first — who it is for and
//! which cipher it uses — so a refused cipher or a message for someone else
//! is rejected before any private-key operation; then decrypts with the
//! current key or the legacy one, and verifies the signature against the
//! expected sender certificate only. [`unprotect_detailed`] does the same
//! against any of several accepted sender certificates (current and
//! previous ones) with one decryption, and also hands back the
//! certificates the SignedData carries, so that the sender's chain can be
//! built through the intermediates it embedded. Chain, dates and revocation
//! are judged elsewhere (the certificate checks), not here.

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
///
/// The default refuses 3DES (as PROFILE.md's `allow_3des = false`); DES and
/// RC2 are always refused.
#[derive(Clone, Debug, Default)]
pub struct UnprotectOptions {
    /// Accept 3DES-encrypted (1.2.840.113549.3.7) messages; refused when
    /// false (the default).
    pub allow_3des: bool,
}

/// Embedded certificates beyond this many are ignored (a chain is rarely
/// more than three deep; the rest would only cost time to decode).
pub const MAX_EMBEDDED_CERTIFICATES: usize = 32;

/// What [`unprotect_detailed`] found in a message.
#[derive(Clone)]
#[non_exhaustive]
pub struct Unprotected {
    /// The signed payload bytes exactly as they were signed.
    pub payload: Vec<u8>,
    /// The accepted sender certificate whose key made the signature (one
    /// of those passed in, not a copy from the message).
    pub signer: Certificate,
    /// The certificates the SignedData carries, in message order (usually
    /// the signer's own copy and its intermediates). They are outside the
    /// signature and not trusted: use them only as untrusted intermediates
    /// when building the signer's chain to the trust anchors. At most
    /// [`MAX_EMBEDDED_CERTIFICATES`]; entries that are not X.509
    /// certificates are skipped.
    pub embedded: Vec<Certificate>,
}

impl std::fmt::Debug for Unprotected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The payload is deliberately left out (only its length is shown).
        f.debug_struct("Unprotected")
            .field("payload_len", &self.payload.len())
            .field("signer", &self.signer)
            .field("embedded", &self.embedded)
            .finish()
    }
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
    // the RSA key's default, SHA-256 (asserted by the tests). The signer's
    // chain goes in beside its certificate, roots left out, as the
    // reference library's signer does (X509IncludeOption.ExcludeRoot).
    let chain = signer.chain_to_embed();
    let extra = if chain.is_empty() {
        None
    } else {
        let mut stack = Stack::new().map_err(protect_error("sign"))?;
        for certificate in chain {
            stack
                .push(certificate.x509().clone())
                .map_err(protect_error("sign"))?;
        }
        Some(stack)
    };
    let signed = CmsContentInfo::sign(
        Some(signer.certificate().x509()),
        Some(signer.private_key()),
        extra.as_deref(),
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
    open(
        der,
        decryption,
        legacy_decryption,
        std::slice::from_ref(expected_signer),
        options,
        false,
    )
    .map(|opened| opened.payload)
}

/// As [`unprotect`], but accepts a signature by any of `accepted_signers`
/// (e.g. the sender's current and previous signing certificates) with one
/// decryption, and returns which of them signed together with the
/// certificates embedded in the SignedData (for
/// [`crate::check::check_certificate_with_intermediates`]).
///
/// A signer that is none of `accepted_signers` is [`Error::WrongSigner`]
/// (its `expected_serial` lists the accepted serials, joined by ` or `).
pub fn unprotect_detailed(
    der: &[u8],
    decryption: &Identity,
    legacy_decryption: Option<&Identity>,
    accepted_signers: &[Certificate],
    options: &UnprotectOptions,
) -> Result<Unprotected> {
    open(
        der,
        decryption,
        legacy_decryption,
        accepted_signers,
        options,
        true,
    )
}

fn open(
    der: &[u8],
    decryption: &Identity,
    legacy_decryption: Option<&Identity>,
    accepted_signers: &[Certificate],
    options: &UnprotectOptions,
    with_embedded: bool,
) -> Result<Unprotected> {
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
    verify(&signed_der, accepted_signers, with_embedded)
}

fn refuse_weak_cipher(oid: &str, options: &UnprotectOptions) -> Result<()> {
    let refused = match oid {
        OID_DES_CBC => Some("DES-CBC"),
        OID_RC2_CBC => Some("RC2-CBC"),
        OID_DES_EDE3_CBC if !options.allow_3des => Some("3DES-CBC"),
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

/// Verifies the SignedData against the accepted signer it names: the
/// certificates carried in the message are not trusted (NOINTERN), and no
/// chain is built here (NOVERIFY). With `with_embedded`, those certificates
/// are decoded and handed back (after the signature verified).
fn verify(
    signed_der: &[u8],
    accepted_signers: &[Certificate],
    with_embedded: bool,
) -> Result<Unprotected> {
    let signed = structure::read_signed(signed_der)?;
    let [signer] = signed.signers.as_slice() else {
        return Err(Error::SignerCount {
            count: signed.signers.len(),
        });
    };
    let Some(expected_signer) = accepted_signers
        .iter()
        .find(|candidate| signer.matches(candidate))
    else {
        let expected: Vec<String> = accepted_signers
            .iter()
            .map(Certificate::serial_hex)
            .collect();
        return Err(Error::WrongSigner {
            expected_serial: if expected.is_empty() {
                "(none)".to_string()
            } else {
                expected.join(" or ")
            },
            actual_serial: signer.describe(),
        });
    };
    let expected_serial = expected_signer.serial_hex();
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
    let embedded = if with_embedded {
        structure::embedded_certificates(&signed.certificate_set, MAX_EMBEDDED_CERTIFICATES)
    } else {
        Vec::new()
    };
    Ok(Unprotected {
        payload,
        signer: expected_signer.clone(),
        embedded,
    })
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
    fn des_and_rc2_always_refused_3des_unless_allowed() {
        let strict = UnprotectOptions::default();
        let lax = UnprotectOptions { allow_3des: true };
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
