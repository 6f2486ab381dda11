//! The payload bytes a listener's workers may be processing at once
//! ([`ListenerOptions::max_bytes_in_flight`]). Decrypting, verifying and
//! handing over a message keeps several copies of its body alive, so eight
//! large messages side by side can take gigabytes; with a budget, a large
//! message waits for earlier ones to be settled instead of adding up.
//!
//! [`ListenerOptions::max_bytes_in_flight`]: crate::ListenerOptions::max_bytes_in_flight

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The budget's grain. A semaphore hands out at most `u32::MAX` permits at
/// once: counted in bytes, no budget or message could pass 4 GiB.
const GRAIN: usize = 1024;

/// One budget, shared by every worker of a listener.
#[derive(Clone)]
pub(crate) struct Budget {
    grains: Arc<Semaphore>,
    total: u32,
}

impl Budget {
    /// A budget of `max_bytes` (at least one grain: a budget of nothing
    /// would let nothing through).
    pub(crate) fn new(max_bytes: usize) -> Budget {
        let total = grains(max_bytes).min(Semaphore::MAX_PERMITS as u64);
        let total = u32::try_from(total).unwrap_or(u32::MAX).max(1);
        Budget {
            grains: Arc::new(Semaphore::new(total as usize)),
            total,
        }
    }

    /// Waits until a body of `size` bytes fits; dropping the permit gives
    /// it back. A body larger than the whole budget takes all of it, so it
    /// still goes, alone.
    pub(crate) async fn acquire(&self, size: usize) -> OwnedSemaphorePermit {
        let wanted = u32::try_from(grains(size)).unwrap_or(u32::MAX);
        self.grains
            .clone()
            .acquire_many_owned(wanted.min(self.total))
            .await
            .expect("a budget's semaphore is never closed")
    }
}

fn grains(bytes: usize) -> u64 {
    (bytes as u64).div_ceil(GRAIN as u64)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const MIB: usize = 1024 * 1024;

    /// Whether `budget` lets `size` bytes through before a short wait ends.
    async fn fits(budget: &Budget, size: usize) -> bool {
        tokio::time::timeout(Duration::from_millis(50), budget.acquire(size))
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn a_body_larger_than_the_whole_budget_still_goes_alone() {
        let budget = Budget::new(MIB);
        let huge = tokio::time::timeout(Duration::from_secs(5), budget.acquire(10 * MIB))
            .await
            .expect("a body over the budget is let through");
        assert!(!fits(&budget, 1).await, "nothing else goes beside it");
        drop(huge);
        assert!(fits(&budget, MIB).await, "given back when dropped");
    }

    #[tokio::test]
    async fn bodies_share_the_budget_until_it_is_spent() {
        let budget = Budget::new(3 * MIB);
        let first = budget.acquire(2 * MIB).await;
        let _second = budget.acquire(MIB).await;
        assert!(!fits(&budget, 1).await, "spent");
        assert!(fits(&budget, 0).await, "an empty body costs nothing");
        drop(first);
        assert!(fits(&budget, 2 * MIB).await);
    }

    #[tokio::test]
    async fn a_budget_of_nothing_still_lets_one_message_through() {
        let budget = Budget::new(0);
        let one = budget.acquire(MIB).await;
        assert!(!fits(&budget, 1).await);
        drop(one);
        assert!(fits(&budget, 1).await);
    }
}
