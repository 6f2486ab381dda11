//! Concurrent writers share commits, and every write is committed (seen by
//! another connection to the same file) when it returns; a failing write
//! rolls back alone, never its batch.

use std::sync::{Arc, Barrier};

use chrono::Utc;
use helsemelding_store::audit::{AuditEvent, AuditKind};
use helsemelding_store::outbox::{OutboxState, OutgoingMessage};
use helsemelding_store::{Error, Store};

fn message(id: String) -> OutgoingMessage {
    OutgoingMessage {
        message_id: id,
        to_her_id: 93252,
        queue: "93252_async".into(),
        function: "DIALOG_INNBYGGER_EKONTAKT".into(),
        envelope: b"{}".to_vec(),
        body: vec![1, 2, 3],
        created_at: Utc::now(),
        expires_at: None,
    }
}

#[test]
fn concurrent_writes_are_committed_when_they_return_and_fail_alone() {
    const THREADS: usize = 8;
    const EACH: usize = 40;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let store = Store::open(&path).unwrap();
    let start = Arc::new(Barrier::new(THREADS));
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let (store, start, path) = (store.clone(), start.clone(), path.clone());
            std::thread::spawn(move || {
                // Another connection: sees only committed data.
                let observer = Store::open(&path).unwrap();
                start.wait();
                for i in 0..EACH {
                    let id = format!("{t}-{i}");
                    store.outbox().enqueue(&message(id.clone())).unwrap();
                    // A duplicate fails in the same batches as the others' writes.
                    let duplicate = store.outbox().enqueue(&message(id.clone()));
                    assert!(matches!(duplicate, Err(Error::DuplicateMessageId { .. })));
                    store
                        .audit()
                        .append(
                            Utc::now(),
                            &AuditEvent::new(AuditKind::Sent, format!("thread {t}"), "ok"),
                        )
                        .unwrap();
                    assert!(
                        matches!(
                            observer.outbox().state(&id).unwrap(),
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
    for thread in threads {
        thread.join().unwrap();
    }
    drop(store);
    let reopened = Store::open(&path).unwrap();
    assert_eq!(
        reopened.outbox().pending_count().unwrap(),
        (THREADS * EACH) as u64
    );
    let report = reopened.audit().verify().unwrap();
    assert!(report.is_intact(), "{report:?}");
    assert_eq!(
        reopened.audit().list(&Default::default()).unwrap().len(),
        THREADS * EACH
    );
}
