//! What we send, through the API: `POST /api/v1/messages` submits a
//! MsgHead (the XML itself, or JSON `{"msghead": "<MsgHead …>"}` /
//! `{"msghead_base64": "…"}`) judged exactly as a file in OUT is; the
//! others list, show, retry and cancel the records. `{id}` is the MsgId
//! (the AMQP message-id works too).

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use helsemelding_messaging::{Error, SendRequest, Submitted};
use helsemelding_store::audit::{AuditEvent, AuditKind};
use helsemelding_store::messages::{Direction, MessageFilter, MessageRecord, MessageState};
use serde::Deserialize;
use serde_json::json;

use super::problem::Problem;
use super::Api;
use crate::folder::drop_box::message_id_for;
use crate::folder::outgoing::{self, refusal_of};
use crate::records::{event_json, record_json};

/// Records a page holds unless `limit` says otherwise, and at most.
const PAGE: usize = 100;
const PAGE_MAX: usize = 1000;

/// `POST /api/v1/messages`: 202 accepted (sent, or waiting in the outbox
/// for the broker), 200 a replay of the same MsgId and bytes, else a
/// problem with the folder drop's code.
pub async fn submit(
    State(api): State<Api>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let body = body.map_err(|rejection| body_problem(&rejection, api.max_bytes()))?;
    let payload = msghead_of(&headers, body)?;
    let message = outgoing::read(&payload, api.her_ids(), api.max_bytes())
        .map_err(|refusal| Problem::of_refusal(&refusal))?;
    let message_id = message_id_for(message.from, &message.msg_id);
    let request = SendRequest::new(message.to, &message.function, payload)
        .from(message.from)
        .with_message_id(&message_id);
    let status = match api.messenger().submit(request).await {
        Ok(Submitted::Sent(_)) | Err(Error::InOutbox { .. }) => StatusCode::ACCEPTED,
        Ok(Submitted::Replay { .. }) => StatusCode::OK,
        Err(error) => {
            return Err(match refusal_of(&error) {
                Some(refusal) => Problem::of_refusal(&refusal),
                None => Problem::unavailable(&error),
            })
        }
    };
    let record = api
        .messenger()
        .store()
        .messages()
        .find(
            &message.msg_id,
            Some(Direction::Out),
            Some(message.from.get()),
        )
        .await?
        .ok_or_else(|| Problem::no_message(&message.msg_id))?;
    let location = format!("/api/v1/messages/{}", percent_path(&message.msg_id));
    let mut response = (status, Json(record_json(&record))).into_response();
    if let Ok(value) = header::HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}

/// The MsgHead a submission carries: the body itself, or the `msghead`
/// (text) or `msghead_base64` field of a JSON body.
fn msghead_of(headers: &HeaderMap, body: Bytes) -> Result<Vec<u8>, Problem> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim()
                .to_ascii_lowercase()
                .starts_with("application/json")
        });
    if !is_json {
        return Ok(body.to_vec());
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Submission {
        msghead: Option<String>,
        msghead_base64: Option<String>,
    }
    let bad = |detail: String| {
        Problem::new(StatusCode::BAD_REQUEST, "bad-request", detail)
            .hint("send the MsgHead as XML, or JSON {\"msghead\": \"<MsgHead …>\"}")
    };
    let submission: Submission =
        serde_json::from_slice(&body).map_err(|e| bad(format!("the JSON body: {e}")))?;
    match (submission.msghead, submission.msghead_base64) {
        (Some(text), None) => Ok(text.into_bytes()),
        (None, Some(encoded)) => base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|e| bad(format!("msghead_base64: {e}"))),
        _ => Err(bad("give exactly one of msghead and msghead_base64".into())),
    }
}

/// A body the server would not read: too large (413), or cut off.
pub(super) fn body_problem(rejection: &BytesRejection, max_bytes: usize) -> Problem {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too-large",
            format!("the body is above the limit of {max_bytes} bytes"),
        )
        .hint("split the message or send the attachment by reference")
    } else {
        Problem::new(rejection.status(), "bad-request", rejection.body_text())
    }
}

/// The query of `GET /api/v1/messages`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    direction: Option<String>,
    state: Option<String>,
    her_id: Option<u32>,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    cursor: Option<i64>,
    limit: Option<usize>,
}

/// `GET /api/v1/messages`: records in record order, a page at a time;
/// `next_cursor` is the `cursor` of the next page (null on the last).
pub async fn list(
    State(api): State<Api>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, Problem> {
    let Query(query) = query.map_err(|r| query_problem(&r))?;
    let filter = MessageFilter {
        direction: query.direction.as_deref().map(direction).transpose()?,
        state: query.state.as_deref().map(state).transpose()?,
        ours: query.her_id,
        from: query.from,
        to: query.to,
        after: query.cursor,
    };
    let limit = query.limit.unwrap_or(PAGE).clamp(1, PAGE_MAX);
    let records = api
        .messenger()
        .store()
        .messages()
        .list(&filter, limit)
        .await?;
    let next_cursor = (records.len() == limit)
        .then(|| records.last().map(|r| r.id))
        .flatten();
    let messages: Vec<_> = records.iter().map(record_json).collect();
    Ok(Json(json!({ "messages": messages, "next_cursor": next_cursor })).into_response())
}

/// Which record `{id}` means: `?direction=` and `?her_id=` narrow it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Which {
    direction: Option<String>,
    pub(super) her_id: Option<u32>,
}

/// `GET /api/v1/messages/{id}`: the record with its state history.
pub async fn show(
    State(api): State<Api>,
    Path(id): Path<String>,
    which: Result<Query<Which>, QueryRejection>,
) -> Result<Response, Problem> {
    let Query(which) = which.map_err(|r| query_problem(&r))?;
    let wanted = which.direction.as_deref().map(direction).transpose()?;
    let record = find(&api, &id, wanted, which.her_id).await?;
    Ok(Json(with_history(&api, &record).await?).into_response())
}

/// `POST /api/v1/messages/{id}/retry`: a FAILED message is sent again
/// (its attempts counted from zero); 409 in any other state.
pub async fn retry(
    State(api): State<Api>,
    Path(id): Path<String>,
    which: Result<Query<Which>, QueryRejection>,
) -> Result<Response, Problem> {
    let record = outgoing(&api, &id, which).await?;
    let store = api.messenger().store();
    store.outbox().retry(&record.message_id, Utc::now()).await?;
    let reason = "retried through the HTTP API".to_owned();
    audit_change(&api, AuditKind::OutboxRetried, "pending", &record, reason).await;
    // The pump sends it at its next round; nobody waits for that here.
    shown_again(&api, &id, &record).await
}

/// `DELETE /api/v1/messages/{id}`: a message not yet sent (ACCEPTED,
/// RETRY_WAIT, FAILED) is CANCELLED and never sent; 409 once sent.
pub async fn cancel(
    State(api): State<Api>,
    Path(id): Path<String>,
    which: Result<Query<Which>, QueryRejection>,
) -> Result<Response, Problem> {
    let record = outgoing(&api, &id, which).await?;
    if !record.state.is_cancellable() {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "wrong-state",
            format!(
                "message {} is {}: only a message not yet sent can be cancelled",
                record.public_id(),
                record.state
            ),
        ));
    }
    let entry = api
        .messenger()
        .store()
        .outbox()
        .remove(&record.message_id)
        .await?;
    let reason = format!(
        "cancelled through the HTTP API while {}",
        entry.state.name()
    );
    audit_change(&api, AuditKind::OutboxDropped, "dropped", &record, reason).await;
    shown_again(&api, &id, &record).await
}

/// The audit row of an outbox change made through the API.
async fn audit_change(
    api: &Api,
    kind: AuditKind,
    outcome: &str,
    record: &MessageRecord,
    reason: String,
) {
    let mut event = AuditEvent::new(kind, "api", outcome);
    event.message_id = Some(record.message_id.clone());
    event.counterpart_her_id = Some(record.peer);
    event.function = Some(record.function.clone());
    event.reason = Some(reason);
    api.messenger().audit(event).await;
}

/// The outgoing message `id` (of `?her_id=` when given), or 404.
async fn outgoing(
    api: &Api,
    id: &str,
    which: Result<Query<Which>, QueryRejection>,
) -> Result<MessageRecord, Problem> {
    let Query(which) = which.map_err(|r| query_problem(&r))?;
    find(api, id, Some(Direction::Out), which.her_id).await
}

/// The outgoing `record` as it is now, with its history.
async fn shown_again(api: &Api, id: &str, record: &MessageRecord) -> Result<Response, Problem> {
    let record = find(api, id, Some(Direction::Out), Some(record.ours)).await?;
    Ok(Json(with_history(api, &record).await?).into_response())
}

/// The newest record known as `id`, or 404.
pub(super) async fn find(
    api: &Api,
    id: &str,
    direction: Option<Direction>,
    ours: Option<u32>,
) -> Result<MessageRecord, Problem> {
    api.messenger()
        .store()
        .messages()
        .find(id, direction, ours)
        .await?
        .ok_or_else(|| Problem::no_message(id))
}

async fn with_history(api: &Api, record: &MessageRecord) -> Result<serde_json::Value, Problem> {
    let history = api
        .messenger()
        .store()
        .messages()
        .history(record.id)
        .await?;
    let mut value = record_json(record);
    value["history"] = history.iter().map(event_json).collect();
    Ok(value)
}

pub(super) fn direction(text: &str) -> Result<Direction, Problem> {
    text.parse().map_err(|_| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "bad-request",
            format!("direction {text:?}: expected `out` or `in`"),
        )
    })
}

fn state(text: &str) -> Result<MessageState, Problem> {
    text.to_ascii_uppercase().parse().map_err(|_| {
        let names: Vec<_> = MessageState::ALL.iter().map(|s| s.name()).collect();
        Problem::new(
            StatusCode::BAD_REQUEST,
            "bad-request",
            format!("state {text:?}: expected one of {}", names.join(", ")),
        )
    })
}

pub(super) fn query_problem(rejection: &QueryRejection) -> Problem {
    Problem::new(
        StatusCode::BAD_REQUEST,
        "bad-request",
        rejection.body_text(),
    )
}

/// What a path segment keeps as it is: RFC 3986's unreserved characters.
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `id` as one path segment.
fn percent_path(id: &str) -> String {
    percent_encoding::utf8_percent_encode(id, SEGMENT).to_string()
}
