//! The audit chain against an attacker with raw access to the database file:
//! every edit, removal and insertion is found and named.

use chrono::{DateTime, Duration, Utc};
use helsemelding_store::audit::{AuditEvent, AuditFilter, AuditKind, ChainProblem};
use helsemelding_store::{Error, Store};
use helsemelding_store_sqlite::SqliteStore;
use rusqlite::Connection;

fn event(n: u32) -> AuditEvent {
    AuditEvent {
        kind: if n.is_multiple_of(2) {
            AuditKind::Sent
        } else {
            AuditKind::Accepted
        },
        actor: "91462@gateway-1".into(),
        counterpart_her_id: Some(93252 + n % 3),
        message_id: Some(format!("msg-{n}")),
        function: Some("DIALOG_INNBYGGER_EKONTAKT".into()),
        outcome: "ok".into(),
        reason: None,
    }
}

async fn log_with(
    rows: u32,
    start: DateTime<Utc>,
) -> (tempfile::TempDir, std::path::PathBuf, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let store = SqliteStore::open(&path).unwrap();
    for n in 1..=rows {
        store
            .audit()
            .append(start + Duration::minutes(n.into()), &event(n))
            .await
            .unwrap();
    }
    (dir, path, store)
}

/// Raw access as an attacker has it: the protective triggers dropped.
fn attacker(path: &std::path::Path) -> Connection {
    let connection = Connection::open(path).unwrap();
    connection
        .execute_batch("DROP TRIGGER audit_append_only; DROP TRIGGER audit_retention;")
        .unwrap();
    connection
}

async fn problems(store: &SqliteStore) -> Vec<ChainProblem> {
    store.audit().verify().await.unwrap().problems
}

#[tokio::test]
async fn an_untouched_log_verifies_and_lists_by_filter() {
    let (_dir, _path, store) = log_with(6, Utc::now() - Duration::hours(1)).await;
    let report = store.audit().verify().await.unwrap();
    assert!(report.is_intact(), "{:?}", report.problems);
    assert_eq!((report.rows_checked, report.head_seq), (6, 6));

    let for_party = store
        .audit()
        .list(&AuditFilter {
            her_id: Some(93252),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        for_party.iter().map(|r| r.seq).collect::<Vec<_>>(),
        vec![3, 6]
    );
    let one = store
        .audit()
        .list(&AuditFilter {
            message_id: Some("msg-4".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].event, event(4));
    assert_eq!(
        one[0].prev_hash,
        store.audit().list(&AuditFilter::default()).await.unwrap()[2].hash
    );
}

#[tokio::test]
async fn a_changed_field_is_named_by_row() {
    let (_dir, path, store) = log_with(5, Utc::now()).await;
    attacker(&path)
        .execute("UPDATE audit SET outcome = 'rejected' WHERE seq = 3", [])
        .unwrap();
    assert_eq!(
        problems(&store).await,
        vec![ChainProblem::Changed { seq: 3 }]
    );
}

#[tokio::test]
async fn a_row_rewritten_with_a_fresh_hash_breaks_the_next_link() {
    let (_dir, path, store) = log_with(5, Utc::now()).await;
    let rows = store.audit().list(&AuditFilter::default()).await.unwrap();
    // The attacker replays rows 1-2 elsewhere to forge a self-consistent row 3.
    let replay = SqliteStore::open_in_memory().unwrap();
    for row in &rows[..2] {
        replay.audit().append(row.at, &row.event).await.unwrap();
    }
    let mut changed = rows[2].event.clone();
    changed.outcome = "rejected".into();
    let forged = replay.audit().append(rows[2].at, &changed).await.unwrap();
    assert_eq!(forged.prev_hash, rows[1].hash);
    attacker(&path)
        .execute(
            "UPDATE audit SET outcome = 'rejected', hash = ?1 WHERE seq = 3",
            [&forged.hash],
        )
        .unwrap();
    let found = problems(&store).await;
    assert_eq!(found, vec![ChainProblem::LinkBroken { seq: 4 }]);
    assert_eq!(
        found[0].to_string(),
        "row 4 does not follow the row before it (that row was replaced)"
    );
}

#[tokio::test]
async fn removed_rows_are_named_in_the_middle_and_at_the_end() {
    let (_dir, path, store) = log_with(8, Utc::now()).await;
    let db = attacker(&path);
    db.execute("DELETE FROM audit WHERE seq IN (3, 4)", [])
        .unwrap();
    db.execute("DELETE FROM audit WHERE seq = 8", []).unwrap();
    assert_eq!(
        problems(&store).await,
        vec![
            ChainProblem::Removed {
                from_seq: 3,
                to_seq: 4
            },
            ChainProblem::Removed {
                from_seq: 8,
                to_seq: 8
            }
        ]
    );
}

#[tokio::test]
async fn an_inserted_row_is_named() {
    let (_dir, path, store) = log_with(4, Utc::now()).await;
    let rows = store.audit().list(&AuditFilter::default()).await.unwrap();
    let db = attacker(&path);
    // Appended behind the log's back, with a perfectly computed hash.
    let other = SqliteStore::open_in_memory().unwrap();
    let mut last = None;
    for row in &rows {
        last = Some(other.audit().append(row.at, &row.event).await.unwrap());
    }
    let extra = other.audit().append(Utc::now(), &event(99)).await.unwrap();
    assert_eq!(last.unwrap().hash, rows[3].hash, "same content, same chain");
    db.execute(
        "INSERT INTO audit (seq, at_ms, kind, actor, counterpart, message_id, function, outcome, reason, prev_hash, hash)
         VALUES (5, ?1, ?8, ?2, ?3, ?4, ?5, 'ok', NULL, ?6, ?7)",
        rusqlite::params![
            extra.at.timestamp_millis(),
            extra.event.actor,
            extra.event.counterpart_her_id,
            extra.event.message_id,
            extra.event.function,
            extra.prev_hash,
            extra.hash,
            extra.event.kind.as_str()
        ],
    )
    .unwrap();
    assert_eq!(
        problems(&store).await,
        vec![ChainProblem::Inserted { seq: 5 }]
    );
}

#[tokio::test]
async fn the_database_itself_refuses_edits_and_young_deletions() {
    let (_dir, path, _store) = log_with(2, Utc::now()).await;
    let db = Connection::open(&path).unwrap();
    let edit = db
        .execute("UPDATE audit SET outcome = 'x' WHERE seq = 1", [])
        .unwrap_err();
    assert!(edit.to_string().contains("append-only"), "{edit}");
    let delete = db
        .execute("DELETE FROM audit WHERE seq = 1", [])
        .unwrap_err();
    assert!(delete.to_string().contains("two years"), "{delete}");
}

#[tokio::test]
async fn pruning_refuses_young_rows_and_keeps_the_chain_verifiable() {
    let now = Utc::now();
    let three_years_ago = now - Duration::days(3 * 365);
    let (_dir, _path, store) = log_with(3, three_years_ago).await;
    for n in 4..=5 {
        store
            .audit()
            .append(now - Duration::days(1), &event(n))
            .await
            .unwrap();
    }
    let audit = store.audit();
    assert!(matches!(
        audit.prune(now, now - Duration::days(10), 730).await,
        Err(Error::RetentionViolation { .. })
    ));
    assert!(matches!(
        audit.prune(now, three_years_ago, 365).await,
        Err(Error::RetentionTooShort {
            days: 365,
            minimum_days: 730
        })
    ));
    assert_eq!(
        audit
            .prune(now, now - Duration::days(731), 730)
            .await
            .unwrap(),
        3
    );
    let report = audit.verify().await.unwrap();
    assert!(report.is_intact(), "{:?}", report.problems);
    assert_eq!(
        (report.start_seq, report.head_seq, report.rows_checked),
        (3, 5, 2)
    );
    // Appending after a prune continues the same chain.
    audit.append(now, &event(6)).await.unwrap();
    assert!(audit.verify().await.unwrap().is_intact());
    assert_eq!(
        audit
            .prune(now, now - Duration::days(731), 730)
            .await
            .unwrap(),
        0
    );
}

#[tokio::test]
async fn the_log_survives_reopening() {
    let (_dir, path, store) = log_with(3, Utc::now()).await;
    drop(store);
    let reopened = SqliteStore::open(&path).unwrap();
    reopened
        .audit()
        .append(Utc::now(), &event(4))
        .await
        .unwrap();
    let report = reopened.audit().verify().await.unwrap();
    assert!(report.is_intact());
    assert_eq!(report.head_seq, 4);
}
