//! Configuration: one TOML file, every key overridable by an environment
//! variable `HELSEMELDING_<SECTION>_<KEY>` (top-level keys:
//! `HELSEMELDING_<KEY>`), read raw and turned into a validated [`Config`] at
//! start-up. Every error names the key (and the variable, when it came from
//! one); nothing later re-checks. Relative paths are relative to the file.
//!
//! ```toml
//! her_id = 91462                  # or several: her_ids = [8141703, 8141705] (the first sends by default)
//! [broker]
//! url = "amqps://user@sb.test.nhn.no:5671/NHNTESTServiceBus"  # or amqp://, or "local:PATH"
//! dialect = "rabbitmq"            # or "rabbitmq-v2" (RabbitMQ 4 addresses), "servicebus"
//! ca_file = "extra-root.pem"      # optional
//! connect_timeout_ms = 10000      # one connection attempt; also how long `send` waits for a broker that is down
//! operation_timeout_ms = 15000    # one broker call (attach, send, settle, detach)
//! send_retry_ms = 60000           # how long a send of the pump keeps reconnecting through an outage
//! unavailable_after_ms = 15000    # a receive link down this long is reported as an outage
//! reconnect_backoff_min_ms = 100  # first pause between reconnection attempts, doubling
//! reconnect_backoff_max_ms = 10000
//! [identity]
//! signing_cert = "sign.pem"
//! signing_key = "sign.key"
//! decryption_cert = "enc.pem"
//! decryption_key = "enc.key"
//! management_url = "http://127.0.0.1:15672"  # optional: RabbitMQ's management API, for `queues` and the dead-letter check at `listen` start
//! [registry]
//! dir = "registry"                # or the NHN services:
//! # address_url = "https://cpapi.test.grunndata.nhn.no"
//! # cppa_url = "https://cppa.test.grunndata.nhn.no"
//! # token_file = "registry.token"  # or HELSEMELDING_REGISTRY_TOKEN; never in this file
//! [trust]
//! anchors = ["ca.pem"]
//! revocation = "require"          # require | warn | off
//! allow_3des = false              # accept 3DES-encrypted messages (DES, RC2 never)
//! [receive]                       # how strictly received messages are judged
//! strict_message_functions = false   # refuse functions outside the CPA (the reference never does)
//! allow_party_mismatch = false       # skip the MsgHead Sender/Receiver vs header check
//! allow_unprotected = false          # take text/plain messages (test environments only)
//! revocation_unknown_for_seconds = 3600  # then a message whose revocation stays unknown is dead-lettered
//! dead_letters = "auto"              # auto | broker | store: where a message given up goes (below)
//! fault_pause_max_seconds = 30       # a fault of ours (full disk): longest pause between tries
//! max_mib_in_flight = 256            # message bodies all listening workers process at once; larger ones wait
//! workers = 4                        # concurrent workers per queue (`listen --workers` overrides)
//! delivery_limit = 10                # deliveries of a failing message before it is given up (the reference's 10)
//! retry_backoff_min_ms = 500         # first pause before a failing message is tried again, doubling
//! retry_backoff_max_ms = 30000
//! held_back_per_worker = 4           # deliveries a worker holds for a later retry while it goes on
//! [folder]                        # `serve`'s folder drop (see the folder module)
//! root = "folders"                # <root>/<her-id>/OUT, SENT, FAILED, IN
//! settle_ms = 2000                # a file is taken once its size and time stood still this long
//! max_mib = 64                    # larger files go to FAILED
//! sent_after = "broker"           # or "apprec": to SENT once its AppRec says OK (a rejection: FAILED)
//! [http]                          # `serve`'s HTTP API (see the http module)
//! listen = "127.0.0.1:8095"       # loopback; another address needs TLS and allow_remote = true
//! token_file = "api.tokens"       # one `NAME TOKEN` a line, readable by its owner only
//! [send]
//! async_ttl_seconds = 345600      # optional; none by default, as the reference
//! payload_metadata = true         # the X-MessageInfo-* keys beside the encrypted body
//! extra_properties = { X-SystemIdentifier = "EPJ" }
//! outbox_max_attempts = 20        # failed attempts before an outbox entry is given up
//! outbox_backoff_min_ms = 1000    # first pause before an entry is tried again, doubling
//! outbox_backoff_max_ms = 300000
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use helsemelding_messaging::{ListenerOptions, OutboxPolicy, RetryPolicy};
use helsemelding_protect::RevocationPolicy;
use helsemelding_transport_amqp::AmqpOptions;
use helsemelding_wire::queue::Dialect;
use helsemelding_wire::HerId;
use serde::Deserialize;

mod http;
pub use http::{Http, HttpTls, DEFAULT_LISTEN};

/// Sections whose keys may be overridden from the environment.
const SECTIONS: &[&str] = &[
    "broker", "identity", "registry", "trust", "store", "receipts", "audit", "receive", "send",
    "folder", "http",
];

/// Variables that share the prefix but are not configuration keys.
const NOT_KEYS: &[&str] = &["HELSEMELDING_LOG", "HELSEMELDING_P12_PASSWORD"];

/// The raw file, exactly as written: unknown keys are errors.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    her_id: Option<u32>,
    her_ids: Option<Vec<u32>>,
    broker: RawBroker,
    #[serde(default)]
    identity: RawIdentity,
    registry: RawRegistry,
    #[serde(default)]
    trust: RawTrust,
    #[serde(default)]
    store: RawStore,
    #[serde(default)]
    receipts: RawReceipts,
    #[serde(default)]
    audit: RawAudit,
    #[serde(default)]
    receive: RawReceive,
    #[serde(default)]
    send: RawSend,
    folder: Option<RawFolder>,
    http: Option<http::RawHttp>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFolder {
    root: PathBuf,
    #[serde(default = "default_settle_ms")]
    settle_ms: u64,
    #[serde(default = "default_folder_max_mib")]
    max_mib: usize,
    #[serde(default)]
    sent_after: SentAfter,
}

/// When a file in OUT moves to SENT (`[folder] sent_after`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SentAfter {
    /// Once the broker took it.
    #[default]
    Broker,
    /// A message asking for an AppRec: once its AppRec says OK (OK with
    /// errors in parts too); a rejecting AppRec sends it to FAILED.
    AppRec,
}

fn default_settle_ms() -> u64 {
    2000
}
fn default_folder_max_mib() -> usize {
    helsemelding_wire::Limits::default().max_bytes / MIB
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReceive {
    #[serde(default)]
    strict_message_functions: bool,
    #[serde(default)]
    allow_party_mismatch: bool,
    #[serde(default)]
    allow_unprotected: bool,
    #[serde(default = "default_revocation_unknown_seconds")]
    revocation_unknown_for_seconds: u64,
    #[serde(default)]
    dead_letters: DeadLetterSetting,
    #[serde(default = "default_fault_pause_max_seconds")]
    fault_pause_max_seconds: u64,
    #[serde(default = "default_max_mib_in_flight")]
    max_mib_in_flight: usize,
    #[serde(default = "default_workers")]
    workers: usize,
    #[serde(default = "default_delivery_limit")]
    delivery_limit: u32,
    #[serde(default = "default_retry_backoff_min_ms")]
    retry_backoff_min_ms: u64,
    #[serde(default = "default_retry_backoff_max_ms")]
    retry_backoff_max_ms: u64,
    #[serde(default = "default_held_back_per_worker")]
    held_back_per_worker: usize,
}

fn default_workers() -> usize {
    ListenerOptions::default().workers
}
fn default_held_back_per_worker() -> usize {
    ListenerOptions::default().parked_per_worker
}
fn default_delivery_limit() -> u32 {
    RetryPolicy::default().delivery_limit
}
fn default_retry_backoff_min_ms() -> u64 {
    millis_of(RetryPolicy::default().backoff_min)
}
fn default_retry_backoff_max_ms() -> u64 {
    millis_of(RetryPolicy::default().backoff_max)
}

fn millis_of(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

fn default_fault_pause_max_seconds() -> u64 {
    30
}

/// Where a message that is given up goes (`[receive] dead_letters`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeadLetterSetting {
    /// Rejected to the broker where the management API shows the queue has
    /// a dead-letter path; kept in the store where it has none or where
    /// that cannot be checked (a rejected message must never be deleted).
    #[default]
    Auto,
    /// Always rejected: the broker's dead-letter policy is known to exist.
    Broker,
    /// Always kept in the store (`parked list`).
    Store,
}

impl Default for RawReceive {
    fn default() -> Self {
        RawReceive {
            strict_message_functions: false,
            allow_party_mismatch: false,
            allow_unprotected: false,
            revocation_unknown_for_seconds: default_revocation_unknown_seconds(),
            dead_letters: DeadLetterSetting::Auto,
            fault_pause_max_seconds: default_fault_pause_max_seconds(),
            max_mib_in_flight: default_max_mib_in_flight(),
            workers: default_workers(),
            delivery_limit: default_delivery_limit(),
            retry_backoff_min_ms: default_retry_backoff_min_ms(),
            retry_backoff_max_ms: default_retry_backoff_max_ms(),
            held_back_per_worker: default_held_back_per_worker(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSend {
    async_ttl_seconds: Option<u64>,
    #[serde(default = "default_true")]
    payload_metadata: bool,
    #[serde(default)]
    extra_properties: BTreeMap<String, String>,
    #[serde(default = "default_outbox_max_attempts")]
    outbox_max_attempts: u32,
    #[serde(default = "default_outbox_backoff_min_ms")]
    outbox_backoff_min_ms: u64,
    #[serde(default = "default_outbox_backoff_max_ms")]
    outbox_backoff_max_ms: u64,
}

impl Default for RawSend {
    fn default() -> Self {
        RawSend {
            async_ttl_seconds: None,
            payload_metadata: true,
            extra_properties: BTreeMap::new(),
            outbox_max_attempts: default_outbox_max_attempts(),
            outbox_backoff_min_ms: default_outbox_backoff_min_ms(),
            outbox_backoff_max_ms: default_outbox_backoff_max_ms(),
        }
    }
}

fn default_outbox_max_attempts() -> u32 {
    OutboxPolicy::default().max_attempts
}
fn default_outbox_backoff_min_ms() -> u64 {
    millis_of(OutboxPolicy::default().backoff_min)
}
fn default_outbox_backoff_max_ms() -> u64 {
    millis_of(OutboxPolicy::default().backoff_max)
}

fn default_true() -> bool {
    true
}
fn default_revocation_unknown_seconds() -> u64 {
    3600
}

const MIB: usize = 1024 * 1024;

fn default_max_mib_in_flight() -> usize {
    ListenerOptions::default().max_bytes_in_flight / MIB
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBroker {
    url: String,
    /// Parsed by wire (`rabbitmq`, `rabbitmq-v2`, `servicebus`).
    dialect: Option<String>,
    ca_file: Option<PathBuf>,
    /// Only from `HELSEMELDING_BROKER_PASSWORD` in practice: a password in a
    /// file that is also readable as configuration is refused below.
    password: Option<String>,
    /// The exchange of the RabbitMQ dialect; defaults to the URL's path.
    exchange: Option<String>,
    /// This instance's queue for synchronous replies; defaults to the
    /// registry's syncreply queue of our first HER-id.
    reply_queue: Option<String>,
    /// RabbitMQ's management API (message counts for `queues`).
    management_url: Option<String>,
    /// Bound on one connection attempt; also how long `send` waits for an
    /// unreachable broker before leaving the message to the outbox.
    #[serde(default = "default_connect_timeout_ms")]
    connect_timeout_ms: u64,
    #[serde(default = "default_operation_timeout_ms")]
    operation_timeout_ms: u64,
    #[serde(default = "default_send_retry_ms")]
    send_retry_ms: u64,
    #[serde(default = "default_unavailable_after_ms")]
    unavailable_after_ms: u64,
    #[serde(default = "default_reconnect_backoff_min_ms")]
    reconnect_backoff_min_ms: u64,
    #[serde(default = "default_reconnect_backoff_max_ms")]
    reconnect_backoff_max_ms: u64,
}

fn default_operation_timeout_ms() -> u64 {
    millis_of(AmqpOptions::default().operation_timeout)
}
fn default_send_retry_ms() -> u64 {
    millis_of(AmqpOptions::default().send_retry_for)
}
fn default_unavailable_after_ms() -> u64 {
    millis_of(AmqpOptions::default().unavailable_after)
}
fn default_reconnect_backoff_min_ms() -> u64 {
    millis_of(AmqpOptions::default().backoff_min)
}
fn default_reconnect_backoff_max_ms() -> u64 {
    millis_of(AmqpOptions::default().backoff_max)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawIdentity {
    signing_cert: Option<PathBuf>,
    signing_key: Option<PathBuf>,
    signing_p12: Option<PathBuf>,
    decryption_cert: Option<PathBuf>,
    decryption_key: Option<PathBuf>,
    decryption_p12: Option<PathBuf>,
    legacy_decryption_cert: Option<PathBuf>,
    legacy_decryption_key: Option<PathBuf>,
    legacy_decryption_p12: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRegistry {
    dir: Option<PathBuf>,
    address_url: Option<String>,
    cppa_url: Option<String>,
    #[serde(default = "default_cache_seconds")]
    cache_seconds: u64,
    /// A file holding the bearer token of the registry services.
    token_file: Option<PathBuf>,
    /// Only from `HELSEMELDING_REGISTRY_TOKEN`: refused in the file below.
    token: Option<String>,
    #[serde(default = "default_registry_timeout_ms")]
    timeout_ms: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTrust {
    #[serde(default)]
    anchors: Vec<PathBuf>,
    #[serde(default)]
    revocation: RevocationPolicy,
    #[serde(default = "default_crl_timeout_ms")]
    crl_timeout_ms: u64,
    #[serde(default)]
    allow_3des: bool,
}

// Not derived: a file without [trust] must get the same defaults as an empty [trust].
impl Default for RawTrust {
    fn default() -> Self {
        RawTrust {
            anchors: Vec::new(),
            revocation: RevocationPolicy::default(),
            crl_timeout_ms: default_crl_timeout_ms(),
            allow_3des: false,
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawStore {
    path: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReceipts {
    #[serde(default = "default_receipt_hours")]
    deadline_hours: u32,
    /// Per message function, e.g. `DIALOG_INNBYGGER_EKONTAKT = 48`.
    #[serde(default)]
    deadline_hours_by_function: BTreeMap<String, u32>,
    #[serde(default = "default_automatic_receipts")]
    automatic: bool,
}

fn default_automatic_receipts() -> bool {
    true
}

impl Default for RawReceipts {
    fn default() -> Self {
        RawReceipts {
            deadline_hours: default_receipt_hours(),
            deadline_hours_by_function: BTreeMap::new(),
            automatic: default_automatic_receipts(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAudit {
    #[serde(default = "default_retention_days")]
    retention_days: i64,
}

impl Default for RawAudit {
    fn default() -> Self {
        RawAudit {
            retention_days: default_retention_days(),
        }
    }
}

fn default_cache_seconds() -> u64 {
    // The reference library's default for both registries.
    3600
}
fn default_registry_timeout_ms() -> u64 {
    10_000
}
fn default_connect_timeout_ms() -> u64 {
    10_000
}
fn default_crl_timeout_ms() -> u64 {
    1000
}
fn default_receipt_hours() -> u32 {
    24
}
fn default_retention_days() -> i64 {
    730
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Our first HER-id: the default sender.
    pub her_id: HerId,
    /// Every HER-id this installation serves (`her_id` first).
    pub her_ids: Vec<HerId>,
    /// `[broker]`: where messages travel.
    pub broker: Broker,
    /// `[identity]`: our certificates and keys.
    pub identity: Identity,
    /// `[registry]`: where parties and their agreements come from.
    pub registry: Registry,
    /// `[trust]`: how certificates are judged.
    pub trust: Trust,
    /// `store.path`: the SQLite store (outbox, de-duplication, audit log).
    pub store_path: PathBuf,
    /// `[receipts]`: when an AppRec is overdue.
    pub receipts: Receipts,
    /// `audit.retention_days`: how long `audit prune` keeps events.
    pub audit_retention_days: i64,
    /// `[receive]`: how strictly received messages are judged.
    pub receive: Receive,
    /// `[send]`: what every message we send carries.
    pub send: Send,
    /// `[folder]`: `serve`'s folder drop; `None` when not configured.
    pub folder: Option<Folder>,
    /// `[http]`: `serve`'s HTTP API; `None` when not configured.
    pub http: Option<Http>,
}

/// `serve`'s folder drop (`[folder]`).
#[derive(Debug, Clone)]
pub struct Folder {
    /// `<root>/<her-id>/OUT`, `SENT`, `FAILED`, `IN`.
    pub root: PathBuf,
    /// How long a file must stand still before it is taken.
    pub settle: Duration,
    /// Larger files are refused (FAILED).
    pub max_bytes: usize,
    /// When a file moves to SENT.
    pub sent_after: SentAfter,
}

/// How strictly received messages are judged (`[receive]`).
#[derive(Debug, Clone)]
pub struct Receive {
    /// Refuse message functions outside the CPA.
    pub strict_message_functions: bool,
    /// Skip the check of MsgHead Sender/Receiver against the header.
    pub allow_party_mismatch: bool,
    /// Take unprotected (text/plain) messages.
    pub allow_unprotected: bool,
    /// How long a message whose signer's revocation stays unknown waits
    /// before it is dead-lettered.
    pub revocation_unknown_for: std::time::Duration,
    /// Where a message that is given up goes.
    pub dead_letters: DeadLetterSetting,
    /// The longest pause between tries while a fault of ours lasts.
    pub fault_pause_max: std::time::Duration,
    /// The bound on message bodies the listener processes at once.
    pub max_bytes_in_flight: usize,
    /// Concurrent workers per queue.
    pub workers: usize,
    /// The delivery limit and the pacing of tries of a failing message.
    pub retry: RetryPolicy,
    /// Deliveries one worker holds back for a later retry.
    pub held_back_per_worker: usize,
}

/// What every message we send carries (`[send]`).
#[derive(Debug, Clone)]
pub struct Send {
    /// The time-to-live of async messages; `None`: none.
    pub async_ttl: Option<std::time::Duration>,
    /// Whether the X-MessageInfo-* keys go beside the encrypted body.
    pub payload_metadata: bool,
    /// Application properties added to every message.
    pub extra_properties: Vec<(String, String)>,
    /// How often and how patiently a failing outbox entry is tried again.
    pub outbox: OutboxPolicy,
}

/// Where messages travel.
#[derive(Debug, Clone)]
pub struct Broker {
    /// `broker.url`: the broker, or the embedded local queue.
    pub endpoint: BrokerEndpoint,
    /// Which address forms the broker understands.
    pub dialect: Dialect,
    /// An extra CA certificate (PEM) to trust for an `amqps://` broker.
    pub ca_file: Option<PathBuf>,
    /// Configured; `None`: the registry's syncreply queue of our first HER-id.
    pub reply_queue: Option<String>,
    /// RabbitMQ's management API base URL (no credentials in it: the
    /// broker user and password are used).
    pub management_url: Option<url::Url>,
    /// `broker.connect_timeout_ms`.
    pub connect_timeout: Duration,
    /// `broker.operation_timeout_ms`: one broker call.
    pub operation_timeout: Duration,
    /// `broker.send_retry_ms`: how long a send keeps reconnecting.
    pub send_retry_for: Duration,
    /// `broker.unavailable_after_ms`: when a receive link down is an outage.
    pub unavailable_after: Duration,
    /// `broker.reconnect_backoff_min_ms`.
    pub reconnect_backoff_min: Duration,
    /// `broker.reconnect_backoff_max_ms`.
    pub reconnect_backoff_max: Duration,
}

/// The broker named by `broker.url`.
#[derive(Clone)]
pub enum BrokerEndpoint {
    /// An AMQP 1.0 broker. The password never appears in `Debug` output.
    Amqp {
        /// The broker's URL (user, host, port; no password).
        url: url::Url,
        /// `HELSEMELDING_BROKER_PASSWORD`.
        password: Option<String>,
        /// The exchange of the RabbitMQ dialect.
        exchange: Option<String>,
    },
    /// The embedded queue store in a local SQLite file.
    Local {
        /// The SQLite file.
        path: PathBuf,
    },
}

impl std::fmt::Debug for BrokerEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BrokerEndpoint::Amqp {
                url,
                exchange,
                password,
            } => {
                let mut shown = url.clone();
                let _ = shown.set_password(None);
                f.debug_struct("Amqp")
                    .field("url", &shown.as_str())
                    .field("exchange", exchange)
                    .field("password", &password.as_ref().map(|_| "<set>"))
                    .finish()
            }
            BrokerEndpoint::Local { path } => f.debug_struct("Local").field("path", path).finish(),
        }
    }
}

/// A certificate and its key, from separate files or one PKCS#12 bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyPair {
    /// A certificate file and a key file (PEM or DER).
    Files {
        /// The certificate.
        cert: PathBuf,
        /// Its private key.
        key: PathBuf,
    },
    /// A PKCS#12 bundle (password from `HELSEMELDING_P12_PASSWORD`).
    Pkcs12 {
        /// The bundle.
        bundle: PathBuf,
    },
}

/// Our own certificates.
#[derive(Debug, Clone)]
pub struct Identity {
    /// What we sign with.
    pub signing: Option<KeyPair>,
    /// What we decrypt with.
    pub decryption: Option<KeyPair>,
    /// The previous decryption identity, still tried while senders use
    /// its certificate.
    pub legacy_decryption: Option<KeyPair>,
}

/// Where parties, certificates and profiles come from.
#[derive(Debug, Clone)]
// One value per process: boxing would only make every match longer.
#[allow(clippy::large_enum_variant)]
pub enum Registry {
    /// The embedded file registry.
    Dir(PathBuf),
    /// NHN's REST services.
    Http {
        /// The address registry (communication parties).
        address_url: url::Url,
        /// The CPP/CPA service.
        cppa_url: url::Url,
        /// How long answers are kept (and served stale while the services
        /// fail).
        cache_for: Duration,
        /// Timeout of one request.
        timeout: Duration,
        /// How requests authenticate.
        auth: RegistryAuth,
    },
}

/// How requests to the registry services authenticate.
#[derive(Clone)]
pub enum RegistryAuth {
    /// No authentication (a local test server).
    None,
    /// A bearer token read from this file when the registry is opened.
    TokenFile(PathBuf),
    /// A bearer token from `HELSEMELDING_REGISTRY_TOKEN`; never in `Debug`.
    Token(String),
}

impl std::fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RegistryAuth::None => f.write_str("None"),
            RegistryAuth::TokenFile(path) => f.debug_tuple("TokenFile").field(path).finish(),
            RegistryAuth::Token(_) => f.write_str("Token(<set>)"),
        }
    }
}

/// How certificates are judged.
#[derive(Debug, Clone)]
pub struct Trust {
    /// The CA certificates that certificates must chain to.
    pub anchors: Vec<PathBuf>,
    /// What to do when revocation status cannot be learned.
    pub revocation: RevocationPolicy,
    /// How long a CRL fetch may take.
    pub crl_timeout: Duration,
    /// Accept 3DES-encrypted messages.
    pub allow_3des: bool,
}

/// When an application receipt is overdue.
#[derive(Debug, Clone)]
pub struct Receipts {
    /// Hours after sending when an AppRec is overdue.
    pub deadline_hours: u32,
    /// The same, per message function.
    pub deadline_hours_by_function: BTreeMap<String, u32>,
    /// `true`: an AppRec OK goes back as soon as a message asking for one
    /// is handed over; `false`: the EHR answers (APPREC folder, the API).
    pub automatic: bool,
}

impl Config {
    /// Reads `path`, applies `HELSEMELDING_*` variables from the process
    /// environment and validates the result.
    pub fn load(path: &Path) -> Result<Config> {
        Self::load_with_env(path, std::env::vars())
    }

    /// As [`Config::load`], with the environment given (for tests).
    pub fn load_with_env(
        path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read configuration file {}", path.display()))?;
        let mut table: toml::Table = toml::from_str(&text).map_err(|e| {
            let line = e
                .span()
                .map_or(0, |span| text[..span.start].lines().count().max(1));
            anyhow!(
                "configuration file {} line {line}: {}",
                path.display(),
                e.message().trim()
            )
        })?;
        if table
            .get("broker")
            .and_then(|b| b.get("password"))
            .is_some()
        {
            bail!(
                "configuration file {}: key broker.password: passwords are not kept in the configuration file; set HELSEMELDING_BROKER_PASSWORD",
                path.display()
            );
        }
        if table.get("registry").and_then(|r| r.get("token")).is_some() {
            bail!(
                "configuration file {}: key registry.token: tokens are not kept in the configuration file; set HELSEMELDING_REGISTRY_TOKEN or registry.token_file",
                path.display()
            );
        }
        apply_env(&mut table, env)?;
        let raw: RawConfig =
            serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
                anyhow!(
                    "configuration file {}: key {}: {}",
                    path.display(),
                    e.path(),
                    e.inner()
                )
            })?;
        let base = path.parent().unwrap_or(Path::new("."));
        validate(raw, base).with_context(|| format!("configuration file {}", path.display()))
    }
}

/// Puts `HELSEMELDING_<SECTION>_<KEY>=value` into the table. A value that
/// reads as a TOML integer, boolean or array is taken as one, else as a string.
fn apply_env(
    table: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<()> {
    for (name, value) in env {
        let Some(rest) = name.strip_prefix("HELSEMELDING_") else {
            continue;
        };
        if NOT_KEYS.contains(&name.as_str()) || rest.starts_with("TEST_") {
            continue;
        }
        let rest = rest.to_ascii_lowercase();
        let parsed = parse_env_value(&value);
        if rest == "her_id" || rest == "her_ids" {
            table.insert(rest, parsed);
            continue;
        }
        let Some((section, key)) = SECTIONS.iter().find_map(|s| {
            rest.strip_prefix(s)
                .and_then(|k| k.strip_prefix('_'))
                .map(|k| (*s, k.to_string()))
        }) else {
            bail!("environment variable {name} names no configuration key (expected HELSEMELDING_<SECTION>_<KEY> with a section of {})", SECTIONS.join(", "));
        };
        let entry = table
            .entry(section)
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let Some(section_table) = entry.as_table_mut() else {
            bail!("configuration key {section} must be a table to take {name}");
        };
        // Secrets are strings whatever they look like.
        let parsed = if (section, key.as_str()) == ("broker", "password")
            || (section, key.as_str()) == ("registry", "token")
        {
            toml::Value::String(value)
        } else {
            parsed
        };
        section_table.insert(key, parsed);
    }
    Ok(())
}

fn parse_env_value(value: &str) -> toml::Value {
    let looks_structured = value.parse::<i64>().is_ok()
        || value == "true"
        || value == "false"
        || value.trim_start().starts_with('[');
    if looks_structured {
        if let Ok(table) = toml::from_str::<toml::Table>(&format!("v = {value}")) {
            if let Some(parsed) = table.get("v") {
                return parsed.clone();
            }
        }
    }
    toml::Value::String(value.to_string())
}

/// `her_id` or `her_ids` (not both): positive, distinct, at least one.
fn validate_her_ids(raw: &RawConfig) -> Result<Vec<HerId>> {
    let (key, her_ids) = match (raw.her_id, &raw.her_ids) {
        (Some(_), Some(_)) => bail!("key her_ids: give either her_id or her_ids, not both"),
        (Some(one), None) => ("her_id", vec![one]),
        (None, Some(many)) => ("her_ids", many.clone()),
        (None, None) => bail!("key her_id: missing (our HER-id, or her_ids = [..] for several)"),
    };
    if her_ids.is_empty() {
        bail!("key {key}: at least one HER-id is needed");
    }
    for (i, her_id) in her_ids.iter().enumerate() {
        if *her_id == 0 {
            bail!("key {key}: a HER-id is a positive integer, not 0");
        }
        if her_ids[..i].contains(her_id) {
            bail!("key {key}: HER-id {her_id} is listed twice");
        }
    }
    her_ids
        .iter()
        .map(|her_id| {
            HerId::new(*her_id).ok_or_else(|| {
                anyhow!(
                    "key {key}: {her_id} is above the largest HER-id ({})",
                    HerId::MAX
                )
            })
        })
        .collect()
}

fn validate_send(raw: &RawSend) -> Result<Send> {
    if raw.async_ttl_seconds == Some(0) {
        bail!("key send.async_ttl_seconds: 0 would expire every message at once; leave it out for no TTL");
    }
    if raw.outbox_max_attempts == 0 {
        bail!("key send.outbox_max_attempts: 0 would give up every message before its first attempt; give 1 or more");
    }
    let (backoff_min, backoff_max) = backoff_pair(
        ("send.outbox_backoff_min_ms", raw.outbox_backoff_min_ms),
        ("send.outbox_backoff_max_ms", raw.outbox_backoff_max_ms),
        86_400_000,
    )?;
    for name in raw.extra_properties.keys() {
        let reserved = helsemelding_wire::envelope::names::ALL
            .iter()
            .any(|n| n.eq_ignore_ascii_case(name));
        if reserved || name.trim().is_empty() || name.chars().any(char::is_control) {
            bail!("key send.extra_properties.{name}: not usable as an extra property (empty, control characters, or a name of the profile)");
        }
    }
    Ok(Send {
        async_ttl: raw.async_ttl_seconds.map(std::time::Duration::from_secs),
        payload_metadata: raw.payload_metadata,
        extra_properties: raw
            .extra_properties
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        outbox: OutboxPolicy {
            max_attempts: raw.outbox_max_attempts,
            backoff_min,
            backoff_max,
        },
    })
}

fn validate(raw: RawConfig, base: &Path) -> Result<Config> {
    let her_ids = validate_her_ids(&raw)?;
    if raw.receive.fault_pause_max_seconds == 0 {
        bail!("key receive.fault_pause_max_seconds: must be at least 1");
    }
    if raw.receive.revocation_unknown_for_seconds == 0 {
        bail!("key receive.revocation_unknown_for_seconds: must be at least 1");
    }
    let max_bytes_in_flight = bytes_in_flight(raw.receive.max_mib_in_flight)?;
    let receive_tries = receive_tries(&raw.receive)?;
    let resolve = |p: &Path| {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            base.join(p)
        }
    };
    let existing = |key: &str, p: &Path| -> Result<PathBuf> {
        let path = resolve(p);
        if path.is_dir() {
            bail!("key {key}: {} is a directory, not a file", path.display());
        }
        if !path.is_file() {
            bail!("key {key}: file {} does not exist", path.display());
        }
        Ok(path)
    };
    let broker = validate_broker(&raw, base, &existing)?;
    let identity = Identity {
        signing: key_pair(
            "identity.signing",
            &raw.identity.signing_cert,
            &raw.identity.signing_key,
            &raw.identity.signing_p12,
            &existing,
        )?,
        decryption: key_pair(
            "identity.decryption",
            &raw.identity.decryption_cert,
            &raw.identity.decryption_key,
            &raw.identity.decryption_p12,
            &existing,
        )?,
        legacy_decryption: key_pair(
            "identity.legacy_decryption",
            &raw.identity.legacy_decryption_cert,
            &raw.identity.legacy_decryption_key,
            &raw.identity.legacy_decryption_p12,
            &existing,
        )?,
    };
    let registry = validate_registry(raw.registry, &resolve, &existing)?;
    let anchors = raw
        .trust
        .anchors
        .iter()
        .enumerate()
        .map(|(i, p)| existing(&format!("trust.anchors[{i}]"), p))
        .collect::<Result<Vec<_>>>()?;
    let crl_timeout = millis("trust.crl_timeout_ms", raw.trust.crl_timeout_ms, 60_000)?;
    if raw.audit.retention_days < helsemelding_store::audit::MINIMUM_RETENTION_DAYS {
        bail!(
            "key audit.retention_days: {} is shorter than the minimum of {} days (two years)",
            raw.audit.retention_days,
            helsemelding_store::audit::MINIMUM_RETENTION_DAYS
        );
    }
    let send = validate_send(&raw.send)?;
    let folder = raw
        .folder
        .as_ref()
        .map(|folder| validate_folder(folder, &resolve))
        .transpose()?;
    let http = raw
        .http
        .as_ref()
        .map(|http| http::validate_http(http, &existing))
        .transpose()?;
    Ok(Config {
        her_id: her_ids[0],
        her_ids,
        broker,
        identity,
        registry,
        trust: Trust {
            anchors,
            revocation: raw.trust.revocation,
            crl_timeout,
            allow_3des: raw.trust.allow_3des,
        },
        store_path: resolve(
            raw.store
                .path
                .as_deref()
                .unwrap_or(Path::new("helsemelding.db")),
        ),
        receipts: Receipts {
            deadline_hours: raw.receipts.deadline_hours,
            deadline_hours_by_function: raw.receipts.deadline_hours_by_function,
            automatic: raw.receipts.automatic,
        },
        audit_retention_days: raw.audit.retention_days,
        receive: Receive {
            strict_message_functions: raw.receive.strict_message_functions,
            allow_party_mismatch: raw.receive.allow_party_mismatch,
            allow_unprotected: raw.receive.allow_unprotected,
            revocation_unknown_for: std::time::Duration::from_secs(
                raw.receive.revocation_unknown_for_seconds,
            ),
            dead_letters: raw.receive.dead_letters,
            fault_pause_max: std::time::Duration::from_secs(raw.receive.fault_pause_max_seconds),
            max_bytes_in_flight,
            workers: receive_tries.workers,
            retry: receive_tries.retry,
            held_back_per_worker: raw.receive.held_back_per_worker,
        },
        send,
        folder,
        http,
    })
}

fn validate_folder(raw: &RawFolder, resolve: &dyn Fn(&Path) -> PathBuf) -> Result<Folder> {
    let root = resolve(&raw.root);
    if root.exists() && !root.is_dir() {
        bail!("key folder.root: {} is not a directory", root.display());
    }
    if raw.settle_ms > 600_000 {
        bail!(
            "key folder.settle_ms: {} is above 600000 (ten minutes)",
            raw.settle_ms
        );
    }
    if raw.max_mib == 0 {
        bail!("key folder.max_mib: must be at least 1");
    }
    let max_bytes = raw.max_mib.checked_mul(MIB).ok_or_else(|| {
        anyhow!(
            "key folder.max_mib: {} MiB is more than this machine can address",
            raw.max_mib
        )
    })?;
    Ok(Folder {
        root,
        settle: Duration::from_millis(raw.settle_ms),
        max_bytes,
        sent_after: raw.sent_after,
    })
}

/// What `[receive]` says of workers and of trying a failing message again.
struct ReceiveTries {
    workers: usize,
    retry: RetryPolicy,
}

fn receive_tries(raw: &RawReceive) -> Result<ReceiveTries> {
    if raw.workers == 0 || raw.workers > MAX_WORKERS {
        bail!(
            "key receive.workers: {} is outside 1..={MAX_WORKERS}",
            raw.workers
        );
    }
    if raw.held_back_per_worker > MAX_HELD_BACK {
        bail!(
            "key receive.held_back_per_worker: {} is above {MAX_HELD_BACK} (each is a body kept in memory)",
            raw.held_back_per_worker
        );
    }
    if raw.delivery_limit == 0 {
        bail!("key receive.delivery_limit: must be at least 1 (the reference's is 10)");
    }
    let (backoff_min, backoff_max) = backoff_pair(
        ("receive.retry_backoff_min_ms", raw.retry_backoff_min_ms),
        ("receive.retry_backoff_max_ms", raw.retry_backoff_max_ms),
        3_600_000,
    )?;
    Ok(ReceiveTries {
        workers: raw.workers,
        retry: RetryPolicy {
            delivery_limit: raw.delivery_limit,
            backoff_min,
            backoff_max,
        },
    })
}

/// More workers per queue than this only wait on one another.
const MAX_WORKERS: usize = 256;

/// Held-back deliveries are link credit and memory: a few are enough.
const MAX_HELD_BACK: usize = 64;

/// A millisecond key in `1..=most`.
fn millis(key: &str, value: u64, most: u64) -> Result<Duration> {
    if value == 0 || value > most {
        bail!("key {key}: {value} is outside 1..={most}");
    }
    Ok(Duration::from_millis(value))
}

/// A doubling pause: both keys in `1..=most`, the first not above the second.
fn backoff_pair(min: (&str, u64), max: (&str, u64), most: u64) -> Result<(Duration, Duration)> {
    let low = millis(min.0, min.1, most)?;
    let high = millis(max.0, max.1, most)?;
    if low > high {
        bail!("key {}: {} is above {} = {}", min.0, min.1, max.0, max.1);
    }
    Ok((low, high))
}

/// `[receive] max_mib_in_flight` in bytes. Zero is refused rather than
/// read as "one message at a time": a budget of nothing is a mistake.
fn bytes_in_flight(mib: usize) -> Result<usize> {
    if mib == 0 {
        bail!("key receive.max_mib_in_flight: must be at least 1");
    }
    mib.checked_mul(MIB).ok_or_else(|| {
        anyhow!("key receive.max_mib_in_flight: {mib} MiB is more than this machine can address")
    })
}

fn validate_broker(
    raw: &RawConfig,
    base: &Path,
    existing: &dyn Fn(&str, &Path) -> Result<PathBuf>,
) -> Result<Broker> {
    let endpoint = if let Some(path) = raw.broker.url.strip_prefix("local:") {
        if path.is_empty() {
            bail!("key broker.url: `local:` needs a path, e.g. local:queues.db");
        }
        let path = Path::new(path);
        BrokerEndpoint::Local {
            path: if path.is_absolute() {
                path.to_path_buf()
            } else {
                base.join(path)
            },
        }
    } else {
        let url = url::Url::parse(&raw.broker.url)
            .map_err(|e| anyhow!("key broker.url: not a URL ({e})"))?;
        if !matches!(url.scheme(), "amqp" | "amqps") {
            bail!(
                "key broker.url: scheme {} is not amqp, amqps or local",
                url.scheme()
            );
        }
        if url.host_str().is_none_or(str::is_empty) {
            bail!("key broker.url: no host");
        }
        if url.password().is_some() {
            bail!("key broker.url: the URL holds a password; set HELSEMELDING_BROKER_PASSWORD instead");
        }
        let from_path = url.path().trim_matches('/');
        let exchange = raw
            .broker
            .exchange
            .clone()
            .or_else(|| (!from_path.is_empty()).then(|| from_path.to_string()));
        BrokerEndpoint::Amqp {
            url,
            password: raw.broker.password.clone(),
            exchange,
        }
    };
    let ca_file = raw
        .broker
        .ca_file
        .as_deref()
        .map(|p| existing("broker.ca_file", p))
        .transpose()?;
    let management_url = raw
        .broker
        .management_url
        .as_deref()
        .map(|value| {
            let url = url::Url::parse(value)
                .map_err(|e| anyhow!("key broker.management_url: not a URL ({e})"))?;
            if !matches!(url.scheme(), "http" | "https") {
                bail!("key broker.management_url: scheme {} is not http or https", url.scheme());
            }
            if url.password().is_some() {
                bail!("key broker.management_url: the URL holds a password; set HELSEMELDING_BROKER_PASSWORD instead");
            }
            Ok(url)
        })
        .transpose()?;
    let dialect = match raw.broker.dialect.as_deref() {
        None => Dialect::default(),
        Some(name) => name
            .parse()
            .map_err(|e| anyhow!("key broker.dialect: {e}"))?,
    };
    let b = &raw.broker;
    let (reconnect_backoff_min, reconnect_backoff_max) = backoff_pair(
        (
            "broker.reconnect_backoff_min_ms",
            b.reconnect_backoff_min_ms,
        ),
        (
            "broker.reconnect_backoff_max_ms",
            b.reconnect_backoff_max_ms,
        ),
        600_000,
    )?;
    Ok(Broker {
        endpoint,
        dialect,
        connect_timeout: millis("broker.connect_timeout_ms", b.connect_timeout_ms, 600_000)?,
        operation_timeout: millis(
            "broker.operation_timeout_ms",
            b.operation_timeout_ms,
            600_000,
        )?,
        send_retry_for: millis("broker.send_retry_ms", b.send_retry_ms, 86_400_000)?,
        unavailable_after: millis(
            "broker.unavailable_after_ms",
            b.unavailable_after_ms,
            3_600_000,
        )?,
        reconnect_backoff_min,
        reconnect_backoff_max,
        management_url,
        ca_file,
        reply_queue: raw.broker.reply_queue.clone(),
    })
}

fn key_pair(
    key: &str,
    cert: &Option<PathBuf>,
    private_key: &Option<PathBuf>,
    p12: &Option<PathBuf>,
    existing: &dyn Fn(&str, &Path) -> Result<PathBuf>,
) -> Result<Option<KeyPair>> {
    match (cert, private_key, p12) {
        (None, None, None) => Ok(None),
        (Some(cert), Some(private_key), None) => Ok(Some(KeyPair::Files {
            cert: existing(&format!("{key}_cert"), cert)?,
            key: existing(&format!("{key}_key"), private_key)?,
        })),
        (None, None, Some(bundle)) => Ok(Some(KeyPair::Pkcs12 {
            bundle: existing(&format!("{key}_p12"), bundle)?,
        })),
        (_, _, Some(_)) => {
            bail!("key {key}_p12: give either {key}_p12 or {key}_cert with {key}_key, not both")
        }
        (Some(_), None, None) => bail!("key {key}_key: {key}_cert is set but its key is missing"),
        (None, Some(_), None) => {
            bail!("key {key}_cert: {key}_key is set but its certificate is missing")
        }
    }
}

fn validate_registry(
    raw: RawRegistry,
    resolve: &dyn Fn(&Path) -> PathBuf,
    existing: &dyn Fn(&str, &Path) -> Result<PathBuf>,
) -> Result<Registry> {
    let parse = |key: &str, value: &str| -> Result<url::Url> {
        let url =
            url::Url::parse(value).map_err(|e| anyhow!("key registry.{key}: not a URL ({e})"))?;
        if url.scheme() != "https"
            && url.host_str() != Some("127.0.0.1")
            && url.host_str() != Some("localhost")
        {
            bail!("key registry.{key}: registry services are reached over https");
        }
        Ok(url)
    };
    match (raw.dir, raw.address_url) {
        (Some(dir), None) => {
            // A missing registry would make every sender unknown: `listen`
            // would answer each valid message with missing-certificate.
            let path = resolve(&dir);
            if !path.exists() {
                bail!(
                    "key registry.dir: directory {} does not exist; correct the path, or create \
                     the file registry there (`helsemelding registry add --dir {} ...` or \
                     `helsemelding registry import --dir {} FILES`)",
                    path.display(),
                    path.display(),
                    path.display()
                );
            }
            if !path.is_dir() {
                bail!(
                    "key registry.dir: {} is not a directory; give the file registry's directory",
                    path.display()
                );
            }
            Ok(Registry::Dir(path))
        }
        (None, Some(address)) => {
            let Some(cppa) = raw.cppa_url.as_deref() else {
                bail!("key registry.cppa_url: needed with registry.address_url (the CPPA service)");
            };
            let auth = match (raw.token_file, raw.token) {
                (Some(_), Some(_)) => bail!(
                    "key registry.token_file: give either registry.token_file or HELSEMELDING_REGISTRY_TOKEN, not both"
                ),
                (Some(file), None) => RegistryAuth::TokenFile(existing("registry.token_file", &file)?),
                (None, Some(token)) => RegistryAuth::Token(token),
                (None, None) => RegistryAuth::None,
            };
            let timeout = millis("registry.timeout_ms", raw.timeout_ms, 300_000)?;
            Ok(Registry::Http {
                address_url: parse("address_url", &address)?,
                cppa_url: parse("cppa_url", cppa)?,
                cache_for: Duration::from_secs(raw.cache_seconds),
                timeout,
                auth,
            })
        }
        (Some(_), Some(_)) => {
            bail!("key registry.dir: give either registry.dir or registry.address_url, not both")
        }
        (None, None) => {
            bail!("key registry.dir: set registry.dir (the file registry) or registry.address_url")
        }
    }
}

#[cfg(test)]
mod tests;
