//! Short-term memory items: one partition per user, each entry an item that the table's TTL
//! removes, plus one marker item that lists the user in the sparse `ByMemoryShard` index
//! while any of their memory is held (so a migration can find every such user).

use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{from_item, item_key, s, store_error, to_item, Item, Store, BATCH_WRITE_MAX};
use domain::error::Error;
use domain::keys;
use domain::memory::MemoryEntry;
use domain::model::{Attachment, ConversationId, MessageId, Metadata, Role, TokenCount, UserId};

/// Query pages one recall reads at most (expired items still held by DynamoDB are skipped).
const MAX_RECALL_PAGES: usize = 8;

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MemoryItem {
    #[serde(rename = "PK")]
    pk: String,
    #[serde(rename = "SK")]
    sk: String,
    entity: String,
    entry_id: MessageId,
    role: Role,
    content: String,
    #[serde(with = "keys::sortable")]
    timestamp: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    conversation_id: Option<ConversationId>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    attachments: Vec<Attachment>,
    #[serde(default)]
    metadata: Metadata,
    /// The table's TTL attribute: epoch seconds.
    expires_at: i64,
    /// The content's length in tokens, when its writer counted it (`encoding:tokens`).
    #[serde(rename = "tokens", default, skip_serializing_if = "Option::is_none")]
    token_count: Option<TokenCount>,
    /// Kept only here until a migration moves it into its conversation.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    held: bool,
    /// `MemoryEntry::slot`, as a conversation's tip keeps a slot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    slot: Option<String>,
}

impl MemoryItem {
    fn new(user: &UserId, entry: &MemoryEntry) -> Self {
        Self {
            pk: keys::memory_partition(user),
            sk: keys::memory_sort_key(entry.timestamp, &entry.id),
            entity: "Memory".to_owned(),
            entry_id: entry.id,
            role: entry.role,
            content: entry.content.clone(),
            timestamp: entry.timestamp,
            conversation_id: entry.conversation_id,
            attachments: entry.attachments.clone(),
            metadata: entry.metadata.clone(),
            expires_at: entry.expires_at.timestamp(),
            token_count: entry.token_count.clone(),
            held: entry.held,
            slot: entry.slot.map(keys::Slot::tip_text),
        }
    }

    fn into_entry(self) -> MemoryEntry {
        MemoryEntry {
            id: self.entry_id,
            role: self.role,
            content: self.content,
            timestamp: self.timestamp,
            conversation_id: self.conversation_id,
            attachments: self.attachments,
            metadata: self.metadata,
            expires_at: DateTime::from_timestamp(self.expires_at, 0).unwrap_or(self.timestamp),
            token_count: self.token_count,
            held: self.held,
            slot: self.slot.as_deref().and_then(keys::Slot::parse_tip),
        }
    }
}

/// Lists a user in the `ByMemoryShard` index until their newest memory expires.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MemoryMarker {
    #[serde(rename = "PK")]
    pk: String,
    #[serde(rename = "SK")]
    sk: String,
    entity: String,
    memory_shard: String,
    user_id: UserId,
    expires_at: i64,
}

/// One item read from a user's memory partition: the entry, or why it could not be read.
pub struct HeldMemory {
    /// The item's sort key, which names it in reports and orders it.
    pub key: String,
    pub entry: Result<MemoryEntry, String>,
}

impl Store {
    /// Stores entries and keeps the user listed for migration; writing the same entries again
    /// (same ids and times) changes nothing.
    pub async fn put_memory(&self, user: &UserId, entries: &[MemoryEntry]) -> Result<(), Error> {
        let Some(latest_expiry) = entries.iter().map(|e| e.expires_at).max() else {
            return Ok(());
        };
        let marker = MemoryMarker {
            pk: keys::memory_partition(user),
            sk: keys::MEMORY_MARKER_SK.to_owned(),
            entity: "MemoryMarker".to_owned(),
            memory_shard: keys::memory_shard(user),
            user_id: user.clone(),
            expires_at: latest_expiry.timestamp(),
        };
        let mut items = vec![to_item(&marker)?];
        for entry in entries {
            items.push(to_item(&MemoryItem::new(user, entry))?);
        }
        for chunk in items.chunks(BATCH_WRITE_MAX) {
            let requests = chunk
                .iter()
                .map(|item| {
                    PutRequest::builder()
                        .set_item(Some(item.clone()))
                        .build()
                        .map(|put| WriteRequest::builder().put_request(put).build())
                        .map_err(|e| Error::internal("build memory put", e))
                })
                .collect::<Result<Vec<_>, Error>>()?;
            self.write_batch(requests).await?;
        }
        Ok(())
    }

    /// The memory entry a stream record's image holds.
    pub fn memory_entry_of_image(image: Item) -> Result<MemoryEntry, Error> {
        from_item::<MemoryItem>(image).map(MemoryItem::into_entry)
    }

    /// Lets a held entry expire as any entry does, at `expires_at`, now that it has reached
    /// its conversation (an entry gone already is left gone).
    pub async fn release_held_memory(
        &self,
        user: &UserId,
        entry: &MemoryEntry,
        expires_at: DateTime<Utc>,
    ) -> Result<(), Error> {
        let released = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(item_key(
                &keys::memory_partition(user),
                &keys::memory_sort_key(entry.timestamp, &entry.id),
            )))
            .condition_expression("attribute_exists(PK)")
            .update_expression("REMOVE held SET expiresAt = :expires")
            .expression_attribute_values(
                ":expires",
                AttributeValue::N(expires_at.timestamp().to_string()),
            )
            .send()
            .await;
        match released {
            Ok(_) => Ok(()),
            Err(e) if super::is_conditional_check_failure(&e) => Ok(()),
            Err(e) => Err(store_error("release a held memory entry", e)),
        }
    }

    /// Up to `limit` entries unexpired at `now`, newest first.
    pub async fn recall_memory(
        &self,
        user: &UserId,
        limit: usize,
        now: DateTime<Utc>,
    ) -> Result<Vec<MemoryEntry>, Error> {
        let mut entries = Vec::with_capacity(limit);
        let mut start = None;
        for _ in 0..MAX_RECALL_PAGES {
            let output = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("PK = :pk AND begins_with(SK, :entries)")
                .filter_expression("expiresAt > :now")
                .expression_attribute_values(":pk", s(&keys::memory_partition(user)))
                .expression_attribute_values(":entries", s(keys::MEMORY_ENTRY_PREFIX))
                .expression_attribute_values(":now", AttributeValue::N(now.timestamp().to_string()))
                .scan_index_forward(false)
                .limit(super::page_limit(limit))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| store_error("recall memory", e))?;
            for item in output.items.unwrap_or_default() {
                let item: MemoryItem = from_item(item)?;
                // Whatever the store still holds, an expired entry is never returned.
                if item.expires_at > now.timestamp() && entries.len() < limit {
                    entries.push(item.into_entry());
                }
            }
            match output.last_evaluated_key {
                Some(next) if entries.len() < limit => start = Some(next),
                _ => break,
            }
        }
        Ok(entries)
    }

    /// Up to `limit` of the entries the store holds for the user (expired or not), oldest
    /// first, after the entry keyed `after`; an item that does not decode is returned as such.
    /// Also returns whether more entries follow.
    pub async fn held_memory(
        &self,
        user: &UserId,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<HeldMemory>, bool), Error> {
        let partition = keys::memory_partition(user);
        let mut held = Vec::new();
        let mut start: Option<Item> = after.map(|sk| item_key(&partition, sk));
        loop {
            let output = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("PK = :pk AND begins_with(SK, :entries)")
                .expression_attribute_values(":pk", s(&partition))
                .expression_attribute_values(":entries", s(keys::MEMORY_ENTRY_PREFIX))
                .consistent_read(true)
                .limit(super::page_limit(limit - held.len()))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| store_error("read memory", e))?;
            for item in output.items.unwrap_or_default() {
                let key = match item.get(keys::SK) {
                    Some(AttributeValue::S(sk)) => sk.clone(),
                    _ => String::new(),
                };
                let entry = super::from_item::<MemoryItem>(item)
                    .map(MemoryItem::into_entry)
                    .map_err(|e| format!("unreadable memory item: {}", domain::error::chain(&e)));
                held.push(HeldMemory { key, entry });
            }
            match output.last_evaluated_key {
                Some(next) if held.len() < limit => start = Some(next),
                Some(_) => return Ok((held, true)),
                None => return Ok((held, false)),
            }
        }
    }

    /// One page of the users listed in a memory shard, and where to continue (an opaque
    /// position: the listed item's key).
    pub async fn users_with_memory(
        &self,
        shard: u32,
        limit: usize,
        after: Option<&str>,
    ) -> Result<(Vec<UserId>, Option<String>), Error> {
        let shard_key = keys::memory_shard_key(shard);
        let start = after.map(|partition| {
            let mut start = item_key(partition, keys::MEMORY_MARKER_SK);
            start.insert(keys::MEMORY_SHARD.to_owned(), s(&shard_key));
            start
        });
        let output = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(keys::Index::ByMemoryShard.name())
            .key_condition_expression("memoryShard = :shard")
            .expression_attribute_values(":shard", s(&shard_key))
            .limit(super::page_limit(limit))
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(|e| store_error("list users with memory", e))?;
        let users = output
            .items
            .unwrap_or_default()
            .iter()
            .filter_map(|item| match item.get(keys::PK) {
                Some(AttributeValue::S(pk)) => keys::parse_memory_partition(pk),
                _ => None,
            })
            .collect();
        let next = output
            .last_evaluated_key
            .and_then(|key| match key.get(keys::PK) {
                Some(AttributeValue::S(pk)) => Some(pk.clone()),
                _ => None,
            });
        Ok((users, next))
    }
}
