//! The single table: item shapes, and one method per access pattern, a file per
//! concern: a conversation's own item (`conversations`), appending (`append`) and reading
//! (`window`) messages, a message's item (`message`), and each feature's records beside
//! them; `dynamo` holds what they all share. Key strings come from `keys`; items convert with
//! `serde_dynamo`, except a page of messages, read attribute by attribute.

use std::sync::Arc;

use aws_sdk_dynamodb::Client;

mod append;
mod by_activity;
mod completions;
mod content;
mod conversations;
pub mod deflated;
mod dynamo;
mod exports;
mod forget;
mod grants;
mod memory;
mod message;
mod migration;
#[cfg(test)]
mod no_panics;
mod operations;
mod pending_purges;
mod presets;
mod prune;
mod runs;
mod s3;
mod sdk_error;
mod search;
mod shares;
mod summaries;
mod sync;
mod tree;
mod usage;
mod window;
pub use append::AppendOutcome;
pub use completions::CompletionRecord;
pub use content::{ContentObjects, INLINE_CONTENT_BYTES};
pub use conversations::{ConversationChange, ConversationItem, Creation};
pub(crate) use dynamo::{
    backoff, conversation_key, from_item, is_conditional_check_failure, item_key, n, page_limit,
    put_new, s, start_key, store_error, to_item, Cancellation, Item, BATCH_WRITE_MAX,
    TRANSACTION_ATTEMPTS,
};
use dynamo::{holds_unknown_type, position_in, position_of};
pub use exports::{ExportFile, ExportJob, ExportStatus};
pub use grants::{Grant, SharedWithMe, MAX_GRANTS_PER_CONVERSATION, MAX_GRANTS_PER_GRANTEE};
pub use memory::HeldMemory;
pub use message::MessageItem;
pub use migration::{message_item_bytes, transaction_chunks, TRANSACTION_MAX_ITEMS};
pub use operations::{Claim, OperationRecord, OperationRecords, RecordedAnswer};
pub use pending_purges::{PendingPurge, PendingPurgePage};
pub use prune::Pruned;
pub use runs::RunOffPath;
pub use s3::LazyS3;
pub use sdk_error::describe_sdk_error;
pub use search::{search_block_capacity, BackfillCheckpoint, BackfillPage, SEARCH_BLOCK_BYTES};
pub use shares::{ShareLinkPage, Shared};
pub use summaries::{summary_preview, SummaryUpdate, SUMMARY_PREVIEW_CHARS};
use sync::Tombstone;
pub use sync::{ChangeEntry, ChangePage, SnapshotPage};
pub use usage::DayUsage;
pub use window::{conversation_and_messages, ConversationWindow, RESPONSE_BUDGET};

use domain::clock::{Clock, SystemClock};
use domain::keys;
use domain::model::ConversationId;

/// Which attributes conversation and message items are written with: issue 18 keeps ids
/// only in the keys, which the release before it cannot read, so the change is made in two
/// steps (docs/operations.md, "Lean items"): a release that reads both shapes and writes the
/// full one, then the lean writes switched on once every function runs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ItemShape {
    /// Also the attributes the release before issue 18 requires: a conversation's `userId`,
    /// `conversationId` and `entity`; a message's `conversationId`, `messageId`, `timestamp`
    /// and `entity` (each what the item's keys say).
    #[default]
    Full,
    /// Ids only in the keys; updates of a conversation's item remove what it held twice.
    Lean,
}

/// The table, through the access patterns the service needs.
#[derive(Clone)]
pub struct Store {
    pub(crate) client: Client,
    pub(crate) table: String,
    pub(crate) content: Option<ContentObjects>,
    /// Stamps every write with its place in the owner's change log.
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) shape: ItemShape,
    /// Whether message content and summaries are written deflated when that makes them
    /// smaller (`deflated`; off until every function reads them: docs/operations.md).
    pub(crate) compress_text: bool,
    /// Whether appends keep messages by slot, without a transaction (`append`; off until every
    /// function reads slots: docs/operations.md).
    pub(crate) slot_keys: bool,
}

impl Store {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
            content: None,
            clock: Arc::new(SystemClock),
            shape: ItemShape::default(),
            compress_text: false,
            slot_keys: false,
        }
    }

    /// A store that writes conversation and message items in `shape`.
    pub fn with_item_shape(self, shape: ItemShape) -> Self {
        Self { shape, ..self }
    }

    /// A store that writes message content and summaries deflated when that makes them
    /// smaller (`compress`), or always as text.
    pub fn with_compressed_text(self, compress: bool) -> Self {
        Self {
            compress_text: compress,
            ..self
        }
    }

    /// A store that appends messages by slot (`keys::Slot`), or in a transaction.
    pub fn with_slot_keys(self, slot_keys: bool) -> Self {
        Self { slot_keys, ..self }
    }

    /// A store whose change-log stamps come from `clock`.
    pub fn with_clock(self, clock: Arc<dyn Clock>) -> Self {
        Self { clock, ..self }
    }

    /// The change-log position of a write to `conversation` made now.
    pub(crate) fn change_stamp(&self, conversation: &ConversationId) -> String {
        keys::changed_at(self.clock.now(), conversation)
    }

    /// A store that keeps large message content in S3 (without it, such content is refused).
    pub fn with_content_objects(self, content: ContentObjects) -> Self {
        Self {
            content: Some(content),
            ..self
        }
    }

    pub fn table_name(&self) -> &str {
        &self.table
    }

    /// The table's status as DynamoDB reports it (health checks), in a few words if unknown.
    pub async fn table_status(&self) -> Result<String, String> {
        let output = self
            .client
            .describe_table()
            .table_name(&self.table)
            .send()
            .await
            .map_err(|e| describe_sdk_error(&e))?;
        Ok(output
            .table()
            .and_then(|t| t.table_status())
            .map_or_else(|| "UNKNOWN".to_owned(), |s| s.as_str().to_owned()))
    }
}
