//! Two parties on one local transport (no broker): A and B, each with its
//! messenger and store, their certificates in one file registry (the
//! testkit's party set-up).

use std::sync::Arc;

use helsemelding_messaging::Messenger;
use helsemelding_testkit::party::Parties;
use helsemelding_transport::local::LocalTransport;
use helsemelding_transport::Transport;

/// Two parties on one local transport: 91462 (A) and 109989 (B).
pub struct LocalPair {
    pub a: Messenger,
    pub b: Messenger,
    pub transport: Arc<dyn Transport>,
    pub parties: Parties,
}

impl LocalPair {
    /// Both parties, their certificates issued by a CA named `ca_name`.
    pub fn new(ca_name: &str) -> LocalPair {
        let parties = Parties::new(ca_name);
        let transport: Arc<dyn Transport> =
            Arc::new(LocalTransport::open(parties.dir().join("queues.db")).unwrap());
        let [a, b] = [91462, 109989].map(|her_id| {
            let party = parties.party(her_id).register();
            parties
                .messenger(&party)
                .require_revocation()
                .build(transport.clone())
                .messenger
        });
        LocalPair {
            a,
            b,
            transport,
            parties,
        }
    }

    /// Closes both messengers and the transport.
    pub async fn close(self) {
        self.a.close().await.unwrap();
        self.b.close().await.unwrap();
        self.transport.close().await.unwrap();
    }
}
