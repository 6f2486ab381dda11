//! How message records and their state changes look as JSON: one shape
//! for `messages --json`, the HTTP API and its events feed, so a client
//! reads the same fields wherever it looks.

use helsemelding_store::messages::{MessageRecord, StateEvent};
use serde_json::json;

/// A record as the CLI's `--json` and the API show it.
pub fn record_json(record: &MessageRecord) -> serde_json::Value {
    json!({
        "record": record.id,
        "id": record.public_id(),
        "direction": record.direction.name(),
        "her_id": record.ours,
        "peer_her_id": record.peer,
        "message_id": record.message_id,
        "msg_id": record.msg_id,
        "function": record.function,
        "state": record.state.name(),
        "overdue": record.overdue,
        "attempts": record.attempts,
        "last_error": record.last_error,
        "apprec_status": record.apprec_status,
        "leased_until": record.leased_until.map(|t| t.to_rfc3339()),
        "created_at": record.created_at.to_rfc3339(),
        "updated_at": record.updated_at.to_rfc3339(),
    })
}

/// A state change as the CLI's `--json` and the events feed show it.
pub fn event_json(event: &StateEvent) -> serde_json::Value {
    json!({
        "seq": event.seq,
        "at": event.at.to_rfc3339(),
        "record": event.record,
        "direction": event.direction.name(),
        "her_id": event.ours,
        "id": event.id,
        "state": event.state.name(),
        "detail": event.detail,
    })
}
