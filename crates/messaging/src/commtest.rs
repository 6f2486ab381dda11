//! The communication test (activation checklist: must answer in under 5 s):
//! a Dialogmelding `Foresporsel` with `TypeForesp V="KT"` under the message
//! function `DIALOG_INNBYGGER_TEST`, answered by the receiver's responder
//! with a MsgHead whose `RefToParent` is the request's `MsgId`.
//!
//! Sync: the request goes to the receiver's sync queue and the answer comes
//! on our reply queue. Async: the request goes to the receiver's async
//! queue and the answer comes on ours, so a [`crate::Listener`] must be
//! consuming our async queue in this process (its pipeline hands the
//! answer to the waiting test).

use std::time::{Duration, Instant};

use chrono::Utc;
use helsemelding_store::audit::{AuditEvent, AuditKind};
use helsemelding_wire::dialog::{self, COMMTEST_FUNCTION};
use helsemelding_wire::msghead::{MsgHead, Party};
use helsemelding_wire::HerId;
use uuid::Uuid;

use crate::answer::commtest_key;
use crate::api::SendRequest;
use crate::error::{Error, Result};
use crate::messenger::Messenger;

/// Which path a communication test takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommtestMode {
    /// Request on the sync queue, answer on our reply queue.
    Sync,
    /// Request on the async queue, answer on our async queue.
    Async,
}

impl CommtestMode {
    /// `sync` or `async`.
    pub fn as_str(self) -> &'static str {
        match self {
            CommtestMode::Sync => "sync",
            CommtestMode::Async => "async",
        }
    }
}

/// A communication test that was answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommtestOutcome {
    /// The party tested.
    pub to: HerId,
    /// The path taken.
    pub mode: CommtestMode,
    /// The request's MsgId.
    pub request_msg_id: String,
    /// The AMQP message-id of the answer.
    pub response_message_id: String,
    /// From just before the request was sent to the checked answer.
    pub round_trip: Duration,
}

impl Messenger {
    /// Sends a communication test to `to` and waits at most `timeout` for
    /// its answer. Every result is in the audit log.
    pub async fn communication_test(
        &self,
        to: HerId,
        mode: CommtestMode,
        timeout: Duration,
    ) -> Result<CommtestOutcome> {
        let request_msg_id = Uuid::new_v4().hyphenated().to_string();
        let payload = dialog::communication_test_request(
            &request_msg_id,
            Utc::now(),
            self.party(self.her_id()).await,
            self.party(to).await,
        );
        let request = SendRequest::new(to, COMMTEST_FUNCTION, payload);
        let started = Instant::now();
        let result = match mode {
            CommtestMode::Sync => self.send_and_wait(request, timeout).await,
            CommtestMode::Async => {
                let waiter = self.inner.waiters.register(commtest_key(&request_msg_id));
                self.send(request).await?;
                let left = timeout.saturating_sub(started.elapsed());
                waiter.wait(left).await.ok_or_else(|| Error::SyncTimeout {
                    message_id: request_msg_id.clone(),
                    her_id: to.get(),
                    after: timeout,
                })
            }
        };
        let round_trip = started.elapsed();
        let outcome = result.and_then(|answer| {
            check_answer(&answer.payload, &request_msg_id, to)?;
            Ok(CommtestOutcome {
                to,
                mode,
                request_msg_id: request_msg_id.clone(),
                response_message_id: answer.message_id,
                round_trip,
            })
        });
        self.audit(AuditEvent {
            counterpart_her_id: Some(to.get()),
            message_id: Some(request_msg_id.clone()),
            function: Some(COMMTEST_FUNCTION.into()),
            reason: Some(match &outcome {
                Ok(_) => format!("{} round trip {} ms", mode.as_str(), round_trip.as_millis()),
                Err(error) => error.to_string(),
            }),
            ..AuditEvent::new(
                AuditKind::Commtest,
                self.actor(),
                if outcome.is_ok() { "ok" } else { "failed" },
            )
        })
        .await;
        outcome
    }

    /// A party as a MsgHead names it: the registry's name when known.
    async fn party(&self, her_id: HerId) -> Party {
        let name = match self.inner.registry.communication_party(her_id.get()).await {
            Ok(party) => Some(party.name).filter(|n| !n.trim().is_empty()),
            Err(_) => None,
        };
        Party {
            name: Some(name.unwrap_or_else(|| format!("HER-id {her_id}"))),
            her_id: Some(her_id),
            sub: None,
        }
    }
}

fn check_answer(payload: &[u8], request_msg_id: &str, from: HerId) -> Result<()> {
    let unexpected = |reason: String| Error::UnexpectedReply {
        message_id: request_msg_id.to_owned(),
        her_id: from.get(),
        reason,
    };
    let head = MsgHead::parse(payload).map_err(|e| unexpected(e.to_string()))?;
    if dialog::is_communication_test_response(&head, request_msg_id) {
        Ok(())
    } else {
        Err(unexpected(format!(
            "a {} that does not answer the test (RefToParent {:?})",
            head.function(),
            head.ref_to_parent
        )))
    }
}
