//! The one assembly: from a validated [`Config`] to a running
//! [`Messenger`] over the identities, registry, transport and store the
//! configuration names ([`open`]). It is the only place that picks
//! backends by configuration; every command that sends or receives, the
//! [`supervisor`](crate::supervisor) of `listen`, the demo and the
//! benchmarks get their messenger here.
//!
//! The demo and the benchmarks bring their own [`Parts`] (a development
//! PKI's identities, one transport shared by several parties) and have
//! them assembled by [`Parts::assemble`], as [`open`] assembles what the
//! configuration names.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use helsemelding_messaging::receipts::Deadlines;
use helsemelding_messaging::{Messenger, MessengerConfig, ReceivePolicy};
use helsemelding_protect::{Certificate, CrlFetcher, FetcherConfig, Identity, TrustAnchors};
use helsemelding_registry::http::NoAuth;
use helsemelding_registry::{
    AuthProvider, BearerToken, CachingRegistry, FileRegistry, HttpRegistry, HttpRegistryConfig,
    Registry,
};
use helsemelding_store::Store;
use helsemelding_store_sqlite::SqliteStore;
use helsemelding_transport::Transport;
use helsemelding_transport_amqp::AmqpOptions;

use crate::config::{self, BrokerEndpoint, Config, KeyPair, RegistryAuth};

/// Environment variable holding the PKCS#12 password (empty when unset).
pub(crate) const P12_PASSWORD_ENV: &str = "HELSEMELDING_P12_PASSWORD";

/// What a messenger is assembled from.
pub struct Parts {
    /// Our HER-ids, identities, trust and the policies of sending and
    /// receiving.
    pub messenger: MessengerConfig,
    /// Where messages travel.
    pub transport: Arc<dyn Transport>,
    /// Where parties, their certificates and their agreements come from.
    pub registry: Arc<dyn Registry>,
    /// Outbox, de-duplication, receipts and the audit log.
    pub store: Arc<dyn Store>,
}

/// Opens everything `config` names: the messenger over it.
pub async fn open(config: &Config) -> Result<Messenger> {
    Ok(Parts::open(config, false).await?.assemble())
}

/// As [`open`], for one `send` whose message the outbox keeps: an
/// unreachable broker is given up after `broker.connect_timeout_ms`
/// instead of being waited through.
pub async fn open_for_one_send(config: &Config) -> Result<Messenger> {
    Ok(Parts::open(config, true).await?.assemble())
}

impl Parts {
    /// The messenger over these parts.
    ///
    /// # Panics
    /// When `self.messenger.her_ids` is empty.
    pub fn assemble(self) -> Messenger {
        Messenger::new(self.messenger, self.transport, self.registry, self.store)
    }

    /// Opens what `config` names: identities, registry, transport, store.
    async fn open(config: &Config, one_send: bool) -> Result<Parts> {
        let signing = key_pair("signing", config.identity.signing.as_ref())?;
        let decryption = key_pair("decryption", config.identity.decryption.as_ref())?;
        let legacy = config
            .identity
            .legacy_decryption
            .as_ref()
            .map(|pair| key_pair("legacy decryption", Some(pair)))
            .transpose()?;
        let registry = open_registry(&config.registry)?;
        let anchors = config
            .trust
            .anchors
            .iter()
            .map(|p| {
                let bytes =
                    std::fs::read(p).with_context(|| format!("trust anchor {}", p.display()))?;
                Certificate::from_pem_or_der(&bytes)
                    .with_context(|| format!("trust anchor {}", p.display()))
            })
            .collect::<Result<Vec<_>>>()?;
        let (url, mut options) = transport_endpoint(config);
        if one_send {
            options.send_retry_for = config.broker.connect_timeout;
        }
        let transport = open_transport(&url, options).await?;
        let store = open_store(&config.store_path)?;
        let mut messenger_config = MessengerConfig::new(
            config.her_id,
            signing,
            decryption,
            TrustAnchors::new(anchors),
            Arc::new(crl_fetcher(config)?),
        );
        messenger_config.legacy_decryption = legacy;
        messenger_config.revocation = config.trust.revocation;
        messenger_config.her_ids = config.her_ids.clone();
        messenger_config.sync_reply_queue = config.broker.reply_queue.clone();
        messenger_config.receipt_deadlines = receipt_deadlines(&config.receipts);
        messenger_config.send_receipts = config.receipts.automatic;
        messenger_config.async_ttl = config.send.async_ttl;
        messenger_config.payload_metadata = config.send.payload_metadata;
        messenger_config.extra_properties = config.send.extra_properties.clone();
        messenger_config.outbox = config.send.outbox;
        messenger_config.retry = config.receive.retry;
        messenger_config.receive = ReceivePolicy {
            strict_message_functions: config.receive.strict_message_functions,
            allow_party_mismatch: config.receive.allow_party_mismatch,
            allow_unprotected: config.receive.allow_unprotected,
            allow_3des: config.trust.allow_3des,
            revocation_unknown_for: config.receive.revocation_unknown_for,
        };
        Ok(Parts {
            messenger: messenger_config,
            transport,
            registry,
            store,
        })
    }
}

/// The transport at `url` (`local:PATH` or an AMQP URL) with `options`.
pub(crate) async fn open_transport(url: &str, options: AmqpOptions) -> Result<Arc<dyn Transport>> {
    let transport = helsemelding_transport_amqp::open(url, options)
        .await
        .context("opening the broker")?;
    Ok(Arc::from(transport))
}

/// The SQLite store at `path`, created if missing: the one place that
/// picks the store's backend.
pub(crate) fn open_store(path: &Path) -> Result<Arc<dyn Store>> {
    let store = SqliteStore::open(path).with_context(|| format!("store {}", path.display()))?;
    Ok(Arc::new(store))
}
/// The transport URL and options the broker configuration names.
pub(crate) fn transport_endpoint(config: &Config) -> (String, AmqpOptions) {
    match &config.broker.endpoint {
        BrokerEndpoint::Local { path } => {
            (format!("local:{}", path.display()), AmqpOptions::default())
        }
        BrokerEndpoint::Amqp { url, password, .. } => (
            url.to_string(),
            AmqpOptions {
                dialect: config.broker.dialect,
                password: password.clone(),
                ca_file: config.broker.ca_file.clone(),
                connect_timeout: config.broker.connect_timeout,
                operation_timeout: config.broker.operation_timeout,
                send_retry_for: config.broker.send_retry_for,
                unavailable_after: config.broker.unavailable_after,
                backoff_min: config.broker.reconnect_backoff_min,
                backoff_max: config.broker.reconnect_backoff_max,
                ..AmqpOptions::default()
            },
        ),
    }
}

/// How long answers of the file registry are kept: reading and parsing
/// the party's files on every send and receive cost more CPU than the CMS
/// work in `bench e2e`; an edit of the registry is seen within this time.
const FILE_REGISTRY_TTL: std::time::Duration = std::time::Duration::from_secs(5);

/// The file registry in `dir` behind a short-lived cache.
pub(crate) fn cached_file_registry(dir: &Path) -> Arc<dyn Registry> {
    Arc::new(CachingRegistry::with_ttl(
        FileRegistry::new(dir),
        FILE_REGISTRY_TTL,
    ))
}

/// The configured registry: the file registry, or NHN's services behind a
/// cache that keeps answers for `registry.cache_seconds` (and serves them
/// stale while the services fail).
pub(crate) fn open_registry(registry: &config::Registry) -> Result<Arc<dyn Registry>> {
    let (address_url, cppa_url, cache_for, timeout, auth) = match registry {
        config::Registry::Dir(dir) => return Ok(cached_file_registry(dir)),
        config::Registry::Http {
            address_url,
            cppa_url,
            cache_for,
            timeout,
            auth,
        } => (address_url, cppa_url, *cache_for, *timeout, auth),
    };
    let auth: Arc<dyn AuthProvider> = match auth {
        RegistryAuth::None => Arc::new(NoAuth),
        RegistryAuth::Token(token) => Arc::new(BearerToken::new(token.as_str())),
        RegistryAuth::TokenFile(file) => {
            let token = std::fs::read_to_string(file)
                .with_context(|| format!("registry.token_file {}", file.display()))?;
            if token.trim().is_empty() {
                bail!("registry.token_file {} is empty", file.display());
            }
            Arc::new(BearerToken::new(token))
        }
    };
    let http = HttpRegistry::new(
        HttpRegistryConfig {
            address_registry_url: address_url.to_string(),
            cppa_url: cppa_url.to_string(),
            timeout,
        },
        auth,
    )
    .context("registry: setting up the HTTP client")?;
    Ok(Arc::new(CachingRegistry::with_ttl(http, cache_for)))
}

fn receipt_deadlines(receipts: &config::Receipts) -> Deadlines {
    let hours = |h: u32| Duration::from_secs(u64::from(h) * 3600);
    Deadlines {
        default: hours(receipts.deadline_hours),
        per_function: receipts
            .deadline_hours_by_function
            .iter()
            .map(|(function, h)| (function.clone(), hours(*h)))
            .collect(),
    }
}

/// CRLs from the certificates' distribution points, waited for at most
/// `trust.crl_timeout_ms` and kept on disk beside the store until their
/// nextUpdate, so that a slow CRL server never stalls a send for longer.
fn crl_fetcher(config: &Config) -> Result<CrlFetcher> {
    let cache_dir = config
        .store_path
        .parent()
        .unwrap_or(Path::new("."))
        .join("crl-cache");
    CrlFetcher::new(FetcherConfig {
        timeout: config.trust.crl_timeout,
        cache_dir: Some(cache_dir),
        ..FetcherConfig::default()
    })
    .context("setting up the CRL fetcher")
}

fn key_pair(role: &str, pair: Option<&KeyPair>) -> Result<Identity> {
    let identity = match pair {
        None => bail!("identity: no {role} certificate and key configured"),
        Some(KeyPair::Files { cert, key }) => Identity::from_files(cert, key),
        Some(KeyPair::Pkcs12 { bundle }) => {
            let password = std::env::var(P12_PASSWORD_ENV).unwrap_or_default();
            Identity::from_pkcs12_file(bundle, &password)
        }
    };
    identity.with_context(|| format!("{role} identity"))
}
