//! Paths to `../shared/fixtures` (real NHN samples; never copied into the repo).

use std::path::PathBuf;

/// The `shared/fixtures` directory beside the workspace root.
pub fn dir() -> PathBuf {
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = workspace.join("../shared/fixtures");
    assert!(
        dir.is_dir(),
        "fixtures not found at {}: the shared/ folder must sit beside the repository",
        dir.display()
    );
    dir
}

/// A file under `shared/fixtures/nhn/`, e.g. `nhn("registry/CPP_93238.xml")`.
pub fn nhn(relative: &str) -> PathBuf {
    dir().join("nhn").join(relative)
}

/// The bytes of a file under `shared/fixtures/nhn/`.
pub fn read_nhn(relative: &str) -> Vec<u8> {
    let path = nhn(relative);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Published test password of `Helsenorge_*.p12` in the fixtures.
pub const HELSENORGE_P12_PASSWORD: &str = "drQhrTUSKyQCHYoY";
/// Published test password of `Counterparty_*.p12` in the fixtures.
pub const COUNTERPARTY_P12_PASSWORD: &str = "XVNQ2QEL1PrREwVD";

/// NHN's CPP `CPP_91462.xml` made over to a test party: its PartyId and
/// queue endpoints name `her_id`, and its `enc` and `sign` certificates
/// are the given DER certificates, so that a test party has NHN's real
/// collaboration profile (its processes and actions) with keys the test
/// holds.
pub fn cpp_for_test_party(her_id: u32, signing_der: &[u8], encryption_der: &[u8]) -> Vec<u8> {
    let text = String::from_utf8(read_nhn("registry/CPP_91462.xml")).expect("the CPP is UTF-8");
    let text = text
        .replace(">92462</tns:PartyId>", &format!(">{her_id}</tns:PartyId>"))
        .replace("/93238_", &format!("/{her_id}_"));
    let text = replace_certificate(&text, "enc", encryption_der);
    replace_certificate(&text, "sign", signing_der).into_bytes()
}

/// Replaces the base64 of the `ds:X509Certificate` inside the
/// `tns:Certificate` whose certId is `cert_id`.
fn replace_certificate(text: &str, cert_id: &str, der: &[u8]) -> String {
    let anchor = format!("<tns:Certificate tns:certId=\"{cert_id}\">");
    let at = text.find(&anchor).expect("the CPP names the certificate");
    let open = "<ds:X509Certificate>";
    let start = at + text[at..].find(open).expect("an X509Certificate") + open.len();
    let end = start + text[start..].find('<').expect("its end");
    let encoded = openssl::base64::encode_block(der).replace(['\n', '\r'], "");
    format!("{}{}{}", &text[..start], encoded, &text[end..])
}
