//! The change log a mobile sync reads: every conversation write stamps the item's `changedAt`
//! (its place in the sparse, keys-only `ByChange` index, partitioned by owner), and a delete
//! leaves a tombstone there in the conversation's place, until the tombstone's TTL removes it.

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
    /// bare sortable time), with the conversations read consistently from the table.
    pub async fn changes_after(
        &self,
        user: &UserId,
        after: &str,
        limit: usize,
    ) -> Result<ChangePage, Error> {
        let owner = keys::owner(user);
        let (mut found, _) = self
            .read_up_to(limit + 1, None, "read change log", |start, page| {
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
        let more = found.len() > limit;
        found.truncate(limit);

        let tombstones = keys::tombstone_partition(user);
        // An index entry moving while it is read may be seen twice; BatchGetItem refuses a
        // key given twice.
        let live_partitions: std::collections::BTreeSet<&str> = found
            .iter()
            .filter_map(|entry| text(entry, keys::PK))
            .filter(|pk| *pk != tombstones)
            .collect();
        let live_keys: Vec<Item> = live_partitions
            .into_iter()
            .map(|pk| item_key(pk, keys::CONVERSATION_SK))
            .collect();
        let mut live: std::collections::HashMap<String, ConversationItem> = self
            .batch_get(live_keys, None)
            .await?
            .into_iter()
            .map(from_item::<ConversationItem>)
            .map(|item| item.map(|c| (c.pk.clone(), c)))
            .collect::<Result<_, _>>()?;

        let mut entries = Vec::with_capacity(found.len());
        for entry in &found {
            let Some(position) = text(entry, keys::CHANGED_AT) else {
                continue;
            };
            let pk = text(entry, keys::PK).unwrap_or_default();
            let change = if pk == tombstones {
                let id = text(entry, keys::SK)
                    .and_then(|sk| sk.strip_prefix("CONV#"))
                    .and_then(|id| ConversationId::parse(id).ok());
                match (id, keys::changed_at_time(position)) {
                    (Some(id), Some(deleted_at)) => {
                        ChangeEntry::Deleted(DeletedConversation { id, deleted_at })
                    }
                    _ => return Err(Error::internal("read change log", "malformed tombstone")),
                }
            } else {
                match live.remove(pk) {
                    Some(item) => ChangeEntry::Changed(Box::new(item)),
                    None => ChangeEntry::Vanished,
                }
            };
            entries.push((position.to_owned(), change));
        }
        Ok(ChangePage { entries, more })
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
