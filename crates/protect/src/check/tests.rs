use chrono::{Duration, TimeZone};
use helsemelding_testkit::fixtures;
use helsemelding_testkit::pki::{self, Issued, LeafOptions, TestPki};

use super::*;

fn cert(issued: &Issued) -> Certificate {
    Certificate::from_x509(issued.cert.clone())
}

fn anchors(pki: &TestPki) -> TrustAnchors {
    TrustAnchors::new(vec![cert(&pki.ca)])
}

fn crl(pki: &TestPki, revoked: &[&Issued], valid_for: Duration) -> Crl {
    let listed: Vec<&X509> = revoked.iter().map(|issued| &issued.cert).collect();
    Crl::from_x509_crl(pki.crl(&listed, Utc::now() + valid_for))
}

fn judge(
    certificate: &Certificate,
    usage: Usage,
    at: DateTime<Utc>,
    trust: &TrustAnchors,
    crls: &[Crl],
    revocation: RevocationPolicy,
) -> CheckReport {
    let request = CheckRequest {
        usage,
        at,
        trust,
        crls,
        revocation,
    };
    check_certificate(certificate, &request)
}

#[test]
fn a_good_certificate_with_a_current_crl_has_no_problems() {
    let pki = TestPki::new("Good CA");
    let signer = pki.issue("signer", pki::Usage::Signing);
    let encrypter = pki.issue("encrypter", pki::Usage::Encryption);
    let crls = [crl(&pki, &[], Duration::hours(24))];
    for (issued, usage) in [(&signer, Usage::Signing), (&encrypter, Usage::Encryption)] {
        let report = judge(
            &cert(issued),
            usage,
            Utc::now(),
            &anchors(&pki),
            &crls,
            RevocationPolicy::Require,
        );
        assert_eq!(report, CheckReport::default(), "{usage:?}");
        assert!(report.is_ok());
        assert_eq!(report.error_condition(), None);
    }
}

#[test]
fn every_problem_is_reported_not_only_the_first() {
    let pki = TestPki::new("All problems CA");
    let stranger = TestPki::new("Stranger CA");
    let expired_encryption = pki.issue_with(
        "expired encryption",
        pki::Usage::Encryption,
        &LeafOptions {
            not_before: Utc::now() - Duration::days(30),
            not_after: Utc::now() - Duration::days(1),
            ..LeafOptions::default()
        },
    );
    let report = judge(
        &cert(&expired_encryption),
        Usage::Signing,
        Utc::now(),
        &anchors(&stranger),
        &[crl(&pki, &[&expired_encryption], Duration::hours(24))],
        RevocationPolicy::Require,
    );
    // The stranger cannot vouch for the CRL, so revocation is unknown rather than revoked.
    assert_eq!(
        report.errors,
        vec![
            Problem::Expired,
            Problem::WrongUsage,
            Problem::Untrusted,
            Problem::RevocationUnknown
        ]
    );
    assert_eq!(
        report.error_condition(),
        Some(ErrorCondition::InvalidCertificate)
    );

    let with_own_ca = judge(
        &cert(&expired_encryption),
        Usage::Signing,
        Utc::now(),
        &anchors(&pki),
        &[crl(&pki, &[&expired_encryption], Duration::hours(24))],
        RevocationPolicy::Require,
    );
    assert_eq!(
        with_own_ca.errors,
        vec![Problem::Expired, Problem::WrongUsage, Problem::Revoked]
    );
}

#[test]
fn validity_window_is_judged_at_the_given_instant() {
    let pki = TestPki::new("Window CA");
    let now = Utc::now();
    let later = pki.issue_with(
        "later",
        pki::Usage::Signing,
        &LeafOptions {
            not_before: now + Duration::days(10),
            not_after: now + Duration::days(20),
            ..LeafOptions::default()
        },
    );
    let certificate = cert(&later);
    let off = RevocationPolicy::Off;
    let trust = anchors(&pki);
    let today = judge(&certificate, Usage::Signing, now, &trust, &[], off);
    assert_eq!(today.errors, vec![Problem::NotYetValid]);
    assert_eq!(
        today.error_condition(),
        Some(ErrorCondition::ExpiredCertificate)
    );
    let inside = now + Duration::days(15);
    assert!(judge(&certificate, Usage::Signing, inside, &trust, &[], off).is_ok());
    let after = now + Duration::days(21);
    assert_eq!(
        judge(&certificate, Usage::Signing, after, &trust, &[], off).errors,
        vec![Problem::Expired]
    );
}

#[test]
fn wrong_or_missing_key_usage_is_wrong_usage() {
    let pki = TestPki::new("Usage CA");
    let trust = anchors(&pki);
    let off = RevocationPolicy::Off;
    let cases = [
        (pki::Usage::Signing, Usage::Encryption),
        (pki::Usage::Encryption, Usage::Signing),
        (pki::Usage::Neither, Usage::Signing),
        (pki::Usage::Neither, Usage::Encryption),
    ];
    for (issued_as, used_as) in cases {
        let issued = pki.issue("usage", issued_as);
        let report = judge(&cert(&issued), used_as, Utc::now(), &trust, &[], off);
        assert_eq!(report.errors, vec![Problem::WrongUsage], "{issued_as:?}");
        assert_eq!(
            report.error_condition(),
            Some(ErrorCondition::InvalidCertificate)
        );
    }
    let both = pki.issue("both", pki::Usage::Both);
    for used_as in [Usage::Signing, Usage::Encryption] {
        assert!(judge(&cert(&both), used_as, Utc::now(), &trust, &[], off).is_ok());
    }
}

#[test]
fn without_anchors_or_from_another_ca_the_certificate_is_untrusted() {
    let pki = TestPki::new("Chain CA");
    let other = TestPki::new("Chain CA"); // same name, different key
    let signer = pki.issue("signer", pki::Usage::Signing);
    let off = RevocationPolicy::Off;
    for trust in [TrustAnchors::default(), anchors(&other)] {
        let report = judge(&cert(&signer), Usage::Signing, Utc::now(), &trust, &[], off);
        assert_eq!(report.errors, vec![Problem::Untrusted]);
        assert_eq!(
            report.error_condition(),
            Some(ErrorCondition::UnverifiedCertificate)
        );
    }
}

#[test]
fn an_anchor_outside_its_validity_makes_the_chain_untrusted() {
    let pki = TestPki::new("Old CA");
    let signer = pki.issue("signer", pki::Usage::Signing);
    // The test CA is valid ten years either side of now.
    let beyond_ca = Utc::now() + Duration::days(3660);
    let report = judge(
        &cert(&signer),
        Usage::Signing,
        beyond_ca,
        &anchors(&pki),
        &[],
        RevocationPolicy::Off,
    );
    assert_eq!(report.errors, vec![Problem::Expired, Problem::Untrusted]);
}

#[test]
fn revoked_is_an_error_under_require_and_warn() {
    let pki = TestPki::new("Revoking CA");
    let revoked = pki.issue("revoked", pki::Usage::Signing);
    let crls = [crl(&pki, &[&revoked], Duration::hours(24))];
    for policy in [RevocationPolicy::Require, RevocationPolicy::Warn] {
        let report = judge(
            &cert(&revoked),
            Usage::Signing,
            Utc::now(),
            &anchors(&pki),
            &crls,
            policy,
        );
        assert_eq!(report.errors, vec![Problem::Revoked], "{policy:?}");
        assert_eq!(
            report.error_condition(),
            Some(ErrorCondition::RevokedCertificate)
        );
    }
    let off = judge(
        &cert(&revoked),
        Usage::Signing,
        Utc::now(),
        &anchors(&pki),
        &crls,
        RevocationPolicy::Off,
    );
    assert!(off.is_ok());
}

#[test]
fn unknown_revocation_follows_the_policy() {
    let pki = TestPki::new("Unknown CA");
    let signer = pki.issue("signer", pki::Usage::Signing);
    let trust = anchors(&pki);
    let at = Utc::now();
    let require = judge(
        &cert(&signer),
        Usage::Signing,
        at,
        &trust,
        &[],
        RevocationPolicy::Require,
    );
    assert_eq!(require.errors, vec![Problem::RevocationUnknown]);
    assert!(require.only_revocation_unknown());
    assert_eq!(
        require.error_condition(),
        Some(ErrorCondition::RevokedCertificate)
    );
    let warn = judge(
        &cert(&signer),
        Usage::Signing,
        at,
        &trust,
        &[],
        RevocationPolicy::Warn,
    );
    assert!(warn.is_ok());
    assert_eq!(warn.warnings, vec![Problem::RevocationUnknown]);
    let off = judge(
        &cert(&signer),
        Usage::Signing,
        at,
        &trust,
        &[],
        RevocationPolicy::Off,
    );
    assert_eq!(off, CheckReport::default());
}

#[test]
fn a_stale_crl_does_not_vouch_but_a_fresher_one_does() {
    let pki = TestPki::new("Stale CA");
    let signer = pki.issue("signer", pki::Usage::Signing);
    let trust = anchors(&pki);
    let stale = crl(&pki, &[], Duration::hours(1));
    let fresh = crl(&pki, &[], Duration::hours(24));
    let at = Utc::now() + Duration::hours(2);
    let require = RevocationPolicy::Require;
    let with_stale = judge(
        &cert(&signer),
        Usage::Signing,
        at,
        &trust,
        std::slice::from_ref(&stale),
        require,
    );
    assert_eq!(with_stale.errors, vec![Problem::RevocationUnknown]);
    let with_both = judge(
        &cert(&signer),
        Usage::Signing,
        at,
        &trust,
        &[stale, fresh],
        require,
    );
    assert!(with_both.is_ok());
    // A CRL issued after the instant judged at says nothing about that instant.
    let before = Utc::now() - Duration::hours(1);
    let future_crl = [crl(&pki, &[], Duration::hours(24))];
    let early = judge(
        &cert(&signer),
        Usage::Signing,
        before,
        &trust,
        &future_crl,
        require,
    );
    assert_eq!(early.errors, vec![Problem::RevocationUnknown]);
}

#[test]
fn a_stale_crl_still_proves_a_revocation() {
    let pki = TestPki::new("Stale revoking CA");
    let revoked = pki.issue("revoked", pki::Usage::Signing);
    let stale = [crl(&pki, &[&revoked], Duration::hours(1))];
    let at = Utc::now() + Duration::hours(2);
    let report = judge(
        &cert(&revoked),
        Usage::Signing,
        at,
        &anchors(&pki),
        &stale,
        RevocationPolicy::Require,
    );
    assert_eq!(report.errors, vec![Problem::Revoked]);
}

#[test]
fn a_crl_signed_by_an_impostor_is_ignored() {
    let pki = TestPki::new("Real CA");
    let impostor = TestPki::new("Real CA"); // same name, different key
    let signer = pki.issue("signer", pki::Usage::Signing);
    // The impostor's CRL claims the real CA's name and lists our serial.
    let forged = [crl(&impostor, &[&signer], Duration::hours(24))];
    let report = judge(
        &cert(&signer),
        Usage::Signing,
        Utc::now(),
        &anchors(&pki),
        &forged,
        RevocationPolicy::Require,
    );
    assert_eq!(report.errors, vec![Problem::RevocationUnknown]);
}

#[test]
fn problems_serialise_in_kebab_case() {
    let all = [
        Problem::NotYetValid,
        Problem::Expired,
        Problem::WrongUsage,
        Problem::Untrusted,
        Problem::Revoked,
        Problem::RevocationUnknown,
    ];
    for problem in all {
        let text = serde_json::to_string(&problem).unwrap();
        assert_eq!(text, format!("\"{}\"", problem.as_str()));
    }
    assert_eq!(
        serde_json::to_string(&RevocationPolicy::Require).unwrap(),
        "\"require\""
    );
}

fn buypass(name: &str) -> Certificate {
    Certificate::from_pem_or_der(&fixtures::read_nhn(&format!("certificates/{name}"))).unwrap()
}

#[test]
fn buypass_test_certificates_have_the_expected_facts() {
    let signing = buypass("Helsenorge_Signature.cer");
    assert_eq!(signing.serial_hex(), "10a3f7e99720077e30aa");
    assert_eq!(signing.key_usage().unwrap(), vec![KeyUsage::NonRepudiation]);
    let encryption = buypass("Counterparty_Encryption.cer");
    assert_eq!(encryption.serial_hex(), "1d5a932bb4694cdc8ec4");
    assert_eq!(
        encryption.key_usage().unwrap(),
        vec![
            KeyUsage::DigitalSignature,
            KeyUsage::KeyEncipherment,
            KeyUsage::DataEncipherment
        ]
    );
    assert_eq!(
        signing.crl_distribution_urls()[0],
        "http://crl.test4.buypass.no/crl/BPClass3T4CA3.crl"
    );
}

#[test]
fn buypass_test_certificates_are_expired_today_but_not_in_2016() {
    let trust = TrustAnchors::default();
    let off = RevocationPolicy::Off;
    let in_2016 = Utc.with_ymd_and_hms(2016, 6, 1, 12, 0, 0).unwrap();
    for (name, usage) in [
        ("Helsenorge_Signature.cer", Usage::Signing),
        ("Counterparty_Encryption.cer", Usage::Encryption),
    ] {
        let certificate = buypass(name);
        let today = judge(&certificate, usage, Utc::now(), &trust, &[], off);
        // No Buypass root is at hand, so the chain cannot be judged trusted.
        assert_eq!(
            today.errors,
            vec![Problem::Expired, Problem::Untrusted],
            "{name}"
        );
        let then = judge(&certificate, usage, in_2016, &trust, &[], off);
        assert_eq!(then.errors, vec![Problem::Untrusted], "{name}");
        let wrong = match usage {
            Usage::Signing => Usage::Encryption,
            Usage::Encryption => Usage::Signing,
        };
        let misused = judge(&certificate, wrong, in_2016, &trust, &[], off);
        assert_eq!(
            misused.errors,
            vec![Problem::WrongUsage, Problem::Untrusted]
        );
    }
}

#[test]
fn intermediates_from_the_message_complete_the_chain_to_the_root() {
    let root = TestPki::new("Chain Root");
    let intermediate = root.intermediate("Chain Intermediate");
    let leaf = intermediate.issue("chained signer", pki::Usage::Signing);
    let only_root = anchors(&root);
    let request = |crls| CheckRequest {
        usage: Usage::Signing,
        at: Utc::now(),
        trust: &only_root,
        crls,
        revocation: RevocationPolicy::Require,
    };
    let embedded = [cert(&leaf), cert(&intermediate.ca)];
    let current = [crl(&intermediate, &[], Duration::days(1))];

    let without = check_certificate(&cert(&leaf), &request(&current));
    assert_eq!(
        without.errors,
        vec![Problem::Untrusted, Problem::RevocationUnknown],
        "without the intermediate neither chain nor issuer is known"
    );
    let with = check_certificate_with_intermediates(&cert(&leaf), &request(&current), &embedded);
    assert!(with.is_ok(), "{with:?}");
    // The intermediate's CRL counts once the issuer is known through it.
    let revoked = [crl(&intermediate, &[&leaf], Duration::days(1))];
    let report = check_certificate_with_intermediates(&cert(&leaf), &request(&revoked), &embedded);
    assert_eq!(report.errors, vec![Problem::Revoked]);
    // An embedded certificate is never an anchor: a self-contained chain
    // from another root stays untrusted.
    let other_root = TestPki::new("Chain Root");
    let other = other_root.issue("impostor", pki::Usage::Signing);
    let report =
        check_certificate_with_intermediates(&cert(&other), &request(&[]), &[cert(&other_root.ca)]);
    assert!(report.errors.contains(&Problem::Untrusted), "{report:?}");
}
