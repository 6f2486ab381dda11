//! The one PKI builder of the test suites: a throw-away PKI made at test
//! time with the `openssl` crate. A root CA (and intermediate CAs under it)
//! issues enterprise certificates for signing (digitalSignature +
//! nonRepudiation) and encryption (keyEncipherment + dataEncipherment), the
//! key usages PROFILE.md asks for, and the variants the suites judge:
//! expired or not yet valid ([`LeafOptions::expired`],
//! [`LeafOptions::not_yet_valid`]), the wrong usage ([`Usage::Neither`],
//! [`Usage::Both`], [`Usage::Unstated`]), revoked (a [`TestPki::crl`] that
//! names it), with a CRL distribution point or OCSP responder.
//!
//! Parties (certificates registered in a file registry, a messenger or a
//! gateway configuration around them) are [`crate::party`]'s.
//!
//! ```
//! use helsemelding_testkit::pki::{LeafOptions, TestPki, Usage};
//! let pki = TestPki::new("Test CA");
//! let signer = pki.issue("91462 signing", Usage::Signing);
//! assert_eq!(signer.cert.issuer_name().entries().count(), 2); // O and CN
//!
//! // An expired one, and a CRL that revokes the first.
//! let expired = pki.issue_with("91462 old signing", Usage::Signing, &LeafOptions::expired());
//! assert!(expired.cert.not_after() < openssl::asn1::Asn1Time::days_from_now(0).unwrap());
//! let next_update = chrono::Utc::now() + chrono::Duration::days(1);
//! let crl = pki.crl(&[&signer.cert], next_update);
//! assert_eq!(crl.get_revoked().unwrap().len(), 1);
//! ```

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use chrono::{DateTime, Duration, Utc};
use helsemelding_protect::{Certificate, Identity};
use openssl::asn1::{Asn1Integer, Asn1Object, Asn1OctetString, Asn1Time};
use openssl::bn::BigNum;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::x509::extension::{BasicConstraints, CrlNumber, KeyUsage};
use openssl::x509::{
    X509Builder, X509Crl, X509CrlBuilder, X509Extension, X509NameBuilder, X509RevokedBuilder,
    X509v3Context, X509,
};

/// What a leaf certificate is for.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Usage {
    /// Signing certificate: digitalSignature + nonRepudiation.
    Signing,
    /// Encryption certificate: keyEncipherment + dataEncipherment.
    Encryption,
    /// Both of the above in one certificate (seen in test setups, never in production).
    Both,
    /// A certificate whose key usage fits neither role (keyAgreement only).
    Neither,
    /// No key usage extension at all (old or hand-made certificates): the
    /// key is not restricted.
    Unstated,
}

/// A certificate and its private key.
#[derive(Clone)]
pub struct Issued {
    /// The certificate.
    pub cert: X509,
    /// Its private key.
    pub key: PKey<Private>,
}

impl Issued {
    /// The certificate as `protect` takes it (what a registry publishes).
    pub fn certificate(&self) -> Certificate {
        Certificate::from_x509(self.cert.clone())
    }

    /// The certificate with its key: what signs or decrypts.
    pub fn identity(&self) -> Identity {
        Identity::new(self.certificate(), self.key.clone()).expect("the key is the certificate's")
    }

    /// Serial as lowercase hex, as `protect::Certificate::serial_hex` prints it.
    pub fn serial_hex(&self) -> String {
        let bn = self.cert.serial_number().to_bn().expect("serial");
        bn.to_hex_str().expect("hex").to_ascii_lowercase()
    }

    /// Writes `<stem>.pem` (certificate) and `<stem>.key` (PKCS#8 PEM key) into `dir`.
    pub fn write_pem(&self, dir: &Path, stem: &str) -> (PathBuf, PathBuf) {
        let cert_path = dir.join(format!("{stem}.pem"));
        let key_path = dir.join(format!("{stem}.key"));
        std::fs::write(&cert_path, self.cert.to_pem().unwrap()).unwrap();
        std::fs::write(&key_path, self.key.private_key_to_pem_pkcs8().unwrap()).unwrap();
        (cert_path, key_path)
    }
}

/// Options for a leaf certificate beyond its usage.
#[derive(Clone, Debug)]
pub struct LeafOptions {
    /// Start of the validity window.
    pub not_before: DateTime<Utc>,
    /// End of the validity window.
    pub not_after: DateTime<Utc>,
    /// CRL distribution point URL to put in the certificate, if any.
    pub crl_url: Option<String>,
    /// OCSP responder URL to put in the certificate, if any.
    pub ocsp_url: Option<String>,
    /// RSA key size.
    pub key_bits: u32,
}

impl Default for LeafOptions {
    fn default() -> Self {
        let now = Utc::now();
        LeafOptions {
            not_before: now - Duration::days(1),
            not_after: now + Duration::days(365),
            crl_url: None,
            ocsp_url: None,
            key_bits: 2048,
        }
    }
}

impl LeafOptions {
    /// Valid from 30 days ago until yesterday.
    pub fn expired() -> LeafOptions {
        let now = Utc::now();
        LeafOptions::default().valid(now - Duration::days(30), now - Duration::days(1))
    }

    /// Valid from tomorrow for a year.
    pub fn not_yet_valid() -> LeafOptions {
        let now = Utc::now();
        LeafOptions::default().valid(now + Duration::days(1), now + Duration::days(366))
    }

    /// The same options, valid from `not_before` to `not_after`.
    pub fn valid(mut self, not_before: DateTime<Utc>, not_after: DateTime<Utc>) -> LeafOptions {
        self.not_before = not_before;
        self.not_after = not_after;
        self
    }

    /// The same options, naming `url` as the CRL distribution point.
    pub fn crl_distribution_point(mut self, url: impl Into<String>) -> LeafOptions {
        self.crl_url = Some(url.into());
        self
    }
}

/// A root CA that issues test certificates.
pub struct TestPki {
    /// The CA's own certificate and key.
    pub ca: Issued,
    next_serial: AtomicU32,
    next_crl_number: AtomicU32,
}

impl TestPki {
    /// A new self-signed root CA named `CN=<common_name>, O=helsemelding test`.
    pub fn new(common_name: &str) -> Self {
        let key = new_key(2048);
        let name = name(common_name);
        let mut builder = X509Builder::new().unwrap();
        builder.set_version(2).unwrap();
        builder.set_serial_number(&serial(1)).unwrap();
        builder.set_subject_name(&name).unwrap();
        builder.set_issuer_name(&name).unwrap();
        builder.set_pubkey(&key).unwrap();
        let now = Utc::now();
        builder
            .set_not_before(&asn1(now - Duration::days(3650)))
            .unwrap();
        builder
            .set_not_after(&asn1(now + Duration::days(3650)))
            .unwrap();
        builder
            .append_extension(BasicConstraints::new().critical().ca().build().unwrap())
            .unwrap();
        builder
            .append_extension(
                KeyUsage::new()
                    .critical()
                    .key_cert_sign()
                    .crl_sign()
                    .build()
                    .unwrap(),
            )
            .unwrap();
        builder.sign(&key, MessageDigest::sha256()).unwrap();
        TestPki {
            ca: Issued {
                cert: builder.build(),
                key,
            },
            next_serial: AtomicU32::new(0x1000),
            next_crl_number: AtomicU32::new(1),
        }
    }

    /// An intermediate CA named `CN=<common_name>, O=helsemelding test`,
    /// issued by this CA and able to issue leaves and CRLs itself: the
    /// returned `TestPki`'s `ca` is the intermediate (not self-signed), so
    /// its leaves chain to this CA only through it.
    pub fn intermediate(&self, common_name: &str) -> TestPki {
        let key = new_key(2048);
        let mut builder = X509Builder::new().unwrap();
        builder.set_version(2).unwrap();
        let serial_number = self.next_serial.fetch_add(1, Ordering::Relaxed);
        builder.set_serial_number(&serial(serial_number)).unwrap();
        builder.set_subject_name(&name(common_name)).unwrap();
        builder
            .set_issuer_name(self.ca.cert.subject_name())
            .unwrap();
        builder.set_pubkey(&key).unwrap();
        let now = Utc::now();
        builder
            .set_not_before(&asn1(now - Duration::days(1000)))
            .unwrap();
        builder
            .set_not_after(&asn1(now + Duration::days(1000)))
            .unwrap();
        builder
            .append_extension(BasicConstraints::new().critical().ca().build().unwrap())
            .unwrap();
        builder
            .append_extension(
                KeyUsage::new()
                    .critical()
                    .key_cert_sign()
                    .crl_sign()
                    .build()
                    .unwrap(),
            )
            .unwrap();
        builder.sign(&self.ca.key, MessageDigest::sha256()).unwrap();
        TestPki {
            ca: Issued {
                cert: builder.build(),
                key,
            },
            // Distinct from the parent's serials, so that no two certificates
            // of the hierarchy share an issuer and serial by accident.
            next_serial: AtomicU32::new(0x10_0000 + serial_number * 0x1000),
            next_crl_number: AtomicU32::new(1),
        }
    }

    /// A leaf certificate valid from yesterday for a year.
    pub fn issue(&self, common_name: &str, usage: Usage) -> Issued {
        self.issue_with(common_name, usage, &LeafOptions::default())
    }

    /// A leaf certificate with the given options.
    pub fn issue_with(&self, common_name: &str, usage: Usage, options: &LeafOptions) -> Issued {
        let key = new_key(options.key_bits);
        let mut builder = X509Builder::new().unwrap();
        builder.set_version(2).unwrap();
        let serial_number = self.next_serial.fetch_add(1, Ordering::Relaxed);
        builder.set_serial_number(&serial(serial_number)).unwrap();
        builder.set_subject_name(&name(common_name)).unwrap();
        builder
            .set_issuer_name(self.ca.cert.subject_name())
            .unwrap();
        builder.set_pubkey(&key).unwrap();
        builder.set_not_before(&asn1(options.not_before)).unwrap();
        builder.set_not_after(&asn1(options.not_after)).unwrap();
        builder
            .append_extension(BasicConstraints::new().build().unwrap())
            .unwrap();
        if let Some(extension) = key_usage(usage) {
            builder.append_extension(extension).unwrap();
        }
        let context = builder.x509v3_context(Some(&self.ca.cert), None);
        let mut extra = Vec::new();
        if let Some(url) = &options.crl_url {
            extra.push(config_extension(
                &context,
                Nid::CRL_DISTRIBUTION_POINTS,
                &format!("URI:{url}"),
            ));
        }
        if let Some(url) = &options.ocsp_url {
            extra.push(config_extension(
                &context,
                Nid::INFO_ACCESS,
                &format!("OCSP;URI:{url}"),
            ));
        }
        for extension in extra {
            builder.append_extension(extension).unwrap();
        }
        builder.sign(&self.ca.key, MessageDigest::sha256()).unwrap();
        Issued {
            cert: builder.build(),
            key,
        }
    }

    /// A CRL signed by this CA that revokes `revoked`, valid from now until
    /// `next_update`.
    pub fn crl(&self, revoked: &[&X509], next_update: DateTime<Utc>) -> X509Crl {
        let mut builder = X509CrlBuilder::new().unwrap();
        builder
            .set_issuer_name(self.ca.cert.subject_name())
            .unwrap();
        let now = Utc::now();
        builder
            .set_last_update(&asn1(now - Duration::minutes(1)))
            .unwrap();
        builder.set_next_update(&asn1(next_update)).unwrap();
        for cert in revoked {
            let mut entry = X509RevokedBuilder::new().unwrap();
            entry.set_serial_number(cert.serial_number()).unwrap();
            entry
                .set_revocation_date(&asn1(now - Duration::minutes(1)))
                .unwrap();
            builder.add_revoked(entry.build()).unwrap();
        }
        // rust-openssl's builder insists on the two extensions RFC 5280 requires.
        builder
            .append_extension(authority_key_identifier(&self.ca.cert))
            .unwrap();
        let number = self.next_crl_number.fetch_add(1, Ordering::Relaxed);
        builder
            .append_extension(
                CrlNumber::new(BigNum::from_u32(number).unwrap())
                    .unwrap()
                    .build()
                    .unwrap(),
            )
            .unwrap();
        builder.sign(&self.ca.key, MessageDigest::sha256()).unwrap();
        builder.build().unwrap()
    }
}

/// AuthorityKeyIdentifier { keyIdentifier: SHA-1 of the issuer's public key
/// (the SubjectPublicKeyInfo DER: unique per key, which is all tests need) }.
fn authority_key_identifier(issuer: &X509) -> X509Extension {
    let spki = issuer.public_key().unwrap().public_key_to_der().unwrap();
    let key_id = openssl::sha::sha1(&spki);
    let mut der = vec![0x30, 2 + key_id.len() as u8, 0x80, key_id.len() as u8];
    der.extend_from_slice(&key_id);
    let oid = Asn1Object::from_str("2.5.29.35").unwrap();
    let contents = Asn1OctetString::new_from_bytes(&der).unwrap();
    X509Extension::new_from_der(&oid, false, &contents).unwrap()
}

/// The typed extension builders cover neither CRL distribution points nor
/// authority information access; OpenSSL's config-string form does.
#[allow(deprecated)]
fn config_extension(context: &X509v3Context, nid: Nid, value: &str) -> X509Extension {
    X509Extension::new_nid(None, Some(context), nid, value).unwrap()
}

fn key_usage(usage: Usage) -> Option<X509Extension> {
    let mut ku = KeyUsage::new();
    ku.critical();
    match usage {
        Usage::Signing => ku.digital_signature().non_repudiation(),
        Usage::Encryption => ku.key_encipherment().data_encipherment(),
        Usage::Both => ku
            .digital_signature()
            .non_repudiation()
            .key_encipherment()
            .data_encipherment(),
        Usage::Neither => ku.key_agreement(),
        Usage::Unstated => return None,
    };
    Some(ku.build().unwrap())
}

fn new_key(bits: u32) -> PKey<Private> {
    PKey::from_rsa(Rsa::generate(bits).unwrap()).unwrap()
}

fn name(common_name: &str) -> openssl::x509::X509Name {
    let mut builder = X509NameBuilder::new().unwrap();
    builder
        .append_entry_by_text("O", "helsemelding test")
        .unwrap();
    builder.append_entry_by_text("CN", common_name).unwrap();
    builder.build()
}

fn serial(n: u32) -> Asn1Integer {
    BigNum::from_u32(n).unwrap().to_asn1_integer().unwrap()
}

fn asn1(at: DateTime<Utc>) -> Asn1Time {
    Asn1Time::from_unix(at.timestamp()).unwrap()
}
