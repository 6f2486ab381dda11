//! Schema creation and migration, keyed by SQLite's `user_version`.

use rusqlite::Connection;

use crate::{Error, Result};

const VERSION: i64 = 1;

const V1: &str = r#"
CREATE TABLE outbox (
    seq          INTEGER PRIMARY KEY,
    message_id   TEXT NOT NULL UNIQUE,
    to_her_id    INTEGER NOT NULL,
    queue        TEXT NOT NULL,
    function     TEXT NOT NULL,
    envelope     BLOB NOT NULL,
    body         BLOB,               -- protected (CMS) bytes; cleared once sent
    created_ms   INTEGER NOT NULL,
    expires_ms   INTEGER,
    state        TEXT NOT NULL CHECK (state IN ('pending', 'sent', 'failed')),
    attempts     INTEGER NOT NULL DEFAULT 0,
    last_error   TEXT,
    settled_ms   INTEGER
);
CREATE INDEX outbox_pending ON outbox(state, seq);

CREATE TABLE handed_over (
    sender_her_id INTEGER NOT NULL,
    message_id    TEXT NOT NULL,
    at_ms         INTEGER NOT NULL,
    outcome       TEXT NOT NULL,
    PRIMARY KEY (sender_her_id, message_id)
);
CREATE INDEX handed_over_age ON handed_over(at_ms);

CREATE TABLE delivery_attempts (
    queue       TEXT NOT NULL,
    message_id  TEXT NOT NULL,
    attempts    INTEGER NOT NULL,
    last_ms     INTEGER NOT NULL,
    PRIMARY KEY (queue, message_id)
);

CREATE TABLE receipts (
    message_id    TEXT PRIMARY KEY,
    to_her_id     INTEGER NOT NULL,
    function      TEXT NOT NULL,
    sent_ms       INTEGER NOT NULL,
    due_ms        INTEGER NOT NULL,
    received_ms   INTEGER,
    status        TEXT,
    receipt_id    TEXT
);
CREATE INDEX receipts_open ON receipts(received_ms, due_ms);

CREATE TABLE audit (
    seq           INTEGER PRIMARY KEY,
    at_ms         INTEGER NOT NULL,
    kind          TEXT NOT NULL,
    actor         TEXT NOT NULL,
    counterpart   INTEGER,
    message_id    TEXT,
    function      TEXT,
    outcome       TEXT NOT NULL,
    reason        TEXT,
    prev_hash     TEXT NOT NULL,
    hash          TEXT NOT NULL
);
CREATE INDEX audit_time ON audit(at_ms);

-- Where the chain starts after pruning, and where it ends: a removed tail
-- is as visible as a removed middle.
CREATE TABLE audit_anchor (
    id            INTEGER PRIMARY KEY CHECK (id = 1),
    start_seq     INTEGER NOT NULL,
    start_hash    TEXT NOT NULL,
    head_seq      INTEGER NOT NULL,
    head_hash     TEXT NOT NULL
);

-- The audit log is append-only for everything but pruning of rows older
-- than two years; an edit through SQL is refused by the database itself.
CREATE TRIGGER audit_append_only BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'audit rows are append-only'); END;
CREATE TRIGGER audit_retention BEFORE DELETE ON audit
WHEN old.at_ms > (CAST(strftime('%s', 'now') AS INTEGER) - 730 * 86400) * 1000
BEGIN SELECT RAISE(ABORT, 'audit rows younger than two years cannot be deleted'); END;
"#;

pub(crate) fn prepare(connection: &Connection) -> Result<()> {
    connection.pragma_update(None, "journal_mode", "WAL")?;
    connection.pragma_update(None, "synchronous", "FULL")?;
    connection.pragma_update(None, "foreign_keys", "ON")?;
    connection.busy_timeout(std::time::Duration::from_secs(5))?;
    let found: i64 = connection.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if found > VERSION {
        return Err(Error::SchemaTooNew {
            found,
            supported: VERSION,
        });
    }
    if found < 1 {
        let tx = connection.unchecked_transaction()?;
        tx.execute_batch(V1)?;
        tx.pragma_update(None, "user_version", VERSION)?;
        tx.commit()?;
    }
    Ok(())
}
