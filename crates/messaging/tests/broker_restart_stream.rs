//! Issue 7: the private RabbitMQ is restarted while one party streams
//! 1 000 messages to another. Every message reaches the receiving
//! application exactly once: the sender's outbox resends what the outage
//! failed (same message-id), the receiver de-duplicates what came twice.
//!
//! Its own test binary, with one test: it stops the broker that every
//! other test of a binary would share.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use helsemelding_messaging::{Listener, ListenerOptions, SendRequest};
use helsemelding_transport_amqp::AmqpOptions;

mod common;
use common::{eventually, msghead, Bus, Counting, FUNCTION};

const MESSAGES: usize = 1000;
/// Restart the broker once the receiver has this many.
const RESTART_AT: usize = 300;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_of_a_stream_through_a_broker_restart_is_handed_over_once() {
    let started = Instant::now();
    let bus = Bus::new(AmqpOptions {
        // Fail sends fast during the outage so that the outbox pump has to resend.
        send_retry_for: Duration::from_secs(1),
        operation_timeout: Duration::from_secs(5),
        unavailable_after: Duration::from_secs(30),
        backoff_min: Duration::from_millis(100),
        backoff_max: Duration::from_millis(500),
        ..AmqpOptions::default()
    });
    let (a, b) = (bus.party(), bus.party());
    let app = Arc::new(Counting::default());
    let listener = Listener::start(
        &b.messenger,
        app.clone(),
        app.clone(),
        ListenerOptions {
            workers: 4,
            error_queue: true,
            sync_queue: false,
            poll: Duration::from_millis(200),
            ..ListenerOptions::default()
        },
    )
    .await
    .unwrap();
    let pump = a.messenger.spawn_outbox_pump(Duration::from_millis(500));

    let failed_sends = Arc::new(AtomicUsize::new(0));
    let stream = {
        let (messenger, failed) = (a.messenger.clone(), failed_sends.clone());
        let (from, to) = (a.peer.her_id, b.peer.her_id);
        tokio::spawn(async move {
            for n in 0..MESSAGES {
                let request = SendRequest::new(to, FUNCTION, msghead(from, to, n));
                if messenger.send(request).await.is_err() {
                    // Left pending in the outbox: the pump's job now.
                    failed.fetch_add(1, Ordering::SeqCst);
                }
            }
        })
    };

    eventually("the first messages", Duration::from_secs(30), async || {
        (app.distinct() >= RESTART_AT).then_some(())
    })
    .await;
    let broker = bus.broker.clone();
    let outage = Instant::now();
    tokio::task::spawn_blocking(move || broker.restart())
        .await
        .unwrap();
    let outage = outage.elapsed();

    stream.await.unwrap();
    eventually(
        "every message handed over",
        Duration::from_secs(40),
        async || (app.distinct() >= MESSAGES).then_some(()),
    )
    .await;
    eventually("an empty outbox", Duration::from_secs(10), async || {
        (a.store.outbox().pending_count().await.unwrap() == 0).then_some(())
    })
    .await;
    // Late duplicates (resent or redelivered copies) would arrive now.
    tokio::time::sleep(Duration::from_secs(1)).await;
    pump.abort();
    listener.stop().await.unwrap();

    let twice: Vec<_> = app
        .hand_overs()
        .into_iter()
        .filter(|(_, n)| *n > 1)
        .collect();
    assert!(twice.is_empty(), "handed over more than once: {twice:?}");
    let mut by_number = BTreeMap::new();
    for received in app.received() {
        let text = String::from_utf8(received.payload).unwrap();
        let n: usize = text
            .split("Melding ")
            .nth(1)
            .and_then(|rest| rest.split(',').next())
            .and_then(|n| n.parse().ok())
            .expect("the payload names its number");
        assert_eq!((received.from, received.to), (a.peer.her_id, b.peer.her_id));
        *by_number.entry(n).or_insert(0) += 1;
    }
    assert_eq!(by_number.len(), MESSAGES, "every payload arrived");
    assert!(by_number.values().all(|n| *n == 1));
    assert_eq!(*by_number.keys().last().unwrap(), MESSAGES - 1);
    let failed = failed_sends.load(Ordering::SeqCst);
    assert!(
        failed > 0,
        "no send failed during the {outage:?} outage: the outbox resend was not exercised"
    );
    assert!(app.errors().is_empty(), "{:?}", app.errors());
    eprintln!(
        "{MESSAGES} messages, broker down and up in {outage:?}, {failed} sends failed and were \
         resent from the outbox, {:?} in all",
        started.elapsed()
    );
    bus.transport.close().await.unwrap();
}
