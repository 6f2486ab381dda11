//! Two parties on one local transport (no broker): A and B, each with its
//! messenger and store, their certificates in one file registry.

use std::sync::Arc;

use chrono::Utc;
use helsemelding_messaging::{Messenger, MessengerConfig};
use helsemelding_protect::{Certificate, Crl, RevocationPolicy, StaticCrls, TrustAnchors};
use helsemelding_registry::file::NewParty;
use helsemelding_registry::FileRegistry;
use helsemelding_store::Store;
use helsemelding_store_sqlite::SqliteStore;
use helsemelding_testkit::pki::{TestPki, Usage};
use helsemelding_transport::local::LocalTransport;
use helsemelding_transport::Transport;
use helsemelding_wire::HerId;

use super::identity;

/// Two parties on one local transport: 91462 (A) and 109989 (B).
pub struct LocalPair {
    pub a: Messenger,
    pub b: Messenger,
    pub transport: Arc<dyn Transport>,
    pub dir: tempfile::TempDir,
}

impl LocalPair {
    /// Both parties, their certificates issued by a CA named `ca_name`.
    pub fn new(ca_name: &str) -> LocalPair {
        let dir = tempfile::tempdir().unwrap();
        let transport: Arc<dyn Transport> =
            Arc::new(LocalTransport::open(dir.path().join("queues.db")).unwrap());
        let pki = TestPki::new(ca_name);
        let registry = Arc::new(FileRegistry::new(dir.path().join("registry")));
        let crl = Crl::from_x509_crl(pki.crl(&[], Utc::now() + chrono::Duration::days(1)));
        let crls = Arc::new(StaticCrls::new(vec![crl]));
        let trust = TrustAnchors::new(vec![Certificate::from_x509(pki.ca.cert.clone())]);
        let mut messengers = [91462, 109989].map(|her_id| {
            let signing = pki.issue(&format!("party {her_id} signing"), Usage::Signing);
            let encryption = pki.issue(&format!("party {her_id} encryption"), Usage::Encryption);
            registry
                .add_party(&NewParty {
                    her_id,
                    name: format!("party {her_id}"),
                    signing_certificate: Certificate::from_x509(signing.cert.clone()),
                    encryption_certificate: Certificate::from_x509(encryption.cert.clone()),
                    cpp: None,
                    queue_prefix: None,
                })
                .unwrap();
            let mut config = MessengerConfig::new(
                HerId::new(her_id).unwrap(),
                identity(&signing),
                identity(&encryption),
                trust.clone(),
                crls.clone(),
            );
            config.revocation = RevocationPolicy::Require;
            let store: Arc<dyn Store> =
                Arc::new(SqliteStore::open(&dir.path().join(format!("{her_id}.db"))).unwrap());
            Some(Messenger::new(
                config,
                transport.clone(),
                registry.clone(),
                store,
            ))
        });
        LocalPair {
            a: messengers[0].take().unwrap(),
            b: messengers[1].take().unwrap(),
            transport,
            dir,
        }
    }

    /// Closes both messengers and the transport.
    pub async fn close(self) {
        self.a.close().await.unwrap();
        self.b.close().await.unwrap();
        self.transport.close().await.unwrap();
    }
}
