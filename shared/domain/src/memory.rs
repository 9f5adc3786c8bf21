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
}
