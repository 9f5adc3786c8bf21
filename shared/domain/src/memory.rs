//! A message of short-term memory: the last day of a user's exchanges, kept for immediate
//! context and for clients that predate conversations.

use chrono::{DateTime, Utc};

use crate::model::{Attachment, ConversationId, MessageId, Metadata, Role, TokenCount};

/// One remembered message.
#[derive(Debug, Clone, PartialEq)]
pub struct MemoryEntry {
    pub id: MessageId,
    pub role: Role,
    pub content: String,
    pub timestamp: DateTime<Utc>,
    /// The conversation it belongs to, when the request named one (it may have been kept
    /// here only, when the conversation store failed; a migration then moves it there).
    pub conversation_id: Option<ConversationId>,
    pub attachments: Vec<Attachment>,
    pub metadata: Metadata,
    pub expires_at: DateTime<Utc>,
    /// The content's length in tokens, as its writer (the assistant) counted it.
    pub token_count: Option<TokenCount>,
    /// Kept only here: its conversation's store failed when it was said. Such an entry is
    /// moved into its conversation within minutes (the stream's `migrate-held-memory`) and
    /// kept until it has been (`HELD_RETENTION`), then expires as any entry.
    pub held: bool,
    /// The slot of the message in its conversation, when it was also stored there by slot:
    /// where a migration finds it (a slot's key holds neither time nor id).
    pub slot: Option<crate::keys::Slot>,
}

/// How long an entry kept only in short-term memory waits to reach its conversation at most:
/// as long as a change its migration gave up on waits in the dead-letter queue (14 days).
pub const HELD_RETENTION: chrono::Duration = chrono::Duration::days(14);
