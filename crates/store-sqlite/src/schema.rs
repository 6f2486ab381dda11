//! Schema creation and migration, keyed by SQLite's `user_version`.

use rusqlite::{Connection, Transaction, TransactionBehavior};

use crate::error::Inner;
use crate::Error;

const VERSION: i64 = 6;

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

/// Several HER-ids per installation: hand-overs are keyed by (our HER-id,
/// their HER-id, message-id) and keep the answer a repeat gets again; a
/// message whose sender's revocation status is unknown remembers since when.
/// Rows from version 1 get our HER-id 0 (unknown): they still de-duplicate
/// for any of ours until they age out.
const V2: &str = r#"
CREATE TABLE inbox_handed_over (
    our_her_id      INTEGER NOT NULL,
    sender_her_id   INTEGER NOT NULL,
    message_id      TEXT NOT NULL,
    at_ms           INTEGER NOT NULL,
    outcome         TEXT NOT NULL,
    answer_function TEXT,
    answer_payload  BLOB,
    PRIMARY KEY (our_her_id, sender_her_id, message_id)
);
INSERT INTO inbox_handed_over (our_her_id, sender_her_id, message_id, at_ms, outcome)
    SELECT 0, sender_her_id, message_id, at_ms, outcome FROM handed_over
    WHERE outcome NOT LIKE 'error-reported%';
DROP TABLE handed_over;
CREATE INDEX inbox_handed_over_age ON inbox_handed_over(at_ms);

CREATE TABLE revocation_unknown (
    queue       TEXT NOT NULL,
    message_id  TEXT NOT NULL,
    since_ms    INTEGER NOT NULL,
    PRIMARY KEY (queue, message_id)
);
"#;

/// The outbox as a set of independent entries: each pending entry has its
/// own next-attempt time (per-entry backoff), so a failing entry only
/// delays itself. Existing entries are due at once.
const V3: &str = r#"
ALTER TABLE outbox ADD COLUMN next_attempt_ms INTEGER NOT NULL DEFAULT 0;
CREATE INDEX outbox_due ON outbox(state, next_attempt_ms);
"#;

/// Messages kept instead of dead-lettered (our queue has no dead-letter
/// path, or nobody can be told about them): their AMQP header as JSON and
/// their body as it came, until an operator drops or requeues them. Free
/// deliveries (outages, faults of ours) are counted beside the others, not
/// subtracted from them, so that a broker's own delivery count can be
/// corrected by them too.
const V4: &str = r#"
CREATE TABLE parked (
    id          INTEGER PRIMARY KEY,
    queue       TEXT NOT NULL,
    message_id  TEXT,
    reason      TEXT NOT NULL,
    parked_ms   INTEGER NOT NULL,
    envelope    BLOB NOT NULL,
    body        BLOB NOT NULL
);
ALTER TABLE delivery_attempts ADD COLUMN free INTEGER NOT NULL DEFAULT 0;
"#;

/// Version 5: the digest of an outbox entry's payload before it was
/// protected, kept after its bytes are dropped, so that a message-id
/// submitted again (a file dropped twice, an API call repeated) is told a
/// replay from a reuse.
const V5: &str = r#"
ALTER TABLE outbox ADD COLUMN payload_digest TEXT;
"#;

/// Version 6: where each message is as the EHR sees it. One record per
/// message (unique by direction, our HER-id, the peer and the message-id)
/// and an append-only history whose sequence numbers never go back
/// (AUTOINCREMENT: not reused even after the newest row is gone), which is
/// the events feed. Messages recorded before version 6 have no record.
const V6: &str = r#"
CREATE TABLE messages (
    id              INTEGER PRIMARY KEY,
    direction       TEXT NOT NULL CHECK (direction IN ('out', 'in')),
    our_her_id      INTEGER NOT NULL,
    peer_her_id     INTEGER NOT NULL,
    message_id      TEXT NOT NULL,
    msg_id          TEXT,
    function        TEXT NOT NULL,
    state           TEXT NOT NULL,
    overdue         INTEGER NOT NULL DEFAULT 0,
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    apprec_status   TEXT,
    leased_until_ms INTEGER,
    created_ms      INTEGER NOT NULL,
    updated_ms      INTEGER NOT NULL,
    UNIQUE (direction, our_her_id, peer_her_id, message_id)
);
CREATE INDEX messages_by_message_id ON messages(message_id);
CREATE INDEX messages_by_msg_id ON messages(msg_id);
CREATE INDEX messages_by_state ON messages(direction, state, id);

CREATE TABLE message_events (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    record     INTEGER NOT NULL REFERENCES messages(id),
    at_ms      INTEGER NOT NULL,
    state      TEXT NOT NULL,
    detail     TEXT
);
CREATE INDEX message_events_by_record ON message_events(record, seq);
ALTER TABLE outbox ADD COLUMN from_her_id INTEGER NOT NULL DEFAULT 0;
ALTER TABLE outbox ADD COLUMN msg_id TEXT;

CREATE TRIGGER message_events_append_only BEFORE UPDATE ON message_events
BEGIN SELECT RAISE(ABORT, 'message events are append-only'); END;
"#;

/// How long opening waits for other processes opening or writing the file.
const OPEN_PATIENCE: std::time::Duration = std::time::Duration::from_secs(10);

pub(crate) fn prepare(connection: &Connection) -> Inner<()> {
    // First, so that every statement below waits for another process that
    // is opening the same file instead of failing with "database is locked".
    connection.busy_timeout(OPEN_PATIENCE)?;
    // The switch of a new file to WAL takes a lock that the busy timeout
    // does not cover: another process opening it at the same moment gets
    // "database is locked" at once, so that step is tried again.
    let deadline = std::time::Instant::now() + OPEN_PATIENCE;
    loop {
        match connection.pragma_update(None, "journal_mode", "WAL") {
            Err(e) if is_busy(&e) && std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => break other?,
        }
    }
    connection.pragma_update(None, "synchronous", "FULL")?;
    connection.pragma_update(None, "foreign_keys", "ON")?;
    if schema_version(connection)? == VERSION {
        return Ok(());
    }
    // Another process (`listen` and an operator's `outbox list`, say) may be
    // creating the schema right now: take the write lock first, then look
    // again, so that exactly one of them creates it.
    let tx = Transaction::new_unchecked(connection, TransactionBehavior::Immediate)?;
    let found = schema_version(&tx)?;
    if found < 1 {
        tx.execute_batch(V1)?;
    }
    if found < 2 {
        tx.execute_batch(V2)?;
    }
    if found < 3 {
        tx.execute_batch(V3)?;
    }
    if found < 4 {
        tx.execute_batch(V4)?;
    }
    if found < 5 {
        tx.execute_batch(V5)?;
    }
    if found < 6 {
        tx.execute_batch(V6)?;
    }
    if found < VERSION {
        tx.pragma_update(None, "user_version", VERSION)?;
    }
    tx.commit()?;
    Ok(())
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

/// The schema version of the file; newer than this build knows is an error.
fn schema_version(connection: &Connection) -> Inner<i64> {
    let found: i64 = connection.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if found > VERSION {
        return Err(Error::SchemaTooNew {
            found,
            supported: VERSION,
        }
        .into());
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_1_store_is_migrated_keeping_its_hand_overs_but_not_its_reports() {
        let connection = Connection::open_in_memory().unwrap();
        connection.execute_batch(V1).unwrap();
        connection.pragma_update(None, "user_version", 1).unwrap();
        connection
            .execute_batch(
                "INSERT INTO handed_over VALUES (91462, 'm1', 1000, 'accepted');
                 INSERT INTO handed_over VALUES (91462, 'm2', 1000, 'error-reported:transport:invalid-certificate');",
            )
            .unwrap();
        prepare(&connection).unwrap();
        assert_eq!(schema_version(&connection).unwrap(), VERSION);
        let kept: Vec<(i64, String)> = connection
            .prepare("SELECT our_her_id, message_id FROM inbox_handed_over")
            .unwrap()
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .unwrap()
            .collect::<std::result::Result<_, _>>()
            .unwrap();
        assert_eq!(kept, [(0, "m1".to_string())]);
    }

    #[test]
    fn a_version_2_outbox_is_migrated_with_its_entries_due_at_once() {
        let connection = Connection::open_in_memory().unwrap();
        connection.execute_batch(V1).unwrap();
        connection.execute_batch(V2).unwrap();
        connection.pragma_update(None, "user_version", 2).unwrap();
        connection
            .execute_batch(
                "INSERT INTO outbox (message_id, to_her_id, queue, function, envelope, body,
                                     created_ms, state, attempts)
                 VALUES ('m1', 93252, '93252_async', 'F', x'7b7d', x'3080', 1000, 'pending', 2);",
            )
            .unwrap();
        prepare(&connection).unwrap();
        assert_eq!(schema_version(&connection).unwrap(), VERSION);
        let (attempts, next): (i64, i64) = connection
            .query_row(
                "SELECT attempts, next_attempt_ms FROM outbox WHERE message_id = 'm1'",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .unwrap();
        assert_eq!((attempts, next), (2, 0));
    }

    #[test]
    fn stores_opened_at_once_by_many_connections_all_get_the_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        let start = std::sync::Arc::new(std::sync::Barrier::new(8));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (path, start) = (path.clone(), start.clone());
                std::thread::spawn(move || {
                    let connection = Connection::open(&path).unwrap();
                    start.wait(); // all at once, as racing processes would
                    prepare(&connection).map(|_| ())
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap().expect("every opener succeeds");
        }
        let connection = Connection::open(&path).unwrap();
        assert_eq!(schema_version(&connection).unwrap(), VERSION);
        let tables: i64 = connection
            .query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'outbox'",
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(tables, 1);
    }
}
