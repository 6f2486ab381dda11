//! Issue 12, finding 4: `Listener::stop_within` drains. A hand-over in
//! hand finishes and is settled; one that outlasts the bound is cut short
//! within the bound, and its delivery (with the one the worker had
//! prefetched) stays unsettled: neither lost nor accepted. The private
//! RabbitMQ of scripts/test.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use helsemelding_messaging::{
    ErrorHandler, Handler, HandlerError, Listener, ListenerOptions, Received, SendRequest,
};
use helsemelding_transport_amqp::AmqpOptions;
use helsemelding_wire::error_report::ReceivedErrorReport;
use helsemelding_wire::queue::{queue_name, QueueKind};

mod common;
use common::{eventually, msghead, Bus, Counting, FUNCTION};

/// An application that takes `delay` over each message.
struct Taking {
    delay: Duration,
    entered: AtomicUsize,
    app: Counting,
}

#[async_trait]
impl Handler for Taking {
    async fn handle(&self, message: &Received) -> Result<(), HandlerError> {
        self.entered.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(self.delay).await;
        self.app.handle(message).await
    }
}

#[async_trait]
impl ErrorHandler for Taking {
    async fn handle_error(&self, report: &ReceivedErrorReport) -> Result<(), HandlerError> {
        self.app.handle_error(report).await
    }
}

fn one_worker() -> ListenerOptions {
    ListenerOptions {
        workers: 1,
        error_queue: false,
        sync_queue: false,
        poll: Duration::from_millis(200),
        ..ListenerOptions::default()
    }
}

async fn wait_for_count(bus: &Bus, queue: &str, count: u64) {
    let (broker, queue) = (bus.broker.clone(), queue.to_owned());
    tokio::task::spawn_blocking(move || {
        broker.wait_for_count(&queue, count, Duration::from_secs(20))
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_over_in_hand_finishes_and_one_past_the_bound_goes_back_unsettled() {
    let bus = Bus::new(AmqpOptions::default());
    let (a, b) = (bus.party(), bus.party());
    let (a_id, b_id) = (a.peer.her_id, b.peer.her_id);
    let queue = queue_name(b_id, QueueKind::Async);

    // In hand when the stop comes, done within the bound: handed over and accepted.
    a.messenger
        .send(SendRequest::new(b_id, FUNCTION, msghead(a_id, b_id, 1)))
        .await
        .unwrap();
    let quick = Arc::new(Taking {
        delay: Duration::from_millis(700),
        entered: AtomicUsize::new(0),
        app: Counting::default(),
    });
    let listener = Listener::start(&b.messenger, quick.clone(), quick.clone(), one_worker())
        .await
        .unwrap();
    eventually(
        "the hand-over to start",
        Duration::from_secs(10),
        async || (quick.entered.load(Ordering::SeqCst) == 1).then_some(()),
    )
    .await;
    let cut_short = listener.stop_within(Duration::from_secs(10)).await.unwrap();
    assert_eq!(cut_short, 0);
    assert_eq!(
        quick.app.distinct(),
        1,
        "the hand-over in hand did not finish"
    );
    wait_for_count(&bus, &queue, 0).await;

    // Stuck past the bound: cut short, the delivery stays unsettled.
    for n in 2..4 {
        a.messenger
            .send(SendRequest::new(b_id, FUNCTION, msghead(a_id, b_id, n)))
            .await
            .unwrap();
    }
    let stuck = Arc::new(Taking {
        delay: Duration::from_secs(120),
        entered: AtomicUsize::new(0),
        app: Counting::default(),
    });
    let listener = Listener::start(&b.messenger, stuck.clone(), stuck.clone(), one_worker())
        .await
        .unwrap();
    eventually(
        "the stuck hand-over to start",
        Duration::from_secs(10),
        async || (stuck.entered.load(Ordering::SeqCst) == 1).then_some(()),
    )
    .await;
    let started = Instant::now();
    let cut_short = listener.stop_within(Duration::from_secs(1)).await.unwrap();
    let took = started.elapsed();
    assert_eq!(cut_short, 1);
    assert!(took < Duration::from_secs(3), "the drain took {took:?}");
    assert_eq!(stuck.app.distinct(), 0);
    // Neither accepted nor lost: both still on the queue (the broker gives
    // the unsettled deliveries back when our connection goes).
    bus.transport.close().await.unwrap();
    wait_for_count(&bus, &queue, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_is_cut_short_when_asked() {
    let bus = Bus::new(AmqpOptions::default());
    let (a, b) = (bus.party(), bus.party());
    let (a_id, b_id) = (a.peer.her_id, b.peer.her_id);
    a.messenger
        .send(SendRequest::new(b_id, FUNCTION, msghead(a_id, b_id, 1)))
        .await
        .unwrap();
    let stuck = Arc::new(Taking {
        delay: Duration::from_secs(120),
        entered: AtomicUsize::new(0),
        app: Counting::default(),
    });
    let listener = Listener::start(&b.messenger, stuck.clone(), stuck.clone(), one_worker())
        .await
        .unwrap();
    eventually(
        "the stuck hand-over to start",
        Duration::from_secs(10),
        async || (stuck.entered.load(Ordering::SeqCst) == 1).then_some(()),
    )
    .await;
    // A second stop signal, as it were.
    let (cut, asked) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let _ = cut.send(());
    });
    let started = Instant::now();
    let stopping = listener.stop_unless(async {
        let _ = asked.await;
    });
    let cut_short = tokio::time::timeout(Duration::from_secs(10), stopping)
        .await
        .expect("the drain was not cut short")
        .unwrap();
    assert_eq!(cut_short, 1);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(3), "the drain took {took:?}");
    assert_eq!(stuck.app.distinct(), 0);
    bus.transport.close().await.unwrap();
    wait_for_count(&bus, &queue_name(b_id, QueueKind::Async), 1).await;
}
