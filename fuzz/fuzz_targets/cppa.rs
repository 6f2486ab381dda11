//! CPP/CPA parser: arbitrary bytes must give a value or an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(document) = helsemelding_registry::cppa::parse_collaboration_document(data) {
        for party in &document.parties {
            let _ = party.certificate_summaries();
            for role in &party.roles {
                let _ = (role.send_actions(), role.receive_actions());
            }
        }
    }
});
