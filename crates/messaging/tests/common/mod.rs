//! What the RabbitMQ fault and interop suites of this crate share: parties
//! with generated certificates in a file registry, their queues on the
//! private broker, a messenger and store each, and an application handler
//! that counts hand-overs by message id.
#![allow(dead_code)] // each test binary uses its own part of this module

pub mod local;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::Utc;
use helsemelding_messaging::{
    ErrorHandler, Handler, HandlerError, Messenger, MessengerConfig, Received, RetryPolicy,
};
use helsemelding_protect::{
    Certificate, Crl, Identity, RevocationPolicy, StaticCrls, TrustAnchors,
};
use helsemelding_registry::file::NewParty;
use helsemelding_registry::FileRegistry;
use helsemelding_store::Store;
use helsemelding_store_sqlite::SqliteStore;
use helsemelding_testkit::broker::{Broker, PartyQueues};
use helsemelding_testkit::pki::{Issued, TestPki, Usage};
use helsemelding_transport::Transport;
use helsemelding_transport_amqp::{AmqpOptions, AmqpTransport};
use helsemelding_wire::error_report::ReceivedErrorReport;
use helsemelding_wire::HerId;
use uuid::Uuid;

pub const FUNCTION: &str = "DIALOG_INNBYGGER_TEST";

/// A party on the bus: HER-id, certificates (also in the registry), queues.
pub struct Peer {
    pub her_id: HerId,
    pub signing: Issued,
    pub encryption: Issued,
    _queues: Option<PartyQueues>,
}

impl Peer {
    /// A party whose queues the test makes (or does not need).
    pub fn new(her_id: HerId, signing: Issued, encryption: Issued) -> Peer {
        Peer {
            her_id,
            signing,
            encryption,
            _queues: None,
        }
    }
}

/// A party that runs our code: a [`Peer`] with a messenger and store.
pub struct Party {
    pub peer: Peer,
    pub store: Arc<dyn Store>,
    pub messenger: Messenger,
}

/// The private broker, a test PKI, a file registry and a transport.
pub struct Bus {
    pub broker: Broker,
    pub pki: TestPki,
    pub registry: Arc<FileRegistry>,
    pub transport: Arc<dyn Transport>,
    pub crls: Arc<StaticCrls>,
    pub trust: TrustAnchors,
    pub dir: tempfile::TempDir,
}

impl Bus {
    /// Connects to the broker of `scripts/test` with `options`.
    pub fn new(options: AmqpOptions) -> Bus {
        let broker = Broker::from_env();
        let dir = tempfile::tempdir().unwrap();
        let url = format!("{}/{}", broker.amqp_url(), broker.exchange());
        let transport: Arc<dyn Transport> = Arc::new(AmqpTransport::new(&url, options).unwrap());
        let pki = TestPki::new("messaging fault test CA");
        let crl = Crl::from_x509_crl(pki.crl(&[], Utc::now() + chrono::Duration::days(1)));
        Bus {
            registry: Arc::new(FileRegistry::new(dir.path().join("registry"))),
            trust: TrustAnchors::new(vec![Certificate::from_x509(pki.ca.cert.clone())]),
            crls: Arc::new(StaticCrls::new(vec![crl])),
            broker,
            transport,
            pki,
            dir,
        }
    }

    /// A party with a HER-id of its own (error reports go to the real
    /// `<herid>_error` names), its queues, and its certificates registered.
    pub fn peer(&self) -> Peer {
        let her_id = 800_000_000 + fastrand::u32(0..100_000_000);
        let queues = self.broker.party_queues(her_id);
        let signing = self
            .pki
            .issue(&format!("party {her_id} signing"), Usage::Signing);
        let encryption = self
            .pki
            .issue(&format!("party {her_id} encryption"), Usage::Encryption);
        self.registry
            .add_party(&NewParty {
                her_id,
                name: format!("party {her_id}"),
                signing_certificate: Certificate::from_x509(signing.cert.clone()),
                encryption_certificate: Certificate::from_x509(encryption.cert.clone()),
                cpp: None,
                queue_prefix: None,
            })
            .unwrap();
        Peer {
            her_id: HerId::new(her_id).unwrap(),
            signing,
            encryption,
            _queues: Some(queues),
        }
    }

    /// A party running our messenger (revocation required, fast retries).
    pub fn party(&self) -> Party {
        self.party_with(|_| {})
    }

    /// A party as [`Bus::party`], its configuration changed by `adjust`.
    pub fn party_with(&self, adjust: impl FnOnce(&mut MessengerConfig)) -> Party {
        let peer = self.peer();
        let mut config = MessengerConfig::new(
            peer.her_id,
            identity(&peer.signing),
            identity(&peer.encryption),
            self.trust.clone(),
            self.crls.clone(),
        );
        config.revocation = RevocationPolicy::Require;
        config.retry = RetryPolicy {
            delivery_limit: 10,
            backoff_min: Duration::from_millis(50),
            backoff_max: Duration::from_millis(200),
        };
        adjust(&mut config);
        let store: Arc<dyn Store> = Arc::new(
            SqliteStore::open(&self.dir.path().join(format!("{}.db", peer.her_id))).unwrap(),
        );
        let messenger = Messenger::new(
            config,
            self.transport.clone(),
            self.registry.clone(),
            store.clone(),
        );
        Party {
            peer,
            store,
            messenger,
        }
    }
}

pub fn identity(issued: &Issued) -> Identity {
    Identity::new(
        Certificate::from_x509(issued.cert.clone()),
        issued.key.clone(),
    )
    .unwrap()
}

/// A MsgHead from `from` to `to` around a short note; `n` makes it unique.
pub fn msghead(from: HerId, to: HerId, n: usize) -> Vec<u8> {
    format!(
        r#"<MsgHead xmlns="http://www.kith.no/xmlstds/msghead/2006-05-24">
  <MsgInfo>
    <Type V="{FUNCTION}" DN="Test" />
    <MIGversion>v1.2 2006-05-24</MIGversion>
    <GenDate>2026-11-23T10:00:00Z</GenDate>
    <MsgId>{id}</MsgId>
    <Sender><Organisation><OrganisationName>A</OrganisationName><Ident><Id>{from}</Id><TypeId V="HER" S="2.16.578.1.12.4.1.1.9051" DN="HER-id" /></Ident></Organisation></Sender>
    <Receiver><Organisation><OrganisationName>B</OrganisationName><Ident><Id>{to}</Id><TypeId V="HER" S="2.16.578.1.12.4.1.1.9051" DN="HER-id" /></Ident></Organisation></Receiver>
  </MsgInfo>
  <Document><RefDoc><MsgType V="XML" DN="XML-instans" /><Content><Note xmlns="urn:test">Melding {n}, æøå</Note></Content></RefDoc></Document>
</MsgHead>"#,
        id = Uuid::new_v4()
    )
    .into_bytes()
}

/// The application: every hand-over and error report, counted by id.
#[derive(Default)]
pub struct Counting {
    received: Mutex<Vec<Received>>,
    hand_overs: Mutex<HashMap<String, u32>>,
    errors: Mutex<Vec<ReceivedErrorReport>>,
}

#[async_trait]
impl Handler for Counting {
    async fn handle(&self, message: &Received) -> Result<(), HandlerError> {
        *self
            .hand_overs
            .lock()
            .unwrap()
            .entry(message.message_id.clone())
            .or_default() += 1;
        self.received.lock().unwrap().push(message.clone());
        Ok(())
    }
}

#[async_trait]
impl ErrorHandler for Counting {
    async fn handle_error(&self, report: &ReceivedErrorReport) -> Result<(), HandlerError> {
        self.errors.lock().unwrap().push(report.clone());
        Ok(())
    }
}

impl Counting {
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    pub fn errors(&self) -> Vec<ReceivedErrorReport> {
        self.errors.lock().unwrap().clone()
    }

    /// Hand-overs per message id.
    pub fn hand_overs(&self) -> HashMap<String, u32> {
        self.hand_overs.lock().unwrap().clone()
    }

    pub fn distinct(&self) -> usize {
        self.hand_overs.lock().unwrap().len()
    }
}

/// Polls `probe` until it answers, for at most `within`.
pub async fn eventually<T>(
    what: &str,
    within: Duration,
    mut probe: impl AsyncFnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
