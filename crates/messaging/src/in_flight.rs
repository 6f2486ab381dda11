//! The (sender HER-id, message-id) pairs a listener's workers are working
//! on right now. The store remembers a hand-over only once the application
//! has the message, so two copies of one message taken at the same time by
//! two workers (a transfer the sender repeated after a lost outcome, a
//! resend from its outbox, a broker redelivery) would both pass the store's
//! de-duplication check. A worker first claims the pair here; a copy whose
//! pair is claimed waits and goes back to the queue, and by its next
//! delivery the first copy has either been handed over (then it is a
//! duplicate) or failed (then it is processed).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

/// The pairs claimed by the workers of one listener.
#[derive(Default)]
pub(crate) struct InFlight {
    pairs: Mutex<HashSet<(u32, String)>>,
}

/// A claimed pair; dropping it gives the pair back.
pub(crate) struct Claim {
    owner: Arc<InFlight>,
    pair: (u32, String),
}

impl InFlight {
    /// Claims (`sender`, `message_id`), or `None` if another worker has it.
    pub(crate) fn claim(self: &Arc<Self>, sender: u32, message_id: &str) -> Option<Claim> {
        let pair = (sender, message_id.to_owned());
        let mut pairs = self.pairs.lock().unwrap_or_else(|p| p.into_inner());
        pairs.insert(pair.clone()).then(|| Claim {
            owner: self.clone(),
            pair,
        })
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        let mut pairs = self.owner.pairs.lock().unwrap_or_else(|p| p.into_inner());
        pairs.remove(&self.pair);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pair_is_claimed_once_until_the_claim_is_dropped() {
        let in_flight = Arc::new(InFlight::default());
        let first = in_flight.claim(91462, "m1").expect("free");
        assert!(in_flight.claim(91462, "m1").is_none(), "taken");
        // Another sender may use the same message-id; another id is free too.
        assert!(in_flight.claim(109989, "m1").is_some());
        assert!(in_flight.claim(91462, "m2").is_some());
        drop(first);
        assert!(in_flight.claim(91462, "m1").is_some(), "given back");
    }
}
