//! The one party set-up of the test suites: a test directory with one CA
//! ([`crate::pki`]), the CRL it publishes (revoking nothing, handed to the
//! code under test directly or served on 127.0.0.1), and the file-backed
//! registry in the very formats the gateway and the messaging library read.
//! Into it a suite puts its parties: their signing and encryption
//! certificates issued and registered ([`Parties::party`]), and then what
//! the suite drives them with:
//!
//! - library suites: a [`MessengerConfig`] over the party's keys, the CA and
//!   the CRL, a store, and the [`Messenger`] ([`Parties::messenger`]);
//! - CLI suites: a gateway TOML configuration with the keys as PEM files, the
//!   CA as trust anchor and revocation required ([`Parties::gateway_config`]).
//!
//! Every store a suite opens, also to look into a gateway's, is opened by
//! [`open_store`]: the one line to change when the store backend changes.
//!
//! ```
//! use std::sync::Arc;
//! use helsemelding_testkit::party::Parties;
//! use helsemelding_transport::local::LocalTransport;
//!
//! let parties = Parties::new("example CA");
//! let a = parties.party(91462).register();
//! let b = parties.party(109989).name("the GP office").register();
//! assert_eq!(parties.registry().dir(), parties.dir().join("registry"));
//!
//! // Library level: a messenger for A on a local transport.
//! let transport = Arc::new(LocalTransport::open(parties.dir().join("queues.db")).unwrap());
//! let ours = parties.messenger(&a).require_revocation().build(transport);
//! let pending = futures_lite_block_on(ours.store.outbox().pending_count());
//! assert_eq!(pending.unwrap(), 0);
//! # fn futures_lite_block_on<T>(work: impl std::future::Future<Output = T>) -> T {
//! #     tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(work)
//! # }
//!
//! // CLI level: a gateway configuration for B.
//! let config = parties.gateway_config(&b).write();
//! assert!(std::fs::read_to_string(config).unwrap().starts_with("her_id = 109989\n"));
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use helsemelding_messaging::{Messenger, MessengerConfig, RetryPolicy};
use helsemelding_protect::{Crl, RevocationPolicy, StaticCrls, TrustAnchors};
use helsemelding_registry::file::NewParty;
use helsemelding_registry::{FileRegistry, Registry};
use helsemelding_store::Store;
use helsemelding_store_sqlite::SqliteStore;
use helsemelding_transport::Transport;
use helsemelding_wire::HerId;

use crate::broker::Broker;
use crate::pki::{Issued, LeafOptions, TestPki, Usage};

/// The CA name of a set-up that does not name one.
const DEFAULT_CA_NAME: &str = "helsemelding test CA";

/// The environment variable the gateway reads the broker password from.
pub const BROKER_PASSWORD_ENV: &str = "HELSEMELDING_BROKER_PASSWORD";

/// Opens (or creates) the store at `path`, as the code under test would:
/// the one place the suites open a store.
pub fn open_store(path: &Path) -> Arc<dyn Store> {
    let store = SqliteStore::open(path)
        .unwrap_or_else(|e| panic!("opening the store {}: {e}", path.display()));
    Arc::new(store)
}

/// The common ground of a suite's parties: a test directory (removed with
/// it), one CA, its CRL, and the file registry under `<dir>/registry`.
pub struct Parties {
    pki: TestPki,
    registry: Arc<FileRegistry>,
    crls: Arc<StaticCrls>,
    crl_url: Option<String>,
    dir: tempfile::TempDir,
}

/// How to make [`Parties`]: the CA's name, whether its CRL is served.
#[derive(Debug, Clone)]
pub struct PartiesBuilder {
    ca_name: String,
    serve_crl: bool,
}

impl PartiesBuilder {
    /// The CA is `CN=<name>, O=helsemelding test`.
    pub fn ca_name(mut self, name: impl Into<String>) -> PartiesBuilder {
        self.ca_name = name.into();
        self
    }

    /// Serves the CA's CRL on 127.0.0.1 and names it as the CRL
    /// distribution point of every party certificate: for code under test
    /// that fetches revocation data itself (the gateway binary).
    pub fn serve_crl(mut self) -> PartiesBuilder {
        self.serve_crl = true;
        self
    }

    /// The directory, the CA (its certificate also in `<dir>/ca.pem`), the
    /// CRL and the empty registry.
    pub fn build(self) -> Parties {
        let dir = tempfile::tempdir().expect("a test directory");
        let pki = TestPki::new(&self.ca_name);
        let ca_pem = pki.ca.cert.to_pem().expect("the CA as PEM");
        std::fs::write(dir.path().join("ca.pem"), ca_pem).expect("writing ca.pem");
        // Revocation is required by default, so there is always a CRL: one
        // that revokes nothing, valid for a day.
        let crl = pki.crl(&[], chrono::Utc::now() + chrono::Duration::days(1));
        let crl_url = self
            .serve_crl
            .then(|| crate::http::serve_crl(crl.to_der().expect("the CRL as DER")));
        Parties {
            registry: Arc::new(FileRegistry::new(dir.path().join("registry"))),
            crls: Arc::new(StaticCrls::new(vec![Crl::from_x509_crl(crl)])),
            crl_url,
            pki,
            dir,
        }
    }
}

impl Parties {
    /// A set-up to adjust: CA name, served CRL.
    pub fn builder() -> PartiesBuilder {
        PartiesBuilder {
            ca_name: DEFAULT_CA_NAME.to_owned(),
            serve_crl: false,
        }
    }

    /// A set-up whose CA is named `ca_name` and whose CRL is not served.
    pub fn new(ca_name: &str) -> Parties {
        Parties::builder().ca_name(ca_name).build()
    }

    /// The test directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The CA, to issue further certificates (rotations, expired ones, ...).
    pub fn pki(&self) -> &TestPki {
        &self.pki
    }

    /// The file registry the parties are in.
    pub fn registry(&self) -> &Arc<FileRegistry> {
        &self.registry
    }

    /// The CA's certificate as a PEM file (a gateway's trust anchor).
    pub fn ca_pem(&self) -> PathBuf {
        self.dir().join("ca.pem")
    }

    /// Where the CRL is served, when [`PartiesBuilder::serve_crl`] asked for it.
    pub fn crl_url(&self) -> Option<&str> {
        self.crl_url.as_deref()
    }

    /// The CA as the only trust anchor.
    pub fn trust_anchors(&self) -> TrustAnchors {
        TrustAnchors::new(vec![self.pki.ca.certificate()])
    }

    /// The CA's CRL (revoking nothing) as revocation data.
    pub fn crls(&self) -> Arc<StaticCrls> {
        self.crls.clone()
    }

    /// The options of party certificates: valid from yesterday for a year,
    /// naming the served CRL if there is one.
    pub fn leaf_options(&self) -> LeafOptions {
        match &self.crl_url {
            Some(url) => LeafOptions::default().crl_distribution_point(url.clone()),
            None => LeafOptions::default(),
        }
    }

    /// A party with HER-id `her_id`, to adjust and then register (or only issue).
    pub fn party(&self, her_id: u32) -> PartyBuilder<'_> {
        PartyBuilder {
            parties: self,
            her_id,
            name: None,
            common_names: None,
            issuer: None,
            signing: self.leaf_options(),
            encryption: self.leaf_options(),
            queue_prefix: None,
            nhn_cpp: false,
        }
    }

    /// A registry entry for `her_id` with these certificates: to register
    /// a party's rotated or expired certificates, or one identity under a
    /// second HER-id. Adding it replaces what the registry had for `her_id`.
    pub fn registration<'a>(
        &'a self,
        her_id: u32,
        signing: &'a Issued,
        encryption: &'a Issued,
    ) -> Registration<'a> {
        Registration {
            parties: self,
            her_id,
            name: format!("party {her_id}"),
            signing,
            encryption,
            queue_prefix: None,
            cpp: None,
        }
    }

    /// A messenger for `party`, to adjust and then build: its keys, the CA
    /// as trust anchor, the CRL, the file registry, a store in the test
    /// directory. Its configuration is [`MessengerConfig::new`]'s until
    /// adjusted.
    pub fn messenger(&self, party: &TestParty) -> MessengerBuilder {
        MessengerBuilder {
            config: MessengerConfig::new(
                party.her_id,
                party.signing.identity(),
                party.encryption.identity(),
                self.trust_anchors(),
                self.crls(),
            ),
            registry: self.registry.clone(),
            store_path: self.store_path(&party.her_id.to_string()),
        }
    }

    /// A gateway configuration for `party`, to adjust and then write.
    pub fn gateway_config<'a>(&'a self, party: &'a TestParty) -> GatewayConfig<'a> {
        GatewayConfig {
            parties: self,
            party,
            broker: None,
            registry_section: None,
            store_path: self.store_path(&party.her_id.to_string()),
            file_name: format!("{}.toml", party.her_id),
        }
    }

    /// `<dir>/<name>.db`: where a store named `name` lives.
    pub fn store_path(&self, name: &str) -> PathBuf {
        self.dir().join(format!("{name}.db"))
    }
}

/// A party to issue (and register): see [`Parties::party`].
pub struct PartyBuilder<'a> {
    parties: &'a Parties,
    her_id: u32,
    name: Option<String>,
    common_names: Option<String>,
    issuer: Option<&'a TestPki>,
    signing: LeafOptions,
    encryption: LeafOptions,
    queue_prefix: Option<String>,
    nhn_cpp: bool,
}

impl<'a> PartyBuilder<'a> {
    /// Its name in the registry (default `party <her_id>`).
    pub fn name(mut self, name: impl Into<String>) -> PartyBuilder<'a> {
        self.name = Some(name.into());
        self
    }

    /// Its certificates are `CN=<prefix> signing` and `CN=<prefix>
    /// encryption` (default prefix `party <her_id>`).
    pub fn common_names(mut self, prefix: impl Into<String>) -> PartyBuilder<'a> {
        self.common_names = Some(prefix.into());
        self
    }

    /// Its certificates come from `issuer` instead of the set-up's CA
    /// (whose trust anchors and CRL then do not cover them).
    pub fn issued_by(mut self, issuer: &'a TestPki) -> PartyBuilder<'a> {
        self.issuer = Some(issuer);
        self
    }

    /// Its signing certificate has `options` (e.g. [`LeafOptions::expired`]).
    pub fn signing_options(mut self, options: LeafOptions) -> PartyBuilder<'a> {
        self.signing = options;
        self
    }

    /// Its encryption certificate has `options`.
    pub fn encryption_options(mut self, options: LeafOptions) -> PartyBuilder<'a> {
        self.encryption = options;
        self
    }

    /// Its queues are `<prefix>_async` etc. instead of its HER-id's.
    pub fn queue_prefix(mut self, prefix: impl ToString) -> PartyBuilder<'a> {
        self.queue_prefix = Some(prefix.to_string());
        self
    }

    /// Registers NHN's real CPP (`CPP_91462.xml`) made over to this party
    /// and its certificates ([`crate::fixtures::cpp_for_test_party`]).
    pub fn with_nhn_cpp(mut self) -> PartyBuilder<'a> {
        self.nhn_cpp = true;
        self
    }

    /// Issues its certificates without registering it.
    pub fn issue(&self) -> TestParty {
        let issuer = self.issuer.unwrap_or(&self.parties.pki);
        let prefix = self
            .common_names
            .clone()
            .unwrap_or_else(|| format!("party {}", self.her_id));
        let signing =
            issuer.issue_with(&format!("{prefix} signing"), Usage::Signing, &self.signing);
        let encryption = issuer.issue_with(
            &format!("{prefix} encryption"),
            Usage::Encryption,
            &self.encryption,
        );
        TestParty {
            her_id: HerId::new(self.her_id).expect("a valid HER-id"),
            signing,
            encryption,
        }
    }

    /// Issues its certificates and registers it.
    pub fn register(self) -> TestParty {
        let party = self.issue();
        let mut registration =
            self.parties
                .registration(self.her_id, &party.signing, &party.encryption);
        if let Some(name) = self.name {
            registration = registration.name(name);
        }
        if let Some(prefix) = self.queue_prefix {
            registration = registration.queue_prefix(prefix);
        }
        if self.nhn_cpp {
            registration = registration.with_nhn_cpp();
        }
        registration.add();
        party
    }
}

/// A registry entry to add: see [`Parties::registration`].
pub struct Registration<'a> {
    parties: &'a Parties,
    her_id: u32,
    name: String,
    signing: &'a Issued,
    encryption: &'a Issued,
    queue_prefix: Option<String>,
    cpp: Option<Vec<u8>>,
}

impl<'a> Registration<'a> {
    /// Its name (default `party <her_id>`).
    pub fn name(mut self, name: impl Into<String>) -> Registration<'a> {
        self.name = name.into();
        self
    }

    /// Its queues are `<prefix>_async` etc. instead of its HER-id's.
    pub fn queue_prefix(mut self, prefix: impl ToString) -> Registration<'a> {
        self.queue_prefix = Some(prefix.to_string());
        self
    }

    /// With NHN's real CPP made over to this HER-id and these certificates.
    pub fn with_nhn_cpp(mut self) -> Registration<'a> {
        self.cpp = Some(crate::fixtures::cpp_for_test_party(
            self.her_id,
            &self.signing.certificate().to_der(),
            &self.encryption.certificate().to_der(),
        ));
        self
    }

    /// Writes it into the file registry.
    pub fn add(self) {
        self.parties
            .registry
            .add_party(&NewParty {
                her_id: self.her_id,
                name: self.name,
                signing_certificate: self.signing.certificate(),
                encryption_certificate: self.encryption.certificate(),
                cpp: self.cpp,
                queue_prefix: self.queue_prefix,
            })
            .unwrap_or_else(|e| panic!("registering {}: {e}", self.her_id));
    }
}

/// A party's HER-id and certificates (with their keys).
#[derive(Clone)]
pub struct TestParty {
    /// Its HER-id.
    pub her_id: HerId,
    /// Its signing certificate (digitalSignature + nonRepudiation).
    pub signing: Issued,
    /// Its encryption certificate (keyEncipherment + dataEncipherment).
    pub encryption: Issued,
}

/// A messenger to build: see [`Parties::messenger`].
pub struct MessengerBuilder {
    config: MessengerConfig,
    registry: Arc<dyn Registry>,
    store_path: PathBuf,
}

impl MessengerBuilder {
    /// Revocation data is required ([`RevocationPolicy::Require`]).
    pub fn require_revocation(mut self) -> MessengerBuilder {
        self.config.revocation = RevocationPolicy::Require;
        self
    }

    /// Redeliveries come quickly (50 to 200 ms apart, at most 10), so that
    /// a suite sees retries within its patience.
    pub fn quick_retries(mut self) -> MessengerBuilder {
        self.config.retry = RetryPolicy {
            delivery_limit: 10,
            backoff_min: Duration::from_millis(50),
            backoff_max: Duration::from_millis(200),
        };
        self
    }

    /// Adjusts the configuration further.
    pub fn configure(mut self, adjust: impl FnOnce(&mut MessengerConfig)) -> MessengerBuilder {
        adjust(&mut self.config);
        self
    }

    /// Looks parties up in `registry` instead of the file registry.
    pub fn registry(mut self, registry: Arc<dyn Registry>) -> MessengerBuilder {
        self.registry = registry;
        self
    }

    /// Its store is `<dir>/<name>.db` (default: the HER-id as name).
    pub fn store_named(mut self, name: &str) -> MessengerBuilder {
        self.store_path = self.store_path.with_file_name(format!("{name}.db"));
        self
    }

    /// Its store is at `path`.
    pub fn store_at(mut self, path: impl Into<PathBuf>) -> MessengerBuilder {
        self.store_path = path.into();
        self
    }

    /// The configuration as it stands, without building.
    pub fn config(&self) -> &MessengerConfig {
        &self.config
    }

    /// Opens the store and makes the messenger on `transport`.
    pub fn build(self, transport: Arc<dyn Transport>) -> OurMessenger {
        let store = open_store(&self.store_path);
        let messenger = Messenger::new(self.config, transport, self.registry, store.clone());
        OurMessenger { messenger, store }
    }
}

/// A party running our code: its messenger and its store.
pub struct OurMessenger {
    /// The messenger.
    pub messenger: Messenger,
    /// Its store (the same database the messenger writes).
    pub store: Arc<dyn Store>,
}

/// The `[broker]` of a gateway configuration.
pub enum GatewayBroker {
    /// The local transport, `<dir>/queues.db`.
    Local,
    /// The private RabbitMQ: its URL without the password, which the
    /// gateway takes from [`BROKER_PASSWORD_ENV`] only.
    RabbitMq(Broker),
}

impl GatewayBroker {
    /// The section's lines for a set-up in `dir`.
    fn toml(&self, dir: &Path) -> String {
        match self {
            GatewayBroker::Local => format!("url = \"local:{}/queues.db\"\n", dir.display()),
            GatewayBroker::RabbitMq(broker) => {
                let mut url = url::Url::parse(broker.amqp_url()).expect("the broker's URL");
                url.set_password(None).expect("a URL with a host");
                url.set_path(broker.exchange());
                format!("url = \"{url}\"\n")
            }
        }
    }

    /// The password the gateway must be given in [`BROKER_PASSWORD_ENV`], if any.
    pub fn password(&self) -> Option<String> {
        match self {
            GatewayBroker::Local => None,
            GatewayBroker::RabbitMq(broker) => Some(broker.credentials().1.to_owned()),
        }
    }
}

/// A gateway configuration to write: see [`Parties::gateway_config`].
///
/// It names the party's keys (written as `<her_id>-sign.pem`/`.key` and
/// `<her_id>-enc.pem`/`.key`), the set-up's file registry, the CA as the
/// only trust anchor with revocation required (so the CRL should be
/// served: [`PartiesBuilder::serve_crl`]), and a store in the test directory.
pub struct GatewayConfig<'a> {
    parties: &'a Parties,
    party: &'a TestParty,
    broker: Option<&'a GatewayBroker>,
    registry_section: Option<String>,
    store_path: PathBuf,
    file_name: String,
}

impl<'a> GatewayConfig<'a> {
    /// Its `[broker]` (default [`GatewayBroker::Local`]).
    pub fn broker(mut self, broker: &'a GatewayBroker) -> GatewayConfig<'a> {
        self.broker = Some(broker);
        self
    }

    /// The lines of its `[registry]` section instead of the file registry's
    /// `dir` (e.g. the URLs of HTTP registries).
    pub fn registry_section(mut self, lines: impl Into<String>) -> GatewayConfig<'a> {
        let mut lines = lines.into();
        if !lines.ends_with('\n') {
            lines.push('\n');
        }
        self.registry_section = Some(lines);
        self
    }

    /// Its store is at `path` (default `<dir>/<her_id>.db`).
    pub fn store_at(mut self, path: impl Into<PathBuf>) -> GatewayConfig<'a> {
        self.store_path = path.into();
        self
    }

    /// The file is `<dir>/<name>` (default `<her_id>.toml`).
    pub fn file_name(mut self, name: impl Into<String>) -> GatewayConfig<'a> {
        self.file_name = name.into();
        self
    }

    /// Writes the keys and the configuration; returns the configuration's path.
    pub fn write(self) -> PathBuf {
        let dir = self.parties.dir();
        let her_id = self.party.her_id;
        let (sign_cert, sign_key) = self.party.signing.write_pem(dir, &format!("{her_id}-sign"));
        let (enc_cert, enc_key) = self
            .party
            .encryption
            .write_pem(dir, &format!("{her_id}-enc"));
        let broker = self.broker.unwrap_or(&GatewayBroker::Local).toml(dir);
        let registry = self
            .registry_section
            .unwrap_or_else(|| format!("dir = \"{}\"\n", self.parties.registry.dir().display()));
        let config = format!(
            r#"her_id = {her_id}
[broker]
{broker}[identity]
signing_cert = "{}"
signing_key = "{}"
decryption_cert = "{}"
decryption_key = "{}"
[registry]
{registry}[trust]
anchors = ["{}"]
revocation = "require"
[store]
path = "{}"
"#,
            sign_cert.display(),
            sign_key.display(),
            enc_cert.display(),
            enc_key.display(),
            self.parties.ca_pem().display(),
            self.store_path.display(),
        );
        let path = dir.join(&self.file_name);
        std::fs::write(&path, config).expect("writing the configuration");
        path
    }
}
