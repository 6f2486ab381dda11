//! The EHR's acknowledgement through the folder: an incoming message is
//! `DELIVERED` once its `IN/<sender>_<MsgId>.xml` is gone (the EHR moved
//! or deleted it). [`InboxTaken`] looks, every [`LOOK_EVERY`], at the
//! records of one HER-id that are still `AVAILABLE` and moves those whose
//! file is gone; leased ones are the API's and are left alone.

use std::time::{Duration, Instant};

use chrono::Utc;
use helsemelding_messaging::Messenger;
use helsemelding_store::messages::{Direction, MessageFilter, MessageState};
use helsemelding_wire::HerId;

use super::PartyFolders;

/// How often the IN folder is compared with the records.
pub const LOOK_EVERY: Duration = Duration::from_secs(2);

/// Records looked at per look (the oldest first; the rest at the next).
const PER_LOOK: usize = 1000;

/// Notices the IN files of one HER-id that the EHR took.
pub struct InboxTaken {
    folders: PartyFolders,
    last: Option<Instant>,
}

impl InboxTaken {
    /// A watch on the IN folder of `folders`.
    pub fn new(folders: PartyFolders) -> InboxTaken {
        InboxTaken {
            folders,
            last: None,
        }
    }

    /// Whose IN folder this is.
    pub fn her_id(&self) -> HerId {
        self.folders.her_id
    }

    /// Marks `DELIVERED` each available message of ours whose IN file is
    /// gone, when [`LOOK_EVERY`] has passed; returns how many.
    pub async fn look(&mut self, messenger: &Messenger) -> helsemelding_store::Result<usize> {
        if self.last.is_some_and(|at| at.elapsed() < LOOK_EVERY) {
            return Ok(0);
        }
        self.last = Some(Instant::now());
        let messages = messenger.store().messages();
        let mut filter = MessageFilter {
            direction: Some(Direction::In),
            state: Some(MessageState::Available),
            ours: Some(self.folders.her_id.get()),
            ..MessageFilter::default()
        };
        let mut taken = 0;
        loop {
            let page = messages.list(&filter, PER_LOOK).await?;
            let Some(last) = page.last() else { break };
            filter.after = Some(last.id);
            for record in &page {
                let stem = self.folders.incoming_stem(record.peer, record.public_id());
                if self.folders.inbox.join(format!("{stem}.xml")).exists() {
                    continue;
                }
                let detail = Some("its IN file was taken");
                messages
                    .set_state(record.id, MessageState::Delivered, Utc::now(), detail)
                    .await?;
                taken += 1;
            }
            if page.len() < PER_LOOK {
                break;
            }
        }
        Ok(taken)
    }
}
