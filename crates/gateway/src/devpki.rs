//! The development PKI: a throw-away certificate authority made on the spot
//! with OpenSSL, for the demo, benchmarks and local experiments. It owns
//! everything a party needs to take part in an exchange without NHN or a
//! commercial CA: a root CA, per party a signing certificate
//! (digitalSignature + nonRepudiation) and an encryption certificate
//! (keyEncipherment), each with a fresh RSA-2048 key, and an empty CRL so
//! that the default `revocation = "require"` holds without a CRL server.
//!
//! Nothing made here is trusted outside the process that made it: the CA
//! key lives only in memory (it is never written out), and every name says
//! "development". Production identities come from Buypass or Commfides.
//!
//! ```text
//! let pki = DevPki::new("helsemelding demo CA")?;
//! let party = pki.party(her_id, "Eksempel kommune")?;
//! party.register(&registry, None)?;                 // into a FileRegistry
//! let config = pki.messenger_config(&party);        // for a Messenger
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, Result};
use chrono::{DateTime, Duration, Utc};
use helsemelding_messaging::MessengerConfig;
use helsemelding_protect::{
    Certificate, Crl, Identity, RevocationPolicy, StaticCrls, TrustAnchors,
};
use helsemelding_registry::file::NewParty;
use helsemelding_registry::FileRegistry;
use helsemelding_wire::HerId;
use openssl::asn1::{Asn1Integer, Asn1Object, Asn1OctetString, Asn1Time};
use openssl::bn::{BigNum, MsbOption};
use openssl::error::ErrorStack;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::x509::extension::{
    AuthorityKeyIdentifier, BasicConstraints, CrlNumber, KeyUsage, SubjectKeyIdentifier,
};
use openssl::x509::{X509Builder, X509Crl, X509CrlBuilder, X509Extension, X509Name, X509};

/// RSA key size of every key made here (what Buypass issues today).
const KEY_BITS: u32 = 2048;
/// The organisation name of every certificate, so that nobody mistakes one
/// for a real enterprise certificate.
const ORGANISATION: &str = "helsemelding development PKI (not for production)";
/// How long the CA is valid.
const CA_VALIDITY: Duration = Duration::days(365);
/// How long a party's certificates are valid: long enough for a working
/// session, short enough that a forgotten one soon stops working.
const LEAF_VALIDITY: Duration = Duration::days(30);
/// Back-dating of `notBefore` and the CRL's `thisUpdate`, so that a peer
/// whose clock runs a little behind still accepts them.
const CLOCK_SKEW: Duration = Duration::minutes(10);
/// How long the CRL is current (its `nextUpdate`).
const CRL_VALIDITY: Duration = Duration::days(7);

/// A throw-away root CA with its current, empty CRL.
pub struct DevPki {
    ca: X509,
    ca_key: PKey<Private>,
    crl: Crl,
}

/// One party's identities, as issued by a [`DevPki`].
#[derive(Clone, Debug)]
pub struct DevParty {
    /// The party's HER-id.
    pub her_id: HerId,
    /// The party's name, as it appears in the registry and the certificates.
    pub name: String,
    /// Signing certificate (digitalSignature + nonRepudiation) and its key.
    pub signing: Identity,
    /// Encryption certificate (keyEncipherment) and its key, for decrypting.
    pub decryption: Identity,
}

/// Where [`DevParty::write_pem`] put a party's files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartyFiles {
    /// Signing certificate (PEM).
    pub signing_cert: PathBuf,
    /// Signing key (PKCS#8 PEM, unencrypted, owner-only on Unix).
    pub signing_key: PathBuf,
    /// Encryption certificate (PEM).
    pub encryption_cert: PathBuf,
    /// Decryption key (PKCS#8 PEM, unencrypted, owner-only on Unix).
    pub encryption_key: PathBuf,
}

/// What a leaf certificate is for.
#[derive(Clone, Copy)]
enum Purpose {
    Signing,
    Encryption,
}

impl DevPki {
    /// A new root CA called `CN=<common_name>` with an empty CRL.
    pub fn new(common_name: &str) -> Result<DevPki> {
        let (ca, ca_key) = self_signed_ca(common_name).context("making the development CA")?;
        let crl = empty_crl(&ca, &ca_key, Utc::now()).context("signing the development CRL")?;
        Ok(DevPki {
            ca,
            ca_key,
            crl: Crl::from_x509_crl(crl),
        })
    }

    /// The CA certificate: the only trust anchor its parties need.
    pub fn ca_certificate(&self) -> Certificate {
        Certificate::from_x509(self.ca.clone())
    }

    /// Trust anchors holding just this CA.
    pub fn trust_anchors(&self) -> TrustAnchors {
        TrustAnchors::new(vec![self.ca_certificate()])
    }

    /// The CA's current CRL (no entries; `nextUpdate` a week ahead).
    pub fn crl(&self) -> &Crl {
        &self.crl
    }

    /// A CRL source answering with this CA's CRL, so that revocation can be
    /// required without a CRL server.
    pub fn crl_source(&self) -> Arc<StaticCrls> {
        Arc::new(StaticCrls::new(vec![self.crl().clone()]))
    }

    /// Issues a party's signing and encryption certificates, each with a
    /// fresh key.
    pub fn party(&self, her_id: HerId, name: &str) -> Result<DevParty> {
        let issue = |purpose| {
            self.issue(her_id, name, purpose)
                .with_context(|| format!("issuing certificates for HER-id {her_id}"))
        };
        Ok(DevParty {
            her_id,
            name: name.to_owned(),
            signing: issue(Purpose::Signing)?,
            decryption: issue(Purpose::Encryption)?,
        })
    }

    /// A messenger configuration for `party` that trusts this CA and
    /// requires revocation status from its CRL.
    pub fn messenger_config(&self, party: &DevParty) -> MessengerConfig {
        let mut config = MessengerConfig::new(
            party.her_id,
            party.signing.clone(),
            party.decryption.clone(),
            self.trust_anchors(),
            self.crl_source(),
        );
        config.revocation = RevocationPolicy::Require;
        config
    }

    /// Writes `ca.pem` (the CA certificate) and `ca.crl` (its CRL, PEM) into
    /// `dir`, for configuration files (`[trust] anchors`) and `cert check`.
    /// The CA key is never written.
    pub fn write_pem(&self, dir: &Path) -> Result<(PathBuf, PathBuf)> {
        let certificate = dir.join("ca.pem");
        let crl = dir.join("ca.crl");
        write_file(&certificate, &self.ca.to_pem()?, false)?;
        write_file(&crl, &self.crl.x509_crl().to_pem()?, false)?;
        Ok((certificate, crl))
    }

    fn issue(&self, her_id: HerId, name: &str, purpose: Purpose) -> Result<Identity> {
        let key = PKey::from_rsa(Rsa::generate(KEY_BITS)?)?;
        let role = match purpose {
            Purpose::Signing => "signing",
            Purpose::Encryption => "encryption",
        };
        let subject = x509_name(&format!("{name} ({her_id}) {role}"))?;
        let now = Utc::now();
        let mut builder = X509Builder::new()?;
        builder.set_version(2)?;
        builder.set_serial_number(&*random_serial()?)?;
        builder.set_subject_name(&subject)?;
        builder.set_issuer_name(self.ca.subject_name())?;
        builder.set_pubkey(&key)?;
        builder.set_not_before(&*asn1_time(now - CLOCK_SKEW)?)?;
        builder.set_not_after(&*asn1_time(now + LEAF_VALIDITY)?)?;
        builder.append_extension(BasicConstraints::new().critical().build()?)?;
        builder.append_extension(leaf_key_usage(purpose)?)?;
        let context = builder.x509v3_context(Some(&self.ca), None);
        let subject_key_id = SubjectKeyIdentifier::new().build(&context)?;
        let authority_key_id = AuthorityKeyIdentifier::new().keyid(true).build(&context)?;
        builder.append_extension(subject_key_id)?;
        builder.append_extension(authority_key_id)?;
        builder.sign(&self.ca_key, MessageDigest::sha256())?;
        let identity = Identity::new(Certificate::from_x509(builder.build()), key)?;
        Ok(identity)
    }
}

impl DevParty {
    /// Adds (or replaces) this party in a file registry with its two
    /// certificates; its queues are `<prefix>_async`, `_sync`, `_error` and
    /// `_syncreply`, the prefix being the HER-id unless given.
    pub fn register(&self, registry: &FileRegistry, queue_prefix: Option<&str>) -> Result<()> {
        registry
            .add_party(&NewParty {
                her_id: self.her_id.get(),
                name: self.name.clone(),
                signing_certificate: self.signing.certificate().clone(),
                encryption_certificate: self.decryption.certificate().clone(),
                cpp: None,
                queue_prefix: queue_prefix.map(str::to_owned),
            })
            .with_context(|| format!("registering HER-id {} in the file registry", self.her_id))?;
        Ok(())
    }

    /// Writes `<her-id>-signing.{pem,key}` and `<her-id>-encryption.{pem,key}`
    /// into `dir` (keys readable by the owner only), for configuration files.
    pub fn write_pem(&self, dir: &Path) -> Result<PartyFiles> {
        let stem = |role: &str, ext: &str| dir.join(format!("{}-{role}.{ext}", self.her_id));
        let files = PartyFiles {
            signing_cert: stem("signing", "pem"),
            signing_key: stem("signing", "key"),
            encryption_cert: stem("encryption", "pem"),
            encryption_key: stem("encryption", "key"),
        };
        for (identity, cert, key) in [
            (&self.signing, &files.signing_cert, &files.signing_key),
            (
                &self.decryption,
                &files.encryption_cert,
                &files.encryption_key,
            ),
        ] {
            write_file(cert, &identity.certificate().to_pem(), false)?;
            write_file(
                key,
                &identity.private_key().private_key_to_pem_pkcs8()?,
                true,
            )?;
        }
        Ok(files)
    }
}

fn self_signed_ca(common_name: &str) -> Result<(X509, PKey<Private>), ErrorStack> {
    let key = PKey::from_rsa(Rsa::generate(KEY_BITS)?)?;
    let name = x509_name(common_name)?;
    let now = Utc::now();
    let mut builder = X509Builder::new()?;
    builder.set_version(2)?;
    builder.set_serial_number(&*random_serial()?)?;
    builder.set_subject_name(&name)?;
    builder.set_issuer_name(&name)?;
    builder.set_pubkey(&key)?;
    builder.set_not_before(&*asn1_time(now - CLOCK_SKEW)?)?;
    builder.set_not_after(&*asn1_time(now + CA_VALIDITY)?)?;
    builder.append_extension(BasicConstraints::new().critical().ca().pathlen(0).build()?)?;
    builder.append_extension(
        KeyUsage::new()
            .critical()
            .key_cert_sign()
            .crl_sign()
            .build()?,
    )?;
    let subject_key_id = SubjectKeyIdentifier::new().build(&builder.x509v3_context(None, None))?;
    builder.append_extension(subject_key_id)?;
    builder.sign(&key, MessageDigest::sha256())?;
    Ok((builder.build(), key))
}

/// A CRL of `ca` without entries, current from a little before `now` for
/// [`CRL_VALIDITY`].
fn empty_crl(ca: &X509, ca_key: &PKey<Private>, now: DateTime<Utc>) -> Result<X509Crl> {
    let mut builder = X509CrlBuilder::new()?;
    builder.set_issuer_name(ca.subject_name())?;
    builder.set_last_update(&*asn1_time(now - CLOCK_SKEW)?)?;
    builder.set_next_update(&*asn1_time(now + CRL_VALIDITY)?)?;
    // RFC 5280 requires both extensions on a CRL (and rust-openssl checks).
    builder.append_extension(crl_authority_key_id(ca)?)?;
    builder.append_extension(CrlNumber::new(BigNum::from_u32(1)?)?.build()?)?;
    builder.sign(ca_key, MessageDigest::sha256())?;
    Ok(builder.build()?)
}

/// AuthorityKeyIdentifier `{ keyIdentifier [0] <the CA's SKI> }`, written
/// by hand: OpenSSL's extension builder needs a certificate context, which
/// a CRL does not have.
fn crl_authority_key_id(ca: &X509) -> Result<X509Extension> {
    let key_id = ca
        .subject_key_id()
        .context("the CA has no subject key identifier")?
        .as_slice();
    let inner_len = u8::try_from(key_id.len()).context("subject key identifier too long")?;
    let mut der = vec![0x30, inner_len + 2, 0x80, inner_len];
    der.extend_from_slice(key_id);
    let oid = Asn1Object::from_str("2.5.29.35")?;
    let contents = Asn1OctetString::new_from_bytes(&der)?;
    Ok(X509Extension::new_from_der(&oid, false, &contents)?)
}

fn leaf_key_usage(purpose: Purpose) -> Result<X509Extension, ErrorStack> {
    let mut usage = KeyUsage::new();
    usage.critical();
    match purpose {
        Purpose::Signing => usage.digital_signature().non_repudiation(),
        Purpose::Encryption => usage.key_encipherment(),
    };
    usage.build()
}

fn x509_name(common_name: &str) -> Result<X509Name, ErrorStack> {
    let mut name = X509Name::builder()?;
    name.append_entry_by_text("O", ORGANISATION)?;
    name.append_entry_by_text("CN", common_name)?;
    Ok(name.build())
}

/// A positive random 64-bit serial (RFC 5280 allows up to 20 octets):
/// certificates from two runs never share one.
fn random_serial() -> Result<Asn1Integer, ErrorStack> {
    let mut serial = BigNum::new()?;
    serial.rand(64, MsbOption::MAYBE_ZERO, false)?;
    serial.add_word(1)?;
    serial.to_asn1_integer()
}

fn asn1_time(at: DateTime<Utc>) -> Result<Asn1Time, ErrorStack> {
    Asn1Time::from_unix(at.timestamp())
}

fn write_file(path: &Path, bytes: &[u8], private: bool) -> Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut file = options
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(bytes)
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use helsemelding_protect::{
        check_certificate, protect, unprotect, CheckRequest, KeyUsage as Usages, ProtectOptions,
        UnprotectOptions, Usage,
    };
    use helsemelding_registry::Registry;

    fn her(id: u32) -> HerId {
        HerId::new(id).unwrap()
    }

    fn judge(pki: &DevPki, certificate: &Certificate, usage: Usage) -> Vec<String> {
        let report = check_certificate(
            certificate,
            &CheckRequest {
                usage,
                at: Utc::now(),
                trust: &pki.trust_anchors(),
                crls: &[pki.crl().clone()],
                revocation: RevocationPolicy::Require,
            },
        );
        report
            .errors
            .iter()
            .map(|p| p.as_str().to_owned())
            .collect()
    }

    #[test]
    fn party_certificates_pass_the_checks_with_revocation_required() {
        let pki = DevPki::new("devpki test CA").unwrap();
        let party = pki.party(her(91462), "Eksempel kommune").unwrap();
        let signing = party.signing.certificate();
        let encryption = party.decryption.certificate();
        assert!(judge(&pki, signing, Usage::Signing).is_empty());
        assert!(judge(&pki, encryption, Usage::Encryption).is_empty());
        // Each certificate is good for its own role only.
        assert!(!judge(&pki, signing, Usage::Encryption).is_empty());
        assert!(!judge(&pki, encryption, Usage::Signing).is_empty());
        assert_eq!(
            signing.subject(),
            format!("O={ORGANISATION}, CN=Eksempel kommune (91462) signing")
        );
        assert_eq!(
            signing.issuer(),
            format!("O={ORGANISATION}, CN=devpki test CA")
        );
        let usages = signing.key_usage().unwrap();
        assert!(
            usages.contains(&Usages::NonRepudiation) && usages.contains(&Usages::DigitalSignature)
        );
        assert_eq!(
            encryption.key_usage().unwrap(),
            vec![Usages::KeyEncipherment]
        );
        let bits = signing.x509().public_key().unwrap().bits();
        assert_eq!(bits, 2048);
        let lifetime = signing.not_after() - signing.not_before();
        assert_eq!(lifetime, LEAF_VALIDITY + CLOCK_SKEW);
        assert_ne!(signing.serial_hex(), encryption.serial_hex());
    }

    #[test]
    fn another_pki_is_not_trusted() {
        let pki = DevPki::new("devpki A").unwrap();
        let other = DevPki::new("devpki B").unwrap();
        let stranger = other.party(her(4210), "Stranger").unwrap();
        let problems = judge(&pki, stranger.signing.certificate(), Usage::Signing);
        assert!(!problems.is_empty(), "a foreign CA's certificate passed");
    }

    #[test]
    fn the_crl_is_current_empty_and_signed_by_the_ca() {
        let pki = DevPki::new("devpki crl CA").unwrap();
        let crl = pki.crl();
        assert!(crl.is_current_at(Utc::now()));
        assert!(!crl.is_current_at(Utc::now() + CRL_VALIDITY + Duration::minutes(1)));
        assert_eq!(crl.revoked_count(), 0);
        assert_eq!(crl.issuer(), pki.ca_certificate().subject());
        let ca_key = pki.ca.public_key().unwrap();
        assert!(crl.x509_crl().verify(&ca_key).unwrap());
    }

    #[test]
    fn identities_protect_and_unprotect_between_two_parties() {
        let pki = DevPki::new("devpki cms CA").unwrap();
        let a = pki.party(her(91462), "A").unwrap();
        let b = pki.party(her(4210), "B").unwrap();
        let payload = b"<MsgHead>hei</MsgHead>";
        let body = protect(
            payload,
            &a.signing,
            b.decryption.certificate(),
            &ProtectOptions::default(),
        )
        .unwrap();
        let back = unprotect(
            &body,
            &b.decryption,
            None,
            a.signing.certificate(),
            &UnprotectOptions::default(),
        )
        .unwrap();
        assert_eq!(back, payload);
    }

    #[tokio::test]
    async fn registered_parties_resolve_with_both_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let registry = FileRegistry::new(dir.path().join("registry"));
        let pki = DevPki::new("devpki registry CA").unwrap();
        let party = pki.party(her(93000), "Legekontoret").unwrap();
        party.register(&registry, None).unwrap();
        let record = registry.communication_party(93000).await.unwrap();
        assert_eq!(record.name, "Legekontoret");
        assert_eq!(record.queues.async_queue.as_deref(), Some("93000_async"));
        assert_eq!(record.queues.error.as_deref(), Some("93000_error"));
        let certificates = registry.certificates(93000).await.unwrap();
        assert_eq!(
            certificates.current_signing().unwrap().serial_hex(),
            party.signing.certificate().serial_hex()
        );
        assert_eq!(
            certificates.current_encryption().unwrap().serial_hex(),
            party.decryption.certificate().serial_hex()
        );
        party.register(&registry, Some("demo-gp")).unwrap();
        let record = registry.communication_party(93000).await.unwrap();
        assert_eq!(record.queues.async_queue.as_deref(), Some("demo-gp_async"));
    }

    #[test]
    fn pem_files_read_back_and_keys_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let pki = DevPki::new("devpki files CA").unwrap();
        let party = pki.party(her(91462), "A").unwrap();
        let files = party.write_pem(dir.path()).unwrap();
        assert_eq!(files.signing_key, dir.path().join("91462-signing.key"));
        let signing = Identity::from_files(&files.signing_cert, &files.signing_key).unwrap();
        let decryption =
            Identity::from_files(&files.encryption_cert, &files.encryption_key).unwrap();
        assert_eq!(
            signing.certificate().serial_hex(),
            party.signing.certificate().serial_hex()
        );
        assert_eq!(
            decryption.certificate().serial_hex(),
            party.decryption.certificate().serial_hex()
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&files.encryption_key)
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let (ca, crl) = pki.write_pem(dir.path()).unwrap();
        let ca = Certificate::from_pem_or_der(&std::fs::read(ca).unwrap()).unwrap();
        assert_eq!(ca.serial_hex(), pki.ca_certificate().serial_hex());
        let crl = StaticCrls::from_files(&[crl]).unwrap();
        assert_eq!(crl.crls()[0].to_der(), pki.crl().to_der());
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 6, "{names:?}: no CA key among them");
    }
}
