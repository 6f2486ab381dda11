//! Finding 5: text a peer sends reaches our output escaped and bounded.
//! An error report whose `errorDescription` holds a newline and a forged
//! `received … (1)` line plus a terminal escape, and one whose description
//! is 1 MB, are each printed by `listen` as one line, escaped and cut,
//! without Rust's Debug forms (`Some(…)`).

use helsemelding_transport::local::LocalTransport;
use helsemelding_transport::{Message, Transport};

mod common;
use common::{GatewayBroker, Setup};

const FORGED: &str = "bad XML\n received FAKE-ID from 109989 (1)\x1b[2J";

/// Puts an error report from 109989 about our message `about` on our
/// (91462's) error queue in the local transport's store.
fn report_error(setup: &Setup, about: &str, description: &str) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let transport = LocalTransport::open(setup.dir().join("queues.db")).unwrap();
        let mut sender = transport.sender("91462_error").await.unwrap();
        let report = Message {
            message_id: Some(uuid::Uuid::new_v4().to_string()),
            subject: Some("DIALOG_INNBYGGER_TEST".into()),
            ..Message::new(Vec::new())
        }
        .with_property("fromHerId", "109989")
        .with_property("toHerId", "91462")
        .with_property("originalMessageId", about)
        .with_property("errorCondition", "transport:not-well-formed-xml")
        .with_property("errorDescription", description)
        .with_property("errorConditionData", "");
        sender.send(report).await.unwrap();
        sender.close().await.unwrap();
        transport.close().await.unwrap();
    });
}

#[test]
fn a_peers_error_description_is_printed_escaped_and_bounded_on_one_line() {
    let setup = Setup::new(GatewayBroker::Local);
    let us = setup.party(91462);
    setup.party(109989);
    report_error(&setup, "x", FORGED);
    let big = "A".repeat(1 << 20);
    report_error(&setup, "y", &big);

    let out = setup.dir().join("out");
    let stderr = setup.listen_until_idle(&us, &out);

    assert!(!stderr.contains('\x1b'), "a terminal escape got through");
    assert!(
        !stderr
            .lines()
            .any(|line| line.trim_start().starts_with("received FAKE-ID")),
        "a forged line: {stderr}"
    );
    assert!(!stderr.contains("Some("), "Rust Debug forms: {stderr}");
    let reports: Vec<&str> = stderr
        .lines()
        .filter(|line| line.starts_with("error report from"))
        .collect();
    assert_eq!(reports.len(), 2, "{stderr}");
    let forged = reports
        .iter()
        .find(|line| line.contains(" about x:"))
        .expect("the report about x");
    assert_eq!(
        *forged,
        "error report from 109989 about x: transport:not-well-formed-xml \
         (bad XML\\n received FAKE-ID from 109989 (1)\\x1b[2J)"
    );
    let long = reports
        .iter()
        .find(|line| line.contains(" about y:"))
        .expect("the report about y");
    assert!(long.len() < 400, "{} bytes printed", long.len());
    assert!(
        long.ends_with(&format!("{}… (1048576 bytes))", "A".repeat(200))),
        "{long}"
    );
    assert!(stderr.len() < 10_000, "{} bytes of stderr", stderr.len());
}

/// A peer's report that names no sender is `from unknown`, not `None`.
#[test]
fn a_report_without_a_sender_says_unknown() {
    let setup = Setup::new(GatewayBroker::Local);
    let us = setup.party(91462);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let transport = LocalTransport::open(setup.dir().join("queues.db")).unwrap();
        let mut sender = transport.sender("91462_error").await.unwrap();
        let report = Message {
            message_id: Some(uuid::Uuid::new_v4().to_string()),
            ..Message::new(Vec::new())
        }
        .with_property("errorCondition", "transport:internal-error");
        sender.send(report).await.unwrap();
        transport.close().await.unwrap();
    });
    let out = setup.dir().join("out");
    let stderr = setup.listen_until_idle(&us, &out);
    assert!(
        stderr.lines().any(|line| line
            == "error report from unknown about an unknown message: transport:internal-error"),
        "{stderr}"
    );
}
