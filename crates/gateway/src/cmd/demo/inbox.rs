//! What a demo party's application was given: the messages handed over and
//! the error reports about its own messages, with a way to wait (bounded)
//! until something in particular has arrived.

use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use helsemelding_messaging::{ErrorHandler, Handler, HandlerError, Received};
use helsemelding_wire::error_report::ReceivedErrorReport;
use tokio::sync::Notify;

/// An error report and when the error handler took it.
#[derive(Clone, Debug)]
pub struct ArrivedReport {
    pub at: DateTime<Utc>,
    pub report: ReceivedErrorReport,
}

/// The application side of one party: keeps everything it is given.
#[derive(Default)]
pub struct Inbox {
    state: Mutex<Arrived>,
    changed: Notify,
}

/// Everything that arrived so far, in order.
#[derive(Default, Clone)]
pub struct Arrived {
    pub messages: Vec<Received>,
    pub reports: Vec<ArrivedReport>,
}

impl Inbox {
    /// What arrived so far.
    pub fn snapshot(&self) -> Arrived {
        self.state.lock().expect("not poisoned").clone()
    }

    /// Waits until `probe` finds something in what arrived, for at most
    /// `within`; `None` when it did not come in time.
    pub async fn wait_for<T>(
        &self,
        within: Duration,
        mut probe: impl FnMut(&Arrived) -> Option<T>,
    ) -> Option<T> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            // Registered before looking, so that an arrival in between wakes us.
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if let Some(found) = probe(&self.state.lock().expect("not poisoned")) {
                return Some(found);
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return None;
            }
        }
    }

    /// The message with this message-id, when it arrives within `within`.
    pub async fn message(&self, message_id: &str, within: Duration) -> Option<Received> {
        self.wait_for(within, |arrived| {
            arrived
                .messages
                .iter()
                .find(|m| m.message_id == message_id)
                .cloned()
        })
        .await
    }

    /// The error report about our message `original_id`, when it arrives
    /// within `within`.
    pub async fn report_about(&self, original_id: &str, within: Duration) -> Option<ArrivedReport> {
        self.wait_for(within, |arrived| {
            arrived
                .reports
                .iter()
                .find(|r| r.report.original_message_id.as_deref() == Some(original_id))
                .cloned()
        })
        .await
    }

    fn record(&self, update: impl FnOnce(&mut Arrived)) {
        update(&mut self.state.lock().expect("not poisoned"));
        self.changed.notify_waiters();
    }
}

#[async_trait]
impl Handler for Inbox {
    async fn handle(&self, message: &Received) -> Result<(), HandlerError> {
        self.record(|arrived| arrived.messages.push(message.clone()));
        Ok(())
    }
}

#[async_trait]
impl ErrorHandler for Inbox {
    async fn handle_error(&self, report: &ReceivedErrorReport) -> Result<(), HandlerError> {
        let arrived = ArrivedReport {
            at: Utc::now(),
            report: report.clone(),
        };
        self.record(|state| state.reports.push(arrived));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn report(original: &str) -> ReceivedErrorReport {
        ReceivedErrorReport {
            message_id: None,
            from: None,
            to: None,
            function: None,
            original_message_id: Some(original.into()),
            receiver_time: None,
            condition_text: None,
            condition: None,
            description: None,
            data: Vec::new(),
        }
    }

    #[tokio::test]
    async fn a_wait_ends_when_the_report_arrives_and_is_bounded_otherwise() {
        let inbox = Arc::new(Inbox::default());
        let later = inbox.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            later.handle_error(&report("other")).await.unwrap();
            later.handle_error(&report("wanted")).await.unwrap();
        });
        let found = inbox
            .report_about("wanted", Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(found.report.original_message_id.as_deref(), Some("wanted"));
        let started = std::time::Instant::now();
        assert!(inbox
            .report_about("never", Duration::from_millis(100))
            .await
            .is_none());
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(inbox.snapshot().reports.len(), 2);
        assert!(inbox.message("x", Duration::ZERO).await.is_none());
    }
}
