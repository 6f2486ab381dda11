//! Callers waiting for an answer: sync replies by correlation-id, and
//! communication-test responses by the request's MsgId.
//!
//! A waiter is registered BEFORE its request is sent (the reference library
//! registers after sending, so a very fast reply can be lost), and removed
//! when the caller stops waiting, whether it got its answer or gave up. An
//! answer for which nobody waits is reported to the caller of
//! [`Waiters::deliver`], which logs and drops it: a late reply is never
//! handed to a later caller.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use crate::api::Received;

/// The table of waiting callers, shared by the senders and the pipelines.
#[derive(Clone, Default)]
pub(crate) struct Waiters {
    waiting: Arc<Mutex<HashMap<String, oneshot::Sender<Received>>>>,
}

/// One registered caller; dropping it unregisters the key.
pub(crate) struct Waiter {
    key: String,
    waiters: Waiters,
    answer: oneshot::Receiver<Received>,
}

impl Waiters {
    /// Registers a caller waiting for the answer keyed `key`.
    pub(crate) fn register(&self, key: impl Into<String>) -> Waiter {
        let key = key.into();
        let (sender, answer) = oneshot::channel();
        self.lock().insert(key.clone(), sender);
        Waiter {
            key,
            waiters: self.clone(),
            answer,
        }
    }

    /// Hands `answer` to the caller waiting for `key`; false when nobody
    /// waits (any more).
    pub(crate) fn deliver(&self, key: &str, answer: Received) -> bool {
        match self.lock().remove(key) {
            Some(sender) => sender.send(answer).is_ok(),
            None => false,
        }
    }

    /// Whether a caller waits for `key`.
    #[cfg(test)]
    pub(crate) fn is_waiting(&self, key: &str) -> bool {
        self.lock().contains_key(key)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, oneshot::Sender<Received>>> {
        // A poisoned table only means a panic elsewhere; the map is still whole.
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Waiter {
    /// Waits at most `timeout` for the answer.
    pub(crate) async fn wait(mut self, timeout: std::time::Duration) -> Option<Received> {
        tokio::time::timeout(timeout, &mut self.answer)
            .await
            .ok()
            .and_then(|answer| answer.ok())
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        self.waiters.lock().remove(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn answer(id: &str) -> Received {
        Received {
            from: helsemelding_wire::HerId::new(91462).unwrap(),
            to: helsemelding_wire::HerId::new(109989).unwrap(),
            function: "F".into(),
            message_id: id.into(),
            correlation_id: None,
            cpa_id: None,
            payload: Vec::new(),
            metadata: Default::default(),
            application_time: chrono::Utc::now(),
            enqueued_time: None,
            received_at: chrono::Utc::now(),
            queue: "q".into(),
        }
    }

    #[tokio::test]
    async fn an_answer_delivered_before_waiting_is_kept() {
        let waiters = Waiters::default();
        let waiter = waiters.register("a");
        assert!(waiters.deliver("a", answer("reply-1")));
        let got = waiter.wait(Duration::from_millis(10)).await.unwrap();
        assert_eq!(got.message_id, "reply-1");
        assert!(!waiters.is_waiting("a"));
    }

    #[tokio::test]
    async fn a_late_answer_finds_nobody_and_is_not_kept_for_later() {
        let waiters = Waiters::default();
        let waiter = waiters.register("a");
        assert!(waiter.wait(Duration::from_millis(10)).await.is_none());
        assert!(!waiters.is_waiting("a"));
        assert!(!waiters.deliver("a", answer("late")));
        let again = waiters.register("a");
        assert!(again.wait(Duration::from_millis(10)).await.is_none());
    }

    #[tokio::test]
    async fn an_answer_for_another_key_is_not_taken() {
        let waiters = Waiters::default();
        let waiter = waiters.register("a");
        assert!(!waiters.deliver("b", answer("other")));
        assert!(waiters.is_waiting("a"));
        drop(waiter);
        assert!(!waiters.is_waiting("a"));
    }
}
