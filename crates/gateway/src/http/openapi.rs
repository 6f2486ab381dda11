//! The OpenAPI 3.1 document of the API, served at `/api/v1/openapi.json`.
//! Written by hand beside the routes ([`super::router`]); the integration
//! test `http_api` calls every operation it lists against a running
//! `serve` and fails on one the router does not have.

use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

/// `GET /api/v1/openapi.json`.
pub async fn serve() -> Response {
    Json(document()).into_response()
}

fn problem(description: &str) -> Value {
    json!({
        "description": description,
        "content": { "application/problem+json": { "schema": { "$ref": "#/components/schemas/Problem" } } }
    })
}

fn record(description: &str) -> Value {
    json!({
        "description": description,
        "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Message" } } }
    })
}

fn id_parameter() -> Value {
    json!([
        { "name": "id", "in": "path", "required": true, "description": "the MsgHead's MsgId (or the AMQP message-id)", "schema": { "type": "string" } },
        { "name": "her_id", "in": "query", "required": false, "description": "our HER-id, when several of ours know the id", "schema": { "type": "integer" } }
    ])
}

/// The document.
pub fn document() -> Value {
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "helsemelding gateway",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Send and receive signed and encrypted health messages over Norsk Helsenett's service bus. Every request needs `Authorization: Bearer TOKEN` (a token of [http] token_file); errors are application/problem+json with a stable `code`."
        },
        "security": [ { "bearer": [] } ],
        "paths": {
            "/api/v1/messages": {
                "post": {
                    "summary": "Submit a MsgHead to send",
                    "requestBody": { "required": true, "content": {
                        "application/xml": { "schema": { "type": "string" } },
                        "application/json": { "schema": { "type": "object", "properties": {
                            "msghead": { "type": "string" }, "msghead_base64": { "type": "string" } } } }
                    } },
                    "responses": {
                        "202": record("accepted: sent, or waiting in the outbox for the broker"),
                        "200": record("a replay: this MsgId was submitted before with the same bytes"),
                        "400": problem("not a MsgHead (not-a-msghead, no-msgid, no-function, no-receiver)"),
                        "401": problem("no known bearer token"),
                        "409": problem("msgid-reused: this MsgId was sent with other bytes"),
                        "413": problem("too-large"),
                        "422": problem("the sender is not ours, or the receiver is unusable (receiver-unknown, receiver-without-amqp, certificate-unusable, …)"),
                        "503": problem("the store or the registry is unavailable: try again")
                    }
                },
                "get": {
                    "summary": "List messages, a page at a time",
                    "parameters": [
                        { "name": "direction", "in": "query", "schema": { "enum": ["out", "in"] } },
                        { "name": "state", "in": "query", "schema": { "$ref": "#/components/schemas/State" } },
                        { "name": "her_id", "in": "query", "schema": { "type": "integer" } },
                        { "name": "from", "in": "query", "schema": { "type": "string", "format": "date-time" } },
                        { "name": "to", "in": "query", "schema": { "type": "string", "format": "date-time" } },
                        { "name": "cursor", "in": "query", "description": "next_cursor of the page before", "schema": { "type": "integer" } },
                        { "name": "limit", "in": "query", "schema": { "type": "integer", "minimum": 1, "maximum": 1000 } }
                    ],
                    "responses": {
                        "200": { "description": "a page", "content": { "application/json": { "schema": { "type": "object", "properties": {
                            "messages": { "type": "array", "items": { "$ref": "#/components/schemas/Message" } },
                            "next_cursor": { "type": ["integer", "null"] } } } } } },
                        "400": problem("a bad query")
                    }
                }
            },
            "/api/v1/messages/{id}": {
                "parameters": id_parameter(),
                "get": {
                    "summary": "One message with its state history",
                    "responses": { "200": record("the message and `history`"), "404": problem("not-found") }
                },
                "delete": {
                    "summary": "Cancel a message not yet sent",
                    "responses": { "200": record("CANCELLED"), "404": problem("not-found"), "409": problem("wrong-state: sent already") }
                }
            },
            "/api/v1/messages/{id}/retry": {
                "parameters": id_parameter(),
                "post": {
                    "summary": "Send a FAILED message again",
                    "responses": { "200": record("pending again"), "404": problem("not-found"), "409": problem("wrong-state: not failed") }
                }
            },
            "/api/v1/inbox/lease": {
                "post": {
                    "summary": "Lease the next incoming messages",
                    "requestBody": { "required": false, "content": { "application/json": { "schema": { "type": "object", "properties": {
                        "her_id": { "type": "integer" }, "limit": { "type": "integer", "maximum": 100 }, "seconds": { "type": "integer", "maximum": 3600 } } } } } },
                    "responses": { "200": { "description": "the leased messages and `leased_until`" }, "400": problem("a bad body") }
                }
            },
            "/api/v1/inbox/{id}": {
                "parameters": id_parameter(),
                "get": {
                    "summary": "Read an incoming message: exactly the signed bytes; the record in X-Helsemelding-* headers",
                    "responses": {
                        "200": { "description": "the MsgHead", "content": { "application/xml": { "schema": { "type": "string" } } } },
                        "404": problem("not-found"),
                        "410": problem("gone: its IN file was taken from the folder")
                    }
                }
            },
            "/api/v1/inbox/{id}/ack": {
                "parameters": id_parameter(),
                "post": {
                    "summary": "Acknowledge an incoming message (DELIVERED)",
                    "responses": { "200": record("DELIVERED"), "404": problem("not-found"), "409": problem("wrong-state: the lease ran out and another client has it, or it was acknowledged") }
                }
            },
            "/api/v1/inbox/{id}/release": {
                "parameters": id_parameter(),
                "post": {
                    "summary": "Give a leased message back (AVAILABLE)",
                    "responses": { "200": record("AVAILABLE"), "404": problem("not-found"), "409": problem("wrong-state: not leased") }
                }
            },
            "/api/v1/inbox/{id}/apprec": {
                "parameters": id_parameter(),
                "post": {
                    "summary": "The EHR's AppRec for an incoming message ([receipts] automatic = false): built, signed and sent by the gateway (APPREC_SENT)",
                    "requestBody": { "required": true, "content": {
                        "application/json": { "schema": { "type": "object", "required": ["status"], "properties": {
                            "status": { "enum": ["1", "2", "3"] },
                            "errors": { "type": "array", "items": { "type": "object", "required": ["code"], "properties": {
                                "code": { "type": "string", "description": "kodeverk 8221" }, "description": { "type": "string" } } } } } } },
                        "application/xml": { "schema": { "type": "string", "description": "a whole AppRec v1.0 or v1.1" } }
                    } },
                    "responses": {
                        "200": record("APPREC_SENT"),
                        "400": problem("bad-apprec, apprec-mismatch"),
                        "404": problem("not-found"),
                        "409": problem("wrong-state: answered already, or no AppRec is owed"),
                        "503": problem("try again")
                    }
                }
            },
            "/api/v1/events": {
                "get": {
                    "summary": "Every state change after a sequence number",
                    "parameters": [
                        { "name": "after", "in": "query", "schema": { "type": "integer" } },
                        { "name": "limit", "in": "query", "schema": { "type": "integer", "maximum": 1000 } },
                        { "name": "wait", "in": "query", "description": "seconds to wait for one when there is none (at most 60)", "schema": { "type": "integer" } }
                    ],
                    "responses": { "200": { "description": "`events` and `next`, the `after` of the next call" } }
                }
            },
            "/api/v1/commtest": {
                "post": {
                    "summary": "A timed communication test",
                    "requestBody": { "required": true, "content": { "application/json": { "schema": { "type": "object", "required": ["her_id"], "properties": {
                        "her_id": { "type": "integer" }, "mode": { "enum": ["async", "sync"] }, "timeout_ms": { "type": "integer" } } } } } },
                    "responses": {
                        "200": { "description": "answered: round_trip_ms, within_limit (5 s)" },
                        "400": problem("a bad body"),
                        "422": problem("the party cannot be tested"),
                        "502": problem("bad-answer"),
                        "504": problem("no-answer in time")
                    }
                }
            },
            "/api/v1/openapi.json": {
                "get": { "summary": "This document", "responses": { "200": { "description": "OpenAPI 3.1" } } }
            },
            "/healthz": {
                "get": { "summary": "Liveness", "responses": { "200": { "description": "the process answers" } } }
            },
            "/readyz": {
                "get": { "summary": "Readiness: store, broker receive links, keys", "responses": {
                    "200": { "description": "ready" }, "503": { "description": "not ready: `checks` names what is not" } } }
            }
        },
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
            "schemas": {
                "State": { "enum": helsemelding_store::messages::MessageState::ALL.iter().map(|s| s.name()).collect::<Vec<_>>() },
                "Problem": { "type": "object", "required": ["type", "title", "status", "code", "detail"], "properties": {
                    "type": { "type": "string" }, "title": { "type": "string" }, "status": { "type": "integer" },
                    "code": { "type": "string" }, "detail": { "type": "string" }, "hint": { "type": "string" } } },
                "Message": { "type": "object", "properties": {
                    "record": { "type": "integer" }, "id": { "type": "string" }, "direction": { "enum": ["out", "in"] },
                    "her_id": { "type": "integer" }, "peer_her_id": { "type": "integer" }, "message_id": { "type": "string" },
                    "msg_id": { "type": ["string", "null"] }, "function": { "type": "string" },
                    "state": { "$ref": "#/components/schemas/State" }, "overdue": { "type": "boolean" },
                    "attempts": { "type": "integer" }, "last_error": { "type": ["string", "null"] },
                    "apprec_status": { "type": ["string", "null"] }, "leased_until": { "type": ["string", "null"] },
                    "created_at": { "type": "string" }, "updated_at": { "type": "string" },
                    "history": { "type": "array", "items": { "type": "object" } } } }
            }
        }
    })
}

/// Every (method, path) the document lists, for the route check.
pub fn operations() -> Vec<(String, String)> {
    let document = document();
    let mut operations = Vec::new();
    if let Some(paths) = document["paths"].as_object() {
        for (path, item) in paths {
            for method in ["get", "post", "put", "delete", "patch"] {
                if item.get(method).is_some() {
                    operations.push((method.to_ascii_uppercase(), path.clone()));
                }
            }
        }
    }
    operations
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_says_what_it_answers_and_every_ref_resolves() {
        let document = document();
        let operations = operations();
        assert_eq!(operations.len(), 15, "{operations:?}");
        for (method, path) in &operations {
            let operation = &document["paths"][path][method.to_ascii_lowercase()];
            assert!(operation["summary"].is_string(), "{method} {path}");
            assert!(operation["responses"].is_object(), "{method} {path}");
        }
        let text = document.to_string();
        for reference in text.split("\"$ref\":\"").skip(1) {
            let target = reference.split('"').next().unwrap();
            let name = target.rsplit('/').next().unwrap();
            assert!(
                document["components"]["schemas"][name].is_object(),
                "{target} does not resolve"
            );
        }
    }
}
