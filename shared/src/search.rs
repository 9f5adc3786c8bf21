//! Search across a user's conversations, by title and by message content.
//!
//! The index lives in the table, next to what it indexes (`docs/search.md` explains the
//! choice, with measurements). For each conversation and each term found in it there is one
//! *entry*: in the conversation's own partition (so it goes when the conversation is purged),
//! listed in the `ByTerm` index under `<user>#<term>` (so a search reads only the caller's
//! entries for its terms, whatever other users hold). An entry for a message term points at
//! the newest message it was found in, with a snippet; an entry for a title term points at
//! the title. The table's stream feeds the indexer (`streams::index_for_search`), so every
//! way of writing (API, mobile batch, migration) is indexed without remembering to.
//!
//! A search reads the entries of its rarest-looking term (the longest) page by page, newest
//! first with title hits above message hits, and checks each candidate conversation for the
//! other terms and for still existing with one consistent `BatchGetItem`. It reads at most
//! [`SEARCH_READ_BUDGET`] entries per request; past that it answers with what it found and a
//! cursor, so its cost never depends on how many conversations the user has.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use unicode_normalization::UnicodeNormalization;
use unicode_segmentation::UnicodeSegmentation;

use crate::cursor_keys::Cursors;
use crate::error::Error;
use crate::keys::{self, TermSource};
use crate::model::{Conversation, ConversationId, Message, MessageId, UserId};
use crate::store::Store;
pub use domain::search::{CandidateChecks, IndexedEntry, TermEntry};

/// Distinct terms indexed per message, in the order they first appear: bounds the writes
/// one message costs (a longer message is indexed by its first this many distinct terms).
pub const MAX_TERMS_PER_MESSAGE: usize = 100;
/// Words longer than this are not indexed (ids, hashes, long URLs), nor searched.
pub const MAX_TERM_CHARS: usize = 40;
/// Words in one query, at most.
pub const MAX_QUERY_TERMS: usize = 8;
/// Characters in one query, at most.
pub const MAX_QUERY_CHARS: usize = 200;
/// Characters of the message shown around a hit, at most.
pub const SNIPPET_CHARS: usize = 160;
/// Characters of a snippet before the hit (when the text has them).
const SNIPPET_LEAD_CHARS: usize = 50;
pub const DEFAULT_SEARCH_PAGE: usize = 20;
pub const MAX_SEARCH_PAGE: usize = 50;
/// Index entries one search request reads at most before it answers with what it found and
/// a cursor to go on.
pub const SEARCH_READ_BUDGET: usize = 500;

/// Words too common to be worth an index entry (English; other languages are indexed whole).
const STOP_WORDS: &[&str] = &[
    "a", "about", "after", "again", "all", "also", "am", "an", "and", "any", "are", "as", "at",
    "be", "because", "been", "before", "being", "but", "by", "can", "could", "did", "do", "does",
    "doing", "for", "from", "had", "has", "have", "having", "he", "her", "here", "hers", "him",
    "his", "how", "i", "i'm", "if", "in", "into", "is", "it", "it's", "its", "just", "me", "more",
    "most", "my", "no", "not", "now", "of", "on", "once", "only", "or", "other", "our", "ours",
    "out", "over", "own", "same", "she", "should", "so", "some", "such", "than", "that", "the",
    "their", "theirs", "them", "then", "there", "these", "they", "this", "those", "through", "to",
    "too", "under", "until", "up", "very", "was", "we", "were", "what", "when", "where", "which",
    "while", "who", "whom", "why", "will", "with", "would", "you", "your", "yours",
];

/// A word as the index keeps it: lower case, or `None` for words not indexed (stop words,
/// single letters or digits, words over [`MAX_TERM_CHARS`]).
fn term_of(word: &str) -> Option<String> {
    // One spelling for each word however it was typed (composed or decomposed accents).
    let term = word.nfc().collect::<String>().to_lowercase();
    let chars = term.chars().count();
    let single_ascii = chars == 1 && term.is_ascii();
    if chars > MAX_TERM_CHARS || single_ascii || STOP_WORDS.contains(&term.as_str()) {
        return None;
    }
    Some(term)
}

/// The distinct terms of `text` in the order they first appear (at most `max`), each with
/// the byte offset of its first occurrence. Word boundaries follow Unicode (UAX #29).
pub fn terms_of(text: &str, max: usize) -> Vec<(String, usize)> {
    let mut seen = HashSet::new();
    let mut terms = Vec::new();
    for (offset, word) in text.unicode_word_indices() {
        if terms.len() == max {
            break;
        }
        if let Some(term) = term_of(word) {
            if seen.insert(term.clone()) {
                terms.push((term, offset));
            }
        }
    }
    terms
}

/// Up to [`SNIPPET_CHARS`] characters of `text` around the byte `offset`, whitespace folded,
/// with `…` where it was cut.
pub fn snippet(text: &str, offset: usize) -> String {
    let offset = (0..=offset.min(text.len()))
        .rev()
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(0);
    let before: Vec<char> = text[..offset]
        .chars()
        .rev()
        .take(SNIPPET_LEAD_CHARS + 1)
        .collect();
    let lead = before.len().min(SNIPPET_LEAD_CHARS);
    let start = offset - before[..lead].iter().map(|c| c.len_utf8()).sum::<usize>();
    let mut shown = String::new();
    if start > 0 {
        shown.push('…');
    }
    let mut cut = false;
    let mut last_space = start > 0;
    for (count, c) in text[start..].chars().enumerate() {
        if count == SNIPPET_CHARS {
            cut = true;
            break;
        }
        if c.is_whitespace() {
            if !last_space {
                shown.push(' ');
            }
            last_space = true;
        } else {
            shown.push(c);
            last_space = false;
        }
    }
    if cut {
        shown.push('…');
    }
    shown.trim().to_owned()
}

/// The entries a message adds (or moves to it, for terms the conversation already has).
pub fn message_entries(user: &UserId, message: &Message) -> Vec<TermEntry> {
    terms_of(&message.content, MAX_TERMS_PER_MESSAGE)
        .into_iter()
        .map(|(term, offset)| TermEntry {
            user: user.clone(),
            conversation: message.conversation_id,
            term,
            source: TermSource::Messages,
            time: message.timestamp,
            message: Some(message.id),
            snippet: snippet(&message.content, offset),
        })
        .collect()
}

/// The entries of a conversation's title.
pub fn title_entries(
    user: &UserId,
    conversation: &ConversationId,
    title: &str,
    created_at: DateTime<Utc>,
) -> Vec<TermEntry> {
    terms_of(title, MAX_TERMS_PER_MESSAGE)
        .into_iter()
        .map(|(term, _)| TermEntry {
            user: user.clone(),
            conversation: *conversation,
            term,
            source: TermSource::Title,
            time: created_at,
            message: None,
            snippet: snippet(title, 0),
        })
        .collect()
}

/// What a user searches for: the distinct indexed terms of their words. A query of stop
/// words only has no terms and finds nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchQuery {
    terms: Vec<String>,
}

impl SearchQuery {
    pub fn parse(raw: &str) -> Result<Self, Error> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err(Error::invalid("q must not be empty"));
        }
        if raw.chars().count() > MAX_QUERY_CHARS {
            return Err(Error::invalid(format!(
                "q must be at most {MAX_QUERY_CHARS} characters"
            )));
        }
        let terms: Vec<String> = terms_of(raw, MAX_QUERY_TERMS + 1)
            .into_iter()
            .map(|(term, _)| term)
            .collect();
        if terms.len() > MAX_QUERY_TERMS {
            return Err(Error::invalid(format!(
                "q must have at most {MAX_QUERY_TERMS} distinct words"
            )));
        }
        Ok(Self { terms })
    }

    pub fn terms(&self) -> &[String] {
        &self.terms
    }

    /// The term whose entries a search reads: the longest (long words are the rare ones).
    fn leading_term(&self) -> Option<&str> {
        self.terms
            .iter()
            .enumerate()
            .max_by_key(|(i, t)| (t.chars().count(), std::cmp::Reverse(*i)))
            .map(|(_, t)| t.as_str())
    }

    /// What a cursor is bound to: the caller and the query's terms (as JSON: user ids and
    /// words may hold any separator).
    fn scope(&self, user: &UserId) -> String {
        serde_json::json!(["search", user.as_str(), self.terms]).to_string()
    }
}

/// One conversation a search found, with where it matched.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchHit {
    pub conversation: Conversation,
    /// Where the leading term matched: the title, or a message (then which one).
    pub source: TermSource,
    pub message: Option<MessageId>,
    pub snippet: String,
    pub matched_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SearchPage {
    pub hits: Vec<SearchHit>,
    pub next_cursor: Option<String>,
}

/// Searches one user's conversations.
#[derive(Clone)]
pub struct Search {
    store: Store,
    cursors: Cursors,
}

impl Search {
    pub fn new(store: Store, cursors: Cursors) -> Self {
        Self { store, cursors }
    }

    /// Up to `limit` of the caller's conversations that have every term of `query`, title
    /// hits first, then by the newest message that has the leading term.
    pub async fn search(
        &self,
        user: &UserId,
        query: &SearchQuery,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<SearchPage, Error> {
        let scope = query.scope(user);
        let mut start = match cursor {
            Some(cursor) => Some(self.cursors.decode(&scope, cursor).await?),
            None => None,
        };
        let Some(leading) = query.leading_term() else {
            return Ok(SearchPage {
                hits: Vec::new(),
                next_cursor: None,
            });
        };
        // A position is only ever in the index partition of this user's leading word.
        if start.as_ref().is_some_and(|position| {
            position.get(keys::SEARCH_KEY) != Some(&keys::search_key(user, leading))
        }) {
            return Err(Error::invalid("cursor is not valid for this request"));
        }
        let others: Vec<&str> = query
            .terms()
            .iter()
            .map(String::as_str)
            .filter(|t| *t != leading)
            .collect();
        let mut hits = Vec::new();
        let mut read = 0;
        loop {
            // A query of several terms filters its candidates: read a fuller page.
            let wanted = if others.is_empty() {
                limit - hits.len() + 1
            } else {
                100
            };
            let (entries, index_continues) = self
                .store
                .term_entries(
                    user,
                    leading,
                    start.take(),
                    wanted.min(SEARCH_READ_BUDGET - read),
                )
                .await?;
            read += entries.len();
            let checks = self
                .store
                .check_candidates(user, &entries, leading, &others)
                .await?;
            let total = entries.len();
            let mut consumed = 0;
            let mut last = None;
            for entry in entries {
                consumed += 1;
                last = Some(entry.position.clone());
                if let Some(hit) = hit_of(entry, leading, &others, &checks) {
                    hits.push(hit);
                    if hits.len() == limit {
                        break;
                    }
                }
            }
            let more = index_continues.is_some() || consumed < total;
            let last = last.or(index_continues);
            if !more {
                return Ok(SearchPage {
                    hits,
                    next_cursor: None,
                });
            }
            if hits.len() == limit || read >= SEARCH_READ_BUDGET {
                return Ok(SearchPage {
                    hits,
                    next_cursor: match last {
                        Some(position) => Some(self.cursors.encode(&scope, position).await?),
                        None => None,
                    },
                });
            }
            start = last;
        }
    }
}

/// The hit an entry makes, if its conversation still exists, has every other term, and (for
/// a message entry) was not already listed among the title hits.
fn hit_of(
    entry: IndexedEntry,
    leading: &str,
    others: &[&str],
    checks: &CandidateChecks,
) -> Option<SearchHit> {
    let conversation = checks
        .conversations
        .iter()
        .find(|c| c.id == entry.conversation)?;
    let has = |source, term: &str| {
        checks
            .entries
            .contains(&(entry.conversation, source, term.to_owned()))
    };
    if entry.source == TermSource::Messages && has(TermSource::Title, leading) {
        return None;
    }
    if !others
        .iter()
        .all(|t| has(TermSource::Title, t) || has(TermSource::Messages, t))
    {
        return None;
    }
    Some(SearchHit {
        conversation: conversation.clone(),
        source: entry.source,
        message: entry.message,
        snippet: entry.snippet,
        matched_at: entry.time,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terms(text: &str) -> Vec<String> {
        terms_of(text, MAX_TERMS_PER_MESSAGE)
            .into_iter()
            .map(|(t, _)| t)
            .collect()
    }

    #[test]
    fn terms_are_distinct_lower_case_words_without_stop_words() {
        assert_eq!(
            terms("The Rust compiler, the rust BORROW checker: it's strict!"),
            ["rust", "compiler", "borrow", "checker", "strict"]
        );
    }

    #[test]
    fn words_of_other_scripts_are_terms_and_long_tokens_are_not() {
        assert_eq!(terms("Grüße aus Köln"), ["grüße", "aus", "köln"]);
        assert!(terms(&"x".repeat(MAX_TERM_CHARS + 1)).is_empty());
        assert_eq!(terms("a 7 é"), ["é"]);
        // Composed and decomposed accents are one word.
        assert_eq!(terms("Cafe\u{301}"), terms("Caf\u{e9}"));
    }

    #[test]
    fn a_message_is_indexed_by_at_most_its_first_distinct_terms() {
        let text: String = (0..500).map(|i| format!("word{i} ")).collect();
        let found = terms(&text);
        assert_eq!(found.len(), MAX_TERMS_PER_MESSAGE);
        assert_eq!(found[0], "word0");
    }

    #[test]
    fn a_snippet_shows_the_hit_in_its_context() {
        let text = format!("{} needle {}", "hay ".repeat(100), "straw ".repeat(100));
        let offset = text.find("needle").unwrap();
        let shown = snippet(&text, offset);
        assert!(shown.starts_with('…') && shown.ends_with('…'));
        assert!(shown.contains("needle"));
        assert!(shown.chars().count() <= SNIPPET_CHARS + 2);
        assert_eq!(snippet("short  and\n\nsweet", 0), "short and sweet");
    }

    #[test]
    fn a_snippet_never_splits_a_character() {
        let text = "é".repeat(300);
        for offset in [0, 1, 2, 151, 599, 600] {
            let shown = snippet(&text, offset);
            assert!(shown.chars().count() <= SNIPPET_CHARS + 2);
        }
    }

    #[test]
    fn a_query_reads_its_longest_term_and_rejects_what_it_cannot_answer() {
        let query = SearchQuery::parse("the tokio runtime").unwrap();
        assert_eq!(query.terms(), ["tokio", "runtime"]);
        assert_eq!(query.leading_term(), Some("runtime"));
        assert!(SearchQuery::parse("the and of").unwrap().terms().is_empty());
        assert!(SearchQuery::parse("   ").is_err());
        assert!(SearchQuery::parse(&"word ".repeat(30)).is_ok());
        assert!(SearchQuery::parse("one two three four five six seven eight nine").is_err());
        assert!(SearchQuery::parse(&"x".repeat(MAX_QUERY_CHARS + 1)).is_err());
    }
}
