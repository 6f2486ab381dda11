//! The HTTP clients and the cache against a real local server on
//! 127.0.0.1 that serves the NHN fixtures, fails (500) or hangs on demand.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use base64::Engine;
use helsemelding_registry::{
    BearerToken, CachingRegistry, Error, HttpRegistry, HttpRegistryConfig, Registry,
};
use helsemelding_testkit::fixtures::read_nhn;

const SERVE: u8 = 0;
const FAIL: u8 = 1;
const HANG: u8 = 2;
const TOKEN: &str = "test-token";

#[derive(Default)]
struct Server {
    mode: AtomicU8,
    requests: AtomicU32,
    /// 93238 has rotated: its certificate answer is 93252's pair.
    rotated: AtomicBool,
}

async fn handle(State(server): State<Arc<Server>>, headers: HeaderMap, uri: Uri) -> Response {
    server.requests.fetch_add(1, Ordering::SeqCst);
    match server.mode.load(Ordering::SeqCst) {
        FAIL => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        HANG => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            return StatusCode::GATEWAY_TIMEOUT.into_response();
        }
        _ => {}
    }
    let authorized = headers.get("authorization").and_then(|v| v.to_str().ok())
        == Some(&format!("Bearer {TOKEN}"));
    if !authorized {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let segments: Vec<&str> = uri.path().trim_matches('/').split('/').collect();
    let file = match segments.as_slice() {
        ["api", "v1", "communicationparty", her] => format!("CommunicationDetailsRest_{her}.json"),
        ["api", "v1", "certificate", "93238"] if server.rotated.load(Ordering::SeqCst) => {
            return certificates("93252")
        }
        ["api", "v1", "certificate", her] => return certificates(her),
        ["v2", "Profiles", her] => format!("CPP_{her}.xml"),
        ["v2", "Agreements", "HerIds", _ours, theirs] => format!("CPA_{theirs}.xml"),
        ["v2", "Agreements", id] => format!("CPA_{id}.xml"),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    let path = helsemelding_testkit::fixtures::nhn(&format!("registry/{file}"));
    match std::fs::read(path) {
        Ok(bytes) => bytes.into_response(),
        Err(_) => StatusCode::NOT_FOUND.into_response(),
    }
}

/// The REST certificate answer built from the SOAP look-up fixtures.
fn certificates(her_id: &str) -> Response {
    let value = |kind: &str| {
        let xml = String::from_utf8(read_nhn(&format!(
            "registry/GetCertificateDetailsFor{kind}_{her_id}.xml"
        )))
        .ok()?;
        let start = xml.find("<Certificate>")? + "<Certificate>".len();
        let end = xml.find("</Certificate>")?;
        let der = base64::engine::general_purpose::STANDARD
            .decode(&xml[start..end])
            .ok()?;
        Some(base64::engine::general_purpose::STANDARD.encode(der))
    };
    let path = helsemelding_testkit::fixtures::nhn(&format!(
        "registry/GetCertificateDetailsForEncryption_{her_id}.xml"
    ));
    if !path.exists() {
        return StatusCode::NOT_FOUND.into_response();
    }
    let body = serde_json::json!([
        {"certificateValue": value("Encryption"), "usage": "encryption"},
        {"certificateValue": value("ValidatingSignature"), "usage": "signing"},
    ]);
    ([("content-type", "application/json")], body.to_string()).into_response()
}

async fn start() -> (Arc<Server>, SocketAddr) {
    let server = Arc::new(Server::default());
    let app = Router::new().fallback(handle).with_state(server.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (server, address)
}

fn client(address: SocketAddr, token: &str, timeout: Duration) -> HttpRegistry {
    let base = format!("http://{address}");
    HttpRegistry::new(
        HttpRegistryConfig {
            address_registry_url: base.clone(),
            cppa_url: base,
            timeout,
        },
        Arc::new(BearerToken::new(token)),
    )
    .unwrap()
}

#[tokio::test]
async fn fetches_every_kind_of_answer() {
    let (_server, address) = start().await;
    let registry = client(address, TOKEN, Duration::from_secs(5));

    let party = registry.communication_party(8141705).await.unwrap();
    assert_eq!(party.name, "Allmennlege");
    assert_eq!(
        party.queues.names().async_queue.as_deref(),
        Some("8141703_async")
    );
    assert!(matches!(
        registry.communication_party(1).await,
        Err(Error::NotFound { .. })
    ));

    let certificates = registry.certificates(93238).await.unwrap();
    assert_eq!(
        certificates.current_signing().unwrap().serial_hex(),
        "10a3f7e99720077e30aa"
    );
    assert_eq!(
        certificates.current_encryption().unwrap().serial_hex(),
        "10a2dc098eeb4fc80678"
    );
    assert!(matches!(
        registry.certificates(1).await,
        Err(Error::NotFound { .. })
    ));

    let cpp = registry.cpp(93238).await.unwrap().unwrap();
    assert_eq!(cpp.parties[0].her_id, 93238);
    // NHN's "no profile" answer is an i:nil document.
    assert!(registry.cpp(94867).await.unwrap().is_none());
    assert!(registry.cpp(1).await.unwrap().is_none());

    let cpa = registry.cpa_for(93238, 93253).await.unwrap().unwrap();
    assert_eq!(
        cpa.id.as_deref(),
        Some("9333f3de-e85c-4c26-9066-6800055b1b8e")
    );
    let cpa = registry
        .cpa_by_id("49391409-e528-4919-b4a3-9ccdab72c8c1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cpa.parties[1].her_id, 93252);
    assert!(matches!(
        registry.cpa_by_id("a/../b").await,
        Err(Error::Invalid { .. })
    ));

    let wrong = client(address, "wrong", Duration::from_secs(5));
    assert!(matches!(
        wrong.communication_party(8141705).await,
        Err(Error::Auth { .. })
    ));
}

#[tokio::test]
async fn cache_answers_within_ttl_without_asking() {
    let (server, address) = start().await;
    let cache = CachingRegistry::with_ttl(
        client(address, TOKEN, Duration::from_secs(5)),
        Duration::from_secs(60),
    );
    for _ in 0..3 {
        assert_eq!(
            cache.communication_party(8141791).await.unwrap().name,
            "Jonny Karl Rønhovde"
        );
    }
    assert_eq!(server.requests.load(Ordering::SeqCst), 1);
    cache.invalidate(8141791);
    cache.communication_party(8141791).await.unwrap();
    assert_eq!(server.requests.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn stale_answer_is_served_when_the_service_fails() {
    let (server, address) = start().await;
    let cache = CachingRegistry::with_ttl(
        client(address, TOKEN, Duration::from_secs(5)),
        Duration::ZERO,
    );
    cache.communication_party(8141705).await.unwrap();
    cache.cpp(93238).await.unwrap().unwrap();
    server.mode.store(FAIL, Ordering::SeqCst);
    let before = server.requests.load(Ordering::SeqCst);
    // Expired (TTL zero): the service is asked, fails, and the last good answer is served.
    assert_eq!(
        cache.communication_party(8141705).await.unwrap().her_id,
        8141705
    );
    assert_eq!(
        cache.cpp(93238).await.unwrap().unwrap().parties[0].her_id,
        93238
    );
    assert_eq!(server.requests.load(Ordering::SeqCst), before + 2);
    // Nothing cached: the failure is reported.
    assert!(matches!(
        cache.communication_party(8141791).await,
        Err(Error::Http { .. })
    ));
    // The service is back: fresh answers again.
    server.mode.store(SERVE, Ordering::SeqCst);
    assert_eq!(
        cache.communication_party(8141791).await.unwrap().her_id,
        8141791
    );
}

#[tokio::test]
async fn hanging_service_times_out_and_stale_is_served() {
    let (server, address) = start().await;
    let timeout = Duration::from_millis(300);
    let cache = CachingRegistry::with_ttl(client(address, TOKEN, timeout), Duration::ZERO);
    cache.certificates(93252).await.unwrap();
    let cpa = cache.cpa_for(93238, 93252).await.unwrap().unwrap();
    server.mode.store(HANG, Ordering::SeqCst);

    let started = Instant::now();
    let certificates = cache.certificates(93252).await.unwrap();
    assert_eq!(
        certificates.current_signing().unwrap().serial_hex(),
        "1d5be79f34c56e4e944e"
    );
    let waited = started.elapsed();
    assert!(
        waited >= timeout && waited < Duration::from_secs(3),
        "waited {waited:?}"
    );

    let started = Instant::now();
    assert!(matches!(
        cache.communication_party(8141705).await,
        Err(Error::Timeout { .. })
    ));
    assert!(started.elapsed() < Duration::from_secs(3));

    // The CPA named in a received message is served by id without asking.
    let id = cpa.id.clone().unwrap();
    let before = server.requests.load(Ordering::SeqCst);
    let by_id = tokio::time::timeout(Duration::from_secs(2), cache.cpa_by_id(&id))
        .await
        .unwrap();
    assert_eq!(by_id.unwrap().unwrap().id.as_deref(), Some(id.as_str()));
    assert_eq!(server.requests.load(Ordering::SeqCst), before);
}

#[tokio::test]
async fn refresh_party_fetches_past_the_cache_once() {
    use helsemelding_registry::cache::DEFAULT_TTL;
    assert_eq!(
        DEFAULT_TTL,
        Duration::from_secs(3600),
        "the reference's 1 hour"
    );
    let (server, address) = start().await;
    let cache = CachingRegistry::new(client(address, TOKEN, Duration::from_secs(5)));
    let signing =
        |c: &helsemelding_registry::PartyCertificates| c.current_signing().unwrap().serial_hex();
    assert_eq!(
        signing(&cache.certificates(93238).await.unwrap()),
        "10a3f7e99720077e30aa"
    );
    cache.cpa_for(93238, 93252).await.unwrap().unwrap();
    cache
        .cpa_by_id("49391409-e528-4919-b4a3-9ccdab72c8c1")
        .await
        .unwrap();
    // The party rotates; within the TTL the cache still has the old pair.
    server.rotated.store(true, Ordering::SeqCst);
    let before = server.requests.load(Ordering::SeqCst);
    assert_eq!(
        signing(&cache.certificates(93238).await.unwrap()),
        "10a3f7e99720077e30aa"
    );
    assert_eq!(server.requests.load(Ordering::SeqCst), before);

    // Past the cache: record, certificates and CPP asked once each. The
    // address record of 93238 does not exist: a definite answer, not a
    // failure of the refresh.
    cache.refresh_party(93238).await.unwrap();
    assert_eq!(server.requests.load(Ordering::SeqCst), before + 3);
    assert_eq!(
        signing(&cache.certificates(93238).await.unwrap()),
        "1d5be79f34c56e4e944e"
    );
    cache.cpp(93238).await.unwrap().unwrap();
    assert_eq!(server.requests.load(Ordering::SeqCst), before + 3, "kept");
    // The pair's CPA is asked again; the CPA by id is not.
    cache.cpa_for(93238, 93252).await.unwrap().unwrap();
    assert_eq!(server.requests.load(Ordering::SeqCst), before + 4);
    cache
        .cpa_by_id("49391409-e528-4919-b4a3-9ccdab72c8c1")
        .await
        .unwrap();
    assert_eq!(server.requests.load(Ordering::SeqCst), before + 4);

    // The service fails: the refresh says so and the last good answers stay.
    server.mode.store(FAIL, Ordering::SeqCst);
    assert!(matches!(
        cache.refresh_party(93238).await,
        Err(Error::Http { .. })
    ));
    assert_eq!(
        signing(&cache.certificates(93238).await.unwrap()),
        "1d5be79f34c56e4e944e"
    );

    // A registry without a cache has nothing to refresh.
    server.mode.store(SERVE, Ordering::SeqCst);
    let before = server.requests.load(Ordering::SeqCst);
    client(address, TOKEN, Duration::from_secs(5))
        .refresh_party(93238)
        .await
        .unwrap();
    assert_eq!(server.requests.load(Ordering::SeqCst), before);
}
