//! Issue 12, finding 2: an outbox entry that cannot be sent stops neither
//! `send` nor `listen`; `outbox list` shows it failed with its reason, and
//! `outbox retry` and `outbox drop` (audited) act on it.

mod common;
use common::{msghead, GatewayBroker, Setup};

use chrono::Utc;
use helsemelding_store::audit::{AuditFilter, AuditKind};
use helsemelding_store::outbox::OutgoingMessage;
use helsemelding_store::Store;
use helsemelding_store_sqlite::SqliteStore;
use helsemelding_testkit::block_on;

/// Records an entry that can never be sent (its envelope is unreadable, as
/// after a bad write or an incompatible version) in `store`.
fn poison(store: &std::path::Path, id: &str, to: u32) {
    let store = SqliteStore::open(store).unwrap();
    block_on(store.outbox().enqueue(&OutgoingMessage {
        message_id: id.into(),
        from_her_id: 0,
        to_her_id: to,
        msg_id: None,
        queue: format!("{to}_async"),
        function: "DIALOG_INNBYGGER_TEST".into(),
        envelope: b"not an envelope".to_vec(),
        body: vec![0x30, 0x80, 0, 0],
        created_at: Utc::now() - chrono::Duration::minutes(1),
        expires_at: None,
        payload_digest: None,
    }))
    .unwrap();
}

fn listed(setup: &Setup, config: &std::path::Path) -> Vec<serde_json::Value> {
    let (ok, stdout, stderr) = setup.run(config, &["outbox", "list", "--json"]);
    assert!(ok, "outbox list failed: {stderr}");
    serde_json::from_str(&stdout).unwrap()
}

fn row<'a>(rows: &'a [serde_json::Value], id: &str) -> Option<&'a serde_json::Value> {
    rows.iter().find(|r| r["message_id"] == id)
}

#[test]
fn a_poisoned_outbox_entry_stops_neither_send_nor_listen_and_can_be_retried_or_dropped() {
    let setup = Setup::new(GatewayBroker::Local);
    let a = setup.party(91462);
    let b = setup.party(109989);
    poison(&setup.store_path(91462), "poisoned-1", 109989);
    poison(&setup.store_path(91462), "poisoned-2", 109989);

    // A new message is recorded, sent, and its id printed.
    let payload_file = setup.dir().join("note.xml");
    std::fs::write(&payload_file, msghead(91462, 109989)).unwrap();
    let (ok, stdout, stderr) = setup.run(
        &a,
        &[
            "send",
            "--to",
            "109989",
            "--function",
            "DIALOG_INNBYGGER_TEST",
            payload_file.to_str().unwrap(),
        ],
    );
    assert!(ok, "send failed: {stderr}");
    let id = stdout.trim().to_string();
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "{stdout}");

    // The poisoned entries are failed with their reason; the new one is gone.
    let rows = listed(&setup, &a);
    assert!(row(&rows, &id).is_none(), "{rows:?}");
    for poisoned in ["poisoned-1", "poisoned-2"] {
        let r = row(&rows, poisoned).unwrap_or_else(|| panic!("{poisoned}: {rows:?}"));
        assert_eq!(r["state"], "failed", "{r}");
        assert!(
            r["last_error"].as_str().unwrap().contains("unreadable"),
            "{r}"
        );
    }

    let (ok, text, _) = setup.run(&a, &["outbox", "list"]);
    assert!(ok);
    let line = text.lines().find(|l| l.starts_with("poisoned-1")).unwrap();
    assert!(
        line.contains(" failed ") && line.contains("109989_async") && line.contains("reason: "),
        "{line}"
    );

    // The message arrived.
    let out = setup.dir().join("out");
    let (ok, _, stderr) = setup.run(
        &b,
        &[
            "listen",
            "--out-dir",
            out.to_str().unwrap(),
            "--count",
            "1",
            "--idle-exit",
            "30",
        ],
    );
    assert!(ok, "listen failed: {stderr}");
    assert!(out.join(format!("{id}.xml")).is_file());

    // Only a failed entry can be retried; the error names the message.
    let (ok, _, stderr) = setup.run(&a, &["outbox", "retry", &id]);
    assert!(!ok);
    assert!(stderr.contains(&id), "{stderr}");
    let (ok, stdout, stderr) = setup.run(&a, &["outbox", "retry", "poisoned-1"]);
    assert!(ok, "retry failed: {stderr}");
    assert!(stdout.contains("pending"), "{stdout}");
    let rows = listed(&setup, &a);
    let r = row(&rows, "poisoned-1").unwrap();
    assert_eq!(
        (r["state"].as_str(), r["attempts"].as_u64()),
        (Some("pending"), Some(0))
    );
    assert!(r["next_attempt_at"].is_string(), "{r}");

    // `listen` starts with a pending entry that cannot be sent.
    let out_a = setup.dir().join("out-a");
    let (ok, _, stderr) = setup.run(
        &a,
        &[
            "listen",
            "--out-dir",
            out_a.to_str().unwrap(),
            "--idle-exit",
            "1",
        ],
    );
    assert!(ok, "listen refused to start: {stderr}");
    assert_eq!(
        row(&listed(&setup, &a), "poisoned-1").unwrap()["state"],
        "failed"
    );

    // Dropping removes it for good, audited with its reason.
    let (ok, stdout, stderr) = setup.run(&a, &["outbox", "drop", "poisoned-2"]);
    assert!(ok, "drop failed: {stderr}");
    assert!(stdout.contains("dropped"), "{stdout}");
    assert!(row(&listed(&setup, &a), "poisoned-2").is_none());
    let (ok, _, stderr) = setup.run(&a, &["outbox", "drop", "poisoned-2"]);
    assert!(!ok);
    assert!(
        stderr.contains("poisoned-2 is not in the outbox"),
        "{stderr}"
    );
    let store = SqliteStore::open(&setup.store_path(91462)).unwrap();
    let events = block_on(store.audit().list(&AuditFilter {
        message_id: Some("poisoned-2".into()),
        ..AuditFilter::default()
    }))
    .unwrap();
    let dropped: Vec<_> = events
        .iter()
        .filter(|e| e.event.kind == AuditKind::OutboxDropped)
        .collect();
    assert_eq!(dropped.len(), 1, "{events:?}");
    let event = &dropped[0].event;
    assert_eq!(event.counterpart_her_id, Some(109989));
    assert!(event.actor.starts_with("operator:"), "{}", event.actor);
    let reason = event.reason.as_deref().unwrap();
    assert!(
        reason.contains("failed") && reason.contains("unreadable"),
        "{reason}"
    );
    let retried = block_on(store.audit().list(&AuditFilter {
        message_id: Some("poisoned-1".into()),
        ..AuditFilter::default()
    }))
    .unwrap();
    assert!(retried
        .iter()
        .any(|e| e.event.kind == AuditKind::OutboxRetried));
    assert!(block_on(store.audit().verify()).unwrap().is_intact());
}
