//! Every XML reader of `wire` on arbitrary bytes: none may panic, and what
//! parses must be internally consistent.
#![no_main]

use helsemelding_wire::{apprec::AppRec, dialog, metadata, msghead::MsgHead, Limits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_bytes: 1 << 20,
        max_depth: 64,
        max_nodes: 100_000,
    };
    if let Ok(head) = MsgHead::parse_with_limits(data, &limits) {
        let _ = dialog::is_communication_test_request(&head);
        let _ = head.attachments().len();
    }
    if let Ok(apprec) = AppRec::parse_with_limits(data, &limits) {
        // What we write we must read back identically.
        let written = apprec.to_xml();
        let reread = AppRec::parse(written.as_bytes()).expect("our own AppRec must parse");
        assert_eq!(reread.id, apprec.id);
        assert_eq!(reread.status, apprec.status);
    }
    let _ = metadata::extract_with_limits(data, &limits);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = dialog::foresporsel_types(text);
    }
});
