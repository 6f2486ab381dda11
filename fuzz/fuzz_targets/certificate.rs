//! Certificate and CRL parsing on arbitrary bytes: never panics, and every
//! fact the checks read from a parsed certificate is computable.
#![no_main]

use helsemelding_protect::{Certificate, Crl};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(certificate) = Certificate::from_pem_or_der(data) {
        let _ = certificate.subject();
        let _ = certificate.issuer();
        let _ = certificate.serial_hex();
        let _ = certificate.not_before();
        let _ = certificate.not_after();
        let _ = certificate.key_usage();
        let _ = certificate.crl_distribution_urls();
        let _ = certificate.thumbprint_sha1();
    }
    if let Ok(crl) = Crl::from_pem_or_der(data) {
        let _ = crl.issuer();
        let _ = crl.this_update();
        let _ = crl.next_update();
        let _ = crl.revoked_count();
    }
});
