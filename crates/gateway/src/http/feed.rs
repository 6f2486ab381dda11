//! The events feed (every state change in order, so an EHR follows all
//! its messages without polling each), the communication test, the
//! probes and the answer to a path the API does not have.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use helsemelding_messaging::CommtestMode;
use helsemelding_wire::HerId;
use serde::Deserialize;
use serde_json::json;

use super::messages::query_problem;
use super::problem::Problem;
use super::Api;
use crate::records::event_json;

/// Events a page holds unless `limit` says otherwise, and at most.
const EVENTS: usize = 100;
const EVENTS_MAX: usize = 1000;
/// The longest a request may wait for the next event.
const WAIT_MAX: Duration = Duration::from_secs(60);
/// How often a waiting request looks again.
const WAIT_POLL: Duration = Duration::from_millis(200);

/// The query of `GET /api/v1/events`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    after: Option<i64>,
    limit: Option<usize>,
    /// Seconds to wait for an event when there is none yet (long poll).
    wait: Option<u64>,
}

/// `GET /api/v1/events?after=SEQ[&limit=N][&wait=S]`: the changes after
/// `SEQ`, oldest first; `next` is the `after` of the next call.
pub async fn events(
    State(api): State<Api>,
    query: Result<Query<EventsQuery>, QueryRejection>,
) -> Result<Response, Problem> {
    let Query(query) = query.map_err(|r| query_problem(&r))?;
    let after = query.after.unwrap_or(0);
    let limit = query.limit.unwrap_or(EVENTS).clamp(1, EVENTS_MAX);
    let wait = Duration::from_secs(query.wait.unwrap_or(0)).min(WAIT_MAX);
    let deadline = tokio::time::Instant::now() + wait;
    let messages = api.messenger().store().messages();
    let events = loop {
        let events = messages.events_after(after, limit).await?;
        if !events.is_empty() || tokio::time::Instant::now() >= deadline {
            break events;
        }
        tokio::time::sleep(WAIT_POLL).await;
    };
    let next = events.last().map_or(after, |e| e.seq);
    let events: Vec<_> = events.iter().map(event_json).collect();
    Ok(Json(json!({ "events": events, "next": next })).into_response())
}

/// The body of `POST /api/v1/commtest`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CommtestRequest {
    her_id: u32,
    #[serde(default)]
    mode: Option<String>,
    timeout_ms: Option<u64>,
}

/// NHN's limit for answering a communication test.
const COMMTEST_TIMEOUT: Duration = Duration::from_secs(5);

/// `POST /api/v1/commtest` `{"her_id": N, "mode": "async"|"sync"}`: a
/// timed communication test; 200 answered, 504 no answer in time, 502 an
/// answer that is not one, 422 a party that cannot be tested.
pub async fn commtest(
    State(api): State<Api>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let body = body.map_err(|r| super::messages::body_problem(&r, 64 * 1024))?;
    let bad = |detail: String| Problem::new(StatusCode::BAD_REQUEST, "bad-request", detail);
    let request: CommtestRequest = serde_json::from_slice(&body)
        .map_err(|e| bad(format!("the JSON body: {e}")).hint("send {\"her_id\": N}"))?;
    let to = HerId::new(request.her_id).ok_or_else(|| bad("her_id 0 is no HER-id".into()))?;
    let mode = match request.mode.as_deref().unwrap_or("async") {
        "async" => CommtestMode::Async,
        "sync" => CommtestMode::Sync,
        other => return Err(bad(format!("mode {other:?}: expected `async` or `sync`"))),
    };
    let timeout = request
        .timeout_ms
        .map_or(COMMTEST_TIMEOUT, Duration::from_millis)
        .min(Duration::from_secs(60));
    match api.messenger().communication_test(to, mode, timeout).await {
        Ok(outcome) => Ok(Json(json!({
            "her_id": outcome.to.get(),
            "mode": outcome.mode.as_str(),
            "request_msg_id": outcome.request_msg_id,
            "response_message_id": outcome.response_message_id,
            "round_trip_ms": outcome.round_trip.as_millis() as u64,
            "within_limit": outcome.round_trip < COMMTEST_TIMEOUT,
        }))
        .into_response()),
        Err(error) => Err(commtest_problem(&error)),
    }
}

fn commtest_problem(error: &helsemelding_messaging::Error) -> Problem {
    use helsemelding_messaging::Error;
    match error {
        Error::SyncTimeout { .. } => {
            Problem::new(StatusCode::GATEWAY_TIMEOUT, "no-answer", error.to_string())
                .hint("the party did not answer in time: check that its gateway runs")
        }
        Error::UnexpectedReply { .. } | Error::Refused { .. } => {
            Problem::new(StatusCode::BAD_GATEWAY, "bad-answer", error.to_string())
        }
        other => match crate::folder::outgoing::refusal_of(other) {
            Some(refusal) => Problem::of_refusal(&refusal),
            None => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                other.to_string(),
            ),
        },
    }
}

/// `GET /healthz`: the process answers.
pub async fn healthz() -> Response {
    Json(json!({ "status": "ok" })).into_response()
}

/// How long the store may take to answer the readiness probe.
const STORE_PROBE: Duration = Duration::from_secs(2);

/// `GET /readyz`: 200 when the store answers, the receive links work and
/// our keys are loaded (they are: the messenger would not have opened
/// without them); 503 naming what is not.
pub async fn readyz(State(api): State<Api>) -> Response {
    let store = match tokio::time::timeout(
        STORE_PROBE,
        api.messenger()
            .store()
            .messages()
            .list(&Default::default(), 1),
    )
    .await
    {
        Ok(Ok(_)) => "ok".to_owned(),
        Ok(Err(error)) => format!("failing: {error}"),
        Err(_) => format!("no answer within {} s", STORE_PROBE.as_secs()),
    };
    let broker = match api.receiving().and_then(|r| r.down_for()) {
        None => "ok".to_owned(),
        Some(down) => format!("receive links failing for {} s", down.as_secs()),
    };
    let ready = store == "ok" && broker == "ok";
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "ready": ready,
        "checks": { "store": store, "broker": broker, "keys": "ok" },
    });
    (status, Json(body)).into_response()
}

/// A path or method the API does not have.
pub async fn no_route(uri: Uri) -> Problem {
    Problem::new(
        StatusCode::NOT_FOUND,
        "no-such-route",
        format!(
            "the API has no {}: see /api/v1/openapi.json",
            helsemelding_wire::text::for_display(uri.path(), 200)
        ),
    )
}
