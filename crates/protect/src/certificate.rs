//! An X.509 certificate and the facts about it that the profile cares about.

use chrono::{DateTime, Utc};
use openssl::asn1::{Asn1Time, Asn1TimeRef};
use openssl::hash::MessageDigest;
use openssl::x509::{X509KeyUsage, X509};
use serde::Serialize;

use crate::{Error, Result};

/// A parsed X.509 certificate.
#[derive(Clone)]
pub struct Certificate {
    x509: X509,
}

/// A key usage bit from the certificate's KeyUsage extension, named as RFC 5280
/// names it (the form printed by `cert check`).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum KeyUsage {
    /// `digitalSignature`: verifying signatures other than on certificates
    /// and CRLs.
    DigitalSignature,
    /// `nonRepudiation` (`contentCommitment` in later editions): signatures
    /// that bind the signer to the content.
    NonRepudiation,
    /// `keyEncipherment`: encrypting keys for transport, as CMS key
    /// transport does.
    KeyEncipherment,
    /// `dataEncipherment`: encrypting data directly with the public key.
    DataEncipherment,
    /// `keyAgreement`: key agreement, e.g. Diffie-Hellman.
    KeyAgreement,
    /// `keyCertSign`: signing certificates (CA certificates).
    KeyCertSign,
    /// `cRLSign`: signing CRLs.
    CrlSign,
    /// `encipherOnly`: with `keyAgreement`, the agreed key only encrypts.
    EncipherOnly,
    /// `decipherOnly`: with `keyAgreement`, the agreed key only decrypts.
    DecipherOnly,
}

impl KeyUsage {
    const ALL: [(KeyUsage, X509KeyUsage); 9] = [
        (KeyUsage::DigitalSignature, X509KeyUsage::DIGITAL_SIGNATURE),
        (KeyUsage::NonRepudiation, X509KeyUsage::NON_REPUDIATION),
        (KeyUsage::KeyEncipherment, X509KeyUsage::KEY_ENCIPHERMENT),
        (KeyUsage::DataEncipherment, X509KeyUsage::DATA_ENCIPHERMENT),
        (KeyUsage::KeyAgreement, X509KeyUsage::KEY_AGREEMENT),
        (KeyUsage::KeyCertSign, X509KeyUsage::KEY_CERT_SIGN),
        (KeyUsage::CrlSign, X509KeyUsage::CRL_SIGN),
        (KeyUsage::EncipherOnly, X509KeyUsage::ENCIPHER_ONLY),
        (KeyUsage::DecipherOnly, X509KeyUsage::DECIPHER_ONLY),
    ];

    /// The RFC 5280 name, e.g. `nonRepudiation`.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyUsage::DigitalSignature => "digitalSignature",
            KeyUsage::NonRepudiation => "nonRepudiation",
            KeyUsage::KeyEncipherment => "keyEncipherment",
            KeyUsage::DataEncipherment => "dataEncipherment",
            KeyUsage::KeyAgreement => "keyAgreement",
            KeyUsage::KeyCertSign => "keyCertSign",
            KeyUsage::CrlSign => "cRLSign",
            KeyUsage::EncipherOnly => "encipherOnly",
            KeyUsage::DecipherOnly => "decipherOnly",
        }
    }
}

impl Certificate {
    /// Reads one certificate from PEM (first certificate in the text) or DER.
    pub fn from_pem_or_der(bytes: &[u8]) -> Result<Self> {
        let looks_like_pem = bytes
            .windows(b"-----BEGIN".len())
            .any(|w| w == b"-----BEGIN");
        let parsed = if looks_like_pem {
            X509::from_pem(bytes)
        } else {
            X509::from_der(bytes)
        };
        parsed
            .map(|x509| Certificate { x509 })
            .map_err(|e| Error::CertificateParse {
                reason: first_openssl_reason(&e),
            })
    }

    /// Reads every certificate of a PEM text (in file order), or the one
    /// certificate of a DER file. At least one certificate is required.
    pub fn all_from_pem_or_der(bytes: &[u8]) -> Result<Vec<Self>> {
        let looks_like_pem = bytes
            .windows(b"-----BEGIN".len())
            .any(|w| w == b"-----BEGIN");
        if !looks_like_pem {
            return Ok(vec![Certificate::from_pem_or_der(bytes)?]);
        }
        let stack = X509::stack_from_pem(bytes).map_err(|e| Error::CertificateParse {
            reason: first_openssl_reason(&e),
        })?;
        if stack.is_empty() {
            return Err(Error::CertificateParse {
                reason: "no certificate in the PEM text".to_string(),
            });
        }
        Ok(stack.into_iter().map(Certificate::from_x509).collect())
    }

    /// Whether the certificate is self-signed (its issuer is its subject and
    /// its own key verifies its signature): a root, never embedded in a
    /// signed message.
    pub fn is_self_signed(&self) -> bool {
        let same_name = self
            .x509
            .subject_name()
            .try_cmp(self.x509.issuer_name())
            .is_ok_and(|ordering| ordering.is_eq());
        same_name
            && self
                .x509
                .public_key()
                .and_then(|key| self.x509.verify(&key))
                .unwrap_or(false)
    }

    /// Wraps an already parsed OpenSSL certificate.
    pub fn from_x509(x509: X509) -> Self {
        Certificate { x509 }
    }

    /// The underlying OpenSSL certificate, for the CMS and store code.
    pub fn x509(&self) -> &X509 {
        &self.x509
    }

    /// DER encoding.
    pub fn to_der(&self) -> Vec<u8> {
        // A certificate we parsed always re-encodes.
        self.x509.to_der().unwrap_or_default()
    }

    /// PEM encoding.
    pub fn to_pem(&self) -> Vec<u8> {
        self.x509.to_pem().unwrap_or_default()
    }

    /// Serial number as lowercase hex without separators, e.g. `10a3f7e99720077e30aa`.
    pub fn serial_hex(&self) -> String {
        self.x509
            .serial_number()
            .to_bn()
            .and_then(|bn| bn.to_hex_str().map(|s| s.to_ascii_lowercase()))
            .unwrap_or_default()
    }

    /// Subject as `CN=…, O=…` in certificate order.
    pub fn subject(&self) -> String {
        name_to_string(self.x509.subject_name())
    }

    /// Issuer as `CN=…, O=…` in certificate order.
    pub fn issuer(&self) -> String {
        name_to_string(self.x509.issuer_name())
    }

    /// Start of the validity period.
    pub fn not_before(&self) -> DateTime<Utc> {
        asn1_to_utc(self.x509.not_before())
    }

    /// End of the validity period.
    pub fn not_after(&self) -> DateTime<Utc> {
        asn1_to_utc(self.x509.not_after())
    }

    /// Key usages from the KeyUsage extension; `None` when the extension is absent.
    pub fn key_usage(&self) -> Option<Vec<KeyUsage>> {
        let bits = self.x509.key_usage()?;
        Some(
            KeyUsage::ALL
                .iter()
                .filter(|(_, flag)| bits.contains(*flag))
                .map(|(usage, _)| *usage)
                .collect(),
        )
    }

    /// SHA-1 thumbprint in upper-case hex, as the reference library reports it
    /// in `errorConditionData`.
    pub fn thumbprint_sha1(&self) -> String {
        self.x509
            .digest(MessageDigest::sha1())
            .map(|d| hex::encode_upper(&*d))
            .unwrap_or_default()
    }
}

impl std::fmt::Debug for Certificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certificate")
            .field("subject", &self.subject())
            .field("serial", &self.serial_hex())
            .finish()
    }
}

impl PartialEq for Certificate {
    fn eq(&self, other: &Self) -> bool {
        self.to_der() == other.to_der()
    }
}

pub(crate) fn name_to_string(name: &openssl::x509::X509NameRef) -> String {
    name.entries()
        .map(|entry| {
            let key = entry.object().nid().short_name().unwrap_or("?");
            let value = entry.data().to_string().unwrap_or_default();
            format!("{key}={value}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

pub(crate) fn asn1_to_utc(time: &Asn1TimeRef) -> DateTime<Utc> {
    let epoch = Asn1Time::from_unix(0).expect("the epoch is representable");
    // A malformed time (hostile input OpenSSL still parsed) reads as the
    // earliest instant rather than panicking; chain verification rejects it.
    let Ok(diff) = epoch.diff(time) else {
        return DateTime::<Utc>::MIN_UTC;
    };
    let seconds = i64::from(diff.days) * 86_400 + i64::from(diff.secs);
    DateTime::from_timestamp(seconds, 0).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

pub(crate) fn first_openssl_reason(stack: &openssl::error::ErrorStack) -> String {
    stack
        .errors()
        .first()
        .and_then(|e| e.reason().map(str::to_string))
        .unwrap_or_else(|| "unrecognised encoding".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_a_parse_error_not_a_panic() {
        for input in [
            &b""[..],
            b"\x30\x82\xff\xff",
            b"-----BEGIN CERTIFICATE-----\nAAAA\n",
        ] {
            assert!(matches!(
                Certificate::from_pem_or_der(input),
                Err(Error::CertificateParse { .. })
            ));
        }
    }
}

#[cfg(test)]
mod pki_tests {
    use super::*;
    use helsemelding_testkit::pki::{TestPki, Usage};

    #[test]
    fn reads_facts_of_a_generated_certificate_from_pem_and_der() {
        let pki = TestPki::new("Facts CA");
        let issued = pki.issue("91462 signing", Usage::Signing);
        let from_pem = Certificate::from_pem_or_der(&issued.cert.to_pem().unwrap()).unwrap();
        let from_der = Certificate::from_pem_or_der(&issued.cert.to_der().unwrap()).unwrap();
        assert_eq!(from_pem, from_der);
        assert_eq!(from_pem.serial_hex(), issued.serial_hex());
        assert_eq!(from_pem.subject(), "O=helsemelding test, CN=91462 signing");
        assert_eq!(from_pem.issuer(), "O=helsemelding test, CN=Facts CA");
        assert_eq!(
            from_pem.key_usage().unwrap(),
            vec![KeyUsage::DigitalSignature, KeyUsage::NonRepudiation]
        );
        assert!(from_pem.not_before() < Utc::now() && Utc::now() < from_pem.not_after());
        assert_eq!(from_pem.thumbprint_sha1().len(), 40);
    }
}
