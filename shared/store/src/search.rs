//! The search index's items: blocks of term hashes in the user's search partition, one
//! query away from a search (the search feature, `search.rs`, says what goes in them).

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{
    conversation_key, from_item, is_conditional_check_failure, item_key, s, store_error, Item,
    Store,
};
use super::{ConversationItem, MessageItem, BATCH_WRITE_MAX};
use domain::error::Error;
use domain::keys::{self, Index};
use domain::model::{Conversation, ConversationId, Message, UserId};
use domain::search::{BlockMessages, SearchBlock, TermHash, TitleEntry};

/// The most a block item may weigh: one write unit, however full it is.
pub const SEARCH_BLOCK_BYTES: usize = 1024;
/// When the block's newest message was said, in microseconds since the epoch (blocks written
/// before held it as text, `keys::sortable_time`: 27 bytes where the number takes 9).
const LAST: &str = "last";
/// The slots of the messages kept by slot it took (`SearchBlock::slots`), as one number:
/// `first × SLOT_SPAN + last` (at most 20 digits, 11 bytes).
const SLOTS: &str = "s";
const SLOT_SPAN: u128 = keys::Slot::MAX_NUMBER as u128 + 1;
/// Present (true) when a message keyed by time went into a block that also took slots; a
/// block without slots took only such messages.
const TIMED: &str = "t";
const TERMS: &str = "terms";
const VERSION: &str = "v";
/// Bytes of one term's hash in a block.
const HASH_BYTES: usize = std::mem::size_of::<TermHash>();
/// Blocks read at a time while finding those new messages go to (usually the first is).
const COVERING_PAGE: i32 = 4;
/// Messages read at a time while looking for the one a hit shows.
const LOOKUP_PAGE: i32 = 25;

/// How many terms a block of `conversation` can hold within [`SEARCH_BLOCK_BYTES`]: what
/// DynamoDB counts of its item (attribute names and values) besides the hashes.
pub fn search_block_capacity(user: &UserId, conversation: &ConversationId) -> usize {
    // `last` as text (27 bytes), the larger of its two forms (`block_item`): as a number of
    // microseconds it takes 9, and a full block weighs 18 bytes less.
    let time = keys::sortable_time(DateTime::<Utc>::UNIX_EPOCH).len();
    let fixed = keys::PK.len()
        + keys::search_partition(user).len()
        + keys::SK.len()
        + keys::search_block_sort_key(conversation, DateTime::<Utc>::UNIX_EPOCH).len()
        + LAST.len()
        + time
        + SLOTS.len()
        + 11
        + TIMED.len()
        + 1
        + TERMS.len()
        + VERSION.len()
        // A number of up to 20 digits: 11 bytes at most.
        + 11;
    (SEARCH_BLOCK_BYTES - fixed) / HASH_BYTES
}

/// A block's item. Its `last` time as a number only with slot keys on (`SLOT_KEYS`: every
/// function of the deployment reads both forms); as text otherwise, which the releases before
/// read, so the deploy window and a rollback keep searching.
fn block_item(user: &UserId, block: &SearchBlock, version: u64, last_as_number: bool) -> Item {
    let bytes: Vec<u8> = block.terms.iter().flat_map(|t| t.to_be_bytes()).collect();
    let mut item = Item::from([
        (keys::PK.to_owned(), s(&keys::search_partition(user))),
        (
            keys::SK.to_owned(),
            s(&keys::search_block_sort_key(
                &block.conversation,
                block.start,
            )),
        ),
        (
            LAST.to_owned(),
            if last_as_number {
                AttributeValue::N(block.last.timestamp_micros().to_string())
            } else {
                s(&keys::sortable_time(block.last))
            },
        ),
        (TERMS.to_owned(), AttributeValue::B(Blob::new(bytes))),
        (VERSION.to_owned(), AttributeValue::N(version.to_string())),
    ]);
    if let Some((first, last)) = block.slots {
        let slots = u128::from(first) * SLOT_SPAN + u128::from(last);
        item.insert(SLOTS.to_owned(), AttributeValue::N(slots.to_string()));
        if block.timed {
            item.insert(TIMED.to_owned(), AttributeValue::Bool(true));
        }
    }
    item
}

fn block_of(item: &Item) -> Result<SearchBlock, Error> {
    let bad = || Error::internal("read search block", "not a search block");
    let sort_key = item
        .get(keys::SK)
        .and_then(|v| v.as_s().ok())
        .ok_or_else(bad)?;
    let (conversation, start) = keys::parse_search_block_sort_key(sort_key).ok_or_else(bad)?;
    let last = match item.get(LAST) {
        Some(AttributeValue::N(micros)) => micros
            .parse()
            .ok()
            .and_then(DateTime::<Utc>::from_timestamp_micros),
        Some(AttributeValue::S(text)) => DateTime::parse_from_rfc3339(text)
            .ok()
            .map(|t| t.with_timezone(&Utc)),
        _ => None,
    }
    .ok_or_else(bad)?;
    let bytes = item
        .get(TERMS)
        .and_then(|v| v.as_b().ok())
        .ok_or_else(bad)?;
    let terms = bytes
        .as_ref()
        .chunks_exact(HASH_BYTES)
        .map(|c| TermHash::from_be_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let version = item
        .get(VERSION)
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse().ok())
        .ok_or_else(bad)?;
    let slots = match item.get(SLOTS) {
        None => None,
        Some(value) => Some(
            value
                .as_n()
                .ok()
                .and_then(|n| n.parse::<u128>().ok())
                .and_then(|n| {
                    Some((
                        u64::try_from(n / SLOT_SPAN).ok()?,
                        u64::try_from(n % SLOT_SPAN).ok()?,
                    ))
                })
                .ok_or_else(bad)?,
        ),
    };
    let timed = slots.is_none() || matches!(item.get(TIMED), Some(AttributeValue::Bool(true)));
    Ok(SearchBlock {
        conversation,
        start,
        last,
        slots,
        timed,
        terms,
        version,
    })
}

/// What a read of blocks takes: whole items (eventually consistent), or the keys of what is
/// there now.
#[derive(Clone, Copy)]
enum Read {
    Whole,
    KeysConsistently,
}

/// A conversation as `ByCreated` holds it: keys, creation time and titles.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TitleItem {
    #[serde(rename = "PK")]
    pk: String,
    #[serde(with = "keys::sortable")]
    created_at: DateTime<Utc>,
    #[serde(default)]
    title_lower: Option<String>,
    #[serde(default)]
    auto_title_lower: Option<String>,
}

impl Store {
    /// The message a stream record's new image holds, its content read back from S3 when it
    /// was too large for the item; `None` for a seal (`crate::tree`), which holds none.
    pub async fn message_of_image(&self, image: Item) -> Result<Option<Message>, Error> {
        if super::tree::is_seal(&image) {
            return Ok(None);
        }
        let item = MessageItem::from_attributes(image)?;
        Ok(Some(self.load_content(item).await?.into_message()))
    }

    /// The message a stream record names by its keys, read from the table (a record sent
    /// without its image); `None` when it is gone.
    pub async fn message_at(
        &self,
        partition: &str,
        sort_key: &str,
    ) -> Result<Option<Message>, Error> {
        match self.get(partition, sort_key).await? {
            Some(item) => self.message_of_image(item).await,
            None => Ok(None),
        }
    }

    /// A conversation as a stream record's image holds it.
    pub fn conversation_of_image(image: Item) -> Result<ConversationItem, Error> {
        from_item(image)
    }

    /// Every search block of the user (eventually consistent: the index follows the table by
    /// a stream's lag anyway).
    pub async fn search_blocks(&self, user: &UserId) -> Result<Vec<SearchBlock>, Error> {
        let partition = keys::search_partition(user);
        let items = self
            .items_under(&partition, keys::SEARCH_BLOCK_PREFIX, Read::Whole)
            .await?;
        items.iter().map(block_of).collect()
    }

    /// Every item of `partition` whose sort key starts with `prefix`, across 1 MB pages.
    async fn items_under(
        &self,
        partition: &str,
        prefix: &str,
        read: Read,
    ) -> Result<Vec<Item>, Error> {
        let (items, _) = self
            .read_up_to(usize::MAX, None, "read search blocks", |start, limit| {
                let query = self
                    .client
                    .query()
                    .table_name(&self.table)
                    .key_condition_expression("PK = :pk AND begins_with(SK, :prefix)")
                    .expression_attribute_values(":pk", s(partition))
                    .expression_attribute_values(":prefix", s(prefix))
                    .limit(limit)
                    .set_exclusive_start_key(start);
                match read {
                    Read::Whole => query,
                    Read::KeysConsistently => {
                        query.projection_expression("PK, SK").consistent_read(true)
                    }
                }
            })
            .await?;
        Ok(items)
    }

    /// The blocks of `conversation` that could take messages written from `from` through
    /// `through`: the one that started last at or before `from`, and every later one that
    /// started by `through` (read consistently: the indexer's own last writes).
    pub async fn search_blocks_covering(
        &self,
        user: &UserId,
        conversation: &ConversationId,
        from: DateTime<Utc>,
        through: DateTime<Utc>,
    ) -> Result<Vec<SearchBlock>, Error> {
        let mut blocks = Vec::new();
        let mut start = None;
        loop {
            let output = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("PK = :pk AND SK BETWEEN :first AND :through")
                .expression_attribute_values(":pk", s(&keys::search_partition(user)))
                .expression_attribute_values(":first", s(&keys::search_block_prefix(conversation)))
                .expression_attribute_values(
                    ":through",
                    s(&keys::search_block_sort_key(conversation, through)),
                )
                .scan_index_forward(false)
                .limit(COVERING_PAGE)
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| store_error("read search blocks", e))?;
            for item in output.items.unwrap_or_default() {
                let block = block_of(&item)?;
                let reached = block.start <= from;
                blocks.push(block);
                if reached {
                    return Ok(blocks);
                }
            }
            match output.last_evaluated_key {
                Some(next) => start = Some(next),
                None => return Ok(blocks),
            }
        }
    }

    /// Writes `block` if it is still at the version it was read at (a new block: if there is
    /// none at its key). False when another write came first: read it again.
    pub async fn write_search_block(
        &self,
        user: &UserId,
        block: &SearchBlock,
    ) -> Result<bool, Error> {
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(block_item(
                user,
                block,
                block.version + 1,
                self.slot_keys,
            )));
        let put = if block.version == 0 {
            put.condition_expression("attribute_not_exists(PK)")
        } else {
            put.condition_expression("#v = :v")
                .expression_attribute_names("#v", VERSION)
                .expression_attribute_values(":v", AttributeValue::N(block.version.to_string()))
        };
        match put.send().await {
            Ok(_) => Ok(true),
            Err(error) if is_conditional_check_failure(&error) => Ok(false),
            Err(error) => Err(store_error("write search block", error)),
        }
    }

    /// Deletes every search block of `conversation` (it is gone); again, it finds none.
    pub async fn delete_search_blocks(
        &self,
        user: &UserId,
        conversation: &ConversationId,
    ) -> Result<(), Error> {
        let found = self
            .items_under(
                &keys::search_partition(user),
                &keys::search_block_prefix(conversation),
                Read::KeysConsistently,
            )
            .await?;
        for batch in found.chunks(BATCH_WRITE_MAX) {
            self.delete_batch(batch.to_vec()).await?;
        }
        Ok(())
    }

    /// Every conversation of the user with its creation time and shown title, from
    /// `ByCreated` (keys and titles only).
    pub async fn conversation_titles(&self, user: &UserId) -> Result<Vec<TitleEntry>, Error> {
        let owner = keys::owner(user);
        let (items, _) = self
            .read_up_to(usize::MAX, None, "read titles", |start, limit| {
                self.client
                    .query()
                    .table_name(&self.table)
                    .index_name(Index::ByCreated.name())
                    .key_condition_expression("#owner = :owner")
                    .expression_attribute_names("#owner", keys::OWNER)
                    .expression_attribute_values(":owner", s(&owner))
                    .limit(limit)
                    .set_exclusive_start_key(start)
            })
            .await?;
        items
            .into_iter()
            .filter_map(|item| {
                let item: TitleItem = match from_item(item) {
                    Ok(item) => item,
                    Err(error) => return Some(Err(error)),
                };
                let (_, conversation) = keys::parse_conversation_partition(&item.pk)?;
                Some(Ok(TitleEntry {
                    conversation,
                    created_at: item.created_at,
                    title: item.title_lower.or(item.auto_title_lower),
                }))
            })
            .collect()
    }

    /// The conversations of `ids` that exist, read consistently (in no particular order).
    pub async fn conversations_named(
        &self,
        user: &UserId,
        ids: &[ConversationId],
    ) -> Result<Vec<Conversation>, Error> {
        let keys = ids.iter().map(|id| conversation_key(user, id)).collect();
        self.batch_get(keys, None)
            .await?
            .into_iter()
            .map(|item| from_item::<ConversationItem>(item).map(Conversation::from))
            .collect()
    }

    /// The newest message of a search block of `conversation` (`block`: where its messages
    /// are) that `matches`, with its content: those kept by slot first (they are newer), then
    /// those keyed by time.
    pub async fn newest_message_of_block(
        &self,
        user: &UserId,
        conversation: &ConversationId,
        block: BlockMessages,
        matches: impl Fn(&Message) -> bool,
    ) -> Result<Option<Message>, Error> {
        let partition = keys::conversation_partition(user, conversation);
        let mut ranges = Vec::with_capacity(2);
        if let Some((first, until)) = block.slots {
            ranges.push(keys::slot_range(0, first, until));
        }
        if let Some((from, until)) = block.timed {
            ranges.push(keys::message_time_range(from, until));
        }
        for (low, high) in ranges {
            if let Some(found) = self
                .newest_message_in(&partition, &low, &high, None, &matches)
                .await?
            {
                return Ok(Some(found));
            }
        }
        // Messages of the branches an edit or a regenerated reply made went in by their time:
        // those branches' slots, by the time each holds.
        if let Some((from, until)) = block.timed {
            let (low, _) = keys::branch_range(1);
            let (_, high) = keys::branch_range(domain::tree::MAX_BRANCHES);
            let times = (
                from.timestamp_micros(),
                until.map_or(i64::MAX, |until| until.timestamp_micros() - 1),
            );
            return self
                .newest_message_in(&partition, &low, &high, Some(times), &matches)
                .await;
        }
        Ok(None)
    }

    /// The newest message of a partition's sort-key range `low..=high` that `matches` (and,
    /// with `times`, whose time `at`, in microseconds, is within them: slots of branches).
    async fn newest_message_in(
        &self,
        partition: &str,
        low: &str,
        high: &str,
        times: Option<(i64, i64)>,
        matches: &impl Fn(&Message) -> bool,
    ) -> Result<Option<Message>, Error> {
        let mut start = None;
        loop {
            let mut query = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("PK = :pk AND SK BETWEEN :low AND :high")
                .expression_attribute_values(":pk", s(partition))
                .expression_attribute_values(":low", s(low))
                .expression_attribute_values(":high", s(high))
                .scan_index_forward(false)
                .limit(LOOKUP_PAGE)
                .set_exclusive_start_key(start);
            if let Some((from, until)) = times {
                query = query
                    .filter_expression("#at BETWEEN :from AND :until")
                    .expression_attribute_names("#at", "at")
                    .expression_attribute_values(":from", AttributeValue::N(from.to_string()))
                    .expression_attribute_values(":until", AttributeValue::N(until.to_string()));
            }
            let output = query
                .send()
                .await
                .map_err(|e| store_error("read messages", e))?;
            for item in output.items.unwrap_or_default() {
                if super::tree::is_seal(&item) {
                    continue;
                }
                let item = self
                    .load_content(MessageItem::from_attributes(item)?)
                    .await?;
                let message = item.into_message();
                if matches(&message) {
                    return Ok(Some(message));
                }
            }
            match output.last_evaluated_key {
                Some(next) => start = Some(next),
                None => return Ok(None),
            }
        }
    }
}

/// Where one segment of the search backfill's scan stands.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackfillCheckpoint {
    /// The key the scan continues after (`PK`, `SK`); none before the first page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<(String, String)>,
    /// The scan reached the segment's end.
    pub done: bool,
    pub messages: u64,
    pub legacy_entries_removed: u64,
    pub blocks_written: u64,
}

/// One page of the backfill's scan: the messages on it, and the keys of legacy entries.
pub struct BackfillPage {
    pub messages: Vec<(UserId, ConversationId, MessageItem)>,
    pub legacy_entries: Vec<(String, String)>,
    /// Where the next page starts; `None` at the segment's end.
    pub next: Option<(String, String)>,
}

fn key_strings(key: &Item) -> Option<(String, String)> {
    Some((
        key.get(keys::PK)?.as_s().ok()?.clone(),
        key.get(keys::SK)?.as_s().ok()?.clone(),
    ))
}

impl Store {
    /// Where segment `segment` of `segments` of the backfill stands (`None`: not begun).
    pub async fn backfill_checkpoint(
        &self,
        segment: u32,
        segments: u32,
    ) -> Result<Option<BackfillCheckpoint>, Error> {
        self.get(
            keys::SEARCH_BACKFILL_PK,
            &keys::search_backfill_sort_key(segment, segments),
        )
        .await?
        .map(from_item)
        .transpose()
    }

    /// The segment counts of the backfill runs whose checkpoints the table holds.
    pub async fn backfill_segment_counts(&self) -> Result<std::collections::BTreeSet<u32>, Error> {
        let (found, _) = self
            .read_up_to(
                usize::MAX,
                None,
                "read the backfill's checkpoints",
                |start, limit| {
                    self.client
                        .query()
                        .table_name(&self.table)
                        .key_condition_expression("PK = :pk")
                        .expression_attribute_values(":pk", s(keys::SEARCH_BACKFILL_PK))
                        .projection_expression("SK")
                        .limit(limit)
                        .set_exclusive_start_key(start)
                },
            )
            .await?;
        Ok(found
            .iter()
            .filter_map(|item| match item.get(keys::SK) {
                Some(AttributeValue::S(sk)) => keys::search_backfill_segments(sk),
                _ => None,
            })
            .collect())
    }

    pub async fn save_backfill_checkpoint(
        &self,
        segment: u32,
        segments: u32,
        checkpoint: &BackfillCheckpoint,
    ) -> Result<(), Error> {
        let mut item = super::to_item(checkpoint)?;
        item.insert(keys::PK.to_owned(), s(keys::SEARCH_BACKFILL_PK));
        item.insert(
            keys::SK.to_owned(),
            s(&keys::search_backfill_sort_key(segment, segments)),
        );
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| store_error("save the backfill's checkpoint", e))?;
        Ok(())
    }

    /// Up to `limit` items of segment `segment` of `segments` of the table, after `after`:
    /// the messages and the legacy search entries among them.
    pub async fn backfill_page(
        &self,
        segment: u32,
        segments: u32,
        after: Option<(String, String)>,
        limit: i32,
    ) -> Result<BackfillPage, Error> {
        let output = self
            .client
            .scan()
            .table_name(&self.table)
            .segment(segment as i32)
            .total_segments(segments as i32)
            .limit(limit)
            .set_exclusive_start_key(after.map(|(pk, sk)| item_key(&pk, &sk)))
            .send()
            .await
            .map_err(|e| store_error("scan the table", e))?;
        let mut page = BackfillPage {
            messages: Vec::new(),
            legacy_entries: Vec::new(),
            next: output.last_evaluated_key.as_ref().and_then(key_strings),
        };
        for item in output.items.unwrap_or_default() {
            let Some((pk, sk)) = key_strings(&item) else {
                continue;
            };
            let Some((user, conversation)) = keys::parse_conversation_partition(&pk) else {
                continue;
            };
            if keys::is_legacy_term_sort_key(&sk) {
                page.legacy_entries.push((pk, sk));
            } else if keys::is_message_sort_key(&sk) && !super::tree::is_seal(&item) {
                match MessageItem::from_attributes(item) {
                    Ok(message) => page.messages.push((user, conversation, message)),
                    // One unreadable item must not stop every run at this page.
                    Err(error) => {
                        tracing::error!(%pk, %sk, error = %error, "not a message: left out of the index");
                    }
                }
            }
        }
        Ok(page)
    }

    /// Deletes the items of `keys` (in batches of 25).
    pub async fn delete_keys(&self, keys: &[(String, String)]) -> Result<(), Error> {
        for batch in keys.chunks(BATCH_WRITE_MAX) {
            self.delete_batch(batch.iter().map(|(pk, sk)| item_key(pk, sk)).collect())
                .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::SubsecRound;

    #[test]
    fn a_full_block_is_one_write_unit_for_the_longest_user_id() {
        let user = UserId::parse(&"u".repeat(128)).unwrap();
        let conversation = ConversationId::parse("0193e4c2-7b1a-7c00-8000-000000000001").unwrap();
        let capacity = search_block_capacity(&user, &conversation);
        assert!(capacity >= 150, "{capacity}");
        let block = SearchBlock {
            conversation,
            start: Utc::now(),
            last: Utc::now().trunc_subsecs(6),
            slots: Some((keys::Slot::MAX_NUMBER - 1, keys::Slot::MAX_NUMBER)),
            timed: true,
            terms: (0..capacity as u32).collect(),
            version: u64::MAX - 1,
        };
        for last_as_number in [false, true] {
            let item = block_item(&user, &block, u64::MAX, last_as_number);
            let bytes: usize = item
                .iter()
                .map(|(name, value)| {
                    name.len()
                        + match value {
                            AttributeValue::S(s) => s.len(),
                            AttributeValue::B(b) => b.as_ref().len(),
                            AttributeValue::N(n) => n.len().div_ceil(2) + 1,
                            AttributeValue::Bool(_) => 1,
                            _ => unreachable!(),
                        }
                })
                .sum();
            assert!(bytes <= SEARCH_BLOCK_BYTES, "{bytes}");
            let read = block_of(&item).unwrap();
            assert_eq!(
                (read.terms, read.slots, read.timed, read.last),
                (block.terms.clone(), block.slots, true, block.last)
            );
        }
    }

    #[test]
    fn a_block_written_with_its_last_time_as_text_reads_as_one_written_now() {
        let user = UserId::parse("alice").unwrap();
        let block = SearchBlock {
            conversation: ConversationId::parse("0193e4c2-7b1a-7c00-8000-000000000001").unwrap(),
            start: Utc::now() - chrono::Duration::minutes(5),
            last: Utc::now().trunc_subsecs(6),
            slots: None,
            timed: true,
            terms: vec![1, 2, 3],
            version: 7,
        };
        let item = block_item(&user, &block, 7, true);
        assert!(matches!(item[LAST], AttributeValue::N(_)));
        let written_now = block_of(&item).unwrap();
        // Written before, or with slot keys off (what the releases before read).
        let item = block_item(&user, &block, 7, false);
        assert!(matches!(item[LAST], AttributeValue::S(_)));
        let written_before = block_of(&item).unwrap();
        assert_eq!(written_now.last, block.last);
        assert_eq!(written_before.last, block.last);
        assert_eq!(written_before.terms, written_now.terms);
    }
}
