//! A parsed X.509 certificate revocation list (CRL) and the facts the
//! revocation judge needs from it, plus where a certificate says its CRLs
//! are published (the CRL distribution points).
//!
//! Parsing only: whether a CRL may be believed (signature, freshness) is
//! decided by [`crate::check`].

use std::sync::Arc;

use chrono::{DateTime, Utc};
use openssl::x509::{CrlStatus, X509Crl};

use crate::certificate::{asn1_to_utc, first_openssl_reason};
use crate::{Certificate, Error, Result};

/// A parsed certificate revocation list.
#[derive(Clone)]
pub struct Crl {
    // Shared: OpenSSL CRLs cannot be cloned, and caches hand out copies.
    crl: Arc<X509Crl>,
}

impl Crl {
    /// Reads one CRL from PEM (`-----BEGIN X509 CRL-----`) or DER.
    pub fn from_pem_or_der(bytes: &[u8]) -> Result<Self> {
        let looks_like_pem = bytes
            .windows(b"-----BEGIN".len())
            .any(|w| w == b"-----BEGIN");
        let parsed = if looks_like_pem {
            X509Crl::from_pem(bytes)
        } else {
            X509Crl::from_der(bytes)
        };
        parsed
            .map(|crl| Crl { crl: Arc::new(crl) })
            .map_err(|e| Error::CrlParse {
                reason: first_openssl_reason(&e),
            })
    }

    /// Wraps an already parsed OpenSSL CRL.
    pub fn from_x509_crl(crl: X509Crl) -> Self {
        Crl { crl: Arc::new(crl) }
    }

    /// The underlying OpenSSL CRL.
    pub fn x509_crl(&self) -> &X509Crl {
        &self.crl
    }

    /// DER encoding (the form kept in the on-disk cache).
    pub fn to_der(&self) -> Vec<u8> {
        // A CRL we parsed always re-encodes.
        self.crl.to_der().unwrap_or_default()
    }

    /// Issuer as `CN=…, O=…` in CRL order.
    pub fn issuer(&self) -> String {
        crate::certificate::name_to_string(self.crl.issuer_name())
    }

    /// When the CRL was issued (`thisUpdate`).
    pub fn this_update(&self) -> DateTime<Utc> {
        asn1_to_utc(self.crl.last_update())
    }

    /// When the next CRL is due (`nextUpdate`); after it this one is stale.
    /// `None` when the CRL names no such time (then it is never fresh enough
    /// to rely on: see [`crate::check`]).
    pub fn next_update(&self) -> Option<DateTime<Utc>> {
        self.crl.next_update().map(asn1_to_utc)
    }

    /// Whether the CRL is usable at `at`: issued before it and not yet past `nextUpdate`.
    pub fn is_current_at(&self, at: DateTime<Utc>) -> bool {
        self.this_update() <= at && self.next_update().is_some_and(|next| at < next)
    }

    /// Number of revoked entries (for diagnostics).
    pub fn revoked_count(&self) -> usize {
        self.crl.get_revoked().map_or(0, |stack| stack.len())
    }

    /// Whether this CRL lists `certificate`'s serial as revoked (entries with
    /// the `removeFromCRL` reason do not count).
    pub(crate) fn lists(&self, certificate: &Certificate) -> bool {
        matches!(
            self.crl.get_by_serial(certificate.x509().serial_number()),
            CrlStatus::Revoked(_)
        )
    }
}

impl std::fmt::Debug for Crl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Crl")
            .field("issuer", &self.issuer())
            .field("this_update", &self.this_update())
            .field("next_update", &self.next_update())
            .field("revoked", &self.revoked_count())
            .finish()
    }
}

impl Certificate {
    /// The URLs in the certificate's CRL distribution points (full names
    /// only), in certificate order: HTTP and LDAP alike. The fetcher uses the
    /// `http://` and `https://` ones.
    pub fn crl_distribution_urls(&self) -> Vec<String> {
        let Some(points) = self.x509().crl_distribution_points() else {
            return Vec::new();
        };
        points
            .iter()
            .filter_map(|point| point.distpoint()?.fullname())
            .flat_map(|names| names.iter().filter_map(|name| name.uri()))
            .map(str::to_string)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;
    use helsemelding_testkit::pki::{LeafOptions, TestPki, Usage};

    #[test]
    fn garbage_truncated_and_huge_input_is_a_parse_error() {
        let pki = TestPki::new("Crl garbage CA");
        let der = pki
            .crl(&[], Utc::now() + Duration::days(1))
            .to_der()
            .unwrap();
        let huge = vec![0x30u8; 4 << 20];
        for input in [
            &b""[..],
            b"\x30\x82\xff\xff",
            b"-----BEGIN X509 CRL-----\nAAAA\n",
            &der[..der.len() / 2],
            &huge,
        ] {
            assert!(matches!(
                Crl::from_pem_or_der(input),
                Err(Error::CrlParse { .. })
            ));
        }
    }

    #[test]
    fn reads_issuer_times_and_entries_from_pem_and_der() {
        let pki = TestPki::new("Crl facts CA");
        let revoked = pki.issue("revoked", Usage::Signing);
        let good = pki.issue("good", Usage::Signing);
        let next = Utc::now() + Duration::hours(24);
        let crl = pki.crl(&[&revoked.cert], next);
        let from_der = Crl::from_pem_or_der(&crl.to_der().unwrap()).unwrap();
        let from_pem = Crl::from_pem_or_der(&crl.to_pem().unwrap()).unwrap();
        assert_eq!(from_der.to_der(), from_pem.to_der());
        assert_eq!(from_der.issuer(), "O=helsemelding test, CN=Crl facts CA");
        assert_eq!(
            from_der.next_update().unwrap().timestamp(),
            next.timestamp()
        );
        assert_eq!(from_der.revoked_count(), 1);
        assert!(from_der.lists(&Certificate::from_x509(revoked.cert)));
        assert!(!from_der.lists(&Certificate::from_x509(good.cert)));
        assert!(from_der.is_current_at(Utc::now()));
        assert!(!from_der.is_current_at(next));
        assert!(!from_der.is_current_at(Utc::now() - Duration::hours(1)));
    }

    #[test]
    fn distribution_urls_come_in_certificate_order() {
        let pki = TestPki::new("Crl url CA");
        let options = LeafOptions {
            crl_url: Some("http://127.0.0.1:9/ca.crl".into()),
            ..LeafOptions::default()
        };
        let with = pki.issue_with("with", Usage::Signing, &options);
        let without = pki.issue("without", Usage::Signing);
        assert_eq!(
            Certificate::from_x509(with.cert).crl_distribution_urls(),
            vec!["http://127.0.0.1:9/ca.crl".to_string()]
        );
        assert!(Certificate::from_x509(without.cert)
            .crl_distribution_urls()
            .is_empty());
    }
}
