//! Errors of the API as `application/problem+json` (RFC 9457): a status,
//! a stable `code` a client can branch on (the same codes as the folder
//! drop's `.error.json`), what went wrong and what to do about it. No
//! payload, key or token ever goes into one.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use helsemelding_store::Error as StoreError;
use serde_json::json;

use crate::folder::outgoing::Refusal;

/// One refused or failed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The HTTP status.
    pub status: StatusCode,
    /// A stable code, e.g. `not-a-msghead`, `msgid-reused`, `unauthorized`.
    pub code: &'static str,
    /// What went wrong, naming the values concerned.
    pub detail: String,
    /// What to do about it, when there is something to say.
    pub hint: Option<&'static str>,
}

impl Problem {
    /// A problem with `status`, `code` and `detail`.
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Problem {
        Problem {
            status,
            code,
            detail: detail.into(),
            hint: None,
        }
    }

    /// The same with a hint.
    pub fn hint(mut self, hint: &'static str) -> Problem {
        self.hint = Some(hint);
        self
    }

    /// `404 not-found` for the message `id`.
    pub fn no_message(id: &str) -> Problem {
        Problem::new(
            StatusCode::NOT_FOUND,
            "not-found",
            format!(
                "no message is recorded as {}",
                helsemelding_wire::text::for_display(id, 100)
            ),
        )
    }

    /// A refusal of a message to be sent, with the status its code calls for.
    pub fn of_refusal(refusal: &Refusal) -> Problem {
        let status = match refusal.code {
            "too-large" => StatusCode::PAYLOAD_TOO_LARGE,
            "msgid-reused" => StatusCode::CONFLICT,
            "not-a-msghead" | "no-msgid" | "no-function" | "no-receiver" | "payload-refused"
            | "bad-apprec" | "apprec-mismatch" => StatusCode::BAD_REQUEST,
            _ => StatusCode::UNPROCESSABLE_ENTITY,
        };
        Problem {
            status,
            code: refusal.code,
            detail: refusal.reason.clone(),
            hint: Some(refusal.hint),
        }
    }

    /// A store error: the record's state or absence says what the client
    /// did wrong; anything else is the store being unavailable (503).
    pub fn of_store(error: &StoreError) -> Problem {
        match error {
            StoreError::UnknownRecord { .. } | StoreError::UnknownMessage { .. } => {
                Problem::new(StatusCode::NOT_FOUND, "not-found", error.to_string())
            }
            StoreError::RecordState { .. } | StoreError::OutboxState { .. } => {
                Problem::new(StatusCode::CONFLICT, "wrong-state", error.to_string())
            }
            _ => Problem::unavailable(error),
        }
    }

    /// `503 store-unavailable`: try again later.
    pub fn unavailable(error: &dyn std::fmt::Display) -> Problem {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store-unavailable",
            format!("the gateway cannot do this now: {error}"),
        )
        .hint("try again later; nothing was changed")
    }
}

impl From<StoreError> for Problem {
    fn from(error: StoreError) -> Problem {
        Problem::of_store(&error)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let mut body = json!({
            "type": format!("urn:helsemelding:problem:{}", self.code),
            "title": self.status.canonical_reason().unwrap_or("error"),
            "status": self.status.as_u16(),
            "code": self.code,
            "detail": self.detail,
        });
        if let Some(hint) = self.hint {
            body["hint"] = hint.into();
        }
        let mut response = (self.status, body.to_string()).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/problem+json"),
        );
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer realm=\"helsemelding\""),
            );
        }
        response
    }
}
