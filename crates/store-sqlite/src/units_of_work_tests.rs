//! The units of work: each is one transaction, so a failure of its last
//! part (the audit row, made to fail here by a trigger) leaves no trace of
//! its first.

use chrono::{DateTime, TimeZone, Utc};

use helsemelding_store::audit::{AuditEvent, AuditFilter, AuditKind};
use helsemelding_store::inbox::{DeliveryKey, HandOverRecord, MessageKey};
use helsemelding_store::outbox::{OutboxState, OutgoingMessage};
use helsemelding_store::{Error, Store};

use crate::SqliteStore;

fn at(seconds: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000 + seconds, 0).unwrap()
}

fn message(id: &str) -> OutgoingMessage {
    OutgoingMessage {
        message_id: id.into(),
        from_her_id: 8094866,
        to_her_id: 93252,
        msg_id: None,
        queue: "93252_async".into(),
        function: "DIALOG_INNBYGGER_EKONTAKT".into(),
        envelope: b"{}".to_vec(),
        body: vec![0x30, 0x80, 1, 2, 3],
        created_at: at(0),
        expires_at: None,
        payload_digest: None,
    }
}

fn event(kind: AuditKind, id: &str) -> AuditEvent {
    AuditEvent {
        message_id: Some(id.into()),
        counterpart_her_id: Some(93252),
        ..AuditEvent::new(kind, "herid:8141705@test", "ok")
    }
}

/// From now on every audit row fails to be written.
fn break_the_audit_log(store: &SqliteStore) {
    store
        .database
        .lock()
        .execute_batch(
            "CREATE TEMP TRIGGER no_audit BEFORE INSERT ON audit
             BEGIN SELECT RAISE(ABORT, 'audit refused (test)'); END;",
        )
        .unwrap();
}

async fn audit_rows(store: &SqliteStore) -> usize {
    store
        .audit()
        .list(&AuditFilter::default())
        .await
        .unwrap()
        .len()
}

#[tokio::test]
async fn marking_sent_with_its_audit_row_is_one_unit() {
    let store = SqliteStore::open_in_memory().unwrap();
    store.outbox().enqueue(&message("a")).await.unwrap();
    store.outbox().enqueue(&message("b")).await.unwrap();
    let record = store
        .outbox()
        .mark_sent_audited("a", at(1), &event(AuditKind::Sent, "a"))
        .await
        .unwrap();
    assert_eq!(record.event.message_id.as_deref(), Some("a"));
    assert_eq!(
        store.outbox().state("a").await.unwrap(),
        Some(OutboxState::Sent { at: at(1) })
    );
    assert_eq!(audit_rows(&store).await, 1);

    // An unknown message: no audit row either.
    let unknown = store
        .outbox()
        .mark_sent_audited("nope", at(2), &event(AuditKind::Sent, "nope"))
        .await;
    assert!(matches!(unknown, Err(Error::UnknownMessage { .. })));
    assert_eq!(audit_rows(&store).await, 1);

    // The audit row fails: the entry stays pending, bytes and all.
    break_the_audit_log(&store);
    let failed = store
        .outbox()
        .mark_sent_audited("b", at(3), &event(AuditKind::Sent, "b"))
        .await;
    assert!(
        matches!(&failed, Err(Error::Backend { operation, reason })
            if *operation == "outbox mark sent audited" && reason.contains("audit refused")),
        "{failed:?}"
    );
    assert!(matches!(
        store.outbox().state("b").await.unwrap(),
        Some(OutboxState::Pending { .. })
    ));
    assert_eq!(
        store.outbox().pending(10).await.unwrap(),
        vec![message("b")]
    );
    assert_eq!(audit_rows(&store).await, 1);
    assert!(store.audit().verify().await.unwrap().is_intact());
}

#[tokio::test]
async fn a_hand_over_with_its_audit_row_and_forgotten_count_is_one_unit() {
    let store = SqliteStore::open_in_memory().unwrap();
    let inbox = store.inbox();
    let delivery = DeliveryKey {
        queue: "8141705_async",
        message_id: "m1",
    };
    let key = MessageKey {
        ours: 8141705,
        sender: 91462,
        message_id: "m1",
    };
    let count = || async {
        inbox
            .count_delivery(delivery.queue, delivery.message_id, at(0))
            .await
            .unwrap()
            .redeliveries
    };
    let unknown_since = || async {
        inbox
            .revocation_unknown_since(delivery.queue, delivery.message_id, at(9))
            .await
            .unwrap()
    };
    assert_eq!(count().await, 1);
    assert_eq!(unknown_since().await, at(9));
    let accepted = event(AuditKind::Accepted, "m1");
    let record = |outcome| HandOverRecord {
        key,
        at: at(1),
        outcome,
        answer: None,
        delivery: Some(delivery),
        audit: &accepted,
        arrival: None,
    };

    // The audit row fails: no hand-over, the count and mark are kept.
    break_the_audit_log(&store);
    assert!(matches!(
        inbox.record_hand_over_audited(&record("accepted")).await,
        Err(Error::Backend { .. })
    ));
    assert!(inbox.hand_over(key).await.unwrap().is_none());
    assert_eq!(count().await, 2, "the count was kept");
    // (The mark's first time was kept too.)
    assert_eq!(
        inbox
            .revocation_unknown_since(delivery.queue, delivery.message_id, at(99))
            .await
            .unwrap(),
        at(9)
    );
    assert_eq!(audit_rows(&store).await, 0);

    // The audit log works again: all three parts happen.
    store
        .database
        .lock()
        .execute_batch("DROP TRIGGER no_audit")
        .unwrap();
    assert!(inbox
        .record_hand_over_audited(&record("accepted"))
        .await
        .unwrap());
    assert_eq!(
        inbox.hand_over(key).await.unwrap().unwrap().outcome,
        "accepted"
    );
    assert_eq!(count().await, 1, "the count was forgotten");
    assert_eq!(
        inbox
            .revocation_unknown_since(delivery.queue, delivery.message_id, at(50))
            .await
            .unwrap(),
        at(50),
        "the mark was forgotten"
    );
    assert_eq!(audit_rows(&store).await, 1);
    // A second record is refused as a repeat (its audit row is written).
    assert!(!inbox
        .record_hand_over_audited(&record("again"))
        .await
        .unwrap());
    assert_eq!(
        inbox.hand_over(key).await.unwrap().unwrap().outcome,
        "accepted"
    );
    assert!(store.audit().verify().await.unwrap().is_intact());
}

#[tokio::test]
async fn an_enqueue_with_its_audit_row_is_one_unit() {
    let store = SqliteStore::open_in_memory().unwrap();
    let outbox = store.outbox();
    outbox
        .enqueue_audited(&message("a"), &event(AuditKind::Sent, "a"))
        .await
        .unwrap();
    assert_eq!(outbox.pending(10).await.unwrap(), vec![message("a")]);
    assert_eq!(audit_rows(&store).await, 1);

    // A duplicate id: no second audit row.
    assert!(matches!(
        outbox
            .enqueue_audited(&message("a"), &event(AuditKind::Sent, "a"))
            .await,
        Err(Error::DuplicateMessageId { .. })
    ));
    assert_eq!(audit_rows(&store).await, 1);

    // The audit row fails: nothing is enqueued.
    break_the_audit_log(&store);
    assert!(matches!(
        outbox
            .enqueue_audited(&message("b"), &event(AuditKind::Sent, "b"))
            .await,
        Err(Error::Backend { .. })
    ));
    assert_eq!(outbox.entry("b").await.unwrap(), None);
    assert_eq!(audit_rows(&store).await, 1);
}
