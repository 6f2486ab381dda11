//! Application receipts (AppRec) expected for sent messages.
//!
//! A municipality must know, for each message it sent, whether the receiver
//! answered with an AppRec and what it said. A sent message that asks for
//! one is recorded with a deadline; the AppRec that arrives later is matched
//! by its `OriginalMsgId` and must come from the party the message went to.

use chrono::{DateTime, Utc};
use rusqlite::{params, OptionalExtension, Row};

use crate::time::{from_ms, to_ms};
use crate::{Error, Result, Store};

/// A sent message that waits for its receipt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpectedReceipt {
    pub message_id: String,
    pub to_her_id: u32,
    pub function: String,
    pub sent_at: DateTime<Utc>,
    pub due_at: DateTime<Utc>,
}

/// A tracked message and its receipt, if one came.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceiptRecord {
    pub expected: ExpectedReceipt,
    pub received: Option<ReceivedReceipt>,
}

/// The receipt that answered a tracked message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceivedReceipt {
    pub at: DateTime<Utc>,
    /// AppRec status code: `1` OK, `2` rejected, `3` OK with errors.
    pub status: String,
    pub receipt_message_id: String,
}

/// What matching an incoming receipt found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReceiptMatch {
    /// It answers a tracked message; now recorded.
    Matched(ExpectedReceipt),
    /// That message was answered before (a duplicate receipt).
    AlreadyMatched,
    /// No message with that id was sent expecting a receipt.
    Unknown,
    /// It names our message but comes from a party the message did not go to.
    WrongSender { expected_her_id: u32 },
}

/// The receipts view of a [`Store`].
pub struct Receipts<'a> {
    store: &'a Store,
}

impl<'a> Receipts<'a> {
    pub(crate) fn new(store: &'a Store) -> Self {
        Receipts { store }
    }

    /// Starts tracking a sent message.
    pub fn expect(&self, expected: &ExpectedReceipt) -> Result<()> {
        self.store.write("receipts expect", |connection| {
            let inserted = connection.execute(
                "INSERT INTO receipts (message_id, to_her_id, function, sent_ms, due_ms)
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
                params![
                    expected.message_id,
                    expected.to_her_id,
                    expected.function,
                    to_ms(expected.sent_at),
                    to_ms(expected.due_at)
                ],
            )?;
            if inserted == 0 {
                return Err(Error::DuplicateReceipt {
                    message_id: expected.message_id.clone(),
                }
                .into());
            }
            Ok(())
        })
    }

    /// Matches a receipt from `from_her_id` answering `original_message_id`.
    pub fn record(
        &self,
        original_message_id: &str,
        from_her_id: u32,
        received: &ReceivedReceipt,
    ) -> Result<ReceiptMatch> {
        self.store.write("receipts record", |connection| {
        let tx = connection.savepoint()?;
        let found = tx
            .query_row(
                &format!("{SELECT} WHERE message_id = ?1"),
                [original_message_id],
                record_from_row,
            )
            .optional()?;
        let outcome = match found {
            None => ReceiptMatch::Unknown,
            Some(record) if record.expected.to_her_id != from_her_id => ReceiptMatch::WrongSender {
                expected_her_id: record.expected.to_her_id,
            },
            Some(record) if record.received.is_some() => ReceiptMatch::AlreadyMatched,
            Some(record) => {
                tx.execute(
                    "UPDATE receipts SET received_ms = ?2, status = ?3, receipt_id = ?4 WHERE message_id = ?1",
                    params![
                        original_message_id,
                        to_ms(received.at),
                        received.status,
                        received.receipt_message_id
                    ],
                )?;
                ReceiptMatch::Matched(record.expected)
            }
        };
        tx.commit()?;
        Ok(outcome)
        })
    }

    /// Messages whose receipt has not come by `now` though it was due.
    pub fn overdue(&self, now: DateTime<Utc>) -> Result<Vec<ReceiptRecord>> {
        self.query(
            &format!("{SELECT} WHERE received_ms IS NULL AND due_ms <= ?1 ORDER BY due_ms"),
            params![to_ms(now)],
        )
    }

    /// Every tracked message, newest first, at most `limit`.
    pub fn all(&self, limit: usize) -> Result<Vec<ReceiptRecord>> {
        self.query(
            &format!("{SELECT} ORDER BY sent_ms DESC LIMIT ?1"),
            params![limit as i64],
        )
    }

    /// One tracked message.
    pub fn get(&self, message_id: &str) -> Result<Option<ReceiptRecord>> {
        Ok(self
            .query(
                &format!("{SELECT} WHERE message_id = ?1"),
                params![message_id],
            )?
            .pop())
    }

    fn query(&self, sql: &str, params: impl rusqlite::Params) -> Result<Vec<ReceiptRecord>> {
        self.store.read("receipts query", |connection| {
            let mut statement = connection.prepare_cached(sql)?;
            let rows = statement.query_map(params, record_from_row)?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }
}

const SELECT: &str = "SELECT message_id, to_her_id, function, sent_ms, due_ms, received_ms, status, receipt_id FROM receipts";

fn record_from_row(row: &Row<'_>) -> rusqlite::Result<ReceiptRecord> {
    let received = match row.get::<_, Option<i64>>(5)? {
        Some(at) => Some(ReceivedReceipt {
            at: from_ms(at),
            status: row.get::<_, Option<String>>(6)?.unwrap_or_default(),
            receipt_message_id: row.get::<_, Option<String>>(7)?.unwrap_or_default(),
        }),
        None => None,
    };
    Ok(ReceiptRecord {
        expected: ExpectedReceipt {
            message_id: row.get(0)?,
            to_her_id: row.get(1)?,
            function: row.get(2)?,
            sent_at: from_ms(row.get(3)?),
            due_at: from_ms(row.get(4)?),
        },
        received,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expected(id: &str, to: u32, due_ms: i64) -> ExpectedReceipt {
        ExpectedReceipt {
            message_id: id.into(),
            to_her_id: to,
            function: "DIALOG_INNBYGGER_EKONTAKT".into(),
            sent_at: from_ms(0),
            due_at: from_ms(due_ms),
        }
    }

    fn receipt(at_ms: i64) -> ReceivedReceipt {
        ReceivedReceipt {
            at: from_ms(at_ms),
            status: "1".into(),
            receipt_message_id: "r1".into(),
        }
    }

    #[test]
    fn a_receipt_matches_once_and_only_from_the_receiver() {
        let store = Store::open_in_memory().unwrap();
        let receipts = store.receipts();
        receipts.expect(&expected("m1", 93252, 10_000)).unwrap();
        assert_eq!(
            receipts.record("m1", 666, &receipt(5)).unwrap(),
            ReceiptMatch::WrongSender {
                expected_her_id: 93252
            }
        );
        assert_eq!(
            receipts.record("m1", 93252, &receipt(5)).unwrap(),
            ReceiptMatch::Matched(expected("m1", 93252, 10_000))
        );
        assert_eq!(
            receipts.record("m1", 93252, &receipt(6)).unwrap(),
            ReceiptMatch::AlreadyMatched
        );
        assert_eq!(
            receipts.record("zz", 93252, &receipt(6)).unwrap(),
            ReceiptMatch::Unknown
        );
        assert_eq!(
            receipts.get("m1").unwrap().unwrap().received,
            Some(receipt(5))
        );
    }

    #[test]
    fn overdue_lists_only_unanswered_messages_past_their_deadline() {
        let store = Store::open_in_memory().unwrap();
        let receipts = store.receipts();
        receipts.expect(&expected("late", 1, 1_000)).unwrap();
        receipts.expect(&expected("answered", 1, 1_000)).unwrap();
        receipts
            .expect(&expected("not-yet-due", 1, 99_000))
            .unwrap();
        receipts.record("answered", 1, &receipt(500)).unwrap();
        let overdue: Vec<_> = receipts
            .overdue(from_ms(2_000))
            .unwrap()
            .into_iter()
            .map(|r| r.expected.message_id)
            .collect();
        assert_eq!(overdue, vec!["late"]);
        assert_eq!(receipts.all(10).unwrap().len(), 3);
        assert!(matches!(
            receipts.expect(&expected("late", 1, 1)),
            Err(Error::DuplicateReceipt { .. })
        ));
    }
}
