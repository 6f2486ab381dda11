//! Concurrent writers share commits, and every write is committed (seen by
//! another connection to the same file) when it returns; a failing write
//! rolls back alone, never its batch.

use std::sync::Arc;

use chrono::Utc;
use helsemelding_store::audit::{AuditEvent, AuditKind};
use helsemelding_store::outbox::{OutboxState, OutgoingMessage};
use helsemelding_store::{Error, Store};
use helsemelding_store_sqlite::SqliteStore;
use tokio::sync::Barrier;

fn message(id: String) -> OutgoingMessage {
    OutgoingMessage {
        message_id: id,
        from_her_id: 8094866,
        to_her_id: 93252,
        msg_id: None,
        queue: "93252_async".into(),
        function: "DIALOG_INNBYGGER_EKONTAKT".into(),
        envelope: b"{}".to_vec(),
        body: vec![1, 2, 3],
        created_at: Utc::now(),
        expires_at: None,
        payload_digest: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writes_are_committed_when_they_return_and_fail_alone() {
    const WRITERS: usize = 8;
    const EACH: usize = 40;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).unwrap());
    let start = Arc::new(Barrier::new(WRITERS));
    let writers: Vec<_> = (0..WRITERS)
        .map(|t| {
            let (store, start, path) = (store.clone(), start.clone(), path.clone());
            tokio::spawn(async move {
                // Another connection: sees only committed data.
                let observer = SqliteStore::open(&path).unwrap();
                start.wait().await;
                for i in 0..EACH {
                    let id = format!("{t}-{i}");
                    store.outbox().enqueue(&message(id.clone())).await.unwrap();
                    // A duplicate fails in the same batches as the others' writes.
                    let duplicate = store.outbox().enqueue(&message(id.clone())).await;
                    assert!(matches!(duplicate, Err(Error::DuplicateMessageId { .. })));
                    store
                        .audit()
                        .append(
                            Utc::now(),
                            &AuditEvent::new(AuditKind::Sent, format!("writer {t}"), "ok"),
                        )
                        .await
                        .unwrap();
                    assert!(
                        matches!(
                            observer.outbox().state(&id).await.unwrap(),
                            Some(OutboxState::Pending {
                                attempts: 0,
                                last_error: None,
                                ..
                            })
                        ),
                        "{id} not committed when enqueue returned"
                    );
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    drop(store);
    let reopened = SqliteStore::open(&path).unwrap();
    assert_eq!(
        reopened.outbox().pending_count().await.unwrap(),
        (WRITERS * EACH) as u64
    );
    let report = reopened.audit().verify().await.unwrap();
    assert!(report.is_intact(), "{report:?}");
    assert_eq!(
        reopened
            .audit()
            .list(&Default::default())
            .await
            .unwrap()
            .len(),
        WRITERS * EACH
    );
}
