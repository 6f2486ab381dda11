//! What the RabbitMQ fault and interop suites of this crate share: the
//! testkit's party set-up on the private broker (parties with their
//! certificates in a file registry, their queues, a messenger and store
//! each), and an application handler that counts hand-overs by message id.
#![allow(dead_code)] // each test binary uses its own part of this module

pub mod local;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use helsemelding_messaging::{
    ErrorHandler, Handler, HandlerError, Messenger, MessengerConfig, Received,
};
use helsemelding_store::Store;
use helsemelding_testkit::broker::{Broker, PartyQueues};
use helsemelding_testkit::party::{Parties, TestParty};
use helsemelding_testkit::payload;
use helsemelding_testkit::pki::Issued;
use helsemelding_transport::Transport;
use helsemelding_transport_amqp::{AmqpOptions, AmqpTransport};
use helsemelding_wire::error_report::ReceivedErrorReport;
use helsemelding_wire::HerId;

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

    /// Its HER-id and certificates, as the party set-up takes them.
    pub fn test_party(&self) -> TestParty {
        TestParty {
            her_id: self.her_id,
            signing: self.signing.clone(),
            encryption: self.encryption.clone(),
        }
    }
}

/// A party that runs our code: a [`Peer`] with a messenger and store.
pub struct Party {
    pub peer: Peer,
    pub store: Arc<dyn Store>,
    pub messenger: Messenger,
}

/// The private broker, the parties' set-up and a transport.
pub struct Bus {
    pub broker: Broker,
    pub parties: Parties,
    pub transport: Arc<dyn Transport>,
}

impl Bus {
    /// Connects to the broker of `scripts/test` with `options`.
    pub fn new(options: AmqpOptions) -> Bus {
        let broker = Broker::from_env();
        let url = format!("{}/{}", broker.amqp_url(), broker.exchange());
        let transport: Arc<dyn Transport> = Arc::new(AmqpTransport::new(&url, options).unwrap());
        Bus {
            parties: Parties::new("messaging fault test CA"),
            broker,
            transport,
        }
    }

    /// A party with a HER-id of its own (error reports go to the real
    /// `<herid>_error` names), its queues, and its certificates registered.
    pub fn peer(&self) -> Peer {
        let her_id = 800_000_000 + fastrand::u32(0..100_000_000);
        let queues = self.broker.party_queues(her_id);
        let party = self.parties.party(her_id).register();
        Peer {
            her_id: party.her_id,
            signing: party.signing,
            encryption: party.encryption,
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
        let ours = self
            .parties
            .messenger(&peer.test_party())
            .require_revocation()
            .quick_retries()
            .configure(adjust)
            .build(self.transport.clone());
        Party {
            peer,
            store: ours.store,
            messenger: ours.messenger,
        }
    }
}

/// A MsgHead from `from` to `to` around a short note; `n` makes it unique.
pub fn msghead(from: HerId, to: HerId, n: usize) -> Vec<u8> {
    payload::msghead(from, to)
        .function(FUNCTION)
        .note(format!("Melding {n}, æøå"))
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
