//! The search index's blocks as the store writes and reads them (the search itself, and
//! what goes into a block, live with the search feature).

use chrono::{DateTime, Utc};

use crate::model::ConversationId;

/// A term as a block keeps it: the first four bytes of its SHA-256 (`search::term_hash`).
pub type TermHash = u32;

/// The terms of a run of one conversation's messages: what the index holds. A block takes
/// the terms of each message written from its `start` until it is full; a message whose terms
/// it already has changes nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchBlock {
    pub conversation: ConversationId,
    /// The time of the first message it took (its key).
    pub start: DateTime<Utc>,
    /// The time of the newest message that added a term.
    pub last: DateTime<Utc>,
    /// Its terms' hashes, sorted, each once.
    pub terms: Vec<TermHash>,
    /// How many times it was written: a write expects the version it read.
    pub version: u64,
}

impl SearchBlock {
    pub fn has(&self, term: TermHash) -> bool {
        self.terms.binary_search(&term).is_ok()
    }
}

/// Where a search's leading term matched a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MatchedIn {
    Title,
    Message,
}

/// A conversation's shown title as the search reads it (from `ByCreated`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TitleEntry {
    pub conversation: ConversationId,
    pub created_at: DateTime<Utc>,
    /// The title shown (set, or else automatic), lower case; `None` while it has none.
    pub title: Option<String>,
}
