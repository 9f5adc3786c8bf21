//! Short-term memory: the last day of a user's exchanges, kept for immediate context and for
//! clients that predate conversations. Items live in the same table under the user, and the
//! table's TTL removes them; since DynamoDB deletes expired items up to days late, every read
//! also drops what has expired by the clock it is given.

use chrono::{DateTime, Duration, Utc};

use domain::error::Error;
pub use domain::memory::MemoryEntry;
use domain::model::{ConversationId, MessageId, Metadata, Role, UserId};
use shared::store::Store;

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
            attachments: Vec::new(),
            metadata,
            expires_at: now + self.ttl,
            token_count: None,
            held: false,
            slot: None,
        }
    }

    /// Stores entries; writing the same entries again (same ids and times) changes nothing.
    pub async fn remember(&self, user: &UserId, entries: &[MemoryEntry]) -> Result<(), Error> {
        self.store.put_memory(user, entries).await
    }

    /// Lets a held entry, now in its conversation, expire one time-to-live after it was said,
    /// as any entry does.
    pub async fn release(&self, user: &UserId, entry: &MemoryEntry) -> Result<(), Error> {
        self.store
            .release_held_memory(user, entry, entry.timestamp + self.ttl)
            .await
    }

    /// Up to `limit` unexpired entries, newest first.
    pub async fn recall(
        &self,
        user: &UserId,
        limit: usize,
        now: DateTime<Utc>,
    ) -> Result<Vec<MemoryEntry>, Error> {
        self.store.recall_memory(user, limit, now).await
    }
}
