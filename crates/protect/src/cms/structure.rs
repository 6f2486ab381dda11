//! Reads the facts we judge a message by from its CMS structure before
//! OpenSSL touches the key: the content-encryption algorithm and recipients
//! of an EnvelopedData, the signers of a SignedData.
//!
//! Decoding is RustCrypto's `cms`/`der`; input that is BER rather than DER
//! (indefinite lengths, as streaming encoders write) is first re-encoded as
//! DER by OpenSSL's own parser, so both forms are judged the same way.

use ::cms::cert::IssuerAndSerialNumber;
use ::cms::content_info::ContentInfo;
use ::cms::enveloped_data::{EnvelopedData, RecipientIdentifier, RecipientInfo};
use ::cms::signed_data::{EncapsulatedContentInfo, SignerIdentifier, SignerInfos};
use der::asn1::ObjectIdentifier;
use der::{Any, AnyRef, Reader, SliceReader, Tag, TagNumber};
use der::{Decode, Encode, Tagged};
use openssl::cms::CmsContentInfo;
use openssl::x509::{X509Name, X509};

use crate::{Certificate, Error, Result};

const ID_ENVELOPED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.3");
const ID_SIGNED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.2");

/// What the outer EnvelopedData says about itself.
#[derive(Debug)]
pub(crate) struct Envelope {
    /// The content-encryption algorithm OID, dotted.
    pub cipher_oid: String,
    /// Who the content-encryption key was wrapped for.
    pub recipients: Vec<PartyId>,
}

/// What the inner SignedData says about itself.
#[derive(Debug)]
pub(crate) struct Signed {
    pub signers: Vec<PartyId>,
    /// The same ContentInfo with the `certificates` field dropped. That field
    /// is outside the signature, we never trust its contents, and OpenSSL 3.0
    /// spends about a millisecond decoding each public key in it.
    pub der_without_certificates: Vec<u8>,
    /// The contents of the `certificates` field (the SET OF's elements,
    /// undecoded); empty when the field is absent.
    pub certificate_set: Vec<u8>,
}

/// How a recipient or signer is named in the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PartyId {
    IssuerAndSerial {
        issuer_der: Vec<u8>,
        serial: Vec<u8>,
    },
    SubjectKeyId(Vec<u8>),
    /// A recipient kind other than key transport (key agreement, KEK, password).
    Other,
}

impl PartyId {
    /// Whether this identifier names `certificate`.
    pub fn matches(&self, certificate: &Certificate) -> bool {
        match self {
            PartyId::IssuerAndSerial { issuer_der, serial } => {
                let serial_matches = strip_leading_zeros(serial)
                    == strip_leading_zeros(
                        &certificate
                            .x509()
                            .serial_number()
                            .to_bn()
                            .map(|bn| bn.to_vec())
                            .unwrap_or_default(),
                    );
                serial_matches && same_name(issuer_der, certificate)
            }
            PartyId::SubjectKeyId(id) => certificate
                .x509()
                .subject_key_id()
                .is_some_and(|ski| ski.as_slice() == id.as_slice()),
            PartyId::Other => false,
        }
    }

    /// The identifier as an operator reads it: the serial in lowercase hex
    /// (as [`Certificate::serial_hex`]), else the key identifier.
    pub fn describe(&self) -> String {
        match self {
            PartyId::IssuerAndSerial { serial, .. } => serial_hex(serial),
            PartyId::SubjectKeyId(id) => format!("(subjectKeyIdentifier {})", hex::encode(id)),
            PartyId::Other => "(not a key-transport recipient)".to_string(),
        }
    }
}

/// Reads an EnvelopedData ContentInfo.
pub(crate) fn read_envelope(bytes: &[u8]) -> Result<Envelope> {
    let not_cms = |reason: String| Error::NotCms {
        layer: "EnvelopedData",
        reason,
    };
    let content = decode_content_info(bytes).map_err(not_cms)?;
    if content.content_type != ID_ENVELOPED_DATA {
        return Err(not_cms(format!(
            "content type is {}, not EnvelopedData",
            content.content_type
        )));
    }
    let enveloped: EnvelopedData = content
        .content
        .decode_as()
        .map_err(|e| not_cms(e.to_string()))?;
    let recipients = enveloped
        .recip_infos
        .0
        .iter()
        .map(|info| match info {
            RecipientInfo::Ktri(ktri) => match &ktri.rid {
                RecipientIdentifier::IssuerAndSerialNumber(ias) => issuer_and_serial(ias),
                RecipientIdentifier::SubjectKeyIdentifier(ski) => {
                    PartyId::SubjectKeyId(ski.0.as_bytes().to_vec())
                }
            },
            _ => PartyId::Other,
        })
        .collect();
    Ok(Envelope {
        cipher_oid: enveloped.encrypted_content.content_enc_alg.oid.to_string(),
        recipients,
    })
}

/// Reads a SignedData ContentInfo with attached content.
///
/// Walks the SignedData's fields as raw TLVs and decodes only the two we
/// judge (the encapsulated content and the signer infos): the certificates
/// are cut out without being decoded, and the other fields are copied
/// byte for byte, so nothing is decoded and re-encoded that OpenSSL reads
/// again anyway (this was most of the time unprotect spent outside OpenSSL).
pub(crate) fn read_signed(bytes: &[u8]) -> Result<Signed> {
    let not_cms = |reason: String| Error::NotCms {
        layer: "SignedData",
        reason,
    };
    let content = decode_content_info(bytes).map_err(not_cms)?;
    if content.content_type != ID_SIGNED_DATA || content.content.tag() != Tag::Sequence {
        return Err(not_cms(format!(
            "content type is {}, not SignedData",
            content.content_type
        )));
    }
    let fields = raw_fields(content.content.value()).map_err(|e| not_cms(e.to_string()))?;
    // version, digestAlgorithms, encapContentInfo, [0] certificates,
    // [1] crls, signerInfos: the content is the third, the signers the last.
    let (Some(encapsulated), Some(signer_infos)) = (fields.get(2), fields.last()) else {
        return Err(not_cms("too few SignedData fields".into()));
    };
    let encapsulated =
        EncapsulatedContentInfo::from_der(encapsulated.1).map_err(|e| not_cms(e.to_string()))?;
    if encapsulated.econtent.is_none() {
        return Err(not_cms(
            "the signed content is detached, not attached".into(),
        ));
    }
    let signer_infos = SignerInfos::from_der(signer_infos.1).map_err(|e| not_cms(e.to_string()))?;
    let signers = signer_infos
        .0
        .iter()
        .map(|info| match &info.sid {
            SignerIdentifier::IssuerAndSerialNumber(ias) => issuer_and_serial(ias),
            SignerIdentifier::SubjectKeyIdentifier(ski) => {
                PartyId::SubjectKeyId(ski.0.as_bytes().to_vec())
            }
        })
        .collect();
    let certificates = Tag::ContextSpecific {
        constructed: true,
        number: TagNumber::N0,
    };
    let kept: Vec<u8> = fields
        .iter()
        .filter(|(tag, _)| *tag != certificates)
        .flat_map(|(_, raw)| raw.iter().copied())
        .collect();
    let certificate_set = fields
        .iter()
        .find(|(tag, _)| *tag == certificates)
        .map(|(_, raw)| AnyRef::from_der(raw).map(|any| any.value().to_vec()))
        .transpose()
        .map_err(|e| not_cms(e.to_string()))?
        .unwrap_or_default();
    let der_without_certificates = Any::new(Tag::Sequence, kept)
        .and_then(|content| {
            ContentInfo {
                content_type: ID_SIGNED_DATA,
                content,
            }
            .to_der()
        })
        .map_err(|e| not_cms(e.to_string()))?;
    Ok(Signed {
        signers,
        der_without_certificates,
        certificate_set,
    })
}

/// The X.509 certificates among the elements of a SignedData's
/// `certificates` field, in order, at most `limit`. Other choices
/// (attribute certificates, `[n]`-tagged forms) and entries that do not
/// decode are skipped: the field is outside the signature and only ever
/// a hint for chain building.
pub(crate) fn embedded_certificates(certificate_set: &[u8], limit: usize) -> Vec<Certificate> {
    let Ok(fields) = raw_fields(certificate_set) else {
        return Vec::new();
    };
    fields
        .into_iter()
        .filter(|(tag, _)| *tag == Tag::Sequence)
        .filter_map(|(_, raw)| X509::from_der(raw).ok())
        .take(limit)
        .map(Certificate::from_x509)
        .collect()
}

/// The TLVs of a SEQUENCE's contents: each field's tag and its raw bytes.
fn raw_fields(contents: &[u8]) -> der::Result<Vec<(Tag, &[u8])>> {
    let mut reader = SliceReader::new(contents)?;
    let mut fields = Vec::new();
    while !reader.is_finished() {
        let start = usize::try_from(reader.position())?;
        let field: AnyRef<'_> = reader.decode()?;
        let end = usize::try_from(reader.position())?;
        fields.push((field.tag(), &contents[start..end]));
    }
    Ok(fields)
}

/// Decodes DER, or BER re-encoded as DER by OpenSSL.
fn decode_content_info(bytes: &[u8]) -> std::result::Result<ContentInfo, String> {
    if bytes.is_empty() {
        return Err("empty input".into());
    }
    match ContentInfo::from_der(bytes) {
        Ok(content) => Ok(content),
        Err(der_error) => CmsContentInfo::from_der(bytes)
            .and_then(|parsed| parsed.to_der())
            .ok()
            .and_then(|der| ContentInfo::from_der(&der).ok())
            .ok_or_else(|| der_error.to_string()),
    }
}

fn issuer_and_serial(ias: &IssuerAndSerialNumber) -> PartyId {
    PartyId::IssuerAndSerial {
        issuer_der: ias.issuer.to_der().unwrap_or_default(),
        serial: ias.serial_number.as_bytes().to_vec(),
    }
}

/// Names compare the way OpenSSL compares them (canonical form), so a
/// PrintableString/UTF8String difference does not make two names differ.
fn same_name(issuer_der: &[u8], certificate: &Certificate) -> bool {
    X509Name::from_der(issuer_der)
        .ok()
        .and_then(|name| name.try_cmp(certificate.x509().issuer_name()).ok())
        .is_some_and(|ordering| ordering.is_eq())
}

fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let first = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    &bytes[first..]
}

/// Lowercase hex without leading zero bytes, as [`Certificate::serial_hex`].
fn serial_hex(serial: &[u8]) -> String {
    let digits = hex::encode(strip_leading_zeros(serial));
    if digits.is_empty() {
        "0".to_string()
    } else {
        digits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_hex_matches_openssl_form() {
        assert_eq!(serial_hex(&[0x00, 0x90, 0x01]), "9001");
        assert_eq!(serial_hex(&[0x10, 0x00]), "1000");
        assert_eq!(serial_hex(&[0x00]), "0");
    }

    #[test]
    fn garbage_is_not_cms() {
        for input in [&b""[..], b"\x30", b"\x30\x03\x06\x01\x00", &[0xff; 64]] {
            assert!(matches!(
                read_envelope(input),
                Err(Error::NotCms {
                    layer: "EnvelopedData",
                    ..
                })
            ));
            assert!(matches!(
                read_signed(input),
                Err(Error::NotCms {
                    layer: "SignedData",
                    ..
                })
            ));
        }
    }
}
