//! Short-term memory: the last day of a user's exchanges, kept for immediate context and for
//! clients that predate conversations. Items live in the same table under the user, and the
//! table's TTL removes them; since DynamoDB deletes expired items up to days late, every read
//! also drops what has expired by the clock it is given.

use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::keys;
use crate::model::{ConversationId, MessageId, Metadata, Role, UserId};
use crate::store::{from_item, s, store_error, to_item, Store, BATCH_WRITE_MAX};

/// Query pages one recall reads at most (expired items still held by DynamoDB are skipped).
const MAX_RECALL_PAGES: usize = 8;

/// One remembered message.
#[derive(Debug, Clone, PartialEq)]
pub struct MemoryEntry {
    pub id: MessageId,
    pub role: Role,
    pub content: String,
    pub timestamp: DateTime<Utc>,
    /// The conversation it was also saved to, when there was one.
    pub conversation_id: Option<ConversationId>,
    pub metadata: Metadata,
    pub expires_at: DateTime<Utc>,
}

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
    #[serde(default)]
    metadata: Metadata,
    /// The table's TTL attribute: epoch seconds.
    expires_at: i64,
}

/// Short-term memory over the store, with its time to live.
#[derive(Clone)]
pub struct ShortTermMemory {
    store: Store,
    ttl: Duration,
}

impl ShortTermMemory {
    pub fn new(store: Store, ttl: Duration) -> Self {
        Self { store, ttl }
    }

    /// An entry written at `now`, expiring one time-to-live later.
    pub fn entry(
        &self,
        id: MessageId,
        role: Role,
        content: String,
        conversation_id: Option<ConversationId>,
        metadata: Metadata,
        now: DateTime<Utc>,
    ) -> MemoryEntry {
        MemoryEntry {
            id,
            role,
            content,
            timestamp: now,
            conversation_id,
            metadata,
            expires_at: now + self.ttl,
        }
    }

    /// Stores entries; writing the same entries again (same ids and times) changes nothing.
    pub async fn remember(&self, user: &UserId, entries: &[MemoryEntry]) -> Result<(), Error> {
        for chunk in entries.chunks(BATCH_WRITE_MAX) {
            let requests = chunk
                .iter()
                .map(|entry| {
                    let item = MemoryItem {
                        pk: keys::memory_partition(user),
                        sk: keys::memory_sort_key(entry.timestamp, &entry.id),
                        entity: "Memory".to_owned(),
                        entry_id: entry.id,
                        role: entry.role,
                        content: entry.content.clone(),
                        timestamp: entry.timestamp,
                        conversation_id: entry.conversation_id,
                        metadata: entry.metadata.clone(),
                        expires_at: entry.expires_at.timestamp(),
                    };
                    let put = PutRequest::builder()
                        .set_item(Some(to_item(&item)?))
                        .build()
                        .map_err(|e| Error::internal("build memory put", e))?;
                    Ok(WriteRequest::builder().put_request(put).build())
                })
                .collect::<Result<Vec<_>, Error>>()?;
            self.store.write_batch(requests).await?;
        }
        Ok(())
    }

    /// Up to `limit` unexpired entries, newest first.
    pub async fn recall(
        &self,
        user: &UserId,
        limit: usize,
        now: DateTime<Utc>,
    ) -> Result<Vec<MemoryEntry>, Error> {
        let mut entries = Vec::with_capacity(limit);
        let mut start = None;
        for _ in 0..MAX_RECALL_PAGES {
            let output = self
                .store
                .client
                .query()
                .table_name(&self.store.table)
                .key_condition_expression("PK = :pk")
                .filter_expression("expiresAt > :now")
                .expression_attribute_values(":pk", s(&keys::memory_partition(user)))
                .expression_attribute_values(":now", AttributeValue::N(now.timestamp().to_string()))
                .scan_index_forward(false)
                .limit(i32::try_from(limit.clamp(1, 1000)).unwrap_or(1000))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| store_error("recall memory", e))?;
            for item in output.items.unwrap_or_default() {
                let item: MemoryItem = from_item(item)?;
                // Whatever the store still holds, an expired entry is never returned.
                if item.expires_at > now.timestamp() && entries.len() < limit {
                    entries.push(MemoryEntry {
                        id: item.entry_id,
                        role: item.role,
                        content: item.content,
                        timestamp: item.timestamp,
                        conversation_id: item.conversation_id,
                        metadata: item.metadata,
                        expires_at: DateTime::from_timestamp(item.expires_at, 0).unwrap_or(now),
                    });
                }
            }
            match output.last_evaluated_key {
                Some(next) if entries.len() < limit => start = Some(next),
                _ => break,
            }
        }
        Ok(entries)
    }
}
