//! Issue 13, item 1: nothing owns what owns it. The sync reply consumer a
//! messenger starts on its first sync call is owned by the messenger, and
//! its workers hold only the messenger's shared node: dropping the last
//! clone of a messenger without `close()` stops the consumer and frees
//! everything it held (before, its workers held the messenger itself and
//! kept it alive for ever). Local transport, no broker.

use std::sync::Arc;
use std::time::Duration;

use helsemelding_messaging::{Error, SendRequest};

mod common;
use common::local::LocalPair;
use common::{eventually, msghead, FUNCTION};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_messenger_dropped_without_close_stops_its_reply_consumer_and_frees_its_parts() {
    let LocalPair {
        a,
        b,
        transport,
        parties: _parties,
    } = LocalPair::new("lifetimes test CA");
    let held = Arc::strong_count(&transport);
    assert_eq!(held, 3, "the test's, A's and B's");

    // A sync call starts A's reply consumer; nobody answers.
    let (from, to) = (a.her_id(), b.her_id());
    let request = SendRequest::new(to, FUNCTION, msghead(from, to, 1));
    let outcome = a.send_and_wait(request, Duration::from_millis(300)).await;
    assert!(
        matches!(outcome, Err(Error::SyncTimeout { .. })),
        "{outcome:?}"
    );

    drop(a);
    eventually(
        "A's parts to be freed once A is dropped",
        Duration::from_secs(10),
        async || (Arc::strong_count(&transport) == held - 1).then_some(()),
    )
    .await;
    b.close().await.unwrap();
}
