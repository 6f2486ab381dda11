//! The receipts' statements: [`Receipts`] for [`SqliteStore`].

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use helsemelding_store::receipts::{ExpectedReceipt, ReceiptMatch, ReceiptRecord, ReceivedReceipt};
use helsemelding_store::{Error, Receipts, Result};
use rusqlite::types::Value;
use rusqlite::{params, params_from_iter, OptionalExtension, Row};

use crate::messages::track_receipt;
use crate::time::{from_ms, to_ms};
use crate::SqliteStore;

#[async_trait]
impl Receipts for SqliteStore {
    async fn expect(&self, expected: &ExpectedReceipt) -> Result<()> {
        let expected = expected.clone();
        self.write("receipts expect", move |connection| {
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
                    message_id: expected.message_id,
                }
                .into());
            }
            Ok(())
        })
        .await
    }

    async fn record(
        &self,
        original_message_id: &str,
        from_her_id: u32,
        received: &ReceivedReceipt,
    ) -> Result<ReceiptMatch> {
        let (original_message_id, received) = (original_message_id.to_owned(), received.clone());
        self.write("receipts record", move |connection| {
            let tx = connection.savepoint()?;
            let found = tx
                .query_row(
                    &format!("{SELECT} WHERE message_id = ?1"),
                    [&original_message_id],
                    record_from_row,
                )
                .optional()?;
            let outcome = match found {
                None => ReceiptMatch::Unknown,
                Some(record) if record.expected.to_her_id != from_her_id => {
                    ReceiptMatch::WrongSender {
                        expected_her_id: record.expected.to_her_id,
                    }
                }
                Some(record) if record.received.is_some() => ReceiptMatch::AlreadyMatched,
                Some(record) => {
                    tx.execute(
                        "UPDATE receipts SET received_ms = ?2, status = ?3, receipt_id = ?4
                         WHERE message_id = ?1",
                        params![
                            original_message_id,
                            to_ms(received.at),
                            received.status,
                            received.receipt_message_id
                        ],
                    )?;
                    let (msg_id, status) = (&original_message_id, &received.status);
                    track_receipt(&tx, msg_id, from_her_id, status, received.at)?;
                    ReceiptMatch::Matched(record.expected)
                }
            };
            tx.commit()?;
            Ok(outcome)
        })
        .await
    }

    async fn overdue(&self, now: DateTime<Utc>) -> Result<Vec<ReceiptRecord>> {
        self.query(
            format!("{SELECT} WHERE received_ms IS NULL AND due_ms <= ?1 ORDER BY due_ms"),
            vec![to_ms(now).into()],
        )
        .await
    }

    async fn all(&self, limit: usize) -> Result<Vec<ReceiptRecord>> {
        self.query(
            format!("{SELECT} ORDER BY sent_ms DESC LIMIT ?1"),
            vec![(limit as i64).into()],
        )
        .await
    }

    async fn get(&self, message_id: &str) -> Result<Option<ReceiptRecord>> {
        Ok(self
            .query(
                format!("{SELECT} WHERE message_id = ?1"),
                vec![message_id.to_owned().into()],
            )
            .await?
            .pop())
    }
}

impl SqliteStore {
    async fn query(&self, sql: String, values: Vec<Value>) -> Result<Vec<ReceiptRecord>> {
        self.read("receipts query", move |connection| {
            let mut statement = connection.prepare_cached(&sql)?;
            let rows = statement.query_map(params_from_iter(values), record_from_row)?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
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
    use helsemelding_store::Store;

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

    #[tokio::test]
    async fn a_receipt_matches_once_and_only_from_the_receiver() {
        let store = SqliteStore::open_in_memory().unwrap();
        let receipts = store.receipts();
        receipts
            .expect(&expected("m1", 93252, 10_000))
            .await
            .unwrap();
        assert_eq!(
            receipts.record("m1", 666, &receipt(5)).await.unwrap(),
            ReceiptMatch::WrongSender {
                expected_her_id: 93252
            }
        );
        assert_eq!(
            receipts.record("m1", 93252, &receipt(5)).await.unwrap(),
            ReceiptMatch::Matched(expected("m1", 93252, 10_000))
        );
        assert_eq!(
            receipts.record("m1", 93252, &receipt(6)).await.unwrap(),
            ReceiptMatch::AlreadyMatched
        );
        assert_eq!(
            receipts.record("zz", 93252, &receipt(6)).await.unwrap(),
            ReceiptMatch::Unknown
        );
        assert_eq!(
            receipts.get("m1").await.unwrap().unwrap().received,
            Some(receipt(5))
        );
    }

    #[tokio::test]
    async fn overdue_lists_only_unanswered_messages_past_their_deadline() {
        let store = SqliteStore::open_in_memory().unwrap();
        let receipts = store.receipts();
        receipts.expect(&expected("late", 1, 1_000)).await.unwrap();
        receipts
            .expect(&expected("answered", 1, 1_000))
            .await
            .unwrap();
        receipts
            .expect(&expected("not-yet-due", 1, 99_000))
            .await
            .unwrap();
        receipts.record("answered", 1, &receipt(500)).await.unwrap();
        let overdue: Vec<_> = receipts
            .overdue(from_ms(2_000))
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.expected.message_id)
            .collect();
        assert_eq!(overdue, vec!["late"]);
        assert_eq!(receipts.all(10).await.unwrap().len(), 3);
        assert!(matches!(
            receipts.expect(&expected("late", 1, 1)).await,
            Err(Error::DuplicateReceipt { .. })
        ));
    }
}
