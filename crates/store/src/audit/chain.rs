//! The audit hash chain, with no database: how a row is hashed
//! ([`chain_hash`]), what the next row is given the anchor
//! ([`ChainAnchor::next`]), how a walk along the stored rows names every
//! change, removal and insertion ([`ChainWalk`]), and which prunes the
//! retention period allows ([`check_retention`]). Every backend uses these,
//! so that a chain written by one verifies the same in any other.

use chrono::{DateTime, Duration, Utc};
use sha2::{Digest, Sha256};

use super::{AuditEvent, AuditRecord, ChainProblem, VerifyReport, MINIMUM_RETENTION_DAYS};
use crate::{Error, Result};

/// The hash the first row links to.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Where the chain starts (after pruning) and where it ends: kept by the
/// backend beside the rows, so that a removed tail is as visible as a
/// removed middle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainAnchor {
    /// The chain starts after this row (0, or the last pruned row).
    pub start_seq: i64,
    /// The hash of that row (or [`GENESIS_HASH`]).
    pub start_hash: String,
    /// The last row appended (0 when none was).
    pub head_seq: i64,
    /// Its hash (or [`GENESIS_HASH`]).
    pub head_hash: String,
}

impl ChainAnchor {
    /// The anchor of a log that never had a row.
    pub fn genesis() -> Self {
        ChainAnchor {
            start_seq: 0,
            start_hash: GENESIS_HASH.into(),
            head_seq: 0,
            head_hash: GENESIS_HASH.into(),
        }
    }

    /// The row that appending `event` at `at` adds after the head: the
    /// next sequence number, `at` kept to the millisecond (as stored), and
    /// its hash linked to the head's. The backend stores it and makes it
    /// the head ([`ChainAnchor::with_head`]) in one transaction.
    pub fn next(&self, at: DateTime<Utc>, event: &AuditEvent) -> AuditRecord {
        let seq = self.head_seq + 1;
        let at = to_millisecond(at);
        AuditRecord {
            seq,
            at,
            event: event.clone(),
            prev_hash: self.head_hash.clone(),
            hash: chain_hash(&self.head_hash, seq, at, event),
        }
    }

    /// This anchor with `record` as its head.
    pub fn with_head(self, record: &AuditRecord) -> Self {
        ChainAnchor {
            head_seq: record.seq,
            head_hash: record.hash.clone(),
            ..self
        }
    }
}

fn to_millisecond(at: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(at.timestamp_millis()).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// SHA-256 over the previous hash and every field, each length-prefixed so
/// that no two different rows encode alike (`at` counts to the millisecond).
pub fn chain_hash(prev_hash: &str, seq: i64, at: DateTime<Utc>, event: &AuditEvent) -> String {
    let mut hasher = Sha256::new();
    let mut field = |value: Option<&[u8]>| match value {
        Some(bytes) => {
            hasher.update((bytes.len() as u64).to_be_bytes());
            hasher.update(bytes);
        }
        None => hasher.update(u64::MAX.to_be_bytes()),
    };
    field(Some(prev_hash.as_bytes()));
    field(Some(&seq.to_be_bytes()));
    field(Some(&at.timestamp_millis().to_be_bytes()));
    field(Some(event.kind.as_str().as_bytes()));
    field(Some(event.actor.as_bytes()));
    field(
        event
            .counterpart_her_id
            .map(|id| id.to_be_bytes())
            .as_ref()
            .map(|b| &b[..]),
    );
    field(event.message_id.as_deref().map(str::as_bytes));
    field(event.function.as_deref().map(str::as_bytes));
    field(Some(event.outcome.as_bytes()));
    field(event.reason.as_deref().map(str::as_bytes));
    hex::encode(hasher.finalize())
}

/// Refuses a prune of the rows older than `before` at `now` that the
/// retention (`retention_days`, at least [`MINIMUM_RETENTION_DAYS`]) does
/// not allow; a backend checks this before it removes anything.
pub fn check_retention(
    now: DateTime<Utc>,
    before: DateTime<Utc>,
    retention_days: i64,
) -> Result<()> {
    if retention_days < MINIMUM_RETENTION_DAYS {
        return Err(Error::RetentionTooShort {
            days: retention_days,
            minimum_days: MINIMUM_RETENTION_DAYS,
        });
    }
    let oldest_allowed = now - Duration::days(retention_days);
    if before > oldest_allowed {
        return Err(Error::RetentionViolation {
            oldest_allowed: oldest_allowed.to_rfc3339(),
            retention_days,
        });
    }
    Ok(())
}

/// A walk along the stored rows in sequence order, from the anchor's start
/// to its head: feed it every row ([`ChainWalk::step`], or
/// [`ChainWalk::unknown_kind`] for a row this build cannot read) and
/// [`ChainWalk::finish`] names every break.
#[derive(Debug)]
pub struct ChainWalk {
    prev_seq: i64,
    prev_hash: String,
    /// Hash of the row before the previous one: if a row links to it, the
    /// previous row was slipped in.
    before_prev_hash: Option<String>,
    rows_checked: u64,
    problems: Vec<ChainProblem>,
}

impl ChainWalk {
    /// A walk starting where `anchor` says the chain starts.
    pub fn new(anchor: &ChainAnchor) -> Self {
        ChainWalk {
            prev_seq: anchor.start_seq,
            prev_hash: anchor.start_hash.clone(),
            before_prev_hash: None,
            rows_checked: 0,
            problems: Vec::new(),
        }
    }

    /// The next stored row, whose kind is not one this build knows.
    pub fn unknown_kind(&mut self, seq: i64) {
        self.rows_checked += 1;
        self.problems.push(ChainProblem::UnknownKind { seq });
    }

    /// The next stored row.
    pub fn step(&mut self, record: AuditRecord) {
        self.rows_checked += 1;
        let gap = record.seq > self.prev_seq + 1;
        if gap {
            self.problems.push(ChainProblem::Removed {
                from_seq: self.prev_seq + 1,
                to_seq: record.seq - 1,
            });
        }
        if chain_hash(&record.prev_hash, record.seq, record.at, &record.event) != record.hash {
            self.problems
                .push(ChainProblem::Changed { seq: record.seq });
        } else if record.prev_hash != self.prev_hash && !gap {
            let previous_was_slipped_in =
                self.before_prev_hash.as_deref() == Some(&record.prev_hash);
            self.problems.push(if previous_was_slipped_in {
                ChainProblem::Inserted { seq: self.prev_seq }
            } else {
                ChainProblem::LinkBroken { seq: record.seq }
            });
        }
        self.before_prev_hash = Some(std::mem::replace(&mut self.prev_hash, record.hash));
        self.prev_seq = record.seq;
    }

    /// The report, once every row was fed: the end of the walk is checked
    /// against the anchor's head (a removed or added tail).
    pub fn finish(mut self, anchor: &ChainAnchor) -> VerifyReport {
        if self.prev_seq < anchor.head_seq {
            self.problems.push(ChainProblem::Removed {
                from_seq: self.prev_seq + 1,
                to_seq: anchor.head_seq,
            });
        } else if self.prev_seq > anchor.head_seq {
            for seq in anchor.head_seq + 1..=self.prev_seq {
                self.problems.push(ChainProblem::Inserted { seq });
            }
        } else if self.prev_hash != anchor.head_hash && self.problems.is_empty() {
            self.problems.push(ChainProblem::Changed {
                seq: anchor.head_seq,
            });
        }
        VerifyReport {
            rows_checked: self.rows_checked,
            start_seq: anchor.start_seq,
            head_seq: anchor.head_seq,
            problems: self.problems,
        }
    }
}

/// The chain in memory, as a backend would keep it: what the walk finds.
#[cfg(test)]
mod tests {
    use super::super::AuditKind;
    use super::*;

    fn chain(rows: u32) -> (ChainAnchor, Vec<AuditRecord>) {
        let mut anchor = ChainAnchor::genesis();
        let mut records = Vec::new();
        for n in 1..=rows {
            let event = AuditEvent {
                message_id: Some(format!("m{n}")),
                ..AuditEvent::new(AuditKind::Sent, "91462@test", "ok")
            };
            let at = DateTime::from_timestamp(1_700_000_000 + i64::from(n), 123_456_789).unwrap();
            let record = anchor.next(at, &event);
            anchor = anchor.with_head(&record);
            records.push(record);
        }
        (anchor, records)
    }

    fn walk(anchor: &ChainAnchor, records: &[AuditRecord]) -> VerifyReport {
        let mut walk = ChainWalk::new(anchor);
        for record in records {
            walk.step(record.clone());
        }
        walk.finish(anchor)
    }

    #[test]
    fn an_untouched_chain_verifies_and_keeps_milliseconds() {
        let (anchor, records) = chain(4);
        assert_eq!(records[0].prev_hash, GENESIS_HASH);
        assert_eq!(records[1].prev_hash, records[0].hash);
        assert_eq!(records[0].at.timestamp_subsec_nanos(), 123_000_000);
        let report = walk(&anchor, &records);
        assert!(report.is_intact(), "{:?}", report.problems);
        assert_eq!((report.rows_checked, report.head_seq), (4, 4));
    }

    #[test]
    fn changes_removals_and_insertions_are_named() {
        let (anchor, mut records) = chain(5);
        records[2].event.outcome = "rejected".into();
        assert_eq!(
            walk(&anchor, &records).problems,
            [ChainProblem::Changed { seq: 3 }]
        );

        let (anchor, mut records) = chain(5);
        records.remove(1);
        records.pop();
        assert_eq!(
            walk(&anchor, &records).problems,
            [
                ChainProblem::Removed {
                    from_seq: 2,
                    to_seq: 2
                },
                ChainProblem::Removed {
                    from_seq: 5,
                    to_seq: 5
                }
            ]
        );

        let (anchor, records) = chain(3);
        let (_, longer) = chain(4);
        assert_eq!(
            walk(&anchor, &longer).problems,
            [ChainProblem::Inserted { seq: 4 }]
        );
        let mut unknown = ChainWalk::new(&anchor);
        unknown.step(records[0].clone());
        unknown.unknown_kind(2);
        unknown.step(records[2].clone());
        assert_eq!(
            unknown.finish(&anchor).problems[0],
            ChainProblem::UnknownKind { seq: 2 }
        );
    }

    #[test]
    fn the_retention_period_is_at_least_two_years_and_protects_young_rows() {
        let now = Utc::now();
        assert!(matches!(
            check_retention(now, now - Duration::days(800), 365),
            Err(Error::RetentionTooShort {
                days: 365,
                minimum_days: 730
            })
        ));
        assert!(matches!(
            check_retention(now, now - Duration::days(10), 730),
            Err(Error::RetentionViolation {
                retention_days: 730,
                ..
            })
        ));
        assert!(check_retention(now, now - Duration::days(731), 730).is_ok());
    }
}
