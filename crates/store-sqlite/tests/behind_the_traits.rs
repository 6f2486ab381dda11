//! The SQLite store as messaging holds it: an `Arc<dyn Store>`, with
//! nothing but the public traits of `helsemelding-store` (this crate is
//! outside `store`, so its implementation can use nothing else either). A
//! message's life through the outbox, the inbox and the audit log, each
//! unit of work one call, reads back the same after reopening the file.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use helsemelding_store::audit::{AuditEvent, AuditFilter, AuditKind};
use helsemelding_store::inbox::{Answer, DeliveryKey, HandOverRecord, MessageKey};
use helsemelding_store::messages::{Arrival, Direction, MessageState};
use helsemelding_store::outbox::{OutboxState, OutgoingMessage};
use helsemelding_store::Store;
use helsemelding_store_sqlite::SqliteStore;

fn at(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000 + seconds, 0).unwrap()
}

fn message(id: &str) -> OutgoingMessage {
    OutgoingMessage {
        message_id: id.into(),
        from_her_id: 8094866,
        to_her_id: 93252,
        msg_id: None,
        queue: "93252_async".into(),
        function: "APPREC".into(),
        envelope: b"{}".to_vec(),
        body: vec![0x30, 0x80, 1],
        created_at: at(0),
        expires_at: None,
        payload_digest: None,
    }
}

#[tokio::test]
async fn a_message_s_life_through_the_trait_objects_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).unwrap());

    // Received, handed over with its audit row, answered with an AppRec.
    let key = MessageKey {
        ours: 93252,
        sender: 91462,
        message_id: "in-1",
    };
    let delivery = DeliveryKey {
        queue: "93252_async",
        message_id: "in-1",
    };
    let count = store
        .inbox()
        .count_delivery(delivery.queue, delivery.message_id, at(0))
        .await
        .unwrap();
    assert_eq!(count.attempt(0), 2);
    let accepted = AuditEvent::new(AuditKind::Accepted, "93252@test", "ok");
    let record = HandOverRecord {
        key,
        at: at(1),
        outcome: "accepted",
        answer: None,
        delivery: Some(delivery),
        audit: &accepted,
        arrival: Some(Arrival {
            msg_id: Some("msg-in-1"),
            function: "DIALOG_INNBYGGER_EKONTAKT",
        }),
    };
    assert!(store
        .inbox()
        .record_hand_over_audited(&record)
        .await
        .unwrap());
    let apprec = Answer {
        function: "APPREC".into(),
        payload: b"<AppRec/>".to_vec(),
    };
    let other = MessageKey {
        message_id: "in-2",
        ..key
    };
    let arrival = Arrival {
        msg_id: Some("msg-in-2"),
        function: "DIALOG_INNBYGGER_EKONTAKT",
    };
    store
        .outbox()
        .enqueue_answer(&message("out-1"), other, arrival, &apprec)
        .await
        .unwrap();

    // Sent, with its audit row, from another task holding the same store.
    let sender = Arc::clone(&store);
    tokio::spawn(async move {
        let sent = AuditEvent::new(AuditKind::Sent, "93252@test", "ok");
        sender
            .outbox()
            .mark_sent_audited("out-1", at(2), &sent)
            .await
            .unwrap();
    })
    .await
    .unwrap();
    drop(store);

    let reopened: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).unwrap());
    assert_eq!(
        reopened.outbox().state("out-1").await.unwrap(),
        Some(OutboxState::Sent { at: at(2) })
    );
    let answered = reopened.inbox().hand_over(other).await.unwrap().unwrap();
    assert_eq!(answered.answer, Some(apprec));
    assert_eq!(
        reopened
            .inbox()
            .hand_over(key)
            .await
            .unwrap()
            .unwrap()
            .outcome,
        "accepted"
    );
    let count = reopened
        .inbox()
        .count_delivery(delivery.queue, delivery.message_id, at(3))
        .await
        .unwrap();
    assert_eq!(count.attempt(0), 2, "the hand-over forgot the count");
    let kinds: Vec<_> = reopened
        .audit()
        .list(&AuditFilter::default())
        .await
        .unwrap()
        .into_iter()
        .map(|record| record.event.kind)
        .collect();
    assert_eq!(kinds, [AuditKind::Accepted, AuditKind::Sent]);
    assert!(reopened.audit().verify().await.unwrap().is_intact());

    // The states changed inside those units of work.
    let state_of = |id: &'static str, direction| {
        let store = Arc::clone(&reopened);
        async move {
            let record = store.messages().find(id, Some(direction), None).await;
            record.unwrap().unwrap().state
        }
    };
    assert_eq!(
        state_of("msg-in-1", Direction::In).await,
        MessageState::Available
    );
    // Answered as it was handed over: still the EHR's to take.
    assert_eq!(
        state_of("msg-in-2", Direction::In).await,
        MessageState::Available
    );
    assert_eq!(state_of("out-1", Direction::Out).await, MessageState::Sent);
}
