//! Mobile sync: every change to a user's conversations since the app's last sync, deletions
//! included, in bounded pages, with an opaque cursor to continue from.
//!
//! A sync runs in *rounds*. A round reads the change log (`ByChange`) after the cursor the
//! last round ended with, page by page; a first sync (no cursor) reads every conversation
//! instead (both archive states of `ByStateActivity`, merged: most recently active first), so
//! conversations written before the
//! change log began are included without a backfill. Each round remembers its *floor*: the
//! time `settle` before it started. Changes stamped after the floor may still have been in
//! flight (stamped by their writer's clock, committed and indexed a moment later), so the next
//! round starts at the floor and returns them again: an app may see a conversation twice,
//! never miss one. Applying a response is idempotent: replace each conversation listed, remove
//! each one deleted.

use chrono::{DateTime, Duration, Utc};
use futures::{stream, StreamExt};
use serde::{Deserialize, Serialize};

use crate::cache::Cached;
use crate::cursor::Position;
use crate::error::Error;
use crate::keys;
use crate::model::{Conversation, ConversationWithMessages, DeletedConversation, UserId};
use crate::service::Conversations;
use crate::store::{ChangeEntry, RESPONSE_BUDGET};

pub const DEFAULT_SYNC_PAGE: usize = 50;
pub const MAX_SYNC_PAGE: usize = 100;
pub const MAX_SYNC_MESSAGES: usize = 20;
/// Conversations whose messages are read at once for one page.
const MESSAGE_READS_IN_FLIGHT: usize = 4;

/// What a sync asks for, within bounds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncRequest {
    /// The cursor the previous response gave (none on a first sync).
    pub since: Option<String>,
    pub limit: usize,
    /// The newest messages to include with each changed conversation (0 for none).
    pub include_messages: usize,
}

/// One conversation of a sync page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Synced {
    Conversation(Conversation),
    WithMessages(ConversationWithMessages),
}

impl Synced {
    pub fn conversation(&self) -> &Conversation {
        match self {
            Self::Conversation(c) => c,
            Self::WithMessages(c) => &c.conversation,
        }
    }
}

/// One page of a sync.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncPage {
    pub conversations: Vec<Synced>,
    pub deleted: Vec<DeletedConversation>,
    /// The user's presets, all of them, when they changed since the cursor (or on a sync from
    /// scratch): the app replaces the presets it holds with these. `None`: unchanged.
    #[serde(default)]
    pub presets: Option<Vec<domain::preset::Preset>>,
    /// Where the next sync continues.
    pub cursor: String,
    /// More changes wait now: ask again with the cursor straight away.
    pub has_more: bool,
    /// This page belongs to a sync from scratch: every conversation, then what changed while
    /// they were read; an app replaces what it holds with what the whole round returns.
    pub full: bool,
}

/// Where a sync continues, as its cursor carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum SyncPosition {
    /// A sync from scratch, after this position (`Store::all_by_activity`'s).
    Snapshot { after: Position, floor: String },
    /// A round of the change log: after this `changedAt`; `floor` is set once the round has
    /// started (its first page sets it). `full`: the round that completes a sync from scratch
    /// (what changed while the snapshot was read belongs to it).
    Changes {
        after: String,
        floor: Option<String>,
        full: bool,
    },
}

const MODE: &str = "mode";
const FLOOR: &str = "floor";
const AFTER: &str = "after";
const FULL: &str = "full";

impl SyncPosition {
    fn into_position(self) -> Position {
        match self {
            Self::Snapshot { mut after, floor } => {
                after.insert(MODE.to_owned(), "snapshot".to_owned());
                after.insert(FLOOR.to_owned(), floor);
                after
            }
            Self::Changes { after, floor, full } => {
                let mut position = Position::from([
                    (MODE.to_owned(), "changes".to_owned()),
                    (AFTER.to_owned(), after),
                ]);
                if let Some(floor) = floor {
                    position.insert(FLOOR.to_owned(), floor);
                }
                if full {
                    position.insert(FULL.to_owned(), "true".to_owned());
                }
                position
            }
        }
    }

    fn from_position(mut position: Position) -> Result<Self, Error> {
        let invalid = || Error::invalid("cursor is not valid for this request");
        let mode = position.remove(MODE).ok_or_else(invalid)?;
        let floor = position.remove(FLOOR);
        match mode.as_str() {
            "snapshot" => Ok(Self::Snapshot {
                after: position,
                floor: floor.ok_or_else(invalid)?,
            }),
            "changes" => Ok(Self::Changes {
                after: position.remove(AFTER).ok_or_else(invalid)?,
                floor,
                full: position.remove(FULL).is_some(),
            }),
            _ => Err(invalid()),
        }
    }

    /// The oldest time this cursor relies on the change log to cover.
    fn oldest_time(&self) -> Option<DateTime<Utc>> {
        match self {
            Self::Snapshot { floor, .. } => keys::changed_at_time(floor),
            Self::Changes { after, floor, .. } => {
                let after = keys::changed_at_time(after);
                match floor.as_deref().and_then(keys::changed_at_time) {
                    Some(floor) => after.map(|a| a.min(floor)).or(Some(floor)),
                    None => after,
                }
            }
        }
    }
}

/// Mobile sync over the user's conversations.
#[derive(Clone)]
pub struct MobileSync {
    conversations: Conversations,
    /// How far back a round starts again (longer than any write takes to become visible).
    settle: Duration,
}

impl MobileSync {
    pub fn new(conversations: Conversations, settle: Duration) -> Self {
        Self {
            conversations,
            settle,
        }
    }

    /// One page of changes since `request.since`, from the cache while no write of the user
    /// has happened since it was computed.
    #[tracing::instrument(skip_all)]
    pub async fn sync(
        &self,
        user: &UserId,
        request: SyncRequest,
        now: DateTime<Utc>,
    ) -> Result<SyncPage, Error> {
        let scope = format!("sync|{user}");
        let cursors = self.conversations.cursors();
        let position = match request.since.as_deref() {
            Some(cursor) => match cursors.decode(&scope, cursor).await {
                Ok(position) => Some(SyncPosition::from_position(position)?),
                // Signed with a key rotated out since (an app may keep its cursor for weeks).
                Err(Error::Invalid(_)) if cursors.names_retired_key(cursor).await => {
                    return Err(Error::ResyncRequired(
                        "this sync cursor was signed with a key since retired".into(),
                    ))
                }
                Err(error) => return Err(error),
            },
            None => None,
        };
        let retention = self.conversations.tombstone_retention();
        if let Some(oldest) = position.as_ref().and_then(SyncPosition::oldest_time) {
            if oldest < now - retention {
                return Err(Error::ResyncRequired(format!(
                    "this sync cursor is older than the {} days deletions are kept",
                    retention.num_days()
                )));
            }
        }
        let key = format!(
            "{:?}|{}|{}",
            request.since, request.limit, request.include_messages
        );
        self.conversations
            .cache_aside(user, Cached::SyncData, &key, || {
                self.page(user, &scope, position, &request, now)
            })
            .await
    }

    async fn page(
        &self,
        user: &UserId,
        scope: &str,
        position: Option<SyncPosition>,
        request: &SyncRequest,
        now: DateTime<Utc>,
    ) -> Result<SyncPage, Error> {
        let store = self.conversations.store();
        let new_floor = || keys::sortable_time(now - self.settle);
        match position {
            None | Some(SyncPosition::Snapshot { .. }) => {
                let (start, floor) = match position {
                    Some(SyncPosition::Snapshot { after, floor }) => (Some(after), floor),
                    _ => (None, new_floor()),
                };
                // A sync from scratch brings the presets with its first page.
                let presets = match start {
                    None => Some(store.presets(user).await?),
                    Some(_) => None,
                };
                let page = store
                    .conversations_snapshot(user, request.limit, start)
                    .await?;
                let (positions, conversations): (Vec<_>, Vec<_>) = page
                    .conversations
                    .into_iter()
                    .map(|(position, item)| (position, Conversation::from(item)))
                    .unzip();
                let read = self
                    .read_messages(
                        user,
                        conversations,
                        request.include_messages,
                        presets.as_deref(),
                    )
                    .await?;
                // Continue after the last conversation of this page (or before the first one
                // the content budget left out).
                let last = match read.left_out {
                    Some(first_left_out) => first_left_out.checked_sub(1),
                    None => positions.len().checked_sub(1),
                };
                // After the snapshot, the round goes on with what changed since its floor:
                // a conversation that moved ahead of the pages already read is listed there.
                let next = match last {
                    Some(last) if read.left_out.is_some() || page.more => SyncPosition::Snapshot {
                        after: positions[last].clone(),
                        floor,
                    },
                    _ => SyncPosition::Changes {
                        after: floor,
                        floor: None,
                        full: true,
                    },
                };
                Ok(SyncPage {
                    has_more: true,
                    conversations: read.kept,
                    deleted: Vec::new(),
                    presets,
                    cursor: self.encode(scope, next).await?,
                    full: true,
                })
            }
            Some(SyncPosition::Changes { after, floor, full }) => {
                let floor = floor.unwrap_or_else(new_floor);
                // The presets, whole, when they changed after this page's start (each round
                // starts again at its floor, so a change in flight is brought by the next).
                let presets_changed = store.presets_changed_at(user).await?;
                let presets = match (presets_changed, keys::changed_at_time(&after)) {
                    (Some(changed), Some(since)) if changed <= since => None,
                    (None, _) => None,
                    _ => Some(store.presets(user).await?),
                };
                let page = store.changes_after(user, &after, request.limit).await?;
                let mut changed = Vec::new();
                let mut changed_positions = Vec::new();
                for (position, entry) in &page.entries {
                    if let ChangeEntry::Changed(item) = entry {
                        changed.push(Conversation::from(item.as_ref().clone()));
                        changed_positions.push(position.clone());
                    }
                }
                let read = self
                    .read_messages(user, changed, request.include_messages, presets.as_deref())
                    .await?;
                // A page cut short by the content budget ends just before the first
                // conversation left out: the entries after it wait for the next page.
                let cut_at = read.left_out.map(|i| changed_positions[i].clone());
                let in_page = |position: &String| cut_at.as_ref().is_none_or(|cut| position < cut);
                let deleted = page
                    .entries
                    .iter()
                    .filter(|(position, _)| in_page(position))
                    .filter_map(|(_, entry)| match entry {
                        ChangeEntry::Deleted(gone) => Some(gone.clone()),
                        _ => None,
                    })
                    .collect();
                let last = page
                    .entries
                    .iter()
                    .map(|(position, _)| position)
                    .rfind(|position| in_page(position))
                    .cloned();
                let next = match last {
                    Some(last) if cut_at.is_some() || page.more => SyncPosition::Changes {
                        after: last,
                        floor: Some(floor),
                        full,
                    },
                    _ => SyncPosition::Changes {
                        after: floor,
                        floor: None,
                        full: false,
                    },
                };
                Ok(SyncPage {
                    has_more: matches!(next, SyncPosition::Changes { floor: Some(_), .. }),
                    conversations: read.kept,
                    deleted,
                    presets,
                    cursor: self.encode(scope, next).await?,
                    full,
                })
            }
        }
    }

    async fn encode(&self, scope: &str, position: SyncPosition) -> Result<String, Error> {
        self.conversations
            .cursors()
            .encode(scope, position.into_position())
            .await
    }

    /// The conversations, each with its newest `include` messages when asked, as many as fit
    /// the response's content budget (at least one). A conversation deleted since it was listed
    /// is left out (its tombstone follows).
    async fn read_messages(
        &self,
        user: &UserId,
        conversations: Vec<Conversation>,
        include: usize,
        presets: Option<&[domain::preset::Preset]>,
    ) -> Result<MessagesRead, Error> {
        if include == 0 {
            return Ok(MessagesRead {
                kept: conversations
                    .into_iter()
                    .map(Synced::Conversation)
                    .collect(),
                left_out: None,
            });
        }
        let mut reads = stream::iter(conversations.into_iter().enumerate())
            .map(|(index, conversation)| async move {
                let read = self
                    .conversations
                    .get(user, &conversation.id, include, None)
                    .await;
                (index, read)
            })
            .buffered(MESSAGE_READS_IN_FLIGHT);
        let mut kept = Vec::new();
        // The presets the page carries take their part of the budget first.
        let mut content = presets.map_or(0, presets_response_bytes);
        while let Some((index, read)) = reads.next().await {
            let found = match read {
                Ok(found) => found,
                Err(Error::NotFound) => continue,
                Err(error) => return Err(error),
            };
            let size = response_bytes(&found);
            if !kept.is_empty() && content + size > RESPONSE_BUDGET {
                return Ok(MessagesRead {
                    kept,
                    left_out: Some(index),
                });
            }
            content += size;
            kept.push(Synced::WithMessages(found));
        }
        Ok(MessagesRead {
            kept,
            left_out: None,
        })
    }
}

/// What a conversation with its messages takes in a response (its own fields: room for a long
/// title, tags and a summary).
/// What a page's presets add to it as Lambda returns it (the body is a JSON string there).
fn presets_response_bytes(presets: &[domain::preset::Preset]) -> usize {
    serde_json::to_string(presets)
        .ok()
        .and_then(|json| serde_json::to_string(&json).ok())
        .map_or(0, |escaped| escaped.len())
}

pub fn response_bytes(found: &ConversationWithMessages) -> usize {
    const CONVERSATION_FIELDS_BYTES: usize = 8 * 1024;
    CONVERSATION_FIELDS_BYTES
        + found
            .messages
            .iter()
            .map(crate::model::Message::response_bytes)
            .sum::<usize>()
}

/// What fit in one page: the conversations kept, and the first one the budget left out.
struct MessagesRead {
    kept: Vec<Synced>,
    left_out: Option<usize>,
}
