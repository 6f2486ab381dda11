//! Issue "nothing lost, nothing blocked", finding 9: eight 60 MB messages
//! in flight took 1.9 GB. `ListenerOptions::max_bytes_in_flight` bounds
//! the payload bytes one listener's workers process at once: with a budget
//! of about one message, large messages are handled one after the other
//! (each exactly once); with a large budget the same workers handle them
//! side by side, so it is the budget that holds them back. A stop does not
//! wait for the budget: only the hand-over in hand is cut short. Local
//! transport.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use helsemelding_messaging::{
    ErrorHandler, Handler, HandlerError, Listener, ListenerOptions, Received, SendRequest,
};
use helsemelding_wire::error_report::ReceivedErrorReport;
use helsemelding_wire::HerId;

mod common;
use common::local::LocalPair;
use common::{eventually, FUNCTION};

const MIB: usize = 1024 * 1024;
const MESSAGES: usize = 6;
const PAYLOAD: usize = 2 * MIB;

/// An application that takes `delay` over each message and keeps the
/// most payload bytes it was ever handling at once.
struct Gauge {
    delay: Duration,
    entered: AtomicUsize,
    handling: AtomicUsize,
    peak: AtomicUsize,
    hand_overs: Mutex<HashMap<String, u32>>,
}

impl Gauge {
    fn taking(delay: Duration) -> Arc<Gauge> {
        Arc::new(Gauge {
            delay,
            entered: AtomicUsize::new(0),
            handling: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            hand_overs: Mutex::default(),
        })
    }

    fn distinct(&self) -> usize {
        self.hand_overs.lock().unwrap().len()
    }
}

#[async_trait]
impl Handler for Gauge {
    async fn handle(&self, message: &Received) -> Result<(), HandlerError> {
        self.entered.fetch_add(1, Ordering::SeqCst);
        let size = message.payload.len();
        let now = self.handling.fetch_add(size, Ordering::SeqCst) + size;
        self.peak.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(self.delay).await;
        self.handling.fetch_sub(size, Ordering::SeqCst);
        *self
            .hand_overs
            .lock()
            .unwrap()
            .entry(message.message_id.clone())
            .or_default() += 1;
        Ok(())
    }
}

#[async_trait]
impl ErrorHandler for Gauge {
    async fn handle_error(&self, _: &ReceivedErrorReport) -> Result<(), HandlerError> {
        Ok(())
    }
}

/// Two parties on one local transport: A sends, B listens.
struct Pair(LocalPair);

impl std::ops::Deref for Pair {
    type Target = LocalPair;
    fn deref(&self) -> &LocalPair {
        &self.0
    }
}

impl Pair {
    fn new() -> Pair {
        Pair(LocalPair::new("bytes in flight test CA"))
    }

    /// Puts `count` large messages from A on B's queue.
    async fn send_large(&self, count: usize) {
        let (from, to) = (self.a.her_id(), self.b.her_id());
        for _ in 0..count {
            self.a
                .send(SendRequest::new(to, FUNCTION, large_msghead(from, to)))
                .await
                .unwrap();
        }
    }

    /// B's async queue, four workers, into `app`.
    async fn listen(&self, app: &Arc<Gauge>, max_bytes_in_flight: usize) -> Listener {
        let options = ListenerOptions {
            workers: 4,
            error_queue: false,
            sync_queue: false,
            poll: Duration::from_millis(100),
            max_bytes_in_flight,
            ..ListenerOptions::default()
        };
        Listener::start(&self.b, app.clone(), app.clone(), options)
            .await
            .unwrap()
    }

    /// Sends `MESSAGES` large messages, then lets B take them within
    /// `max_bytes_in_flight`; returns the application once all are handed
    /// over.
    async fn exchange(&self, max_bytes_in_flight: usize) -> Arc<Gauge> {
        self.send_large(MESSAGES).await;
        // Long beside the checks, so that unbounded workers overlap here.
        let gauge = Gauge::taking(Duration::from_millis(400));
        let listener = self.listen(&gauge, max_bytes_in_flight).await;
        eventually("every hand-over", Duration::from_secs(60), async || {
            (gauge.distinct() == MESSAGES).then_some(())
        })
        .await;
        listener.stop().await.unwrap();
        gauge
    }

    async fn close(self) {
        self.0.close().await;
    }
}

/// A MsgHead from `from` to `to` whose note makes it `PAYLOAD` bytes and more.
fn large_msghead(from: HerId, to: HerId) -> Vec<u8> {
    helsemelding_testkit::payload::msghead(from, to)
        .function(FUNCTION)
        .note("x".repeat(PAYLOAD))
        .into_bytes()
}

fn assert_each_handed_over_once(gauge: &Gauge) {
    let hand_overs = gauge.hand_overs.lock().unwrap();
    assert_eq!(hand_overs.len(), MESSAGES);
    assert!(
        hand_overs.values().all(|n| *n == 1),
        "handed over more than once: {hand_overs:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn large_messages_wait_for_the_budget_instead_of_adding_up() {
    let pair = Pair::new();
    // One protected message (payload, signature, certificates) fits; two do not.
    let budget = PAYLOAD + MIB / 2;
    let gauge = pair.exchange(budget).await;
    let peak = gauge.peak.load(Ordering::SeqCst);
    assert!(
        peak <= budget,
        "{peak} payload bytes handled at once, over the budget of {budget}"
    );
    assert!(peak >= PAYLOAD);
    assert_each_handed_over_once(&gauge);
    pair.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_a_large_budget_the_same_workers_handle_them_side_by_side() {
    let pair = Pair::new();
    let gauge = pair.exchange(256 * MIB).await;
    let peak = gauge.peak.load(Ordering::SeqCst);
    assert!(
        peak >= 2 * PAYLOAD,
        "only {peak} payload bytes at once: the workers never overlapped"
    );
    assert_each_handed_over_once(&gauge);
    pair.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stop_does_not_wait_for_the_budget() {
    let pair = Pair::new();
    pair.send_large(3).await;
    let stuck = Gauge::taking(Duration::from_secs(120));
    let listener = pair.listen(&stuck, PAYLOAD + MIB / 2).await;
    eventually("the first hand-over", Duration::from_secs(20), async || {
        (stuck.entered.load(Ordering::SeqCst) == 1).then_some(())
    })
    .await;
    // Time for two other workers to take the other two and wait for their share.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    let cut_short = listener.stop_within(Duration::from_secs(2)).await.unwrap();
    let took = started.elapsed();
    assert_eq!(cut_short, 1, "only the hand-over in hand is cut short");
    assert!(took < Duration::from_secs(4), "the drain took {took:?}");
    assert_eq!(stuck.entered.load(Ordering::SeqCst), 1);
    // None lost: the local transport gives back what the aborted worker held.
    let quick = Gauge::taking(Duration::ZERO);
    let listener = pair.listen(&quick, 256 * MIB).await;
    eventually("all three again", Duration::from_secs(20), async || {
        (quick.distinct() == 3).then_some(())
    })
    .await;
    listener.stop().await.unwrap();
    let hand_overs = quick.hand_overs.lock().unwrap().clone();
    assert!(hand_overs.values().all(|n| *n == 1), "{hand_overs:?}");
    pair.close().await;
}
