//! The certificate judge: pure, no I/O and no clock.
//!
//! Given a certificate, what it is to be used for, the instant to judge at,
//! the trust anchors and the CRLs the caller has at hand, [`check_certificate`]
//! returns a [`CheckReport`] with *every* problem found (not the first), and
//! maps it to the profile's error condition for reports to a sender.
//!
//! Revocation data is an argument: the fetcher that keeps CRLs warm
//! ([`crate::revocation`]) is a separate piece, so this module is tested
//! without a network and judges any instant (`--at`) the same way.

use chrono::{DateTime, Utc};
use helsemelding_wire::error_report::ErrorCondition;
use openssl::error::ErrorStack;
use openssl::stack::Stack;
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::verify::{X509VerifyFlags, X509VerifyParam};
use openssl::x509::{X509Ref, X509StoreContext, X509VerifyResult, X509};
use serde::{Deserialize, Serialize};

use crate::{Certificate, Crl, KeyUsage};

/// What a certificate is about to be used for.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Usage {
    /// Signing a message: the profile requires key usage `nonRepudiation`.
    Signing,
    /// Encrypting to the holder: the profile requires key usage `keyEncipherment`.
    Encryption,
}

impl Usage {
    /// The key usage bit the profile requires for this use.
    pub fn required_key_usage(self) -> KeyUsage {
        match self {
            Usage::Signing => KeyUsage::NonRepudiation,
            Usage::Encryption => KeyUsage::KeyEncipherment,
        }
    }
}

/// One thing wrong with a certificate, named as `cert check` prints it.
///
/// The declaration order is the order problems are reported in.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Problem {
    /// The instant is before the certificate's notBefore.
    NotYetValid,
    /// The instant is after the certificate's notAfter.
    Expired,
    /// The KeyUsage extension lacks the bit the use requires (or is absent).
    WrongUsage,
    /// No chain to a trust anchor, valid at the instant, could be built.
    Untrusted,
    /// A CRL signed by the issuer lists the certificate.
    Revoked,
    /// No CRL signed by the issuer and current at the instant was available.
    RevocationUnknown,
}

impl Problem {
    /// The kebab-case name, e.g. `revocation-unknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            Problem::NotYetValid => "not-yet-valid",
            Problem::Expired => "expired",
            Problem::WrongUsage => "wrong-usage",
            Problem::Untrusted => "untrusted",
            Problem::Revoked => "revoked",
            Problem::RevocationUnknown => "revocation-unknown",
        }
    }

    /// The profile's error condition for this problem alone.
    pub fn error_condition(self) -> ErrorCondition {
        match self {
            Problem::NotYetValid | Problem::Expired => ErrorCondition::ExpiredCertificate,
            Problem::WrongUsage => ErrorCondition::InvalidCertificate,
            Problem::Untrusted => ErrorCondition::UnverifiedCertificate,
            Problem::Revoked | Problem::RevocationUnknown => ErrorCondition::RevokedCertificate,
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How to treat a certificate whose revocation status cannot be established.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RevocationPolicy {
    /// Unknown status is an error (the default).
    #[default]
    Require,
    /// Unknown status is reported as a warning; a listed certificate is still an error.
    Warn,
    /// Revocation is not checked at all.
    Off,
}

/// The certificates a chain may end in, and intermediates that may be used
/// to build it.
#[derive(Clone, Debug, Default)]
pub struct TrustAnchors {
    roots: Vec<Certificate>,
    intermediates: Vec<Certificate>,
}

impl TrustAnchors {
    /// Trust anchors (usually self-signed roots).
    pub fn new(roots: Vec<Certificate>) -> Self {
        TrustAnchors {
            roots,
            intermediates: Vec::new(),
        }
    }

    /// Adds untrusted intermediates that chains may pass through.
    pub fn with_intermediates(mut self, intermediates: Vec<Certificate>) -> Self {
        self.intermediates.extend(intermediates);
        self
    }

    /// Whether there is no anchor at all (then nothing is trusted).
    pub fn is_empty(&self) -> bool {
        self.roots.is_empty()
    }

    fn all(&self) -> impl Iterator<Item = &Certificate> {
        self.roots.iter().chain(&self.intermediates)
    }
}

/// Everything a judgement depends on besides the certificate.
#[derive(Clone, Copy, Debug)]
pub struct CheckRequest<'a> {
    /// What the certificate is about to be used for.
    pub usage: Usage,
    /// The instant to judge at.
    pub at: DateTime<Utc>,
    /// Anchors and intermediates for the chain.
    pub trust: &'a TrustAnchors,
    /// CRLs at hand (any issuer; those of other issuers are ignored).
    pub crls: &'a [Crl],
    /// What an unknown revocation status means.
    pub revocation: RevocationPolicy,
}

/// The outcome of a check: errors (the certificate must not be used) and
/// warnings (it may be, but someone should know).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckReport {
    /// Problems that make the certificate unusable, in [`Problem`] order.
    pub errors: Vec<Problem>,
    /// Problems the policy downgraded to warnings.
    pub warnings: Vec<Problem>,
}

impl CheckReport {
    /// Whether the certificate may be used.
    pub fn is_ok(&self) -> bool {
        self.errors.is_empty()
    }

    /// The error condition to report to a sender, `None` when there are no
    /// errors. Several errors map to `transport:invalid-certificate`, as the
    /// reference library does.
    pub fn error_condition(&self) -> Option<ErrorCondition> {
        match self.errors.as_slice() {
            [] => None,
            [only] => Some(only.error_condition()),
            _ => Some(ErrorCondition::InvalidCertificate),
        }
    }

    /// Whether the only error is an unknown revocation status: a temporary
    /// condition (release and retry) rather than a fault of the certificate.
    pub fn only_revocation_unknown(&self) -> bool {
        self.errors == [Problem::RevocationUnknown]
    }
}

/// As [`check_certificate`], with `intermediates` (e.g. the certificates a
/// received SignedData embedded, [`crate::Unprotected::embedded`]) added to
/// the request's untrusted intermediates for building the chain and for
/// finding the issuer whose CRL counts. They are never anchors: a chain
/// through them must still end in one of the request's trust anchors.
pub fn check_certificate_with_intermediates(
    certificate: &Certificate,
    request: &CheckRequest<'_>,
    intermediates: &[Certificate],
) -> CheckReport {
    if intermediates.is_empty() {
        return check_certificate(certificate, request);
    }
    let trust = request
        .trust
        .clone()
        .with_intermediates(intermediates.to_vec());
    check_certificate(
        certificate,
        &CheckRequest {
            trust: &trust,
            ..*request
        },
    )
}

/// Judges `certificate` for `request.usage` at `request.at` and returns every
/// problem found.
pub fn check_certificate(certificate: &Certificate, request: &CheckRequest<'_>) -> CheckReport {
    let mut report = CheckReport::default();
    report
        .errors
        .extend(validity_problem(certificate, request.at));
    if !has_usage(certificate, request.usage) {
        report.errors.push(Problem::WrongUsage);
    }
    if !chain_is_trusted(certificate, request.trust, request.at) {
        report.errors.push(Problem::Untrusted);
    }
    if request.revocation == RevocationPolicy::Off {
        return report;
    }
    match revocation_status(certificate, request) {
        RevocationStatus::Good => {}
        RevocationStatus::Revoked => report.errors.push(Problem::Revoked),
        RevocationStatus::Unknown if request.revocation == RevocationPolicy::Warn => {
            report.warnings.push(Problem::RevocationUnknown)
        }
        RevocationStatus::Unknown => report.errors.push(Problem::RevocationUnknown),
    }
    report
}

fn validity_problem(certificate: &Certificate, at: DateTime<Utc>) -> Option<Problem> {
    if at < certificate.not_before() {
        Some(Problem::NotYetValid)
    } else if at > certificate.not_after() {
        Some(Problem::Expired)
    } else {
        None
    }
}

/// A certificate without a KeyUsage extension fits no use: the profile
/// demands the bit explicitly.
fn has_usage(certificate: &Certificate, usage: Usage) -> bool {
    certificate
        .key_usage()
        .is_some_and(|usages| usages.contains(&usage.required_key_usage()))
}

// OpenSSL's X509_V_ERR_CERT_NOT_YET_VALID and X509_V_ERR_CERT_HAS_EXPIRED.
const X509_V_ERR_CERT_NOT_YET_VALID: i32 = 9;
const X509_V_ERR_CERT_HAS_EXPIRED: i32 = 10;

/// Builds and verifies the chain at `at`. The leaf's own dates are judged
/// separately (as `expired` / `not-yet-valid`), so when they are the only
/// obstacle the chain is verified again without time checks and the CA
/// certificates' dates are checked by hand: an expired leaf from a good CA is
/// `expired`, not also `untrusted`.
fn chain_is_trusted(certificate: &Certificate, trust: &TrustAnchors, at: DateTime<Utc>) -> bool {
    if trust.is_empty() {
        return false;
    }
    let Ok(at_instant) = verify_chain(certificate, trust, Some(at)) else {
        return false;
    };
    match at_instant {
        ChainOutcome::Trusted(_) => true,
        ChainOutcome::Failed { error, depth } if depth == 0 && is_time_error(error) => {
            match verify_chain(certificate, trust, None) {
                Ok(ChainOutcome::Trusted(chain)) => chain
                    .iter()
                    .skip(1)
                    .all(|ca| validity_problem(&Certificate::from_x509(ca.clone()), at).is_none()),
                _ => false,
            }
        }
        ChainOutcome::Failed { .. } => false,
    }
}

fn is_time_error(error: X509VerifyResult) -> bool {
    matches!(
        error.as_raw(),
        X509_V_ERR_CERT_NOT_YET_VALID | X509_V_ERR_CERT_HAS_EXPIRED
    )
}

enum ChainOutcome {
    /// The verified chain, leaf first.
    Trusted(Vec<X509>),
    Failed {
        error: X509VerifyResult,
        depth: u32,
    },
}

/// One pass of OpenSSL's chain verification; `at: None` ignores all dates.
fn verify_chain(
    certificate: &Certificate,
    trust: &TrustAnchors,
    at: Option<DateTime<Utc>>,
) -> Result<ChainOutcome, ErrorStack> {
    let mut store = X509StoreBuilder::new()?;
    for root in &trust.roots {
        store.add_cert(root.x509().clone())?;
    }
    let mut param = X509VerifyParam::new()?;
    match at {
        Some(at) => param.set_time(at.timestamp() as _),
        None => param.set_flags(X509VerifyFlags::NO_CHECK_TIME)?,
    }
    store.set_param(&param)?;
    let store = store.build();
    let mut untrusted = Stack::new()?;
    for intermediate in &trust.intermediates {
        untrusted.push(intermediate.x509().clone())?;
    }
    let mut context = X509StoreContext::new()?;
    context.init(&store, certificate.x509(), &untrusted, |context| {
        if context.verify_cert()? {
            let chain = context
                .chain()
                .map(|chain| chain.iter().map(X509Ref::to_owned).collect())
                .unwrap_or_default();
            Ok(ChainOutcome::Trusted(chain))
        } else {
            Ok(ChainOutcome::Failed {
                error: context.error(),
                depth: context.error_depth(),
            })
        }
    })
}

enum RevocationStatus {
    Good,
    Revoked,
    Unknown,
}

/// A CRL counts only when it names the certificate's issuer, is signed by
/// that issuer's key and was issued by `at`. A revocation is permanent, so
/// any such CRL that lists the certificate proves it revoked; proving it
/// *not* revoked needs one that is also current (before its nextUpdate).
fn revocation_status(certificate: &Certificate, request: &CheckRequest<'_>) -> RevocationStatus {
    let Some(issuer) = find_issuer(certificate, request.trust) else {
        return RevocationStatus::Unknown;
    };
    let believable: Vec<&Crl> = request
        .crls
        .iter()
        .filter(|crl| is_signed_by(crl, issuer) && crl.this_update() <= request.at)
        .collect();
    if believable.iter().any(|crl| crl.lists(certificate)) {
        RevocationStatus::Revoked
    } else if believable.iter().any(|crl| crl.is_current_at(request.at)) {
        RevocationStatus::Good
    } else {
        RevocationStatus::Unknown
    }
}

/// The anchor or intermediate that issued `certificate` (name and signature match).
fn find_issuer<'t>(certificate: &Certificate, trust: &'t TrustAnchors) -> Option<&'t X509> {
    trust.all().map(Certificate::x509).find(|candidate| {
        candidate.issued(certificate.x509()) == X509VerifyResult::OK
            && candidate
                .public_key()
                .and_then(|key| certificate.x509().verify(&key))
                .unwrap_or(false)
    })
}

fn is_signed_by(crl: &Crl, issuer: &X509) -> bool {
    let same_name = crl
        .x509_crl()
        .issuer_name()
        .try_cmp(issuer.subject_name())
        .is_ok_and(|ordering| ordering.is_eq());
    same_name
        && issuer
            .public_key()
            .and_then(|key| crl.x509_crl().verify(&key))
            .unwrap_or(false)
}

#[cfg(test)]
mod tests;
