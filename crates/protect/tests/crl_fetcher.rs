//! The CRL fetcher against a real HTTP server on 127.0.0.1: caching in
//! memory and on disk, expiry at nextUpdate, background refresh, and a CRL
//! server that is slow or never answers.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use helsemelding_protect::check::{check_certificate, CheckRequest, Problem};
use helsemelding_protect::revocation::Clock;
use helsemelding_protect::{
    BlockingCrlFetcher, Certificate, Crl, CrlFetcher, CrlSource, FetcherConfig, RevocationPolicy,
    TrustAnchors, Usage,
};
use helsemelding_testkit::pki::{self, LeafOptions, TestPki};

#[derive(Clone, Copy)]
enum Behaviour {
    Answer,
    AnswerAfter(Duration),
    Never,
}

/// A minimal HTTP/1.1 server that answers every request with one body and
/// counts the requests. The body is set after start, because the
/// certificate needs the URL and the CRL needs the certificate.
struct CrlServer {
    url: String,
    requests: Arc<AtomicUsize>,
    body: Arc<Mutex<Vec<u8>>>,
}

impl CrlServer {
    fn start(behaviour: Behaviour) -> CrlServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/ca.crl", listener.local_addr().unwrap());
        let requests = Arc::new(AtomicUsize::new(0));
        let body = Arc::new(Mutex::new(Vec::new()));
        let (counter, shared_body) = (requests.clone(), body.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (counter, body) = (counter.clone(), shared_body.clone());
                std::thread::spawn(move || serve(stream, &counter, &body, behaviour));
            }
        });
        CrlServer {
            url,
            requests,
            body,
        }
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    fn set_body(&self, bytes: Vec<u8>) {
        *self.body.lock().unwrap() = bytes;
    }
}

fn serve(
    mut stream: TcpStream,
    counter: &AtomicUsize,
    body: &Mutex<Vec<u8>>,
    behaviour: Behaviour,
) {
    let mut request = Vec::new();
    let mut buffer = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buffer[..n]),
        }
    }
    counter.fetch_add(1, Ordering::SeqCst);
    match behaviour {
        Behaviour::Answer => {}
        Behaviour::AnswerAfter(delay) => std::thread::sleep(delay),
        Behaviour::Never => {
            // Hold the connection open without a word; bounded so the thread ends.
            std::thread::sleep(Duration::from_secs(20));
            return;
        }
    }
    let body = body.lock().unwrap().clone();
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/pkix-crl\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(&body);
}

/// A CA, a signing certificate whose distribution point is a local CRL
/// server, and on that server a CRL (valid 24 h) revoking the certificate.
struct Setup {
    pki: TestPki,
    certificate: Certificate,
    server: CrlServer,
}

fn setup(behaviour: Behaviour) -> Setup {
    let pki = TestPki::new("Fetcher CA");
    let server = CrlServer::start(behaviour);
    let options = LeafOptions {
        crl_url: Some(server.url.clone()),
        ..LeafOptions::default()
    };
    let revoked = pki.issue_with("revoked", pki::Usage::Signing, &options);
    let crl = pki.crl(&[&revoked.cert], Utc::now() + chrono::Duration::hours(24));
    server.set_body(crl.to_der().unwrap());
    Setup {
        pki,
        certificate: Certificate::from_x509(revoked.cert),
        server,
    }
}

fn config(cache_dir: &Path) -> FetcherConfig {
    FetcherConfig {
        cache_dir: Some(cache_dir.to_path_buf()),
        ..FetcherConfig::default()
    }
}

/// A clock the test moves by hand.
fn manual_clock() -> (Clock, Arc<Mutex<DateTime<Utc>>>) {
    let now = Arc::new(Mutex::new(Utc::now()));
    let reader = now.clone();
    (Arc::new(move || *reader.lock().unwrap()), now)
}

fn judge(setup: &Setup, crls: &[Crl]) -> Vec<Problem> {
    let trust = TrustAnchors::new(vec![Certificate::from_x509(setup.pki.ca.cert.clone())]);
    let request = CheckRequest {
        usage: Usage::Signing,
        at: Utc::now(),
        trust: &trust,
        crls,
        revocation: RevocationPolicy::Require,
    };
    check_certificate(&setup.certificate, &request).errors
}

/// Polls `condition` every 10 ms for at most `limit`.
async fn eventually(limit: Duration, condition: impl Fn() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if condition() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    condition()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetched_crl_revokes_and_is_served_from_memory_then_disk() {
    let setup = setup(Behaviour::Answer);
    let cache = tempfile::tempdir().unwrap();
    let fetcher = CrlFetcher::new(config(cache.path())).unwrap();

    let crls = fetcher.crls_for(&setup.certificate).await;
    assert_eq!(crls.len(), 1);
    assert_eq!(judge(&setup, &crls), vec![Problem::Revoked]);
    assert_eq!(setup.server.requests(), 1);

    let again = fetcher.crls_for(&setup.certificate).await;
    assert_eq!(again.len(), 1);
    assert_eq!(
        setup.server.requests(),
        1,
        "second lookup must not hit the server"
    );

    let files: Vec<_> = std::fs::read_dir(cache.path()).unwrap().collect();
    assert_eq!(files.len(), 1, "one DER file per URL");
    let restarted = CrlFetcher::new(config(cache.path())).unwrap();
    let from_disk = restarted.crls_for(&setup.certificate).await;
    assert_eq!(from_disk.len(), 1);
    assert_eq!(from_disk[0].to_der(), crls[0].to_der());
    assert_eq!(
        setup.server.requests(),
        1,
        "a new fetcher reads the disk cache"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crl_past_next_update_is_fetched_again() {
    let setup = setup(Behaviour::Answer);
    let cache = tempfile::tempdir().unwrap();
    let (clock, now) = manual_clock();
    let fetcher = CrlFetcher::new(FetcherConfig {
        clock,
        ..config(cache.path())
    })
    .unwrap();
    assert_eq!(fetcher.crls_for(&setup.certificate).await.len(), 1);
    assert_eq!(setup.server.requests(), 1);

    *now.lock().unwrap() += chrono::Duration::hours(25);
    assert_eq!(fetcher.crls_for(&setup.certificate).await.len(), 1);
    assert_eq!(setup.server.requests(), 2, "a stale CRL is re-fetched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crl_near_next_update_is_refreshed_in_the_background() {
    let setup = setup(Behaviour::AnswerAfter(Duration::from_millis(300)));
    let cache = tempfile::tempdir().unwrap();
    let (clock, now) = manual_clock();
    let fetcher = CrlFetcher::new(FetcherConfig {
        clock,
        ..config(cache.path())
    })
    .unwrap();
    assert_eq!(fetcher.crls_for(&setup.certificate).await.len(), 1);
    assert_eq!(setup.server.requests(), 1);

    // 23 h into a 24 h CRL: still fresh, but in its last tenth.
    *now.lock().unwrap() += chrono::Duration::hours(23);
    let start = Instant::now();
    assert_eq!(fetcher.crls_for(&setup.certificate).await.len(), 1);
    assert!(
        start.elapsed() < Duration::from_millis(200),
        "a fresh entry is answered from the cache, took {:?}",
        start.elapsed()
    );
    let refreshed = eventually(Duration::from_secs(3), || setup.server.requests() == 2).await;
    assert!(refreshed, "the background refresh reached the server");

    // The server still publishes the same CRL: the next lookups do not ask
    // again until the refresh interval (5 min by default) has passed.
    let settled = eventually(Duration::from_secs(3), || {
        std::fs::read_dir(cache.path()).is_ok_and(|d| d.count() == 1)
    })
    .await;
    assert!(settled);
    tokio::time::sleep(Duration::from_millis(500)).await;
    for _ in 0..3 {
        assert_eq!(fetcher.crls_for(&setup.certificate).await.len(), 1);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(setup.server.requests(), 2);
    *now.lock().unwrap() += chrono::Duration::minutes(6);
    fetcher.crls_for(&setup.certificate).await;
    let again = eventually(Duration::from_secs(3), || setup.server.requests() == 3).await;
    assert!(again, "after the interval a refresh is tried again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_answers_costs_at_most_the_timeout() {
    let setup = setup(Behaviour::Never);
    let cache = tempfile::tempdir().unwrap();
    let fetcher = CrlFetcher::new(config(cache.path())).unwrap();
    for attempt in 0..2 {
        let start = Instant::now();
        let crls = fetcher.crls_for(&setup.certificate).await;
        let elapsed = start.elapsed();
        assert!(crls.is_empty());
        assert!(
            elapsed >= Duration::from_millis(900) && elapsed < Duration::from_millis(1500),
            "attempt {attempt} took {elapsed:?}"
        );
        assert_eq!(judge(&setup, &crls), vec![Problem::RevocationUnknown]);
    }
    // The second lookup joined the fetch under way instead of starting another.
    assert_eq!(setup.server.requests(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_server_warms_the_cache_for_the_next_lookup() {
    let setup = setup(Behaviour::AnswerAfter(Duration::from_millis(1800)));
    let cache = tempfile::tempdir().unwrap();
    let fetcher = CrlFetcher::new(config(cache.path())).unwrap();

    let start = Instant::now();
    let first = fetcher.crls_for(&setup.certificate).await;
    assert!(first.is_empty());
    assert!(
        start.elapsed() < Duration::from_millis(1500),
        "took {:?}",
        start.elapsed()
    );
    assert_eq!(judge(&setup, &first), vec![Problem::RevocationUnknown]);

    // The fetch goes on in the background and lands in the disk cache.
    let dir = cache.path().to_path_buf();
    let landed = eventually(Duration::from_secs(5), || {
        std::fs::read_dir(&dir)
            .map(|d| d.count() == 1)
            .unwrap_or(false)
    })
    .await;
    assert!(landed, "the background fetch completed");

    let start = Instant::now();
    let warm = fetcher.crls_for(&setup.certificate).await;
    assert!(
        start.elapsed() < Duration::from_millis(100),
        "took {:?}",
        start.elapsed()
    );
    assert_eq!(judge(&setup, &warm), vec![Problem::Revoked]);
    assert_eq!(setup.server.requests(), 1);
}

#[test]
fn the_blocking_facade_fetches_and_caches() {
    let setup = setup(Behaviour::Answer);
    let cache = tempfile::tempdir().unwrap();
    let fetcher = BlockingCrlFetcher::new(config(cache.path())).unwrap();
    assert_eq!(
        judge(&setup, &fetcher.crls_for(&setup.certificate)),
        vec![Problem::Revoked]
    );
    assert_eq!(fetcher.crls_for(&setup.certificate).len(), 1);
    assert_eq!(setup.server.requests(), 1);
}

#[test]
fn a_refused_connection_is_unknown_and_quick() {
    // Bind then drop: nothing listens on the port any more.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let pki = TestPki::new("Refused CA");
    let options = LeafOptions {
        crl_url: Some(format!("http://127.0.0.1:{port}/ca.crl")),
        ..LeafOptions::default()
    };
    let certificate =
        Certificate::from_x509(pki.issue_with("x", pki::Usage::Signing, &options).cert);
    let fetcher = BlockingCrlFetcher::new(FetcherConfig::default()).unwrap();
    let start = Instant::now();
    assert!(fetcher.crls_for(&certificate).is_empty());
    assert!(start.elapsed() < Duration::from_millis(1500));
}
