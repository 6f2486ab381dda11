//! Issue 12, finding 3: "rejected" must never mean "deleted". On a queue
//! without a dead-letter path (RabbitMQ's default), a message given up is
//! kept in our store, listed, and can be put back; a message whose sender
//! cannot be read (nobody to report it to) is kept in the store even where
//! the queue dead-letters, audited with its header. Nothing vanishes. The
//! private RabbitMQ of scripts/test.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use helsemelding_messaging::{
    DeadLetters, ErrorHandler, Handler, HandlerError, Listener, ListenerOptions, Received,
    RetryPolicy, SendRequest,
};
use helsemelding_store::audit::AuditFilter;
use helsemelding_transport::{Message, Value};
use helsemelding_transport_amqp::AmqpOptions;
use helsemelding_wire::error_report::ReceivedErrorReport;
use helsemelding_wire::queue::{queue_name, QueueKind};
use std::sync::Arc;

mod common;
use common::{eventually, msghead, Bus, FUNCTION};

/// An application whose database never comes back: every message waits.
#[derive(Default)]
struct NeverNow {
    calls: AtomicUsize,
}

#[async_trait]
impl Handler for NeverNow {
    async fn handle(&self, _: &Received) -> Result<(), HandlerError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Err(HandlerError::Retry {
            reason: "the EHR database is down".into(),
        })
    }
}

#[async_trait]
impl ErrorHandler for NeverNow {
    async fn handle_error(&self, _: &ReceivedErrorReport) -> Result<(), HandlerError> {
        Ok(())
    }
}

fn options(dead_letters: DeadLetters) -> ListenerOptions {
    ListenerOptions {
        workers: 2,
        error_queue: false,
        sync_queue: false,
        poll: Duration::from_millis(100),
        dead_letters,
        ..ListenerOptions::default()
    }
}

fn fast_retries() -> RetryPolicy {
    RetryPolicy {
        delivery_limit: 3,
        backoff_min: Duration::from_millis(20),
        backoff_max: Duration::from_millis(50),
    }
}

async fn count(bus: &Bus, queue: &str) -> u64 {
    let (broker, queue) = (bus.broker.clone(), queue.to_owned());
    tokio::task::spawn_blocking(move || broker.message_count(&queue))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_given_up_on_a_queue_without_dead_letter_path_is_kept_and_can_be_put_back() {
    let bus = Bus::new(AmqpOptions::default());
    let a = bus.party();
    let b = bus.party_with(|config| config.retry = fast_retries());
    let (a_id, b_id) = (a.peer.her_id, b.peer.her_id);
    let queue = queue_name(b_id, QueueKind::Async);
    bus.broker.redeclare_without_dead_letter(&queue);

    let message_id = a
        .messenger
        .send(SendRequest::new(b_id, FUNCTION, msghead(a_id, b_id, 1)))
        .await
        .unwrap();
    let app = Arc::new(NeverNow::default());
    let mut by_queue = BTreeMap::new();
    by_queue.insert(queue.clone(), DeadLetters::Store);
    let listener = Listener::start(
        &b.messenger,
        app.clone(),
        app.clone(),
        ListenerOptions {
            dead_letters_by_queue: by_queue,
            ..options(DeadLetters::Broker)
        },
    )
    .await
    .unwrap();
    let store = b.store.clone();
    let parked = eventually(
        "the message to be kept",
        Duration::from_secs(30),
        async || store.parked().list(10).await.unwrap().into_iter().next(),
    )
    .await;
    assert_eq!(parked.queue, queue);
    assert_eq!(parked.message_id.as_deref(), Some(message_id.as_str()));
    assert!(
        parked.reason.contains("more than the limit of 3"),
        "{}",
        parked.reason
    );
    assert!(parked.body_len > 0);
    assert_eq!(app.calls.load(Ordering::SeqCst), 3);
    // Accepted, not rejected into nothing: the queue and the `_dl` are empty.
    assert_eq!(count(&bus, &queue).await, 0);
    assert_eq!(count(&bus, &format!("{b_id}_dl")).await, 0);
    let audit = b.store.audit().list(&AuditFilter::default()).await.unwrap();
    assert!(
        audit.iter().any(|r| r.event.kind.as_str() == "parked"
            && r.event.message_id.as_deref() == Some(message_id.as_str())),
        "no parked audit event"
    );
    listener.stop().await.unwrap();

    // Put back where it came from, exactly as it came: judged afresh.
    let (summary, body) = b.store.parked().get(parked.id).await.unwrap().unwrap();
    let mut message: Message = serde_json::from_slice(&summary.envelope).unwrap();
    message.body = body;
    b.messenger.put_back(&queue, message).await.unwrap();
    b.store.parked().remove(parked.id).await.unwrap();
    let (broker, back) = (bus.broker.clone(), queue.clone());
    tokio::task::spawn_blocking(move || broker.wait_for_count(&back, 1, Duration::from_secs(20)))
        .await
        .unwrap();
    let elsewhere = Message::new(b"x".to_vec());
    let refused = b
        .messenger
        .put_back(&format!("{a_id}_async"), elsewhere)
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("not one of our queues"),
        "{refused}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_nobody_can_be_told_of_is_kept_with_its_header_even_where_the_queue_dead_letters()
{
    let bus = Bus::new(AmqpOptions::default());
    let b = bus.party();
    let b_id = b.peer.her_id;
    let queue = queue_name(b_id, QueueKind::Async);
    let hostile: [Option<Value>; 5] = [
        Some(Value::String("abc".into())),
        Some(Value::String("-5".into())),
        Some(Value::Long(0)),
        Some(Value::Long(99_999_999_999)),
        None,
    ];
    let mut sender = bus.transport.sender(&queue).await.unwrap();
    for (n, from) in hostile.iter().enumerate() {
        let mut message = Message::new(b"not even CMS".to_vec());
        message.message_id = Some(format!("hostile-{n}"));
        message.subject = Some(FUNCTION.into());
        message.content_type = Some("application/pkcs7-mime; smime-type=enveloped-data".into());
        message
            .application_properties
            .insert("toHerId".into(), Value::Long(i64::from(b_id.get())));
        message.application_properties.insert(
            "applicationTimeStamp".into(),
            Value::String("2026-12-02T10:00:00".into()),
        );
        if let Some(from) = from {
            message
                .application_properties
                .insert("fromHerId".into(), from.clone());
        }
        sender.send(message).await.unwrap();
    }
    let app = Arc::new(NeverNow::default());
    let listener = Listener::start(
        &b.messenger,
        app.clone(),
        app.clone(),
        options(DeadLetters::Broker),
    )
    .await
    .unwrap();
    let store = b.store.clone();
    let parked = eventually("all five to be kept", Duration::from_secs(30), async || {
        let parked = store.parked().list(10).await.unwrap();
        (parked.len() == hostile.len()).then_some(parked)
    })
    .await;
    listener.stop().await.unwrap();
    assert_eq!(app.calls.load(Ordering::SeqCst), 0);
    assert_eq!(count(&bus, &queue).await, 0);
    assert_eq!(count(&bus, &format!("{b_id}_dl")).await, 0);
    for (n, kept) in parked.iter().enumerate() {
        assert!(kept.reason.contains("fromHerId"), "{}", kept.reason);
        assert!(
            kept.reason.contains("message-id hostile-"),
            "{}",
            kept.reason
        );
        assert_eq!(kept.body_len, 12, "message {n}");
    }
    let reasons: Vec<&str> = parked.iter().map(|p| p.reason.as_str()).collect();
    assert!(
        reasons.iter().any(|r| r.contains("fromHerId abc")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("fromHerId 99999999999")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("fromHerId (missing)")),
        "{reasons:?}"
    );
    let audit = b.store.audit().list(&AuditFilter::default()).await.unwrap();
    let kept = audit
        .iter()
        .filter(|r| r.event.kind.as_str() == "parked")
        .count();
    assert_eq!(kept, hostile.len());
}
