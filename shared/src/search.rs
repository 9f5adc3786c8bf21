//! Search across a user's conversations, by title and by message content.
//!
//! The index lives in the table, in the user's own search partition (`docs/search.md`
//! explains the choice, with measurements): *blocks*, each holding the hashed terms of a run
//! of one conversation's messages, as many as fit in one write unit. A new message adds its
//! terms to its conversation's newest block (nothing is written when the block has them all)
//! or starts a new one, so indexing a message costs at most one write unit, whatever its
//! length or the conversation's. The table's stream feeds the indexer
//! (`streams::index_for_search`), so every way of writing (API, mobile batch, migration) is
//! indexed without remembering to.
//!
//! A search reads the user's blocks (one query) and titles (one query of `ByCreated`),
//! keeps the conversations that have every term in their title or blocks, ranks them (title
//! hits first, then by the newest block with the leading term), and for each on the page reads
//! its conversation (consistently: a deleted one drops out) and, for a message hit, the
//! block's messages newest first until one has the term: that message and a snippet around
//! the word are what the app shows.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use futures::{stream, StreamExt, TryStreamExt};
use unicode_normalization::UnicodeNormalization;
use unicode_segmentation::UnicodeSegmentation;

use crate::cursor_keys::Cursors;
use crate::error::Error;
use crate::keys;
use crate::model::{Conversation, ConversationId, Message, MessageId, UserId};
use crate::store::{search_block_capacity, Store};
use domain::cursor::Position;
pub use domain::search::{BlockMessages, MatchedIn, SearchBlock, TermHash, TitleEntry};

/// Distinct terms indexed per message, in the order they first appear (a longer message is
/// indexed by its first this many distinct terms).
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

/// A term as the index keeps it: the first four bytes of its SHA-256, big-endian. Stored in
/// every block: never change it without rebuilding the index (`search_backfill`).
pub fn term_hash(term: &str) -> TermHash {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(term.as_bytes());
    TermHash::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

/// What the index takes of a message: its first [`MAX_TERMS_PER_MESSAGE`] distinct terms,
/// hashed, sorted.
pub fn message_term_hashes(content: &str) -> Vec<TermHash> {
    let mut hashes: Vec<TermHash> = terms_of(content, MAX_TERMS_PER_MESSAGE)
        .iter()
        .map(|(term, _)| term_hash(term))
        .collect();
    hashes.sort_unstable();
    hashes.dedup();
    hashes
}

/// One conversation's blocks as the indexer adds messages to them: those it read, and
/// which it changed. Pure: `index_messages` reads and writes them; benchmarks replay it.
#[derive(Debug, Clone)]
pub struct BlockPlan {
    conversation: ConversationId,
    capacity: usize,
    /// By start, with whether a message changed it.
    blocks: BTreeMap<DateTime<Utc>, (SearchBlock, bool)>,
}

impl BlockPlan {
    /// `blocks` must hold every block that could take the messages to be added (those
    /// `Store::search_blocks_covering` reads); `capacity` is how many terms a block holds.
    pub fn new(conversation: ConversationId, blocks: Vec<SearchBlock>, capacity: usize) -> Self {
        Self {
            conversation,
            capacity,
            blocks: blocks.into_iter().map(|b| (b.start, (b, false))).collect(),
        }
    }

    /// Adds the terms of a message keyed by its time `at`: [`BlockPlan::add_at`] with no slot.
    pub fn add(&mut self, at: DateTime<Utc>, hashes: &[TermHash]) {
        self.add_at(at, None, hashes);
    }

    /// Adds the terms of a message written at `at` (kept at trunk slot `slot`, if by slot): to
    /// the block that started last at or before it if it has room for the ones it lacks (if it
    /// lacks none, nothing changes), else to a new block starting at `at`. A full block that
    /// starts at `at` itself takes them anyway (no other key could hold the message's place):
    /// a rare block over capacity. The block notes the slot, or that it took a message keyed
    /// by time, so a search knows where to look for it.
    pub fn add_at(&mut self, at: DateTime<Utc>, slot: Option<u64>, hashes: &[TermHash]) {
        if hashes.is_empty() {
            return;
        }
        if let Some((_, (block, changed))) = self.blocks.range_mut(..=at).next_back() {
            let new: Vec<TermHash> = hashes.iter().copied().filter(|h| !block.has(*h)).collect();
            if new.is_empty() {
                return;
            }
            if block.terms.len() + new.len() <= self.capacity || block.start == at {
                block.terms.extend(new);
                block.terms.sort_unstable();
                block.last = block.last.max(at);
                match slot {
                    Some(slot) => {
                        block.slots = Some(match block.slots {
                            Some((first, last)) => (first.min(slot), last.max(slot)),
                            None => (slot, slot),
                        })
                    }
                    None => block.timed = true,
                }
                *changed = true;
                return;
            }
        }
        let mut terms = hashes.to_vec();
        terms.sort_unstable();
        terms.dedup();
        let block = SearchBlock {
            conversation: self.conversation,
            start: at,
            last: at,
            slots: slot.map(|slot| (slot, slot)),
            timed: slot.is_none(),
            terms,
            version: 0,
        };
        self.blocks.insert(at, (block, true));
    }

    /// The blocks changed since they were read (or last marked written), oldest first.
    pub fn changed(&self) -> impl Iterator<Item = &SearchBlock> {
        self.blocks
            .values()
            .filter(|(_, changed)| *changed)
            .map(|(block, _)| block)
    }

    /// Marks the changed blocks written (each a version on): what the table holds after.
    pub fn written(&mut self) {
        for (block, changed) in self.blocks.values_mut() {
            if std::mem::take(changed) {
                block.version += 1;
            }
        }
    }

    /// Every block, oldest first.
    pub fn blocks(&self) -> impl Iterator<Item = &SearchBlock> {
        self.blocks.values().map(|(block, _)| block)
    }
}

/// Adds the terms of new `messages` of one conversation to its search blocks
/// ([`BlockPlan::add`]). Only blocks that took new terms are written, each once, and only if
/// no other write changed them since they were read (else it fails, and the records come
/// again: adding terms twice changes nothing). A conversation deleted meanwhile (its purge
/// may have run before these writes) loses the blocks again: they never outlive it. Returns
/// the blocks written.
pub async fn index_messages(
    store: &Store,
    user: &UserId,
    conversation: &ConversationId,
    messages: &[Message],
) -> Result<usize, Error> {
    let mut messages: Vec<IndexedMessage> = messages
        .iter()
        .map(|m| IndexedMessage {
            at: m.timestamp,
            // A block notes trunk slots only; a message of another branch (an edit's, a
            // regenerated reply's) goes in by its time, which a hit reads those branches by.
            slot: m
                .slot
                .filter(|slot| slot.branch == domain::tree::TRUNK)
                .map(|slot| slot.number),
            hashes: message_term_hashes(&m.content),
        })
        .filter(|m| !m.hashes.is_empty())
        .collect();
    messages.sort_by_key(|m| (m.at, m.slot));
    let written = write_blocks(store, user, conversation, &messages).await;
    // Whatever the writes did (an attempt that failed after writing comes again, maybe after
    // the purge): blocks never outlive their conversation.
    forget_blocks_if_deleted(store, user, conversation).await?;
    written
}

/// A message as a block takes it: its time, its slot (kept by slot) and its terms.
struct IndexedMessage {
    at: DateTime<Utc>,
    slot: Option<u64>,
    hashes: Vec<TermHash>,
}

/// Deletes the search blocks of `conversation` if it no longer exists.
pub async fn forget_blocks_if_deleted(
    store: &Store,
    user: &UserId,
    conversation: &ConversationId,
) -> Result<(), Error> {
    if !store.conversation_exists(user, conversation).await? {
        store.delete_search_blocks(user, conversation).await?;
    }
    Ok(())
}

/// Attempts at writing a conversation's blocks while other writers (another indexer, the
/// backfill) change them first.
const BLOCK_WRITE_ATTEMPTS: u32 = 5;

/// Adds `messages` (oldest first) to the conversation's blocks: reads the
/// blocks that can take them, plans, writes each changed block once; when another write
/// changed a block first, reads and plans again (what was written stays: adding terms again
/// changes nothing).
async fn write_blocks(
    store: &Store,
    user: &UserId,
    conversation: &ConversationId,
    messages: &[IndexedMessage],
) -> Result<usize, Error> {
    let (Some(first), Some(newest)) = (messages.first(), messages.last()) else {
        return Ok(0);
    };
    let (first, newest) = (&first.at, &newest.at);
    let mut written = 0;
    for attempt in 1..=BLOCK_WRITE_ATTEMPTS {
        let blocks = store
            .search_blocks_covering(user, conversation, *first, *newest)
            .await?;
        let mut plan = BlockPlan::new(
            *conversation,
            blocks,
            search_block_capacity(user, conversation),
        );
        for message in messages {
            plan.add_at(message.at, message.slot, &message.hashes);
        }
        let mut lost_a_race = false;
        for block in plan.changed() {
            if store.write_search_block(user, block).await? {
                written += 1;
            } else {
                lost_a_race = true;
                break;
            }
        }
        if !lost_a_race {
            return Ok(written);
        }
        if attempt < BLOCK_WRITE_ATTEMPTS {
            tokio::time::sleep(std::time::Duration::from_millis(20 << attempt)).await;
        }
    }
    Err(Error::Unavailable(
        "search blocks kept changing while they were indexed: index again".into(),
    ))
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
    pub matched_in: MatchedIn,
    pub message: Option<MessageId>,
    pub snippet: String,
    pub matched_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SearchPage {
    pub hits: Vec<SearchHit>,
    pub next_cursor: Option<String>,
}

/// The cursor's one field: the rank of the last candidate a page considered.
const RANK: &str = "rank";
/// Candidates whose message a page looks up at once.
const LOOKUP_CONCURRENCY: usize = 4;
/// Candidates a page may look into beyond its size: one whose indexed term its messages turn
/// out not to hold (a term's hash shared with another word) is passed over, and a page that
/// meets this many ends early, with a cursor, rather than reading on through the index.
const LOOKUPS_BEYOND_PAGE: usize = 20;

/// A conversation that has every term of a query, where it stands among the results.
struct Candidate {
    /// Title hits first (by creation), then message hits by the newest block with the
    /// leading term: `<1 title | 0 message>#<sortable time>#<conversation>`.
    rank: String,
    conversation: ConversationId,
    /// For a message hit: the messages of the block with the leading term, from its start
    /// up to the next block's (the conversation's newest block: to its end).
    block: Option<BlockMessages>,
    created_at: DateTime<Utc>,
}

fn rank(matched_in: MatchedIn, time: DateTime<Utc>, conversation: &ConversationId) -> String {
    let section = match matched_in {
        MatchedIn::Title => '1',
        MatchedIn::Message => '0',
    };
    format!("{section}#{}#{conversation}", keys::sortable_time(time))
}

/// The conversations of `titles` that have every term of `terms` in their title or in any
/// block, ranked, best first. `terms[0]` is the leading term.
fn candidates(terms: &[&str], titles: Vec<TitleEntry>, blocks: &[SearchBlock]) -> Vec<Candidate> {
    let hashes: Vec<TermHash> = terms.iter().map(|t| term_hash(t)).collect();
    // Blocks come in key order: a conversation's are together, oldest first.
    let mut found: HashMap<ConversationId, (Vec<bool>, Option<usize>)> = HashMap::new();
    for (index, block) in blocks.iter().enumerate() {
        let (has, leading) = found
            .entry(block.conversation)
            .or_insert_with(|| (vec![false; terms.len()], None));
        for (i, hash) in hashes.iter().enumerate() {
            has[i] |= block.has(*hash);
        }
        if block.has(hashes[0]) && leading.is_none_or(|l| block.last > blocks[l].last) {
            *leading = Some(index);
        }
    }
    let mut ranked: Vec<Candidate> = titles
        .into_iter()
        .filter_map(|entry| {
            let title_terms: HashSet<String> = entry
                .title
                .as_deref()
                .map(|t| terms_of(t, MAX_TERMS_PER_MESSAGE))
                .unwrap_or_default()
                .into_iter()
                .map(|(term, _)| term)
                .collect();
            let (in_blocks, leading) = found
                .get(&entry.conversation)
                .map_or((None, None), |(has, leading)| (Some(has), *leading));
            let has_all = terms.iter().enumerate().all(|(i, term)| {
                title_terms.contains(*term) || in_blocks.is_some_and(|has| has[i])
            });
            if !has_all {
                return None;
            }
            let (rank, block) = if title_terms.contains(terms[0]) {
                (
                    rank(MatchedIn::Title, entry.created_at, &entry.conversation),
                    None,
                )
            } else {
                let index = leading?;
                let block = &blocks[index];
                let next = blocks
                    .get(index + 1)
                    .filter(|next| next.conversation == block.conversation);
                // Every message that added terms to the block lies between its start and its
                // `last` (a later block may start before that: an older message came after),
                // and if kept by slot, between its first and last slot.
                let until = next.map(|next| {
                    next.start
                        .max(block.last + chrono::Duration::microseconds(1))
                });
                let slots = block.slots.map(|(first, last)| {
                    let until = next
                        .and_then(|next| next.slots)
                        .map(|(next_first, _)| next_first.max(last + 1));
                    (first, until)
                });
                (
                    rank(MatchedIn::Message, block.last, &entry.conversation),
                    Some(BlockMessages {
                        timed: block.timed.then_some((block.start, until)),
                        slots,
                    }),
                )
            };
            Some(Candidate {
                rank,
                conversation: entry.conversation,
                block,
                created_at: entry.created_at,
            })
        })
        .collect();
    ranked.sort_by(|a, b| b.rank.cmp(&a.rank));
    ranked
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
    /// hits first (newest conversation first), then by the newest block of messages that
    /// has the leading term. Reads the user's whole index (one query of their blocks, one of
    /// their titles), then the page's conversations (consistently: a deleted one is left out)
    /// and the message each message hit shows: looking into at most `limit` +
    /// `LOOKUPS_BEYOND_PAGE` candidates, so a page may hold fewer hits and still have a cursor.
    pub async fn search(
        &self,
        user: &UserId,
        query: &SearchQuery,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<SearchPage, Error> {
        let scope = query.scope(user);
        let after = match cursor {
            Some(cursor) => {
                let position = self.cursors.decode(&scope, cursor).await?;
                Some(
                    position
                        .get(RANK)
                        .cloned()
                        .ok_or_else(|| Error::invalid("cursor is not valid for this request"))?,
                )
            }
            None => None,
        };
        let Some(leading) = query.leading_term() else {
            return Ok(SearchPage {
                hits: Vec::new(),
                next_cursor: None,
            });
        };
        let mut terms = vec![leading];
        terms.extend(
            query
                .terms()
                .iter()
                .map(String::as_str)
                .filter(|t| *t != leading),
        );
        let (blocks, titles) = tokio::try_join!(
            self.store.search_blocks(user),
            self.store.conversation_titles(user)
        )?;
        let ranked = candidates(&terms, titles, &blocks);
        drop(blocks);
        let mut remaining = ranked
            .into_iter()
            .skip_while(|c| after.as_ref().is_some_and(|after| c.rank >= *after))
            .peekable();
        let mut hits = Vec::new();
        let mut last_rank = None;
        let mut lookups_left = limit + LOOKUPS_BEYOND_PAGE;
        while hits.len() < limit && lookups_left > 0 {
            let wanted = (limit - hits.len()).min(lookups_left);
            let chunk: Vec<Candidate> = remaining.by_ref().take(wanted).collect();
            let Some(last) = chunk.last() else {
                break;
            };
            last_rank = Some(last.rank.clone());
            lookups_left -= chunk.len();
            hits.extend(self.hits_of(user, leading, chunk).await?);
        }
        let next_cursor = match (remaining.peek(), last_rank) {
            (Some(_), Some(rank)) => Some(
                self.cursors
                    .encode(&scope, Position::from([(RANK.to_owned(), rank)]))
                    .await?,
            ),
            _ => None,
        };
        Ok(SearchPage { hits, next_cursor })
    }

    /// The hits `candidates` make, in their order: those whose conversation still exists and,
    /// for a message hit, whose message with the leading term is found.
    async fn hits_of(
        &self,
        user: &UserId,
        leading: &str,
        candidates: Vec<Candidate>,
    ) -> Result<Vec<SearchHit>, Error> {
        let ids: Vec<ConversationId> = candidates.iter().map(|c| c.conversation).collect();
        let mut existing: HashMap<ConversationId, Conversation> = self
            .store
            .conversations_named(user, &ids)
            .await?
            .into_iter()
            .map(|c| (c.id, c))
            .collect();
        let looked_up = stream::iter(candidates)
            // A conversation deleted since the index was read is not looked into.
            .filter(|candidate| {
                futures::future::ready(existing.contains_key(&candidate.conversation))
            })
            .map(|candidate| async move {
                let Some(block) = candidate.block else {
                    return Ok::<_, Error>(Some((candidate, None)));
                };
                let message = self
                    .store
                    .newest_message_of_block(user, &candidate.conversation, block, |m| {
                        offset_of(&m.content, leading).is_some()
                    })
                    .await?;
                Ok(message.map(|m| (candidate, Some(m))))
            })
            .buffered(LOOKUP_CONCURRENCY)
            .try_collect::<Vec<_>>()
            .await?;
        Ok(looked_up
            .into_iter()
            .flatten()
            .filter_map(|(candidate, message)| {
                let conversation = existing.remove(&candidate.conversation)?;
                Some(match message {
                    Some(message) => SearchHit {
                        matched_in: MatchedIn::Message,
                        message: Some(message.id),
                        snippet: snippet(
                            &message.content,
                            offset_of(&message.content, leading).unwrap_or(0),
                        ),
                        matched_at: message.timestamp,
                        conversation,
                    },
                    None => SearchHit {
                        matched_in: MatchedIn::Title,
                        message: None,
                        snippet: snippet(&conversation.title, 0),
                        matched_at: candidate.created_at,
                        conversation,
                    },
                })
            })
            .collect())
    }
}

/// Where `term` first occurs in `text` as one of its indexed terms.
fn offset_of(text: &str, term: &str) -> Option<usize> {
    terms_of(text, MAX_TERMS_PER_MESSAGE)
        .into_iter()
        .find(|(t, _)| t == term)
        .map(|(_, offset)| offset)
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

    fn at(minute: i64) -> DateTime<Utc> {
        DateTime::<Utc>::UNIX_EPOCH + chrono::Duration::minutes(minute)
    }

    fn plan() -> BlockPlan {
        let conversation = ConversationId::parse("0193e4c2-7b1a-7c00-8000-000000000001").unwrap();
        BlockPlan::new(conversation, Vec::new(), 4)
    }

    fn starts(plan: &BlockPlan) -> Vec<DateTime<Utc>> {
        plan.blocks().map(|b| b.start).collect()
    }

    #[test]
    fn a_block_takes_new_terms_until_full_and_known_terms_change_nothing() {
        let mut plan = plan();
        plan.add(at(1), &[1, 2]);
        plan.add(at(2), &[2, 3]);
        assert_eq!(starts(&plan), [at(1)]);
        assert_eq!(plan.blocks().next().unwrap().terms, [1, 2, 3]);
        assert_eq!(plan.blocks().next().unwrap().last, at(2));
        plan.written();
        assert_eq!(plan.changed().count(), 0);

        plan.add(at(3), &[3, 1]);
        assert_eq!(
            plan.changed().count(),
            0,
            "every term known: nothing to write"
        );
        plan.add(at(4), &[4, 5]);
        assert_eq!(starts(&plan), [at(1), at(4)], "full: a new block");
        assert_eq!(plan.changed().count(), 1);
        assert_eq!(plan.blocks().next().unwrap().version, 1);
    }

    #[test]
    fn an_older_message_starts_a_block_of_its_own_and_a_same_time_block_overflows() {
        let mut plan = plan();
        plan.add(at(10), &[1, 2, 3, 4]);
        plan.add(at(5), &[9]);
        assert_eq!(starts(&plan), [at(5), at(10)]);
        // A message of the very time a full block starts goes into it.
        plan.add(at(10), &[7, 8]);
        assert_eq!(starts(&plan), [at(5), at(10)]);
        assert_eq!(plan.blocks().nth(1).unwrap().terms.len(), 6);
        // Terms of no word: nothing.
        plan.add(at(11), &[]);
        assert_eq!(plan.blocks().count(), 2);
    }

    #[test]
    fn terms_hash_stably() {
        // Stored in every block: a change here needs a rebuilt index.
        assert_eq!(term_hash("zanzibar"), term_hash(&"Zanzibar".to_lowercase()));
        assert_eq!(term_hash("ferry"), 0xe908_7d0b);
        let hashes = message_term_hashes("Ferry, ferry, FERRY to the island");
        assert_eq!(hashes.len(), 2);
        assert!(hashes.windows(2).all(|w| w[0] < w[1]));
    }
}
