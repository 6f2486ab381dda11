//! A cache in front of any [`Registry`].
//!
//! Answers are kept for a TTL (default 1 hour, as the reference library
//! does for both registries). [`Registry::refresh_party`] fetches one
//! party's record, certificates (historic ones included) and CPP past the
//! cache, for a signature that none of its known certificates verifies (a
//! rotation the cache has not seen yet). When the service fails (unreachable, 5xx, timeout) and an older
//! answer exists, that answer is served (stale-if-error) and a warning is
//! logged: a registry outage must not stop messages between parties we
//! already know. CPAs are also kept by CPA id without expiry: an agreement
//! id names one immutable document, and a message received under an older
//! CPA must be verified with that CPA's certificates.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::certificates::PartyCertificates;
use crate::cppa::CollaborationDocument;
use crate::{CommunicationParty, HerId, Registry, Result};

/// The reference library's cache interval (1 hour, both registries).
pub const DEFAULT_TTL: Duration = Duration::from_secs(60 * 60);

/// How many CPAs by id are kept (oldest-inserted dropped first).
const MAX_CPAS_BY_ID: usize = 4096;

type Document = Option<Arc<CollaborationDocument>>;

struct Entry<T> {
    value: T,
    fetched: Instant,
}

type Table<K, T> = Mutex<HashMap<K, Entry<T>>>;

/// CPAs by id, with their insertion order for eviction.
#[derive(Default)]
struct CpasById {
    documents: HashMap<String, Arc<CollaborationDocument>>,
    order: VecDeque<String>,
}

/// A caching [`Registry`] wrapping another.
pub struct CachingRegistry<R> {
    inner: R,
    ttl: Duration,
    parties: Table<HerId, CommunicationParty>,
    certificates: Table<HerId, PartyCertificates>,
    cpps: Table<HerId, Document>,
    cpa_pairs: Table<(HerId, HerId), Document>,
    cpas_by_id: Mutex<CpasById>,
}

impl<R: Registry> CachingRegistry<R> {
    /// Cache `inner` with the default TTL.
    pub fn new(inner: R) -> Self {
        Self::with_ttl(inner, DEFAULT_TTL)
    }

    /// Cache `inner`, keeping answers fresh for `ttl`.
    pub fn with_ttl(inner: R, ttl: Duration) -> Self {
        CachingRegistry {
            inner,
            ttl,
            parties: Mutex::default(),
            certificates: Mutex::default(),
            cpps: Mutex::default(),
            cpa_pairs: Mutex::default(),
            cpas_by_id: Mutex::default(),
        }
    }

    /// Forget everything about a party (e.g. on an address registry event).
    pub fn invalidate(&self, her_id: HerId) {
        lock(&self.parties).remove(&her_id);
        lock(&self.certificates).remove(&her_id);
        lock(&self.cpps).remove(&her_id);
        lock(&self.cpa_pairs).retain(|(a, b), _| *a != her_id && *b != her_id);
    }

    /// Stores a fresh answer, or after a definite failure (not found, a
    /// broken document) drops the entry so that the next look-up asks
    /// again; after the service failed the old entry stays (stale-if-error).
    fn replace<K, T>(&self, table: &Table<K, T>, key: K, answer: &Result<T>)
    where
        K: Eq + Hash,
        T: Clone,
    {
        match answer {
            Ok(value) => {
                lock(table).insert(
                    key,
                    Entry {
                        value: value.clone(),
                        fetched: Instant::now(),
                    },
                );
            }
            Err(error) if error.is_unavailable() => {}
            Err(_) => {
                lock(table).remove(&key);
            }
        }
    }

    fn remember_cpa(&self, document: &Document) {
        let Some(document) = document else { return };
        let Some(id) = document.id.clone() else {
            return;
        };
        let mut cpas = lock(&self.cpas_by_id);
        if cpas
            .documents
            .insert(id.clone(), document.clone())
            .is_none()
        {
            cpas.order.push_back(id);
            if cpas.order.len() > MAX_CPAS_BY_ID {
                if let Some(oldest) = cpas.order.pop_front() {
                    cpas.documents.remove(&oldest);
                }
            }
        }
    }

    async fn cached<K, T, F>(&self, table: &Table<K, T>, key: K, what: &str, fetch: F) -> Result<T>
    where
        K: Eq + Hash + Clone + std::fmt::Debug,
        T: Clone,
        F: Future<Output = Result<T>>,
    {
        let stale = {
            let table = lock(table);
            match table.get(&key) {
                Some(entry) if entry.fetched.elapsed() < self.ttl => {
                    return Ok(entry.value.clone())
                }
                Some(entry) => Some(entry.value.clone()),
                None => None,
            }
        };
        match fetch.await {
            Ok(value) => {
                lock(table).insert(
                    key,
                    Entry {
                        value: value.clone(),
                        fetched: Instant::now(),
                    },
                );
                Ok(value)
            }
            Err(error) if error.is_unavailable() && stale.is_some() => {
                tracing::warn!(%error, key = ?key, what, "registry unavailable: serving the last good answer");
                Ok(stale.expect("checked above"))
            }
            Err(error) => Err(error),
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic elsewhere cannot leave a map half-updated: use it anyway.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[async_trait::async_trait]
impl<R: Registry> Registry for CachingRegistry<R> {
    async fn communication_party(&self, her_id: HerId) -> Result<CommunicationParty> {
        self.cached(
            &self.parties,
            her_id,
            "communication party",
            self.inner.communication_party(her_id),
        )
        .await
    }

    async fn certificates(&self, her_id: HerId) -> Result<PartyCertificates> {
        self.cached(
            &self.certificates,
            her_id,
            "certificates",
            self.inner.certificates(her_id),
        )
        .await
    }

    async fn cpp(&self, her_id: HerId) -> Result<Document> {
        self.cached(&self.cpps, her_id, "CPP", self.inner.cpp(her_id))
            .await
    }

    async fn cpa_by_id(&self, cpa_id: &str) -> Result<Document> {
        if let Some(document) = lock(&self.cpas_by_id).documents.get(cpa_id) {
            return Ok(Some(document.clone()));
        }
        let document = self.inner.cpa_by_id(cpa_id).await?;
        self.remember_cpa(&document);
        Ok(document)
    }

    /// Asks the wrapped registry for the party's address record,
    /// certificates and CPP at once, whatever the cache holds, and keeps the
    /// answers; the cached CPAs of pairs with the party are dropped (asked
    /// again when next needed). CPAs by id stay: an id names one document.
    /// Definite answers (a record, "not found", a broken document) replace
    /// what was cached and `Ok` is returned: the next look-ups say what the
    /// registry says now. When the service could not be asked
    /// ([`crate::Error::is_unavailable`]) that error is returned and the
    /// entries concerned keep their last good answers.
    async fn refresh_party(&self, her_id: HerId) -> Result<()> {
        let (party, certificates, cpp) = tokio::join!(
            self.inner.communication_party(her_id),
            self.inner.certificates(her_id),
            self.inner.cpp(her_id),
        );
        self.replace(&self.parties, her_id, &party);
        self.replace(&self.certificates, her_id, &certificates);
        self.replace(&self.cpps, her_id, &cpp);
        lock(&self.cpa_pairs).retain(|(a, b), _| *a != her_id && *b != her_id);
        tracing::debug!(
            her_id,
            "registry entries of the party refreshed past the cache"
        );
        let unavailable = [party.err(), certificates.err(), cpp.err()]
            .into_iter()
            .flatten()
            .find(crate::Error::is_unavailable);
        match unavailable {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    async fn cpa_for(&self, ours: HerId, theirs: HerId) -> Result<Document> {
        let document = self
            .cached(
                &self.cpa_pairs,
                (ours, theirs),
                "CPA",
                self.inner.cpa_for(ours, theirs),
            )
            .await?;
        self.remember_cpa(&document);
        Ok(document)
    }
}
