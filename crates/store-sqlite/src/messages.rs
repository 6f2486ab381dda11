//! Message records and their history: [`Messages`] for [`SqliteStore`],
//! and the `track_*` statements that the outbox, inbox and receipts call
//! inside their own units of work, so that a state changes in the same
//! transaction as the change that causes it.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use helsemelding_store::inbox::MessageKey;
use helsemelding_store::messages::{
    Arrival, Direction, MessageFilter, MessageRecord, MessageState, StateEvent,
};
use helsemelding_store::outbox::OutgoingMessage;
use helsemelding_store::{Error, Messages, Result};
use rusqlite::types::Value;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension, Row};

use crate::error::Inner;
use crate::time::{from_ms, to_ms};
use crate::SqliteStore;

const RECORD_COLUMNS: &str = "id, direction, our_her_id, peer_her_id, message_id, msg_id, function,
     state, overdue, attempts, last_error, apprec_status, leased_until_ms, created_ms, updated_ms";

const EVENT_SELECT: &str = "SELECT e.seq, e.at_ms, e.record, m.direction, m.our_her_id,
     COALESCE(m.msg_id, m.message_id), e.state, e.detail
     FROM message_events e JOIN messages m ON m.id = e.record";

fn parse<T: std::str::FromStr>(row: &Row<'_>, column: usize) -> rusqlite::Result<T> {
    let text: String = row.get(column)?;
    text.parse().map_err(|_| {
        rusqlite::Error::FromSqlConversionFailure(
            column,
            rusqlite::types::Type::Text,
            format!("unknown name {text:?}").into(),
        )
    })
}

fn record_from_row(row: &Row<'_>) -> rusqlite::Result<MessageRecord> {
    Ok(MessageRecord {
        id: row.get(0)?,
        direction: parse(row, 1)?,
        ours: row.get(2)?,
        peer: row.get(3)?,
        message_id: row.get(4)?,
        msg_id: row.get(5)?,
        function: row.get(6)?,
        state: parse(row, 7)?,
        overdue: row.get(8)?,
        attempts: row.get(9)?,
        last_error: row.get(10)?,
        apprec_status: row.get(11)?,
        leased_until: row.get::<_, Option<i64>>(12)?.map(from_ms),
        created_at: from_ms(row.get(13)?),
        updated_at: from_ms(row.get(14)?),
    })
}

fn event_from_row(row: &Row<'_>) -> rusqlite::Result<StateEvent> {
    Ok(StateEvent {
        seq: row.get(0)?,
        at: from_ms(row.get(1)?),
        record: row.get(2)?,
        direction: parse(row, 3)?,
        ours: row.get(4)?,
        id: row.get(5)?,
        state: parse(row, 6)?,
        detail: row.get(7)?,
    })
}

fn append_event(
    connection: &Connection,
    record: i64,
    state: MessageState,
    at: DateTime<Utc>,
    detail: Option<&str>,
) -> Inner<()> {
    connection
        .prepare_cached(
            "INSERT INTO message_events (record, at_ms, state, detail) VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![record, to_ms(at), state.name(), detail])?;
    Ok(())
}

/// Sets `record`'s state (and bumps its time) and appends the event.
pub(crate) fn change(
    connection: &Connection,
    record: i64,
    state: MessageState,
    at: DateTime<Utc>,
    detail: Option<&str>,
) -> Inner<()> {
    connection
        .prepare_cached("UPDATE messages SET state = ?2, updated_ms = ?3 WHERE id = ?1")?
        .execute(params![record, state.name(), to_ms(at)])?;
    append_event(connection, record, state, at, detail)
}

/// The record of an outgoing message by its message-id and its state, if
/// it has one (messages from before version 6 do not).
fn outgoing_record(connection: &Connection, message_id: &str) -> Inner<Option<(i64, String)>> {
    Ok(connection
        .prepare_cached(
            "SELECT id, state FROM messages WHERE direction = 'out' AND message_id = ?1",
        )?
        .query_row([message_id], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?)
}

/// A new outgoing message: `ACCEPTED`.
pub(crate) fn track_enqueued(connection: &Connection, message: &OutgoingMessage) -> Inner<()> {
    let at = message.created_at;
    let record: i64 = connection
        .prepare_cached(
            "INSERT INTO messages (direction, our_her_id, peer_her_id, message_id, msg_id,
                                   function, state, created_ms, updated_ms)
             VALUES ('out', ?1, ?2, ?3, ?4, ?5, 'ACCEPTED', ?6, ?6)
             ON CONFLICT DO UPDATE SET state = 'ACCEPTED', updated_ms = ?6
             RETURNING id",
        )?
        .query_row(
            params![
                message.from_her_id,
                message.to_her_id,
                message.message_id,
                message.msg_id,
                message.function,
                to_ms(at)
            ],
            |row| row.get(0),
        )?;
    append_event(connection, record, MessageState::Accepted, at, None)
}

/// An outgoing message's state changed with its outbox entry: `detail`
/// is the error or reason (kept as its last error), `attempts` its failed
/// attempts when they changed. Marking a message again in the state it is
/// in adds nothing.
pub(crate) fn track_outgoing(
    connection: &Connection,
    message_id: &str,
    state: MessageState,
    at: DateTime<Utc>,
    detail: Option<&str>,
    attempts: Option<u32>,
) -> Inner<()> {
    let Some((record, current)) = outgoing_record(connection, message_id)? else {
        return Ok(());
    };
    if current == state.name() && attempts.is_none() {
        return Ok(());
    }
    connection
        .prepare_cached(
            "UPDATE messages SET attempts = COALESCE(?2, attempts),
                                 last_error = COALESCE(?3, last_error) WHERE id = ?1",
        )?
        .execute(params![record, attempts, detail])?;
    change(connection, record, state, at, detail)
}

/// An AppRec about the outgoing message with MsgId `msg_id` to `peer`.
pub(crate) fn track_receipt(
    connection: &Connection,
    msg_id: &str,
    peer: u32,
    status: &str,
    at: DateTime<Utc>,
) -> Inner<()> {
    let record: Option<i64> = connection
        .prepare_cached(
            "SELECT id FROM messages WHERE direction = 'out' AND peer_her_id = ?2
             AND (msg_id = ?1 OR message_id = ?1) ORDER BY id DESC LIMIT 1",
        )?
        .query_row(params![msg_id, peer], |row| row.get(0))
        .optional()?;
    let Some(record) = record else {
        return Ok(());
    };
    connection
        .prepare_cached("UPDATE messages SET apprec_status = ?2, overdue = 0 WHERE id = ?1")?
        .execute(params![record, status])?;
    let state = MessageState::of_apprec_status(status);
    change(
        connection,
        record,
        state,
        at,
        Some(&format!("AppRec status {status}")),
    )
}

/// An incoming message reached `state` (`AVAILABLE` at its hand-over,
/// `REJECTED` when reported); the record is made if it is new.
pub(crate) fn track_arrival(
    connection: &Connection,
    key: MessageKey<'_>,
    arrival: Arrival<'_>,
    state: MessageState,
    at: DateTime<Utc>,
    detail: Option<&str>,
) -> Inner<i64> {
    let record: i64 = connection
        .prepare_cached(
            "INSERT INTO messages (direction, our_her_id, peer_her_id, message_id, msg_id,
                                   function, state, last_error, created_ms, updated_ms)
             VALUES ('in', ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)
             ON CONFLICT DO UPDATE SET state = ?6, last_error = ?7, updated_ms = ?8
             RETURNING id",
        )?
        .query_row(
            params![
                key.ours,
                key.sender,
                key.message_id,
                arrival.msg_id,
                arrival.function,
                state.name(),
                detail,
                to_ms(at)
            ],
            |row| row.get(0),
        )?;
    append_event(connection, record, state, at, detail)?;
    Ok(record)
}

/// The record number of the incoming message `key`.
pub(crate) fn record_of(connection: &Connection, key: MessageKey<'_>) -> Inner<i64> {
    connection
        .prepare_cached(
            "SELECT id FROM messages WHERE direction = 'in' AND our_her_id = ?1
               AND peer_her_id = ?2 AND message_id = ?3",
        )?
        .query_row(params![key.ours, key.sender, key.message_id], |row| {
            row.get(0)
        })
        .optional()?
        .ok_or_else(|| {
            Error::UnknownMessage {
                message_id: key.message_id.to_owned(),
            }
            .into()
        })
}

fn get_record(connection: &Connection, record: i64) -> Inner<MessageRecord> {
    connection
        .prepare_cached(&format!(
            "SELECT {RECORD_COLUMNS} FROM messages WHERE id = ?1"
        ))?
        .query_row([record], record_from_row)
        .optional()?
        .ok_or_else(|| Error::UnknownRecord { record }.into())
}

#[async_trait]
impl Messages for SqliteStore {
    async fn list(&self, filter: &MessageFilter, limit: usize) -> Result<Vec<MessageRecord>> {
        let mut sql = format!("SELECT {RECORD_COLUMNS} FROM messages WHERE 1 = 1");
        let mut values: Vec<Value> = Vec::new();
        let mut condition = |clause: &str, value: Value| {
            values.push(value);
            sql.push_str(&format!(" AND {clause} ?{}", values.len()));
        };
        if let Some(direction) = filter.direction {
            condition("direction =", direction.name().to_owned().into());
        }
        if let Some(state) = filter.state {
            condition("state =", state.name().to_owned().into());
        }
        if let Some(ours) = filter.ours {
            condition("our_her_id =", i64::from(ours).into());
        }
        if let Some(from) = filter.from {
            condition("created_ms >=", to_ms(from).into());
        }
        if let Some(to) = filter.to {
            condition("created_ms <", to_ms(to).into());
        }
        if let Some(after) = filter.after {
            condition("id >", after.into());
        }
        values.push((limit as i64).into());
        sql.push_str(&format!(" ORDER BY id LIMIT ?{}", values.len()));
        self.read("messages list", move |connection| {
            let mut statement = connection.prepare(&sql)?;
            let rows = statement.query_map(params_from_iter(values), record_from_row)?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn find(
        &self,
        id: &str,
        direction: Option<Direction>,
        ours: Option<u32>,
    ) -> Result<Option<MessageRecord>> {
        let id = id.to_owned();
        let direction = direction.map(Direction::name);
        self.read("messages find", move |connection| {
            Ok(connection
                .prepare_cached(&format!(
                    "SELECT {RECORD_COLUMNS} FROM messages
                     WHERE (msg_id = ?1 OR message_id = ?1)
                       AND (?2 IS NULL OR direction = ?2) AND (?3 IS NULL OR our_her_id = ?3)
                     ORDER BY id DESC LIMIT 1"
                ))?
                .query_row(params![id, direction, ours], record_from_row)
                .optional()?)
        })
        .await
    }

    async fn history(&self, record: i64) -> Result<Vec<StateEvent>> {
        self.read("messages history", move |connection| {
            let mut statement = connection.prepare_cached(&format!(
                "{EVENT_SELECT} WHERE e.record = ?1 ORDER BY e.seq"
            ))?;
            let rows = statement.query_map([record], event_from_row)?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn events_after(&self, after: i64, limit: usize) -> Result<Vec<StateEvent>> {
        self.read("messages events", move |connection| {
            let mut statement = connection.prepare_cached(&format!(
                "{EVENT_SELECT} WHERE e.seq > ?1 ORDER BY e.seq LIMIT ?2"
            ))?;
            let rows = statement.query_map(params![after, limit as i64], event_from_row)?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn lease(
        &self,
        ours: Option<u32>,
        limit: usize,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<MessageRecord>> {
        self.write("messages lease", move |connection| {
            let ids: Vec<i64> = {
                let mut statement = connection.prepare_cached(
                    "SELECT id FROM messages WHERE direction = 'in'
                       AND (state = 'AVAILABLE' OR (state = 'LEASED' AND leased_until_ms <= ?1))
                       AND (?2 IS NULL OR our_her_id = ?2)
                     ORDER BY id LIMIT ?3",
                )?;
                let rows = statement
                    .query_map(params![to_ms(now), ours, limit as i64], |row| row.get(0))?;
                rows.collect::<rusqlite::Result<_>>()?
            };
            let detail = format!("until {}", until.to_rfc3339());
            ids.into_iter()
                .map(|record| {
                    connection
                        .prepare_cached("UPDATE messages SET leased_until_ms = ?2 WHERE id = ?1")?
                        .execute(params![record, to_ms(until)])?;
                    change(connection, record, MessageState::Leased, now, Some(&detail))?;
                    get_record(connection, record)
                })
                .collect()
        })
        .await
    }

    async fn set_state(
        &self,
        record: i64,
        state: MessageState,
        now: DateTime<Utc>,
        detail: Option<&str>,
    ) -> Result<MessageRecord> {
        let detail = detail.map(str::to_owned);
        self.write("messages set state", move |connection| {
            get_record(connection, record)?;
            if state != MessageState::Leased {
                connection
                    .prepare_cached("UPDATE messages SET leased_until_ms = NULL WHERE id = ?1")?
                    .execute([record])?;
            }
            change(connection, record, state, now, detail.as_deref())?;
            get_record(connection, record)
        })
        .await
    }

    async fn transition(
        &self,
        record: i64,
        from: &[MessageState],
        to: MessageState,
        now: DateTime<Utc>,
        action: &'static str,
    ) -> Result<MessageRecord> {
        let from = from.to_vec();
        self.write("messages transition", move |connection| {
            let current = get_record(connection, record)?;
            if !from.contains(&current.state) {
                return Err(Error::RecordState {
                    record,
                    state: current.state.name().to_owned(),
                    action,
                }
                .into());
            }
            if to != MessageState::Leased {
                connection
                    .prepare_cached("UPDATE messages SET leased_until_ms = NULL WHERE id = ?1")?
                    .execute([record])?;
            }
            change(connection, record, to, now, Some(action))?;
            get_record(connection, record)
        })
        .await
    }

    async fn record_rejected(
        &self,
        key: MessageKey<'_>,
        arrival: Arrival<'_>,
        at: DateTime<Utc>,
        reason: &str,
    ) -> Result<()> {
        let (ours, sender, message_id) = (key.ours, key.sender, key.message_id.to_owned());
        let (msg_id, function) = (
            arrival.msg_id.map(str::to_owned),
            arrival.function.to_owned(),
        );
        let reason = reason.to_owned();
        self.write("messages record rejected", move |connection| {
            let key = MessageKey {
                ours,
                sender,
                message_id: &message_id,
            };
            let arrival = Arrival {
                msg_id: msg_id.as_deref(),
                function: &function,
            };
            track_arrival(
                connection,
                key,
                arrival,
                MessageState::Rejected,
                at,
                Some(&reason),
            )?;
            Ok(())
        })
        .await
    }

    async fn flag_overdue(&self, record: i64) -> Result<bool> {
        self.write("messages flag overdue", move |connection| {
            let changed = connection
                .prepare_cached("UPDATE messages SET overdue = 1 WHERE id = ?1 AND overdue = 0")?
                .execute([record])?;
            Ok(changed > 0)
        })
        .await
    }

    async fn mark_overdue(&self, msg_id: &str, peer: u32) -> Result<bool> {
        let msg_id = msg_id.to_owned();
        self.write("messages mark overdue", move |connection| {
            let changed = connection
                .prepare_cached(
                    "UPDATE messages SET overdue = 1 WHERE direction = 'out' AND peer_her_id = ?2
                     AND (msg_id = ?1 OR message_id = ?1) AND overdue = 0",
                )?
                .execute(params![msg_id, peer])?;
            Ok(changed > 0)
        })
        .await
    }
}
