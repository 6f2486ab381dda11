//! Certificate look-ups: the SOAP `CertificateDetails` answer
//! (`GetCertificateDetailsForEncryption/ValidatingSignature`) and the REST
//! certificate endpoint, which with `includeHistoric=true` returns the
//! current pair and earlier pairs so that a signature made just before a
//! party rotated its certificates still verifies.

use helsemelding_protect::{Certificate, KeyUsage};
use serde_json::Value;

use crate::cppa::certificate_from_base64;
use crate::xml::{self, Limits};
use crate::Error;

const MAX_BYTES: usize = 1024 * 1024;

/// One certificate from a `CertificateDetails` answer.
#[derive(Clone, Debug)]
pub struct CertificateDetails {
    /// The certificate.
    pub certificate: Certificate,
    /// Where the registry says it is published (LDAP).
    pub ldap_url: Option<String>,
}

/// Parse a SOAP `CertificateDetails` answer.
pub fn parse_certificate_details(bytes: &[u8]) -> Result<CertificateDetails, Error> {
    const WHAT: &str = "certificate details";
    let limits = Limits {
        max_bytes: MAX_BYTES,
        ..Limits::DOCUMENT
    };
    let root = xml::parse(bytes, limits, WHAT)?;
    if root.attr("nil") == Some("true") {
        return Err(Error::EmptyDocument { what: WHAT });
    }
    if root.name != "CertificateDetails" {
        return Err(Error::UnexpectedDocument {
            what: WHAT,
            root: root.name,
        });
    }
    let base64 = root
        .child_text("Certificate")
        .filter(|t| !t.is_empty())
        .ok_or_else(|| Error::Missing {
            element: "Certificate",
            party: "unknown".into(),
        })?;
    Ok(CertificateDetails {
        certificate: certificate_from_base64(base64, "unknown", "Certificate")?,
        ldap_url: root.child_text("LdapUrl").map(str::to_owned),
    })
}

/// A party's certificates, newest first within each use.
#[derive(Clone, Debug, Default)]
pub struct PartyCertificates {
    /// Signing certificates: the current one first, then previous ones.
    pub signing: Vec<Certificate>,
    /// Encryption certificates: the current one first, then previous ones.
    pub encryption: Vec<Certificate>,
}

impl PartyCertificates {
    /// The certificate to encrypt to.
    pub fn current_encryption(&self) -> Option<&Certificate> {
        self.encryption.first()
    }

    /// The current signing certificate.
    pub fn current_signing(&self) -> Option<&Certificate> {
        self.signing.first()
    }

    /// Whether a signature by `signer` is acceptable: it is the current
    /// signing certificate or a previous one (a party in rotation).
    pub fn accepts_signer(&self, signer: &Certificate) -> bool {
        self.signing.iter().any(|c| c == signer)
    }

    fn sort_newest_first(&mut self) {
        self.signing
            .sort_by_key(|c| std::cmp::Reverse(c.not_before()));
        self.encryption
            .sort_by_key(|c| std::cmp::Reverse(c.not_before()));
    }
}

/// Parse the REST certificate answer: one object or an array of objects,
/// each with `certificateValue` (base64 DER). The use comes from a `usage` /
/// `keyUsage` / `certificateUsage` field when present, else from the
/// certificate's own key usage (nonRepudiation = signing, keyEncipherment =
/// encryption).
pub fn parse_rest_certificates(bytes: &[u8], her_id: &str) -> Result<PartyCertificates, Error> {
    const WHAT: &str = "certificate JSON";
    if bytes.len() > MAX_BYTES {
        return Err(Error::TooLarge {
            what: WHAT,
            size: bytes.len(),
            limit: MAX_BYTES,
        });
    }
    let json: Value = serde_json::from_slice(bytes).map_err(|e| Error::Json {
        what: WHAT,
        reason: e.to_string(),
    })?;
    let entries = match &json {
        Value::Array(items) => items.iter().collect::<Vec<_>>(),
        Value::Object(_) => vec![&json],
        _ => {
            return Err(Error::Json {
                what: WHAT,
                reason: "neither an object nor an array".into(),
            })
        }
    };
    let mut certificates = PartyCertificates::default();
    for entry in entries {
        let value = entry
            .get("certificateValue")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::Missing {
                element: "certificateValue",
                party: her_id.to_owned(),
            })?;
        let certificate = certificate_from_base64(value, her_id, "certificateValue")?;
        let usage = ["usage", "keyUsage", "certificateUsage"]
            .iter()
            .find_map(|k| entry.get(*k).and_then(Value::as_str))
            .map(str::to_ascii_lowercase);
        let signing = match usage {
            Some(u) if u.contains("sign") => true,
            Some(u) if u.contains("encr") => false,
            _ => certificate
                .key_usage()
                .is_some_and(|u| u.contains(&KeyUsage::NonRepudiation)),
        };
        if signing {
            certificates.signing.push(certificate);
        } else {
            certificates.encryption.push(certificate);
        }
    }
    if certificates.signing.is_empty() && certificates.encryption.is_empty() {
        return Err(Error::NotFound {
            what: "certificates",
            key: her_id.to_owned(),
        });
    }
    certificates.sort_newest_first();
    Ok(certificates)
}
