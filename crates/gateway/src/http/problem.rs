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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_that_fails_is_503_and_a_record_in_the_way_is_404_or_409() {
        let down = StoreError::Commit {
            reason: "disk I/O error".into(),
        };
        let problem = Problem::of_store(&down);
        assert_eq!(
            (problem.status, problem.code),
            (StatusCode::SERVICE_UNAVAILABLE, "store-unavailable")
        );
        assert!(problem.detail.contains("disk I/O error") && problem.hint.is_some());
        let unknown = Problem::of_store(&StoreError::UnknownRecord { record: 7 });
        assert_eq!(unknown.status, StatusCode::NOT_FOUND);
        let busy = StoreError::RecordState {
            record: 7,
            state: "DELIVERED".into(),
            action: "ack",
        };
        assert_eq!(Problem::of_store(&busy).status, StatusCode::CONFLICT);
    }

    #[test]
    fn each_refusal_code_has_its_status() {
        for (code, status) in [
            ("not-a-msghead", 400),
            ("bad-apprec", 400),
            ("too-large", 413),
            ("msgid-reused", 409),
            ("sender-not-ours", 422),
            ("receiver-unknown", 422),
            ("certificate-unusable", 422),
        ] {
            let problem = Problem::of_refusal(&Refusal::new(code, "why", "what to do"));
            assert_eq!(problem.status.as_u16(), status, "{code}");
        }
    }

    #[test]
    fn the_body_is_problem_json_with_its_code() {
        let response =
            Problem::new(StatusCode::UNAUTHORIZED, "unauthorized", "no token").into_response();
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
        assert!(response.headers().contains_key(header::WWW_AUTHENTICATE));
    }
}
