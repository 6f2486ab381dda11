//! Address-registry parsers (party XML/JSON, certificate look-ups): never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(party) = helsemelding_registry::party::parse_communication_party(data) {
        let _ = party.queues.names();
    }
    let _ = helsemelding_registry::certificates::parse_certificate_details(data);
    let _ = helsemelding_registry::certificates::parse_rest_certificates(data, "1");
});
