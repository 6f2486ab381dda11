//! The send side's rules, pure: what must hold before a message leaves
//! (the checks its receiver will make, so that we never send what will be
//! refused), and what becomes of an outbox entry whose transfer failed.
//! The messenger gathers the facts (registry, certificates, the broker's
//! answer) and asks here; these rules are unit-tested without either.

use std::time::Duration;

use helsemelding_protect::Certificate;
use helsemelding_wire::msghead::MsgHead;
use helsemelding_wire::HerId;

/// Why a message may not leave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The message function (AMQP subject) is empty: every receiver
    /// refuses a message without one.
    EmptyFunction,
    /// The MsgHead names other parties than the envelope: the receiver
    /// would answer `abuse:spoofing-attack` or `invalid-field-value`.
    MsgHeadParty {
        /// `Sender` or `Receiver`.
        role: &'static str,
        /// `from` or `to`.
        direction: &'static str,
        /// The HER-id the envelope names.
        in_envelope: HerId,
        /// The HER-ids the MsgHead names there.
        in_msghead: Vec<HerId>,
    },
    /// Our signing certificate is not one the registry publishes for the
    /// sending HER-id: the receiver would answer `abuse:spoofing-attack`.
    SigningNotRegistered {
        /// Our signing certificate's serial.
        serial: String,
        /// The serials the registry publishes.
        registered: Vec<String>,
    },
}

/// The function must not be empty (`send` defaults it to the MsgHead's
/// `MsgInfo/Type`).
pub fn check_function(function: &str) -> Result<(), Refusal> {
    if function.trim().is_empty() {
        return Err(Refusal::EmptyFunction);
    }
    Ok(())
}

/// A MsgHead's `Sender` must name the sending HER-id and its `Receiver` the
/// receiving one (at any depth; a party naming no HER-id passes). Other
/// payloads (an AppRec, say) have no parties to compare.
pub fn check_msghead_parties(payload: &[u8], from: HerId, to: HerId) -> Result<(), Refusal> {
    let Ok(head) = MsgHead::parse(payload) else {
        return Ok(());
    };
    let names = |found: &[HerId], her_id: HerId| found.is_empty() || found.contains(&her_id);
    if !names(&head.sender_her_ids, from) {
        return Err(Refusal::MsgHeadParty {
            role: "Sender",
            direction: "from",
            in_envelope: from,
            in_msghead: head.sender_her_ids,
        });
    }
    if !names(&head.receiver_her_ids, to) {
        return Err(Refusal::MsgHeadParty {
            role: "Receiver",
            direction: "to",
            in_envelope: to,
            in_msghead: head.receiver_her_ids,
        });
    }
    Ok(())
}

/// Our signing certificate must be among those the registry publishes for
/// the sending HER-id.
pub fn check_signing_registered(
    ours: &Certificate,
    registered: &[Certificate],
) -> Result<(), Refusal> {
    if registered.iter().any(|c| c == ours) {
        return Ok(());
    }
    Err(Refusal::SigningNotRegistered {
        serial: ours.serial_hex(),
        registered: registered.iter().map(Certificate::serial_hex).collect(),
    })
}

/// How the outbox retries an entry that could not be sent: each entry on
/// its own clock, so that one that keeps failing delays only itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxPolicy {
    /// Failed attempts after which an entry is given up (`failed`, with
    /// the last reason); a broker outage does not count.
    pub max_attempts: u32,
    /// Wait after the first failed attempt.
    pub backoff_min: Duration,
    /// Cap of the wait (it doubles from `backoff_min`).
    pub backoff_max: Duration,
}

impl Default for OutboxPolicy {
    fn default() -> Self {
        OutboxPolicy {
            max_attempts: 20,
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(300),
        }
    }
}

/// Whose fault a failed transfer of an outbox entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendFailure {
    /// The broker cannot be reached or used at all (connection refused,
    /// unreachable, closed, credentials refused): no entry can be sent
    /// now, and none is to blame. The pass stops; no attempt is counted.
    Broker,
    /// Something about this entry (its queue does not exist, the link to
    /// it was refused, the message was released or its transfer failed):
    /// the entry waits its backoff and the others go on.
    Entry,
}

/// Classifies a transport failure of one transfer.
pub fn classify_send_failure(error: &helsemelding_transport::Error) -> SendFailure {
    use helsemelding_transport::Error as T;
    match error {
        T::Connect { .. }
        | T::AuthenticationFailed { .. }
        | T::Unavailable { .. }
        | T::Timeout { .. }
        | T::Closed
        | T::Store { .. }
        | T::Config(_)
        | T::CaFile { .. } => SendFailure::Broker,
        _ => SendFailure::Entry,
    }
}

/// What becomes of an entry after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboxStep {
    /// Try again after this wait.
    RetryAfter(Duration),
    /// Out of attempts: the entry is failed.
    GiveUp,
}

impl OutboxPolicy {
    /// The wait after the `attempts`-th failed attempt (1-based): doubling
    /// from `backoff_min`, capped at `backoff_max`.
    pub fn backoff(&self, attempts: u32) -> Duration {
        let doublings = attempts.saturating_sub(1).min(20);
        self.backoff_min
            .saturating_mul(1u32 << doublings)
            .min(self.backoff_max)
    }

    /// The step after the `attempts`-th failed attempt of an entry.
    pub fn after_failed_attempt(&self, attempts: u32) -> OutboxStep {
        if attempts >= self.max_attempts.max(1) {
            OutboxStep::GiveUp
        } else {
            OutboxStep::RetryAfter(self.backoff(attempts))
        }
    }
}

#[cfg(test)]
mod tests {
    use helsemelding_testkit::pki::{TestPki, Usage};

    use super::*;

    fn her(id: u32) -> HerId {
        HerId::new(id).unwrap()
    }

    fn msghead(sender: &str, receiver: &str) -> Vec<u8> {
        format!(
            r#"<MsgHead xmlns="http://www.kith.no/xmlstds/msghead/2006-05-24"><MsgInfo><Type V="X" DN="x"/><MIGversion>v1.2 2006-05-24</MIGversion><GenDate>2026-12-02T10:00:00</GenDate><MsgId>a</MsgId><Sender><Organisation><OrganisationName>A</OrganisationName>{sender}</Organisation></Sender><Receiver><Organisation><OrganisationName>B</OrganisationName>{receiver}</Organisation></Receiver></MsgInfo></MsgHead>"#
        )
        .into_bytes()
    }

    fn ident(id: u32) -> String {
        format!(
            r#"<Ident><Id>{id}</Id><TypeId V="HER" S="2.16.578.1.12.4.1.1.9051" DN="HER-id"/></Ident>"#
        )
    }

    #[test]
    fn an_empty_function_never_leaves() {
        assert_eq!(check_function(" "), Err(Refusal::EmptyFunction));
        assert_eq!(check_function("DIALOG_INNBYGGER_EKONTAKT"), Ok(()));
    }

    #[test]
    fn the_msghead_must_name_the_envelope_parties_or_none() {
        let (a, b) = (her(91_462), her(8_141_703));
        assert_eq!(
            check_msghead_parties(&msghead(&ident(91_462), &ident(8_141_703)), a, b),
            Ok(())
        );
        assert_eq!(check_msghead_parties(&msghead("", ""), a, b), Ok(()));
        assert_eq!(check_msghead_parties(b"<AppRec/>", a, b), Ok(()));
        assert!(matches!(
            check_msghead_parties(&msghead(&ident(1_234), &ident(8_141_703)), a, b),
            Err(Refusal::MsgHeadParty { role: "Sender", .. })
        ));
        assert!(matches!(
            check_msghead_parties(&msghead(&ident(91_462), &ident(1_234)), a, b),
            Err(Refusal::MsgHeadParty { role: "Receiver", in_msghead, .. }) if in_msghead == [her(1_234)]
        ));
    }

    #[test]
    fn our_signing_certificate_must_be_the_registrys() {
        let pki = TestPki::new("send rules test CA");
        let issue =
            |name: &str| Certificate::from_x509(pki.issue(name, Usage::Signing).cert.clone());
        let (ours, old, other) = (issue("ours"), issue("old"), issue("other"));
        assert_eq!(
            check_signing_registered(&ours, &[old.clone(), ours.clone()]),
            Ok(())
        );
        assert!(matches!(
            check_signing_registered(&ours, &[old, other]),
            Err(Refusal::SigningNotRegistered { registered, .. }) if registered.len() == 2
        ));
        assert!(check_signing_registered(&ours, &[]).is_err());
    }
}
