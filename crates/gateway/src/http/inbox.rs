//! What came, through the API: an EHR leases the next incoming messages
//! (five minutes unless it asks otherwise), reads each (exactly the signed
//! bytes, as in the IN folder, with who and what in headers), and
//! acknowledges it (DELIVERED; its IN files are removed, the EHR has it)
//! or gives it back (AVAILABLE again). A lease that runs out gives the
//! message to the next client that leases; an acknowledgement after that
//! is refused (409), so two clients never both take one message.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use helsemelding_store::messages::{Direction, MessageRecord, MessageState};
use helsemelding_wire::HerId;
use serde::Deserialize;
use serde_json::json;

use super::messages::{find, query_problem, Which};
use super::problem::Problem;
use super::Api;
use crate::folder::replies::{self, NotSent, Reply};
use crate::records::record_json;

/// How long a lease lasts unless asked otherwise, and at most.
const LEASE_SECONDS: u64 = 300;
const LEASE_SECONDS_MAX: u64 = 3600;
/// Messages one lease takes unless asked otherwise, and at most.
const LEASE_LIMIT: usize = 10;
const LEASE_LIMIT_MAX: usize = 100;

/// The body of `POST /api/v1/inbox/lease` (all optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LeaseRequest {
    /// Only messages to this HER-id of ours.
    her_id: Option<u32>,
    /// At most this many.
    limit: Option<usize>,
    /// For this long.
    seconds: Option<u64>,
}

/// `POST /api/v1/inbox/lease`: the next available messages, leased.
pub async fn lease(
    State(api): State<Api>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let body = body.map_err(|r| super::messages::body_problem(&r, 64 * 1024))?;
    let request: LeaseRequest = if body.iter().all(u8::is_ascii_whitespace) {
        LeaseRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            Problem::new(
                StatusCode::BAD_REQUEST,
                "bad-request",
                format!("the JSON body: {e}"),
            )
            .hint("send {} or {\"limit\": 10, \"seconds\": 300, \"her_id\": N}")
        })?
    };
    let seconds = request.seconds.unwrap_or(LEASE_SECONDS);
    if seconds == 0 || seconds > LEASE_SECONDS_MAX {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "bad-request",
            format!("seconds {seconds}: a lease lasts 1 to {LEASE_SECONDS_MAX} seconds"),
        ));
    }
    let limit = request
        .limit
        .unwrap_or(LEASE_LIMIT)
        .clamp(1, LEASE_LIMIT_MAX);
    let now = Utc::now();
    let until = now + chrono::Duration::seconds(seconds as i64);
    let leased = api
        .messenger()
        .store()
        .messages()
        .lease(request.her_id, limit, now, until)
        .await?;
    let messages: Vec<_> = leased.iter().map(record_json).collect();
    Ok(Json(json!({ "messages": messages, "leased_until": until.to_rfc3339() })).into_response())
}

/// `GET /api/v1/inbox/{id}`: the message as it was signed, with its
/// record in `X-Helsemelding-*` headers; 410 once its IN file is gone.
pub async fn read(
    State(api): State<Api>,
    Path(id): Path<String>,
    which: Result<Query<Which>, QueryRejection>,
) -> Result<Response, Problem> {
    let record = incoming(&api, &id, which).await?;
    let path = in_file(&api, &record, "xml")?;
    let bytes = match tokio::fs::read(&path).await {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Problem::new(
                StatusCode::GONE,
                "gone",
                format!(
                    "message {} is {} and its IN file is no longer there",
                    record.public_id(),
                    record.state
                ),
            ))
        }
        Err(e) => return Err(Problem::unavailable(&e)),
    };
    let mut response = (StatusCode::OK, bytes).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/xml"),
    );
    let fields = [
        ("x-helsemelding-record", record.id.to_string()),
        ("x-helsemelding-sender", record.peer.to_string()),
        ("x-helsemelding-receiver", record.ours.to_string()),
        ("x-helsemelding-function", record.function.clone()),
        ("x-helsemelding-message-id", record.message_id.clone()),
        ("x-helsemelding-state", record.state.name().to_owned()),
    ];
    for (name, value) in fields {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    }
    if let Some(msg_id) = record.msg_id.as_deref() {
        if let Ok(value) = HeaderValue::from_str(msg_id) {
            headers.insert(HeaderName::from_static("x-helsemelding-msg-id"), value);
        }
    }
    Ok(response)
}

/// `POST /api/v1/inbox/{id}/ack`: the EHR has the message (DELIVERED);
/// its IN files are removed.
pub async fn ack(
    State(api): State<Api>,
    Path(id): Path<String>,
    which: Result<Query<Which>, QueryRejection>,
) -> Result<Response, Problem> {
    let from = [MessageState::Leased, MessageState::Available];
    let action = "acknowledge it through the API";
    let record = move_incoming(&api, &id, which, &from, MessageState::Delivered, action).await?;
    // The record says DELIVERED first: a crash here leaves files the EHR
    // may delete, never a message marked taken that is still offered.
    for extension in ["xml", "json"] {
        match tokio::fs::remove_file(in_file(&api, &record, extension)?).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(error = %e, "removing an acknowledged IN file"),
        }
    }
    Ok(Json(record_json(&record)).into_response())
}

/// `POST /api/v1/inbox/{id}/release`: a leased message is AVAILABLE again.
pub async fn release(
    State(api): State<Api>,
    Path(id): Path<String>,
    which: Result<Query<Which>, QueryRejection>,
) -> Result<Response, Problem> {
    let from = [MessageState::Leased];
    let action = "give it back through the API";
    let record = move_incoming(&api, &id, which, &from, MessageState::Available, action).await?;
    Ok(Json(record_json(&record)).into_response())
}

/// `POST /api/v1/inbox/{id}/apprec`: the EHR's AppRec for an incoming
/// message (`[receipts] automatic = false`): JSON `{"status": "1"|"2"|"3",
/// "errors": [{"code", "description"}]}`, or a whole AppRec as XML; built,
/// signed and sent by the gateway, the message then `APPREC_SENT`.
pub async fn apprec(
    State(api): State<Api>,
    Path(id): Path<String>,
    which: Result<Query<Which>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let body = body.map_err(|r| super::messages::body_problem(&r, api.max_bytes()))?;
    let record = incoming(&api, &id, which).await?;
    let is_xml = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("xml"));
    let reply = if is_xml {
        Reply::AppRec(body.to_vec())
    } else {
        Reply::from_json(&body).map_err(|refusal| Problem::of_refusal(&refusal))?
    };
    let ours = HerId::new(record.ours)
        .ok_or_else(|| Problem::unavailable(&format!("record {} names HER-id 0", record.id)))?;
    match replies::answer(api.messenger(), &api.folders(ours), &record, reply).await {
        Ok(record) => Ok(Json(record_json(&record)).into_response()),
        Err(NotSent::Refused(refusal)) => Err(Problem::of_refusal(&refusal)),
        Err(NotSent::WrongState(reason)) => {
            Err(Problem::new(StatusCode::CONFLICT, "wrong-state", reason))
        }
        Err(NotSent::Later(reason)) => Err(Problem::unavailable(&reason)),
    }
}

/// The incoming message `id` moved from one of `from` to `to`, or a
/// problem (404 unknown, 409 in another state).
async fn move_incoming(
    api: &Api,
    id: &str,
    which: Result<Query<Which>, QueryRejection>,
    from: &[MessageState],
    to: MessageState,
    action: &'static str,
) -> Result<MessageRecord, Problem> {
    let record = incoming(api, id, which).await?;
    let messages = api.messenger().store().messages();
    Ok(messages
        .transition(record.id, from, to, Utc::now(), action)
        .await?)
}

async fn incoming(
    api: &Api,
    id: &str,
    which: Result<Query<Which>, QueryRejection>,
) -> Result<MessageRecord, Problem> {
    let Query(which) = which.map_err(|r| query_problem(&r))?;
    find(api, id, Some(Direction::In), which.her_id).await
}

/// `IN/<sender>_<id>.<extension>` of an incoming record.
fn in_file(
    api: &Api,
    record: &MessageRecord,
    extension: &str,
) -> Result<std::path::PathBuf, Problem> {
    let ours = HerId::new(record.ours)
        .ok_or_else(|| Problem::unavailable(&format!("record {} names HER-id 0", record.id)))?;
    let folders = api.folders(ours);
    let stem = folders.incoming_stem(record.peer, record.public_id());
    Ok(folders.inbox.join(format!("{stem}.{extension}")))
}
