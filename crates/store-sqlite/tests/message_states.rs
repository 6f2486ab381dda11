//! Message states as the EHR sees them, driven only through the public
//! traits: each outbox, inbox and receipt change moves the message's
//! record in its own unit of work, the history is append-only and the
//! events feed is ordered and pageable.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use helsemelding_store::audit::{AuditEvent, AuditKind};
use helsemelding_store::inbox::{HandOverRecord, MessageKey};
use helsemelding_store::messages::{Arrival, Direction, MessageFilter, MessageState};
use helsemelding_store::outbox::OutgoingMessage;
use helsemelding_store::receipts::{ExpectedReceipt, ReceivedReceipt};
use helsemelding_store::Store;
use helsemelding_store_sqlite::SqliteStore;

fn at(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000 + seconds, 0).unwrap()
}

fn message(id: &str, msg_id: &str) -> OutgoingMessage {
    OutgoingMessage {
        message_id: id.into(),
        from_her_id: 8094866,
        to_her_id: 93252,
        msg_id: Some(msg_id.into()),
        queue: "93252_async".into(),
        function: "DIALOG_INNBYGGER_EKONTAKT".into(),
        envelope: b"{}".to_vec(),
        body: vec![0x30, 0x80, 1],
        created_at: at(0),
        expires_at: None,
        payload_digest: None,
    }
}

fn store() -> Arc<dyn Store> {
    Arc::new(SqliteStore::open_in_memory().unwrap())
}

async fn states_of(store: &Arc<dyn Store>, id: &str, direction: Direction) -> Vec<MessageState> {
    let record = store
        .messages()
        .find(id, Some(direction), None)
        .await
        .unwrap()
        .expect("a record");
    let history = store.messages().history(record.id).await.unwrap();
    history.into_iter().map(|event| event.state).collect()
}

#[tokio::test]
async fn an_outgoing_message_goes_from_accepted_to_its_apprec() {
    let store = store();
    let outbox = store.outbox();
    outbox.enqueue(&message("m-1", "msg-1")).await.unwrap();
    let attempts = outbox
        .record_attempt_failed("m-1", "queue not found", Box::new(|_| at(5)))
        .await
        .unwrap();
    assert_eq!(attempts, 1);
    let record = store.messages().find("msg-1", None, None).await.unwrap();
    let record = record.unwrap();
    assert_eq!(record.state, MessageState::RetryWait);
    assert_eq!(record.attempts, 1);
    assert_eq!(record.last_error.as_deref(), Some("queue not found"));
    assert_eq!(record.public_id(), "msg-1");

    outbox.mark_sent("m-1", at(6)).await.unwrap();
    // Marking it again is harmless and adds nothing to its history.
    outbox.mark_sent("m-1", at(7)).await.unwrap();
    let receipts = store.receipts();
    receipts
        .expect(&ExpectedReceipt {
            message_id: "msg-1".into(),
            to_her_id: 93252,
            function: "DIALOG_INNBYGGER_EKONTAKT".into(),
            sent_at: at(6),
            due_at: at(60),
        })
        .await
        .unwrap();
    assert!(store.messages().mark_overdue("msg-1", 93252).await.unwrap());
    assert!(!store.messages().mark_overdue("msg-1", 93252).await.unwrap());
    let flagged = store.messages().find("m-1", None, None).await.unwrap();
    assert!(flagged.unwrap().overdue, "found by its message-id too");
    let apprec = ReceivedReceipt {
        at: at(70),
        status: "2".into(),
        receipt_message_id: "apprec-1".into(),
    };
    receipts.record("msg-1", 93252, &apprec).await.unwrap();

    assert_eq!(
        states_of(&store, "msg-1", Direction::Out).await,
        [
            MessageState::Accepted,
            MessageState::RetryWait,
            MessageState::Sent,
            MessageState::AppRecRejected
        ]
    );
    let record = store.messages().find("msg-1", None, None).await.unwrap();
    let record = record.unwrap();
    assert_eq!(record.apprec_status.as_deref(), Some("2"));
    assert!(!record.overdue, "the AppRec came");
}

#[tokio::test]
async fn failed_expired_retried_and_cancelled_are_states_too() {
    let store = store();
    let outbox = store.outbox();
    for (id, msg_id) in [("m-1", "a"), ("m-2", "b")] {
        outbox.enqueue(&message(id, msg_id)).await.unwrap();
    }
    outbox.mark_failed("m-1", at(1), "refused").await.unwrap();
    outbox.retry("m-1", at(2)).await.unwrap();
    outbox.remove("m-1").await.unwrap();
    outbox.mark_expired("m-2", at(3)).await.unwrap();
    assert_eq!(
        states_of(&store, "a", Direction::Out).await,
        [
            MessageState::Accepted,
            MessageState::Failed,
            MessageState::Accepted,
            MessageState::Cancelled
        ]
    );
    assert_eq!(
        states_of(&store, "b", Direction::Out).await,
        [MessageState::Accepted, MessageState::Expired]
    );
    let expired = store.messages().find("b", None, None).await.unwrap();
    assert_eq!(
        expired.unwrap().last_error.as_deref(),
        Some("expired in the outbox")
    );

    // A unit of work that fails changes no state: the same id again.
    assert!(outbox.enqueue(&message("m-2", "b")).await.is_err());
    assert_eq!(states_of(&store, "b", Direction::Out).await.len(), 2);
}

async fn hand_over(store: &Arc<dyn Store>, message_id: &str, msg_id: &str, at: DateTime<Utc>) {
    let audit = AuditEvent::new(AuditKind::Accepted, "8094866@test", "ok");
    let record = HandOverRecord {
        key: MessageKey {
            ours: 8094866,
            sender: 93252,
            message_id,
        },
        at,
        outcome: "accepted",
        answer: None,
        delivery: None,
        audit: &audit,
        arrival: Some(Arrival {
            msg_id: Some(msg_id),
            function: "DIALOG_INNBYGGER_EKONTAKT",
        }),
    };
    assert!(store
        .inbox()
        .record_hand_over_audited(&record)
        .await
        .unwrap());
}

#[tokio::test]
async fn incoming_messages_are_leased_once_until_the_lease_runs_out() {
    let store = store();
    for (i, id) in ["in-1", "in-2", "in-3"].into_iter().enumerate() {
        hand_over(&store, id, &format!("msg-{id}"), at(i as i64)).await;
    }
    let messages = store.messages();
    let until = at(10) + Duration::minutes(5);
    let first = messages.lease(None, 2, at(10), until).await.unwrap();
    let ids: Vec<_> = first.iter().map(|r| r.public_id().to_owned()).collect();
    assert_eq!(ids, ["msg-in-1", "msg-in-2"]);
    assert!(first.iter().all(|r| r.state == MessageState::Leased));
    assert_eq!(first[0].leased_until, Some(until));
    // Only the third is free; then none, until the leases run out.
    let second = messages.lease(None, 5, at(11), until).await.unwrap();
    assert_eq!(second.len(), 1);
    assert!(messages
        .lease(None, 5, at(12), until)
        .await
        .unwrap()
        .is_empty());
    assert!(messages
        .lease(Some(1234), 5, until + Duration::seconds(1), until)
        .await
        .unwrap()
        .is_empty());

    let delivered = messages
        .set_state(first[0].id, MessageState::Delivered, at(20), None)
        .await
        .unwrap();
    assert_eq!(delivered.leased_until, None);
    messages
        .set_state(
            first[1].id,
            MessageState::Available,
            at(20),
            Some("released"),
        )
        .await
        .unwrap();
    let later = until + Duration::seconds(1);
    let again = messages
        .lease(Some(8094866), 5, later, later + Duration::minutes(5))
        .await
        .unwrap();
    let ids: Vec<_> = again.iter().map(|r| r.public_id().to_owned()).collect();
    assert_eq!(ids, ["msg-in-2", "msg-in-3"], "released and run out");
    assert_eq!(
        states_of(&store, "msg-in-1", Direction::In).await,
        [
            MessageState::Available,
            MessageState::Leased,
            MessageState::Delivered
        ]
    );
}

#[tokio::test]
async fn the_events_feed_is_ordered_and_pages_by_sequence_number() {
    let store = store();
    let outbox = store.outbox();
    for i in 0..5 {
        let id = format!("m-{i}");
        outbox
            .enqueue(&message(&id, &format!("msg-{i}")))
            .await
            .unwrap();
        outbox.mark_sent(&id, at(i)).await.unwrap();
    }
    store
        .messages()
        .record_rejected(
            MessageKey {
                ours: 8094866,
                sender: 93252,
                message_id: "bad-1",
            },
            Arrival {
                msg_id: None,
                function: "DIALOG_INNBYGGER_EKONTAKT",
            },
            at(9),
            "abuse:spoofing-attack: signer is not the sender",
        )
        .await
        .unwrap();

    let mut seen = Vec::new();
    let mut after = 0;
    loop {
        let page = store.messages().events_after(after, 4).await.unwrap();
        let Some(last) = page.last() else { break };
        after = last.seq;
        seen.extend(page);
    }
    assert_eq!(seen.len(), 11);
    assert!(seen.windows(2).all(|pair| pair[0].seq < pair[1].seq));
    let last = seen.last().unwrap();
    assert_eq!(
        (last.state, last.direction, last.id.as_str()),
        (MessageState::Rejected, Direction::In, "bad-1")
    );
    assert!(last.detail.as_deref().unwrap().contains("spoofing"));

    // The list pages by record number and filters.
    let filter = MessageFilter {
        direction: Some(Direction::Out),
        state: Some(MessageState::Sent),
        ..MessageFilter::default()
    };
    let page = store.messages().list(&filter, 3).await.unwrap();
    assert_eq!(page.len(), 3);
    let rest = MessageFilter {
        after: Some(page[2].id),
        ..filter.clone()
    };
    let page = store.messages().list(&rest, 3).await.unwrap();
    assert_eq!(page.len(), 2);
    let incoming = MessageFilter {
        direction: Some(Direction::In),
        ..MessageFilter::default()
    };
    assert_eq!(store.messages().list(&incoming, 10).await.unwrap().len(), 1);
}
