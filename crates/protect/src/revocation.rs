//! Where the judge's CRLs come from: the I/O edge of revocation checking.
//!
//! - [`CrlSource`] is the small trait the engine is given; it answers "which
//!   CRLs do you have for this certificate" and never takes longer than its
//!   timeout.
//! - [`StaticCrls`] serves CRLs read from files (`cert check --crl F`).
//! - [`CrlFetcher`] fetches CRLs over HTTP from the certificate's CRL
//!   distribution points and caches them in memory and on disk (one file per
//!   URL, named by the SHA-256 of the URL, holding the DER) until their
//!   nextUpdate. A cached CRL is re-fetched in the background when less than
//!   a tenth of its validity or less than an hour remains, so lookups with a
//!   warm cache never touch the network; a lookup with nothing cached waits
//!   at most the timeout (1 s by default, as the profile advises) while the
//!   fetch goes on in the background to warm the cache for the next one.
//! - [`BlockingCrlFetcher`] is a facade with its own small runtime for
//!   synchronous callers such as the CLI.
//!
//! OCSP is not implemented yet: a later `OcspSource` would sit behind the
//! same trait (or a sibling) and feed the judge a status per certificate.

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;

use crate::{Certificate, Crl, Error, Result};

/// A boxed future, so that [`CrlSource`] can be used as a trait object.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Something that can hand over CRLs for a certificate.
pub trait CrlSource: Send + Sync {
    /// The CRLs this source has for `certificate` now (possibly none, possibly
    /// stale: the judge decides what they prove). Returns within the source's
    /// timeout.
    fn crls_for<'a>(&'a self, certificate: &'a Certificate) -> BoxFuture<'a, Vec<Crl>>;
}

/// CRLs given up front, e.g. read from files: every lookup returns all of
/// them (the judge ignores those of other issuers).
#[derive(Clone, Debug, Default)]
pub struct StaticCrls {
    crls: Vec<Crl>,
}

impl StaticCrls {
    /// A source that always answers with `crls`.
    pub fn new(crls: Vec<Crl>) -> Self {
        StaticCrls { crls }
    }

    /// Reads one CRL (PEM or DER) from each file.
    pub fn from_files<P: AsRef<Path>>(paths: &[P]) -> Result<Self> {
        let crls = paths
            .iter()
            .map(|path| {
                let path = path.as_ref();
                let bytes = std::fs::read(path).map_err(|e| Error::CrlFile {
                    path: path.to_path_buf(),
                    reason: e.to_string(),
                })?;
                Crl::from_pem_or_der(&bytes).map_err(|e| Error::CrlFile {
                    path: path.to_path_buf(),
                    reason: e.to_string(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(StaticCrls { crls })
    }

    /// The CRLs held.
    pub fn crls(&self) -> &[Crl] {
        &self.crls
    }
}

impl CrlSource for StaticCrls {
    fn crls_for<'a>(&'a self, _certificate: &'a Certificate) -> BoxFuture<'a, Vec<Crl>> {
        Box::pin(std::future::ready(self.crls.clone()))
    }
}

/// The clock the fetcher's cache runs on (tests move it forward).
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// How a [`CrlFetcher`] behaves.
#[derive(Clone)]
pub struct FetcherConfig {
    /// How long a lookup with nothing fresh cached waits for the network (default 1 s).
    pub timeout: Duration,
    /// How long one fetch may run in the background before it is abandoned (default 30 s).
    pub background_timeout: Duration,
    /// Where CRLs are kept between runs; `None` keeps them in memory only.
    pub cache_dir: Option<PathBuf>,
    /// Largest CRL accepted, in bytes (default 64 MiB): a hostile server
    /// must not exhaust memory.
    pub max_crl_bytes: usize,
    /// Least time between background refreshes of one URL (default 5 min),
    /// so a CRL server that keeps publishing the same list near its
    /// nextUpdate is not asked on every lookup.
    pub refresh_interval: Duration,
    /// The clock that decides freshness (default: the system clock).
    pub clock: Clock,
}

impl Default for FetcherConfig {
    fn default() -> Self {
        FetcherConfig {
            timeout: Duration::from_secs(1),
            background_timeout: Duration::from_secs(30),
            cache_dir: None,
            max_crl_bytes: 64 << 20,
            refresh_interval: Duration::from_secs(300),
            clock: Arc::new(Utc::now),
        }
    }
}

impl std::fmt::Debug for FetcherConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FetcherConfig")
            .field("timeout", &self.timeout)
            .field("background_timeout", &self.background_timeout)
            .field("cache_dir", &self.cache_dir)
            .field("max_crl_bytes", &self.max_crl_bytes)
            .field("refresh_interval", &self.refresh_interval)
            .finish_non_exhaustive()
    }
}

/// Fetches CRLs over HTTP and keeps them cached in memory and on disk.
///
/// Cheap to clone (all clones share one cache). Lookups must run inside a
/// tokio runtime: fetches continue as background tasks on it.
#[derive(Clone)]
pub struct CrlFetcher {
    inner: Arc<Inner>,
}

struct Inner {
    client: reqwest::Client,
    config: FetcherConfig,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    cache: HashMap<String, Crl>,
    /// Fetches under way, by URL; the flag turns true when one ends.
    in_flight: HashMap<String, watch::Receiver<bool>>,
    /// When a background refresh was last started, by URL.
    last_refresh: HashMap<String, DateTime<Utc>>,
}

impl CrlFetcher {
    /// A fetcher with `config`; creates the cache directory if needed (a
    /// directory that cannot be created leaves the cache in memory only).
    pub fn new(config: FetcherConfig) -> Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(config.background_timeout)
            .connect_timeout(config.background_timeout)
            .build()
            .map_err(|e| Error::CrlFetcherSetup {
                reason: e.to_string(),
            })?;
        if let Some(dir) = &config.cache_dir {
            if let Err(e) = std::fs::create_dir_all(dir) {
                tracing::warn!(dir = %dir.display(), error = %e, "CRL cache directory unusable; caching in memory only");
            }
        }
        Ok(CrlFetcher {
            inner: Arc::new(Inner {
                client,
                config,
                state: Mutex::new(State::default()),
            }),
        })
    }

    /// The CRL published at `url`: from the cache when fresh (starting a
    /// background refresh when it nears its nextUpdate), else fetched,
    /// waiting at most the timeout. `None` when nothing arrived in time and
    /// nothing (not even a stale CRL) is cached.
    pub async fn crl(&self, url: &str) -> Option<Crl> {
        let now = (self.inner.config.clock)();
        let cached = self.cached(url);
        if let Some(crl) = cached.as_ref().filter(|crl| crl.is_current_at(now)) {
            if needs_refresh(crl, now) && self.may_refresh(url, now) {
                self.start_fetch(url);
            }
            return Some(crl.clone());
        }
        let mut done = self.start_fetch(url);
        let _ = tokio::time::timeout(self.inner.config.timeout, done.wait_for(|done| *done)).await;
        self.in_memory(url).or(cached)
    }

    /// Which of the certificate's distribution point URLs this fetcher uses.
    pub fn urls_for(certificate: &Certificate) -> Vec<String> {
        certificate
            .crl_distribution_urls()
            .into_iter()
            .filter(|url| url.starts_with("http://") || url.starts_with("https://"))
            .collect()
    }

    async fn crls_for_certificate(&self, certificate: &Certificate) -> Vec<Crl> {
        let lookups: Vec<_> = Self::urls_for(certificate)
            .into_iter()
            .map(|url| {
                let fetcher = self.clone();
                tokio::spawn(async move { fetcher.crl(&url).await })
            })
            .collect();
        let mut crls = Vec::new();
        for lookup in lookups {
            if let Ok(Some(crl)) = lookup.await {
                crls.push(crl);
            }
        }
        crls
    }

    /// Whether a background refresh of `url` may start now (and if so, notes it).
    fn may_refresh(&self, url: &str, now: DateTime<Utc>) -> bool {
        let interval = chrono::Duration::from_std(self.inner.config.refresh_interval)
            .unwrap_or(chrono::Duration::MAX);
        let mut state = self.state();
        let due = state
            .last_refresh
            .get(url)
            .is_none_or(|last| now - *last >= interval);
        if due {
            state.last_refresh.insert(url.to_string(), now);
        }
        due
    }

    fn in_memory(&self, url: &str) -> Option<Crl> {
        self.state().cache.get(url).cloned()
    }

    /// From memory, else from the disk cache (then kept in memory).
    fn cached(&self, url: &str) -> Option<Crl> {
        if let Some(crl) = self.in_memory(url) {
            return Some(crl);
        }
        let crl = self.read_disk(url)?;
        self.remember(url, crl.clone());
        Some(crl)
    }

    /// Keeps `crl` unless a newer one for the URL is already held.
    fn remember(&self, url: &str, crl: Crl) -> bool {
        let mut state = self.state();
        let newer_held = state
            .cache
            .get(url)
            .is_some_and(|held| held.this_update() > crl.this_update());
        if !newer_held {
            state.cache.insert(url.to_string(), crl);
        }
        !newer_held
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // The state holds no invariant a panicking holder could break halfway.
        self.inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Starts a fetch of `url` unless one is under way; returns its "done" flag.
    fn start_fetch(&self, url: &str) -> watch::Receiver<bool> {
        let mut state = self.state();
        if let Some(done) = state.in_flight.get(url) {
            return done.clone();
        }
        let (tx, rx) = watch::channel(false);
        state.in_flight.insert(url.to_string(), rx.clone());
        drop(state);
        let fetcher = self.clone();
        let url = url.to_string();
        tokio::spawn(async move {
            match fetcher.download(&url).await {
                Ok(crl) => {
                    if fetcher.remember(&url, crl.clone()) {
                        fetcher.write_disk(&url, &crl);
                    }
                }
                Err(reason) => tracing::warn!(%url, %reason, "CRL fetch failed"),
            }
            fetcher.state().in_flight.remove(&url);
            let _ = tx.send(true);
        });
        rx
    }

    async fn download(&self, url: &str) -> Result<Crl, String> {
        let mut response = self
            .inner
            .client
            .get(url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| e.to_string())?;
        let limit = self.inner.config.max_crl_bytes;
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
            if body.len() + chunk.len() > limit {
                return Err(format!("CRL larger than {limit} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        Crl::from_pem_or_der(&body).map_err(|e| e.to_string())
    }

    fn disk_path(&self, url: &str) -> Option<PathBuf> {
        let dir = self.inner.config.cache_dir.as_ref()?;
        let digest = openssl::sha::sha256(url.as_bytes());
        Some(dir.join(format!("{}.crl", hex::encode(digest))))
    }

    fn read_disk(&self, url: &str) -> Option<Crl> {
        let bytes = std::fs::read(self.disk_path(url)?).ok()?;
        Crl::from_pem_or_der(&bytes).ok()
    }

    /// Writes via a temporary file and a rename, so a reader never sees half a CRL.
    fn write_disk(&self, url: &str, crl: &Crl) {
        let Some(path) = self.disk_path(url) else {
            return;
        };
        let temporary = path.with_extension("crl.tmp");
        let written = std::fs::write(&temporary, crl.to_der())
            .and_then(|()| std::fs::rename(&temporary, &path));
        if let Err(e) = written {
            tracing::warn!(path = %path.display(), error = %e, "cannot write CRL cache file");
        }
    }
}

impl CrlSource for CrlFetcher {
    fn crls_for<'a>(&'a self, certificate: &'a Certificate) -> BoxFuture<'a, Vec<Crl>> {
        Box::pin(self.crls_for_certificate(certificate))
    }
}

/// Refresh when less than a tenth of the CRL's validity, or less than an
/// hour, remains: early enough that the cache never runs cold.
fn needs_refresh(crl: &Crl, now: DateTime<Utc>) -> bool {
    let Some(next_update) = crl.next_update() else {
        return true;
    };
    let remaining = next_update - now;
    let validity = next_update - crl.this_update();
    remaining < validity / 10 || remaining < chrono::Duration::hours(1)
}

/// A [`CrlFetcher`] for synchronous callers: owns a one-worker runtime on
/// which lookups and background refreshes run. Create and drop it outside
/// any async context.
pub struct BlockingCrlFetcher {
    runtime: tokio::runtime::Runtime,
    fetcher: CrlFetcher,
}

impl BlockingCrlFetcher {
    /// A fetcher with `config` and its own runtime.
    pub fn new(config: FetcherConfig) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("crl-fetcher")
            .enable_all()
            .build()
            .map_err(|e| Error::CrlFetcherSetup {
                reason: e.to_string(),
            })?;
        let fetcher = {
            let _context = runtime.enter();
            CrlFetcher::new(config)?
        };
        Ok(BlockingCrlFetcher { runtime, fetcher })
    }

    /// [`CrlSource::crls_for`], blocking for at most the timeout.
    pub fn crls_for(&self, certificate: &Certificate) -> Vec<Crl> {
        self.runtime
            .block_on(self.fetcher.crls_for_certificate(certificate))
    }

    /// The async fetcher inside (shares the cache).
    pub fn fetcher(&self) -> &CrlFetcher {
        &self.fetcher
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration as Days;
    use helsemelding_testkit::pki::TestPki;

    fn crl(pki: &TestPki, valid_for: chrono::Duration) -> Crl {
        Crl::from_x509_crl(pki.crl(&[], Utc::now() + valid_for))
    }

    #[test]
    fn refresh_starts_in_the_last_tenth_or_the_last_hour() {
        let pki = TestPki::new("Refresh CA");
        let day = crl(&pki, Days::hours(24));
        let now = Utc::now();
        assert!(!needs_refresh(&day, now));
        assert!(!needs_refresh(&day, now + Days::hours(21)));
        assert!(needs_refresh(&day, now + Days::hours(22)));
        let thirty_days = crl(&pki, Days::days(30));
        assert!(!needs_refresh(&thirty_days, now + Days::days(26)));
        assert!(needs_refresh(&thirty_days, now + Days::days(28)));
        let short = crl(&pki, Days::minutes(30));
        assert!(needs_refresh(&short, now));
    }

    #[test]
    fn only_http_distribution_points_are_fetched() {
        let buypass = Certificate::from_pem_or_der(&helsemelding_testkit::fixtures::read_nhn(
            "certificates/Helsenorge_Signature.cer",
        ))
        .unwrap();
        assert_eq!(buypass.crl_distribution_urls().len(), 2);
        assert_eq!(
            CrlFetcher::urls_for(&buypass),
            vec!["http://crl.test4.buypass.no/crl/BPClass3T4CA3.crl".to_string()]
        );
    }

    #[test]
    fn static_crls_from_files_and_unreadable_files_name_the_file() {
        let pki = TestPki::new("Static CA");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.crl");
        std::fs::write(
            &path,
            pki.crl(&[], Utc::now() + Days::hours(1)).to_pem().unwrap(),
        )
        .unwrap();
        let source = StaticCrls::from_files(&[&path]).unwrap();
        assert_eq!(source.crls().len(), 1);
        let garbage = dir.path().join("garbage.crl");
        std::fs::write(&garbage, b"not a crl").unwrap();
        for bad in [garbage, dir.path().join("missing.crl")] {
            match StaticCrls::from_files(&[&bad]) {
                Err(Error::CrlFile { path, .. }) => assert_eq!(path, bad),
                other => panic!("expected CrlFile error, got {other:?}"),
            }
        }
    }
}
