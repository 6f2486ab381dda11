//! What a receive pipeline does with a message that passed every check,
//! before it is accepted: deliver a sync reply or a communication-test
//! response to the caller waiting for it, answer a communication test,
//! match an incoming AppRec to the message it answers, hand the message to
//! the application, then answer a sync request with the application's reply
//! or a MsgHead that asks for a receipt with an AppRec.
//!
//! Each path returns the outcome for the audit log (the delivery is then
//! accepted) or the [`HandlerError`] the engine turns into a decision.

use std::sync::Arc;

use chrono::Utc;
use helsemelding_store::audit::{AuditEvent, AuditKind};
use helsemelding_store::inbox::Answer;
use helsemelding_store::receipts::{ReceiptMatch, ReceivedReceipt};
use helsemelding_wire::apprec::AppRec;
use helsemelding_wire::dialog::{self, COMMTEST_FUNCTION};
use helsemelding_wire::error_report::ErrorCondition;
use helsemelding_wire::msghead::MsgHead;
use helsemelding_wire::queue::QueueKind;
use uuid::Uuid;

use crate::api::{Handler, Received};
use crate::engine::intake::Taken;
use crate::engine::HandlerError;
use crate::error::Error;
use crate::messenger::Node;
use crate::receipts::{self, Verdict, APPREC_FUNCTION};

/// The waiter key of the communication test whose request had `msg_id`.
pub(crate) fn commtest_key(msg_id: &str) -> String {
    format!("commtest:{msg_id}")
}

impl From<String> for Taken {
    fn from(outcome: String) -> Taken {
        Taken {
            outcome,
            answer: None,
        }
    }
}

/// Takes a checked message from queue `kind`; `reply_to` is the request's
/// reply-to (sync requests).
pub(crate) async fn take(
    messenger: &Node,
    handler: &Arc<dyn Handler>,
    kind: QueueKind,
    received: &Received,
    reply_to: Option<&str>,
) -> Result<Taken, HandlerError> {
    if kind == QueueKind::SyncReply {
        return Ok(deliver_reply(messenger, received).await.into());
    }
    let head = MsgHead::parse(&received.payload).ok();
    if let Some(head) = &head {
        if let Some(outcome) = take_commtest(messenger, kind, received, head, reply_to).await? {
            return Ok(outcome.into());
        }
    }
    if let Ok(apprec) = AppRec::parse(&received.payload) {
        match_receipt(messenger, received, &apprec).await;
    }
    if kind == QueueKind::Sync {
        return answer_sync_request(messenger, handler, received, reply_to)
            .await
            .map(Taken::from);
    }
    let verdict = match handler.handle(received).await {
        Ok(()) => Verdict::Ok,
        Err(HandlerError::RejectContent { errors }) if head.is_some() => Verdict::Rejected(errors),
        Err(other) => return Err(other),
    };
    let Some(head) = head.filter(|h| h.wants_receipt() || verdict != Verdict::Ok) else {
        return Ok(String::from("ok").into());
    };
    send_receipt(messenger, received, &head, &verdict).await
}

/// Sends a repeat of a handed-over message the answer the first copy got
/// (the first answer may not have reached its sender). A failure is logged:
/// the answer went through the outbox the first time.
pub(crate) async fn answer_again(messenger: &Node, received: &Received, answer: &Answer) {
    if let Err(error) = messenger
        .send_answer(
            received.to,
            received.from,
            &answer.function,
            answer.payload.clone(),
        )
        .await
    {
        tracing::warn!(%error, message_id = received.message_id, "the answer to a repeat was not sent again");
    }
}

/// A message on our reply queue: to the caller waiting for it, or logged
/// and dropped (a late reply is never handed to a later caller).
async fn deliver_reply(messenger: &Node, received: &Received) -> String {
    let key = received.correlation_id.clone().unwrap_or_default();
    if messenger.inner.waiters.deliver(&key, received.clone()) {
        return "sync reply delivered".into();
    }
    tracing::warn!(
        correlation_id = key,
        from = received.from.get(),
        "sync reply for no waiting caller (late or unknown): dropped"
    );
    "late sync reply dropped".into()
}

/// Communication tests: a response goes to its waiting caller, a request
/// is answered without involving the application.
async fn take_commtest(
    messenger: &Node,
    kind: QueueKind,
    received: &Received,
    head: &MsgHead,
    reply_to: Option<&str>,
) -> Result<Option<String>, HandlerError> {
    if head.function() != COMMTEST_FUNCTION {
        return Ok(None);
    }
    if let Some(request_id) = &head.ref_to_parent {
        let delivered = messenger
            .inner
            .waiters
            .deliver(&commtest_key(request_id), received.clone());
        return Ok(Some(if delivered {
            "communication test response delivered".into()
        } else {
            "communication test response for no waiting caller".into()
        }));
    }
    if !messenger.inner.config.answer_communication_tests
        || !dialog::is_communication_test_request(head)
    {
        return Ok(None);
    }
    let response = dialog::communication_test_response(head, &new_id(), Utc::now());
    let sent = match (kind, reply_to) {
        (QueueKind::Sync, Some(reply_to)) => messenger
            .send_sync_reply(received, reply_to, COMMTEST_FUNCTION, response.into_bytes())
            .await
            .map(|_| ()),
        _ => messenger
            .send_answer(
                received.to,
                received.from,
                COMMTEST_FUNCTION,
                response.into_bytes(),
            )
            .await
            .map(|_| ()),
    };
    messenger
        .audit(AuditEvent {
            counterpart_her_id: Some(received.from.get()),
            message_id: Some(received.message_id.clone()),
            function: Some(COMMTEST_FUNCTION.into()),
            reason: sent.as_ref().err().map(ToString::to_string),
            ..AuditEvent::new(
                AuditKind::Commtest,
                messenger.actor(),
                if sent.is_ok() {
                    "answered"
                } else {
                    "answer-failed"
                },
            )
        })
        .await;
    match sent {
        Ok(()) => Ok(Some("communication test answered".into())),
        Err(error) => Err(reply_failed(error)),
    }
}

/// A sync request: the application's answer goes back on the request's
/// reply-to; a reply that cannot be sent is reported to the requester's
/// error queue at once (the caller gives up after 15 s anyway).
async fn answer_sync_request(
    messenger: &Node,
    handler: &Arc<dyn Handler>,
    received: &Received,
    reply_to: Option<&str>,
) -> Result<String, HandlerError> {
    let Some(reply_to) = reply_to.filter(|q| !q.is_empty()) else {
        return Err(HandlerError::Reject {
            condition: ErrorCondition::InvalidFieldValue,
            description: "a synchronous request needs a reply-to queue".into(),
        });
    };
    let reply = handler.answer(received).await?;
    let function = reply.function.as_deref().unwrap_or(&received.function);
    messenger
        .send_sync_reply(received, reply_to, function, reply.payload)
        .await
        .map_err(reply_failed)?;
    Ok("answered".into())
}

fn reply_failed(error: crate::Error) -> HandlerError {
    HandlerError::Reject {
        condition: ErrorCondition::InternalError,
        description: format!("the answer could not be sent: {error}"),
    }
}

/// Records an incoming AppRec against the message it answers.
async fn match_receipt(messenger: &Node, received: &Received, apprec: &AppRec) {
    let original = apprec.original.id.clone();
    let from = received.from.get();
    let receipt = ReceivedReceipt {
        at: received.received_at,
        status: apprec.status.code().to_owned(),
        receipt_message_id: apprec.id.clone(),
    };
    let id = original.clone();
    let matched = messenger
        .store()
        .receipts()
        .record(&id, from, &receipt)
        .await;
    let (outcome, reason) = match &matched {
        Ok(ReceiptMatch::Matched(_)) => ("matched", apprec.status.display_name().to_owned()),
        Ok(ReceiptMatch::AlreadyMatched) => ("duplicate", String::new()),
        Ok(ReceiptMatch::Unknown) => ("unknown-original", String::new()),
        Ok(ReceiptMatch::WrongSender { expected_her_id }) => (
            "wrong-sender",
            format!("the original went to HER-id {expected_her_id}"),
        ),
        Err(error) => ("store-failed", error.to_string()),
    };
    messenger
        .audit(AuditEvent {
            counterpart_her_id: Some(from),
            message_id: Some(original),
            function: Some(APPREC_FUNCTION.into()),
            reason: (!reason.is_empty()).then_some(reason),
            ..AuditEvent::new(AuditKind::ReceiptMatched, messenger.actor(), outcome)
        })
        .await;
}

/// Sends the AppRec for a handed-over MsgHead. The message is the
/// application's already, so a failure here is logged and audited, not
/// retried through the original (that would hand it over twice).
async fn send_receipt(
    messenger: &Node,
    received: &Received,
    head: &MsgHead,
    verdict: &Verdict,
) -> Result<Taken, HandlerError> {
    if !messenger.inner.config.send_receipts {
        return Ok(String::from("ok").into());
    }
    let xml = receipts::answer(head, verdict, &new_id(), Utc::now());
    let status = match verdict {
        Verdict::Ok => "ok",
        Verdict::Rejected(_) => "rejected",
    };
    let answer = Answer {
        function: APPREC_FUNCTION.into(),
        payload: xml.into_bytes(),
    };
    let outcome = match messenger
        .send_answer_recording_hand_over(received, &answer)
        .await
    {
        Ok(_) => format!("ok; apprec {status} sent"),
        // Queued: the outbox sends it once the broker takes it.
        Err(Error::InOutbox { .. }) => format!("ok; apprec {status} queued in the outbox"),
        // Not even queued, for a fault of ours: the message comes again
        // (the application takes it once more) rather than go unanswered.
        Err(Error::Store(error)) => {
            return Err(HandlerError::Unavailable {
                reason: format!("the AppRec could not be queued: {error}"),
            })
        }
        Err(error) => {
            tracing::error!(%error, msg_id = head.msg_id, to = received.from.get(), "AppRec not sent");
            format!("ok; apprec {status} NOT sent: {error}")
        }
    };
    Ok(Taken {
        outcome,
        answer: Some(answer),
    })
}

fn new_id() -> String {
    Uuid::new_v4().hyphenated().to_string()
}
