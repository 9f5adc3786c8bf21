//! The search index's entries as the store writes and reads them (the search itself, and
//! what makes an entry, live with the search feature).

use std::collections::HashSet;

use chrono::{DateTime, Utc};

use crate::cursor::Position;
use crate::keys::TermSource;
use crate::model::{Conversation, ConversationId, MessageId, UserId};

/// One entry of the index: a term found in a conversation's title, or in its messages (then
/// the newest message that has it, as far as the indexer has seen).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TermEntry {
    pub user: UserId,
    pub conversation: ConversationId,
    pub term: String,
    pub source: TermSource,
    /// The message's time, or the conversation's creation for a title term.
    pub time: DateTime<Utc>,
    pub message: Option<MessageId>,
    pub snippet: String,
}

/// An entry as a search reads it from `ByTerm`.
#[derive(Debug, Clone)]
pub struct IndexedEntry {
    pub conversation: ConversationId,
    pub source: TermSource,
    pub message: Option<MessageId>,
    pub snippet: String,
    pub time: DateTime<Utc>,
    /// Its position in the index (where a cursor continues after it).
    pub position: Position,
}

/// What a search checks about one candidate conversation, read in one batch.
#[derive(Debug, Default)]
pub struct CandidateChecks {
    /// The conversations that still exist.
    pub conversations: Vec<Conversation>,
    /// `(conversation, source, term)` of the entries found.
    pub entries: HashSet<(ConversationId, TermSource, String)>,
}
