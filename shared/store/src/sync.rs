//! The change log a mobile sync reads, from two indexes. Every conversation write but an
//! append stamps the item's `changedAt` (its place in the sparse, keys-only `ByChange` index,
//! partitioned by owner), and a delete leaves a tombstone there in the conversation's place,
//! until the tombstone's TTL removes it. An append moves only `lastActivity`: the
//! conversation's entry in `ByStateActivity`, which the listings move anyway, places it in
//! the log (a second entry in `ByChange` would cost every append two more write units).

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{from_item, item_key, s, ConversationItem, Item, Store};
use domain::cursor::Position;
use domain::error::Error;
use domain::keys::{self, Index};
use domain::model::{ConversationId, DeletedConversation, UserId};

/// The item that stands for a deleted conversation in its owner's change log.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Tombstone {
    #[serde(rename = "PK")]
    pk: String,
    #[serde(rename = "SK")]
    sk: String,
    entity: String,
    owner: String,
    changed_at: String,
    conversation_id: ConversationId,
    #[serde(with = "keys::sortable")]
    deleted_at: DateTime<Utc>,
    /// Lists the tombstone in `ByPendingPurge` until the sweeper has found nothing of the
    /// conversation left (`Store::purge_checked`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    purge_shard: Option<String>,
    /// TTL: the tombstone is kept for the documented retention, then DynamoDB removes it.
    expires_at: i64,
}

impl Tombstone {
    pub(crate) fn new(
        user: &UserId,
        conversation: ConversationId,
        changed_at: String,
        deleted_at: DateTime<Utc>,
        expires: DateTime<Utc>,
    ) -> Self {
        Self {
            pk: keys::tombstone_partition(user),
            sk: keys::tombstone_sort_key(&conversation),
            entity: "Tombstone".to_owned(),
            owner: keys::owner(user),
            changed_at,
            purge_shard: Some(keys::purge_shard(&conversation)),
            conversation_id: conversation,
            deleted_at,
            expires_at: expires.timestamp(),
        }
    }
}

/// One entry of the change log, as a sync returns it.
#[derive(Debug, Clone)]
pub enum ChangeEntry {
    /// The conversation as it is now (read consistently, not from the index).
    Changed(Box<ConversationItem>),
    Deleted(DeletedConversation),
    /// The index still listed a conversation whose item is gone: its tombstone follows later
    /// in the log.
    Vanished,
}

/// An entry of the change log as an index gave it: its place in the log, the key of the item
/// it names, and the conversation itself when the index holds it whole.
struct Logged {
    position: String,
    key: (String, String),
    item: Option<ConversationItem>,
}

/// Entries of the change log after a position, oldest change first, each with its position.
pub struct ChangePage {
    pub entries: Vec<(String, ChangeEntry)>,
    /// Whether the log holds more after these.
    pub more: bool,
}

/// A page of all of a user's conversations, most recently active first, each with the
/// position after it (`Store::all_by_activity`: what a first sync reads, every conversation,
/// whether or not it changed since the change log began).
pub struct SnapshotPage {
    pub conversations: Vec<(Position, ConversationItem)>,
    pub more: bool,
}

impl Store {
    /// Up to `limit` entries of the user's change log after `after` (a `changedAt` value or a
    /// bare sortable time), oldest first: `ByChange`'s entries (their conversations read
    /// consistently from the table) and the conversations whose last activity is later
    /// (from `ByStateActivity`'s active and archived partitions, as the index holds them: at
    /// least as new as that activity), merged by position, each conversation once.
    pub async fn changes_after(
        &self,
        user: &UserId,
        after: &str,
        limit: usize,
    ) -> Result<ChangePage, Error> {
        let (logged, active, archived) = futures::try_join!(
            self.change_log_after(user, after, limit + 1),
            self.activity_after(user, false, after, limit + 1),
            self.activity_after(user, true, after, limit + 1),
        )?;
        // Each read gives its entries in order and holds any conversation once, so once
        // `limit` conversations are taken from the merge, every read that stopped early
        // stopped past them (it gave `limit + 1`).
        let read_on = [&logged, &active, &archived].iter().any(|read| read.1);
        let mut merged: Vec<Logged> = [logged.0, active.0, archived.0]
            .into_iter()
            .flatten()
            .collect();
        merged.sort_by(|a, b| a.position.cmp(&b.position));

        let mut page: Vec<Logged> = Vec::with_capacity(limit);
        let mut more = false;
        for entry in merged {
            // Listed twice (its activity and another change): once, at the later place.
            if let Some(earlier) = page.iter().position(|p| p.key == entry.key) {
                page.remove(earlier);
            } else if page.len() == limit {
                more = true;
                break;
            }
            page.push(entry);
        }
        let more = more || read_on;

        let tombstones = keys::tombstone_partition(user);
        let live_keys: Vec<Item> = page
            .iter()
            .filter(|entry| entry.item.is_none() && entry.key.0 != tombstones)
            .map(|entry| item_key(&entry.key.0, &entry.key.1))
            .collect();
        let mut live: std::collections::HashMap<String, ConversationItem> = self
            .batch_get(live_keys, None)
            .await?
            .into_iter()
            .map(from_item::<ConversationItem>)
            .map(|item| item.map(|c| (c.pk.as_str().to_owned(), c)))
            .collect::<Result<_, _>>()?;

        let mut entries = Vec::with_capacity(page.len());
        for Logged {
            position,
            key: (pk, sk),
            item,
        } in page
        {
            let change = if let Some(item) = item {
                ChangeEntry::Changed(Box::new(item))
            } else if pk == tombstones {
                let id = sk
                    .strip_prefix("CONV#")
                    .and_then(|id| ConversationId::parse(id).ok());
                match (id, keys::changed_at_time(&position)) {
                    (Some(id), Some(deleted_at)) => {
                        ChangeEntry::Deleted(DeletedConversation { id, deleted_at })
                    }
                    _ => return Err(Error::internal("read change log", "malformed tombstone")),
                }
            } else {
                match live.remove(&pk) {
                    Some(item) => ChangeEntry::Changed(Box::new(item)),
                    None => ChangeEntry::Vanished,
                }
            };
            entries.push((position, change));
        }
        Ok(ChangePage { entries, more })
    }

    /// Up to `wanted` entries of `ByChange` after `after`, oldest first, and whether it holds
    /// more.
    async fn change_log_after(
        &self,
        user: &UserId,
        after: &str,
        wanted: usize,
    ) -> Result<(Vec<Logged>, bool), Error> {
        let owner = keys::owner(user);
        let (found, more) = self
            .read_up_to(wanted, None, "read change log", |start, page| {
                self.client
                    .query()
                    .table_name(&self.table)
                    .index_name(Index::ByChange.name())
                    .key_condition_expression("#owner = :owner AND #changed > :after")
                    .expression_attribute_names("#owner", keys::OWNER)
                    .expression_attribute_names("#changed", keys::CHANGED_AT)
                    .expression_attribute_values(":owner", s(&owner))
                    .expression_attribute_values(":after", s(after))
                    .limit(page)
                    .set_exclusive_start_key(start)
            })
            .await?;
        let logged = found
            .iter()
            .filter_map(|entry| {
                Some(Logged {
                    position: text(entry, keys::CHANGED_AT)?.to_owned(),
                    key: (
                        text(entry, keys::PK)?.to_owned(),
                        text(entry, keys::SK)?.to_owned(),
                    ),
                    item: None,
                })
            })
            .collect();
        Ok((logged, more))
    }

    /// Up to `wanted` of the user's active (or archived) conversations last active after
    /// `after`, least recently first, each placed in the log at its last activity, and
    /// whether there are more.
    async fn activity_after(
        &self,
        user: &UserId,
        archived: bool,
        after: &str,
        wanted: usize,
    ) -> Result<(Vec<Logged>, bool), Error> {
        let partition = keys::owner_state(user, archived);
        // The key condition reaches the position's time; those at that very time up to the
        // position's conversation were in the log before it.
        let from = after.split('#').next().unwrap_or(after);
        let position = |item: &Item| -> Option<String> {
            let time = keys::changed_at_time(text(item, keys::LAST_ACTIVITY)?)?;
            let (_, id) = keys::parse_conversation_partition(text(item, keys::PK)?)?;
            Some(keys::changed_at(time, &id))
        };
        let (found, more) = self
            .read_kept_up_to(
                wanted,
                None,
                "read activity since",
                |item| position(item).is_none_or(|p| p.as_str() > after),
                |start, page| {
                    self.client
                        .query()
                        .table_name(&self.table)
                        .index_name(Index::ByStateActivity.name())
                        .key_condition_expression("#state = :state AND #activity >= :from")
                        .expression_attribute_names("#state", keys::OWNER_STATE)
                        .expression_attribute_names("#activity", keys::LAST_ACTIVITY)
                        .expression_attribute_values(":state", s(&partition))
                        .expression_attribute_values(":from", s(from))
                        .limit(page)
                        .set_exclusive_start_key(start)
                },
            )
            .await?;
        found
            .into_iter()
            .map(|entry| {
                let item: ConversationItem = from_item(entry)?;
                Ok(Logged {
                    position: keys::changed_at(item.last_activity, &item.conversation_id()),
                    key: (item.pk.as_str().to_owned(), item.sk.clone()),
                    item: Some(item),
                })
            })
            .collect::<Result<Vec<_>, Error>>()
            .map(|logged| (logged, more))
    }

    /// Up to `limit` of the user's conversations by last activity, newest first, after `start`.
    pub async fn conversations_snapshot(
        &self,
        user: &UserId,
        limit: usize,
        start: Option<Position>,
    ) -> Result<SnapshotPage, Error> {
        let (conversations, next) = self.all_by_activity(user, limit, start, None).await?;
        Ok(SnapshotPage {
            conversations,
            more: next.is_some(),
        })
    }

    /// Whether the user deleted this conversation (within the tombstones' retention).
    pub async fn was_deleted(&self, user: &UserId, id: &ConversationId) -> Result<bool, Error> {
        Ok(self
            .get(
                &keys::tombstone_partition(user),
                &keys::tombstone_sort_key(id),
            )
            .await?
            .is_some())
    }
}

fn text<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    match item.get(name) {
        Some(AttributeValue::S(value)) => Some(value),
        _ => None,
    }
}
