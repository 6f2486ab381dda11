//! `helsemelding audit` and `receipts` on a real store file.

use std::process::Command;

use chrono::{Duration, Utc};
use helsemelding_store::audit::{AuditEvent, AuditKind};
use helsemelding_store::receipts::{ExpectedReceipt, ReceivedReceipt};
use helsemelding_store::Store;
use helsemelding_store_sqlite::SqliteStore;
use helsemelding_testkit::block_on;

fn helsemelding(store: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_helsemelding"))
        .args(args)
        .args(["--store", store.to_str().unwrap()])
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

fn store_with_events() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let store = SqliteStore::open(&path).unwrap();
    for (n, kind) in [AuditKind::Sent, AuditKind::Accepted, AuditKind::Rejected]
        .into_iter()
        .enumerate()
    {
        let mut event = AuditEvent::new(kind, "91462@test", "ok");
        event.counterpart_her_id = Some(93252 + n as u32);
        event.message_id = Some(format!("m{n}"));
        block_on(store.audit().append(Utc::now(), &event)).unwrap();
    }
    (dir, path)
}

#[test]
fn verify_passes_on_an_intact_log_and_names_the_changed_row() {
    let (_dir, path) = store_with_events();
    let (ok, stdout, _) = helsemelding(&path, &["audit", "verify"]);
    assert!(ok, "{stdout}");
    assert!(stdout.contains("intact: 3 rows"), "{stdout}");

    let raw = rusqlite::Connection::open(&path).unwrap();
    raw.execute_batch(
        "DROP TRIGGER audit_append_only; UPDATE audit SET outcome = 'forged' WHERE seq = 2;",
    )
    .unwrap();
    let (ok, stdout, stderr) = helsemelding(&path, &["audit", "verify", "--json"]);
    assert!(!ok);
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["problems"][0]["problem"], "changed");
    assert_eq!(report["problems"][0]["seq"], 2);
    assert!(stderr.contains("audit log broken"), "{stderr}");
}

#[test]
fn list_filters_by_party_and_prune_refuses_young_rows() {
    let (_dir, path) = store_with_events();
    let (ok, stdout, _) = helsemelding(&path, &["audit", "list", "--her-id", "93253", "--json"]);
    assert!(ok);
    let rows: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 1);
    assert_eq!(rows[0]["message_id"], "m1");
    assert_eq!(rows[0]["kind"], "accepted");

    let yesterday = (Utc::now() - Duration::days(1)).to_rfc3339();
    let (ok, _, stderr) = helsemelding(&path, &["audit", "prune", "--before", &yesterday]);
    assert!(!ok);
    assert!(stderr.contains("retention"), "{stderr}");
}

#[test]
fn receipts_lists_what_is_overdue() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let store = SqliteStore::open(&path).unwrap();
    let now = Utc::now();
    for (id, due) in [
        ("late", now - Duration::hours(1)),
        ("answered", now - Duration::hours(1)),
        ("fresh", now + Duration::hours(5)),
    ] {
        block_on(store.receipts().expect(&ExpectedReceipt {
            message_id: id.into(),
            to_her_id: 93252,
            function: "DIALOG_INNBYGGER_EKONTAKT".into(),
            sent_at: now - Duration::hours(25),
            due_at: due,
        }))
        .unwrap();
    }
    block_on(store.receipts().record(
        "answered",
        93252,
        &ReceivedReceipt {
            at: now,
            status: "1".into(),
            receipt_message_id: "r".into(),
        },
    ))
    .unwrap();
    let (ok, stdout, _) = helsemelding(&path, &["receipts", "--overdue", "--json"]);
    assert!(ok);
    let rows: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 1);
    assert_eq!(rows[0]["message_id"], "late");
    assert_eq!(rows[0]["overdue"], true);
    let (_, text, _) = helsemelding(&path, &["receipts"]);
    assert!(
        text.contains("OVERDUE") && text.contains("receipt status 1") && text.contains("waiting"),
        "{text}"
    );
}
