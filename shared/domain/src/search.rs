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
    /// The first and last slot (`keys::Slot`, of the trunk) of the messages kept by slot that
    /// added terms to it: where a search looks for them (a slot's key holds no time).
    pub slots: Option<(u64, u64)>,
    /// Whether a message keyed by time added terms to it (every block written before slots
    /// did): a search looks for those by time.
    pub timed: bool,
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

/// Where the messages of a block are: what a search reads, newest first, to show a hit in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockMessages {
    /// Keyed by time: from the block's start until before the next block's (to the last such
    /// message without one); `None` when none went into the block.
    pub timed: Option<(DateTime<Utc>, Option<DateTime<Utc>>)>,
    /// Kept by slot: from the block's first slot until before the next block's first (to the
    /// trunk's last without one); `None` when none went into the block.
    pub slots: Option<(u64, Option<u64>)>,
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
