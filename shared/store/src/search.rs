//! The search index's items: entries in the conversations' own partitions, listed by user
//! and term in `ByTerm` (the search feature, `search.rs`).

use std::collections::{BTreeSet, HashMap};

use aws_sdk_dynamodb::types::{DeleteRequest, PutRequest, WriteRequest};
use chrono::{DateTime, Utc};
use futures::{stream, StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use super::{
    from_item, item_key, position_in, s, start_key, store_error, to_item, ConversationItem, Item,
    MessageItem, Store, BATCH_WRITE_MAX,
};
use domain::cursor::Position;
use domain::error::Error;
use domain::keys::{self, Index, TermSource};
use domain::model::{ConversationId, Message, MessageId, UserId};
use domain::search::{CandidateChecks, IndexedEntry, TermEntry};

/// Batch writes of one indexing call in flight at once.
const INDEX_WRITE_CONCURRENCY: usize = 4;

/// A search entry as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TermItem {
    #[serde(rename = "PK")]
    pk: String,
    #[serde(rename = "SK")]
    sk: String,
    /// Not projected into `ByTerm`.
    #[serde(default)]
    entity: String,
    search_key: String,
    search_rank: String,
    conversation_id: ConversationId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    message_id: Option<MessageId>,
    snippet: String,
    #[serde(with = "keys::sortable")]
    matched_at: DateTime<Utc>,
}

impl TermItem {
    fn new(entry: &TermEntry) -> Self {
        Self {
            pk: keys::conversation_partition(&entry.user, &entry.conversation),
            sk: keys::term_sort_key(entry.source, &entry.term),
            entity: "SearchTerm".to_owned(),
            search_key: keys::search_key(&entry.user, &entry.term),
            search_rank: keys::search_rank(entry.source, entry.time, &entry.conversation),
            conversation_id: entry.conversation,
            message_id: entry.message,
            snippet: entry.snippet.clone(),
            matched_at: entry.time,
        }
    }
}

/// One change to the search index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexChange {
    /// Writes the entry (it replaces the conversation's entry for the same term and source).
    Put(TermEntry),
    /// Removes a conversation's entry for a term (a word gone from its title).
    Remove {
        user: UserId,
        conversation: ConversationId,
        source: TermSource,
        term: String,
    },
}

impl IndexChange {
    fn key(&self) -> (String, String) {
        match self {
            Self::Put(entry) => (
                keys::conversation_partition(&entry.user, &entry.conversation),
                keys::term_sort_key(entry.source, &entry.term),
            ),
            Self::Remove {
                user,
                conversation,
                source,
                term,
            } => (
                keys::conversation_partition(user, conversation),
                keys::term_sort_key(*source, term),
            ),
        }
    }

    /// The owner and conversation the change is about.
    pub fn conversation(&self) -> (&UserId, &ConversationId) {
        match self {
            Self::Put(entry) => (&entry.user, &entry.conversation),
            Self::Remove {
                user, conversation, ..
            } => (user, conversation),
        }
    }

    /// The change that undoes a put.
    pub fn undo(&self) -> Option<Self> {
        match self {
            Self::Put(entry) => Some(Self::Remove {
                user: entry.user.clone(),
                conversation: entry.conversation,
                source: entry.source,
                term: entry.term.clone(),
            }),
            Self::Remove { .. } => None,
        }
    }
}

/// The size DynamoDB counts for a search entry's item (attribute names and values, in
/// bytes): what one entry costs to write, in the table and again in `ByTerm`.
pub fn entry_item_bytes(entry: &TermEntry) -> Result<usize, Error> {
    let item = to_item(&TermItem::new(entry))?;
    Ok(item
        .iter()
        .map(|(name, value)| name.len() + value.as_s().map_or(8, String::len))
        .sum())
}

impl Store {
    /// The message a stream record's new image holds, its content read back from S3 when it
    /// was too large for the item.
    pub async fn message_of_image(&self, image: Item) -> Result<Message, Error> {
        let item: MessageItem = from_item(image)?;
        Ok(self.load_content(item).await?.into_message())
    }

    /// The message a stream record names by its keys, read from the table (a record sent
    /// without its image); `None` when it is gone.
    pub async fn message_at(
        &self,
        partition: &str,
        sort_key: &str,
    ) -> Result<Option<Message>, Error> {
        match self.get(partition, sort_key).await? {
            Some(item) => self.message_of_image(item).await.map(Some),
            None => Ok(None),
        }
    }

    /// A conversation as a stream record's image holds it.
    pub fn conversation_of_image(image: Item) -> Result<ConversationItem, Error> {
        from_item(image)
    }

    /// Applies `changes` in 25-item batch writes. Of two changes to one entry (a batch write
    /// refuses a key twice) the later counts, except that a put never gives way to a put
    /// of an older message. Returns how many entries were written.
    pub async fn apply_index_changes(&self, changes: &[IndexChange]) -> Result<usize, Error> {
        let mut last_of_key: HashMap<(String, String), usize> = HashMap::new();
        for (i, change) in changes.iter().enumerate() {
            let key = change.key();
            let older = match (last_of_key.get(&key).map(|&k| &changes[k]), change) {
                (Some(IndexChange::Put(kept)), IndexChange::Put(new)) => new.time < kept.time,
                _ => false,
            };
            if !older {
                last_of_key.insert(key, i);
            }
        }
        let mut kept: Vec<usize> = last_of_key.into_values().collect();
        kept.sort_unstable();
        let requests = kept
            .into_iter()
            .map(|i| index_write(&changes[i]))
            .collect::<Result<Vec<_>, _>>()?;
        let written = requests.len();
        let batches: Vec<Vec<WriteRequest>> = requests
            .chunks(BATCH_WRITE_MAX)
            .map(<[WriteRequest]>::to_vec)
            .collect();
        stream::iter(batches)
            .map(|batch| self.write_batch(batch))
            .buffer_unordered(INDEX_WRITE_CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(written)
    }

    /// Up to `limit` of the user's entries for `term` from `start`, title hits first, then the
    /// newest; and where the index continues, if it does.
    pub async fn term_entries(
        &self,
        user: &UserId,
        term: &str,
        start: Option<Position>,
        limit: usize,
    ) -> Result<(Vec<IndexedEntry>, Option<Position>), Error> {
        let output = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(Index::ByTerm.name())
            .key_condition_expression("#key = :key")
            .expression_attribute_names("#key", keys::SEARCH_KEY)
            .expression_attribute_values(":key", s(&keys::search_key(user, term)))
            .scan_index_forward(false)
            .limit(super::page_limit(limit))
            .set_exclusive_start_key(start.map(start_key))
            .send()
            .await
            .map_err(|e| store_error("read search index", e))?;
        let entries = output
            .items
            .unwrap_or_default()
            .into_iter()
            .map(|item| {
                let position = position_in(Index::ByTerm, &item);
                let stored: TermItem = from_item(item)?;
                let (source, _) = keys::parse_term_sort_key(&stored.sk)
                    .ok_or_else(|| Error::internal("read search index", "not a term entry"))?;
                Ok(IndexedEntry {
                    conversation: stored.conversation_id,
                    source,
                    message: stored.message_id,
                    snippet: stored.snippet,
                    time: stored.matched_at,
                    position,
                })
            })
            .collect::<Result<Vec<_>, Error>>()?;
        let next = output
            .last_evaluated_key
            .map(|key| position_in(Index::ByTerm, &key));
        Ok((entries, next))
    }

    /// For the candidates of a search: which of their conversations still exist, and which of
    /// the entries a hit needs they have (the leading term's title entry, every other term's
    /// entries), read consistently in one batch.
    pub async fn check_candidates(
        &self,
        user: &UserId,
        candidates: &[IndexedEntry],
        leading: &str,
        others: &[&str],
    ) -> Result<CandidateChecks, Error> {
        let conversations: BTreeSet<ConversationId> =
            candidates.iter().map(|c| c.conversation).collect();
        let partitions: Vec<String> = conversations
            .iter()
            .map(|id| keys::conversation_partition(user, id))
            .collect();
        let meta_keys = partitions
            .iter()
            .map(|pk| item_key(pk, keys::CONVERSATION_SK))
            .collect();
        let mut term_keys = Vec::new();
        for pk in &partitions {
            term_keys.push(item_key(
                pk,
                &keys::term_sort_key(TermSource::Title, leading),
            ));
            for term in others {
                for source in [TermSource::Title, TermSource::Messages] {
                    term_keys.push(item_key(pk, &keys::term_sort_key(source, term)));
                }
            }
        }
        let (metas, found) = tokio::try_join!(
            self.batch_get(meta_keys, None),
            self.batch_get(term_keys, Some("PK, SK")),
        )?;
        let mut checks = CandidateChecks::default();
        for item in metas {
            let conversation: ConversationItem = from_item(item)?;
            checks.conversations.push(conversation.into());
        }
        for key in found {
            let (Some(pk), Some(sk)) = (text(&key, keys::PK), text(&key, keys::SK)) else {
                continue;
            };
            let (Some((_, conversation)), Some((source, term))) = (
                keys::parse_conversation_partition(pk),
                keys::parse_term_sort_key(sk),
            ) else {
                continue;
            };
            checks
                .entries
                .insert((conversation, source, term.to_owned()));
        }
        Ok(checks)
    }
}

fn text<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
}

fn index_write(change: &IndexChange) -> Result<WriteRequest, Error> {
    let request = match change {
        IndexChange::Put(entry) => WriteRequest::builder()
            .put_request(
                PutRequest::builder()
                    .set_item(Some(to_item(&TermItem::new(entry))?))
                    .build()
                    .map_err(|e| Error::internal("build index put", e))?,
            )
            .build(),
        IndexChange::Remove { .. } => {
            let (pk, sk) = change.key();
            WriteRequest::builder()
                .delete_request(
                    DeleteRequest::builder()
                        .set_key(Some(item_key(&pk, &sk)))
                        .build()
                        .map_err(|e| Error::internal("build index delete", e))?,
                )
                .build()
        }
    };
    Ok(request)
}
