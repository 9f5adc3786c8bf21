//! A conversation's own item: its shape, creating it, changing it, listing a user's
//! conversations, deleting one and purging what its partition still holds.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{
    AttributeValue, ConditionCheck, Delete, DeleteRequest, Put, ReturnValue, TransactWriteItem,
    WriteRequest,
};
use chrono::{DateTime, Utc};
use futures::{stream, StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use domain::cursor::Position;
use domain::error::Error;
use domain::export::ExportedConversation;
use domain::keys::{self, Index};
use domain::model::{Conversation, ConversationId, Title, UserId, UNTITLED};

use super::{
    conversation_key, from_item, is_conditional_check_failure, item_key, page_limit, position_in,
    position_of, put_new, s, start_key, store_error, summary_preview, to_item, Item, ItemShape,
    Store, SummaryUpdate, Tombstone, BATCH_WRITE_MAX,
};

/// How many batch deletes of one purge run at once.
const PURGE_CONCURRENCY: usize = 4;

/// Query pages a filtered listing reads before it hands back a cursor with what it found.
const MAX_FILTERED_PAGES: usize = 8;

/// Items a filtered listing evaluates per query page.
const FILTERED_PAGE_ITEMS: usize = 200;

/// What a conversation's item held twice before issue 18 (its owner and id, which its
/// partition key holds, and its kind, which its sort key says). With lean items, every update
/// of the item removes them, so an item written before takes the smaller shape at its next
/// write.
const REMOVE_STORED_TWICE: &str = "REMOVE userId, conversationId, entity";
/// The attributes `REMOVE_STORED_TWICE` removes, for an update that removes others too.
const STORED_TWICE: [&str; 3] = ["userId", "conversationId", "entity"];

impl Store {
    /// What an update of a conversation's item appends to its expression: with lean items,
    /// the removal of what the item held twice; nothing with full ones.
    /// The attributes [`Store::shed_stored_twice`] removes, as names.
    pub(super) fn stored_twice(&self) -> &'static [&'static str] {
        match self.shape {
            ItemShape::Lean => &STORED_TWICE,
            ItemShape::Full => &[],
        }
    }

    pub(super) fn shed_stored_twice(&self) -> &'static str {
        match self.shape {
            ItemShape::Lean => REMOVE_STORED_TWICE,
            ItemShape::Full => "",
        }
    }

    /// A conversation's item as this store writes it (`ItemShape`, `compress_text`).
    pub(super) fn conversation_to_item(
        &self,
        conversation: &ConversationItem,
    ) -> Result<Item, Error> {
        let mut item = to_item(conversation)?;
        if let (true, Some(summary)) = (self.compress_text, &conversation.summary) {
            item.insert(
                "summary".to_owned(),
                super::deflated::text_attribute(summary, true),
            );
        }
        if self.shape == ItemShape::Full {
            item.insert("userId".to_owned(), s(conversation.user_id().as_str()));
            item.insert(
                "conversationId".to_owned(),
                s(&conversation.conversation_id().to_string()),
            );
            item.insert("entity".to_owned(), s("Conversation"));
        }
        Ok(item)
    }
}

/// A conversation as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConversationItem {
    /// The owner and the conversation: kept here only (issue 18: items written before it
    /// also hold `userId`, `conversationId` and `entity`, which reads ignore and the next
    /// update of the item removes).
    #[serde(rename = "PK")]
    pub(super) pk: keys::ConversationPartition,
    #[serde(rename = "SK")]
    pub(super) sk: String,
    pub(super) owner: String,
    pub(super) owner_state: String,
    /// Set by the user (create or rename); wins over `auto_title`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) title_lower: Option<String>,
    /// Derived once, from the first user message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) auto_title_lower: Option<String>,
    #[serde(with = "keys::sortable")]
    pub last_activity: DateTime<Utc>,
    #[serde(with = "keys::sortable")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "keys::sortable")]
    pub updated_at: DateTime<Utc>,
    pub is_archived: bool,
    #[serde(default)]
    pub tags: Vec<String>,
    /// Written deflated when the store compresses text (`deflated`).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "super::deflated::optional_text"
    )]
    pub summary: Option<String>,
    pub message_count: u64,
    /// How many messages the summary has taken in (`crate::summaries`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub summarized_through: u64,
    /// The sort key of the newest message the summary has taken in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summarized_until: Option<String>,
    /// Its place in the owner's change log (`ByChange`): set by the store on every write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) changed_at: Option<String>,
    /// When the title, the archive state and the tags were last set, by the time of the
    /// change they came with (the client's, for an offline change): the later one wins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) title_set_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) archive_set_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) tags_set_at: Option<String>,
    /// How many branches it has forked (`domain::tree`; 0: it never branched).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub(super) branches: u64,
    /// Its active path, from its own item (`META#PATH`) when it has branched.
    #[serde(skip)]
    pub(super) path: Option<domain::tree::Path>,
    /// The preset it was started with or last applied (its settings are an item of their
    /// own: `crate::presets`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) preset: Option<domain::preset::PresetRef>,
}

impl ConversationItem {
    pub fn new(
        user: &UserId,
        id: ConversationId,
        title: Option<&Title>,
        tags: Vec<String>,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            pk: keys::ConversationPartition::new(user, id),
            sk: keys::CONVERSATION_SK.to_owned(),
            owner: keys::owner(user),
            owner_state: keys::owner_state(user, false),
            title: title.map(|t| t.as_str().to_owned()),
            title_lower: title.map(|t| t.as_str().to_lowercase()),
            auto_title: None,
            auto_title_lower: None,
            last_activity: now,
            created_at: now,
            updated_at: now,
            is_archived: false,
            tags,
            summary: None,
            message_count: 0,
            summarized_through: 0,
            summarized_until: None,
            changed_at: None,
            title_set_at: None,
            archive_set_at: None,
            tags_set_at: None,
            branches: 0,
            path: None,
            preset: None,
        }
    }

    /// With the active path read beside it.
    pub(super) fn with_path(self, path: Option<domain::tree::Path>) -> Self {
        Self { path, ..self }
    }

    /// Whether it has ever branched: then its messages are read along its path.
    pub(super) fn is_branched(&self) -> bool {
        self.branches > 0 || self.path.is_some()
    }

    /// Its summary if every message it took in comes before the message under `key` on the
    /// active path: what a reply regenerated from what came before it may hear.
    pub fn summary_before(&self, key: &keys::MessageSortKey) -> Option<&str> {
        let path = self.path.clone().unwrap_or_else(domain::tree::Path::trunk);
        let until = keys::MessageSortKey::parse(self.summarized_until.as_deref()?)?;
        let (at_until, at_key) = (path.segment_of(&until)?, path.segment_of(key)?);
        let before = at_until < at_key || (at_until == at_key && until < *key);
        before.then_some(self.summary.as_deref()).flatten()
    }

    /// As it reads on its active path: its summary only if the summary's last message is on
    /// that path (a summary of a branch it has left speaks of messages it no longer shows).
    /// How far the summary reached stays, for the summarizer's condition.
    pub fn on_active_path(mut self) -> Self {
        if !self.is_branched() {
            return self;
        }
        let path = self.path.clone().unwrap_or_else(domain::tree::Path::trunk);
        let on_path = self
            .summarized_until
            .as_deref()
            .and_then(keys::MessageSortKey::parse)
            .is_some_and(|until| path.segment_of(&until).is_some());
        if !on_path {
            self.summary = None;
            self.summarized_until = None;
        }
        self
    }

    /// The preset it was started with or last applied, if any.
    pub fn preset(&self) -> Option<&domain::preset::PresetRef> {
        self.preset.as_ref()
    }

    pub fn user_id(&self) -> &UserId {
        self.pk.user()
    }

    pub fn conversation_id(&self) -> ConversationId {
        self.pk.conversation()
    }

    /// The title the user sees: theirs, else the one derived from the first message.
    pub fn shown_title(&self) -> Option<&str> {
        self.title.as_deref().or(self.auto_title.as_deref())
    }

    /// Where this conversation stands in its owner's change log, if it was written since the
    /// log began.
    pub fn changed_at(&self) -> Option<&str> {
        self.changed_at.as_deref()
    }
}

/// A conversation as the API shows it: the user's title, else the derived one, else untitled.
impl From<ConversationItem> for Conversation {
    fn from(item: ConversationItem) -> Self {
        let (id, user_id) = (item.conversation_id(), item.user_id().clone());
        let title = item
            .title
            .or(item.auto_title)
            .unwrap_or_else(|| UNTITLED.to_owned());
        Self {
            id,
            user_id,
            title,
            last_activity: item.last_activity,
            is_archived: item.is_archived,
            tags: item.tags,
            summary: item.summary,
            message_count: item.message_count,
            created_at: item.created_at,
            updated_at: item.updated_at,
            preset: item.preset,
        }
    }
}

/// A conversation as its export holds it.
impl From<&ConversationItem> for ExportedConversation {
    fn from(item: &ConversationItem) -> Self {
        let shown = Conversation::from(item.clone());
        Self {
            id: shown.id,
            title: shown.title,
            user_title: item.title.clone(),
            auto_title: item.auto_title.clone(),
            created_at: item.created_at,
            last_activity: item.last_activity,
            updated_at: item.updated_at,
            is_archived: item.is_archived,
            tags: item.tags.clone(),
            summary: item.summary.clone(),
            message_count: item.message_count,
        }
    }
}

impl ConversationItem {
    /// A conversation put back as its export holds it: its id, titles, tags, archive state,
    /// summary and times as they were, and no messages yet (they count as they are stored).
    pub fn imported(user: &UserId, exported: &ExportedConversation) -> Self {
        let mut item = Self::new(
            user,
            exported.id,
            None,
            exported.tags.clone(),
            exported.created_at,
        );
        item.title = exported.user_title.clone();
        item.title_lower = exported.user_title.as_deref().map(str::to_lowercase);
        item.auto_title = exported.auto_title.clone();
        item.auto_title_lower = exported.auto_title.as_deref().map(str::to_lowercase);
        item.is_archived = exported.is_archived;
        item.owner_state = keys::owner_state(user, exported.is_archived);
        item.summary = exported.summary.clone();
        item.last_activity = exported.last_activity;
        item.updated_at = exported.updated_at;
        item
    }

    /// A conversation made by the migration: created at its first message, last active at
    /// its last, titled from its first user message.
    pub fn migrated(
        user: &UserId,
        id: ConversationId,
        auto_title: Option<&Title>,
        first: DateTime<Utc>,
        last: DateTime<Utc>,
    ) -> Self {
        let mut item = Self::new(user, id, None, Vec::new(), first);
        item.auto_title = auto_title.map(|t| t.as_str().to_owned());
        item.auto_title_lower = auto_title.map(|t| t.as_str().to_lowercase());
        item.last_activity = last;
        item.updated_at = last;
        item
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A change to a conversation's own attributes.
pub enum ConversationChange<'a> {
    Rename(&'a Title),
    Archive(bool),
    Tags(&'a [String]),
}

impl ConversationChange<'_> {
    /// The attribute that records when this attribute was last set.
    fn set_at_attribute(&self) -> &'static str {
        match self {
            Self::Rename(_) => "titleSetAt",
            Self::Archive(_) => "archiveSetAt",
            Self::Tags(_) => "tagsSetAt",
        }
    }

    fn what(&self) -> &'static str {
        match self {
            Self::Rename(_) => "title",
            Self::Archive(_) => "archive state",
            Self::Tags(_) => "tags",
        }
    }
}

/// What creating a conversation under a chosen id found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Creation {
    Created,
    /// A conversation with this id exists (an earlier attempt created it).
    AlreadyExists,
    /// A conversation with this id was deleted: it is never created again.
    Deleted,
}

impl Store {
    pub async fn put_new_conversation(&self, conversation: &ConversationItem) -> Result<(), Error> {
        let item = self.stamped(conversation);
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(self.conversation_to_item(&item)?))
            .condition_expression("attribute_not_exists(PK)")
            .send()
            .await
            .map_err(|e| store_error("put conversation", e))?;
        Ok(())
    }

    /// Creates a conversation under an id chosen in advance (derived from a client's id, or
    /// from migrated data), unless it exists or was deleted: a replayed create finds the
    /// first one, and a deleted conversation never comes back.
    pub async fn create_conversation_with_id(
        &self,
        conversation: &ConversationItem,
    ) -> Result<Creation, Error> {
        let mut item = self.stamped(conversation);
        let user = conversation.user_id();
        // With slot keys, a summary (an import's) is an item of its own, and the conversation's
        // keeps its preview (`crate::summaries`).
        let summary = match (&item.summary, self.slot_keys) {
            (Some(summary), true) => {
                let update = SummaryUpdate {
                    summary: summary.clone(),
                    through: item.summarized_through,
                    until: item.summarized_until.take(),
                };
                item.summary = Some(summary_preview(summary));
                let partition = keys::conversation_partition(user, &item.conversation_id());
                Some(self.summary_item(&partition, &update)?)
            }
            _ => None,
        };
        let tombstone = ConditionCheck::builder()
            .table_name(&self.table)
            .set_key(Some(item_key(
                &keys::tombstone_partition(user),
                &keys::tombstone_sort_key(&conversation.conversation_id()),
            )))
            .condition_expression("attribute_not_exists(PK)")
            .build()
            .map_err(|e| Error::internal("build tombstone check", e))?;
        let mut writes = vec![
            TransactWriteItem::builder()
                .put(put_new(&self.table, self.conversation_to_item(&item)?)?)
                .build(),
            TransactWriteItem::builder()
                .condition_check(tombstone)
                .build(),
        ];
        if let Some(summary) = summary {
            let put = Put::builder()
                .table_name(&self.table)
                .set_item(Some(summary))
                .build()
                .map_err(|e| Error::internal("build summary put", e))?;
            writes.push(TransactWriteItem::builder().put(put).build());
        }
        Ok(match self.transact(writes, "create conversation").await? {
            None => Creation::Created,
            Some(cancelled) if cancelled.condition_failed(1) => Creation::Deleted,
            Some(cancelled) if cancelled.condition_failed(0) => Creation::AlreadyExists,
            Some(cancelled) => return Err(cancelled.into_error("create conversation")),
        })
    }

    /// The conversation as written now: with its place in the change log.
    pub(super) fn stamped(&self, conversation: &ConversationItem) -> ConversationItem {
        ConversationItem {
            changed_at: Some(self.change_stamp(&conversation.conversation_id())),
            ..conversation.clone()
        }
    }

    /// One page of a user's conversations from `index`, newest first, optionally only those
    /// whose title contains `search` (lower case). Returns the page and where to continue.
    pub async fn list_conversations(
        &self,
        index: Index,
        partition_value: &str,
        limit: usize,
        start: Option<Position>,
        search: Option<&str>,
    ) -> Result<(Vec<ConversationItem>, Option<Position>), Error> {
        let mut start: Option<Item> = start.map(start_key);
        let mut found: Vec<Item> = Vec::with_capacity(limit + 1);
        let mut next = None;
        for page in 1..=MAX_FILTERED_PAGES {
            let mut query = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(index.name())
                .key_condition_expression("#pk = :pk")
                .expression_attribute_names("#pk", index.partition_attribute())
                .expression_attribute_values(":pk", s(partition_value))
                .scan_index_forward(false)
                .limit(match search {
                    // A filter drops items after the read: read wide pages, keep what matches.
                    Some(_) => page_limit(FILTERED_PAGE_ITEMS),
                    None => page_limit(limit + 1 - found.len()),
                })
                .set_exclusive_start_key(start.take());
            if let Some(search) = search {
                query = query
                    .filter_expression(
                        "(attribute_exists(titleLower) AND contains(titleLower, :q)) OR \
                         (attribute_not_exists(titleLower) AND contains(autoTitleLower, :q))",
                    )
                    .expression_attribute_values(":q", s(search));
            }
            let output = query
                .send()
                .await
                .map_err(|e| store_error("list conversations", e))?;
            found.extend(output.items.unwrap_or_default());
            if found.len() > limit {
                found.truncate(limit);
                next = found.last().map(|item| position_in(index, item));
                break;
            }
            match output.last_evaluated_key {
                None => break,
                Some(last) if page == MAX_FILTERED_PAGES => {
                    next = Some(position_of(&last));
                    break;
                }
                Some(last) => start = Some(last),
            }
        }
        let conversations = if index.projects_all() {
            found
                .into_iter()
                .map(from_item)
                .collect::<Result<Vec<_>, _>>()?
        } else {
            self.conversations_by_key(&found).await?
        };
        Ok((conversations, next))
    }

    /// Full conversation items for index entries that hold only keys, in the same order.
    pub(super) async fn conversations_by_key(
        &self,
        entries: &[Item],
    ) -> Result<Vec<ConversationItem>, Error> {
        let keys = entries
            .iter()
            .map(|entry| {
                [keys::PK, keys::SK]
                    .into_iter()
                    .filter_map(|k| entry.get(k).map(|v| (k.to_owned(), v.clone())))
                    .collect()
            })
            .collect();
        let mut by_partition: HashMap<String, ConversationItem> = HashMap::new();
        for item in self.batch_get(keys, None).await? {
            let conversation: ConversationItem = from_item(item)?;
            by_partition.insert(conversation.pk.as_str().to_owned(), conversation);
        }
        // An entry whose item was deleted since the index was read is left out.
        Ok(entries
            .iter()
            .filter_map(|entry| match entry.get(keys::PK) {
                Some(AttributeValue::S(pk)) => by_partition.remove(pk),
                _ => None,
            })
            .collect())
    }

    /// Applies `change` to an existing conversation; `None` if it does not exist. `set_at` is
    /// the time of the change (the client's, for a change made offline): a change older than
    /// the last one of the same attribute is refused (`Superseded`), so the later one wins
    /// whatever order they arrive in. `now` is when it is stored.
    pub async fn change_conversation(
        &self,
        user: &UserId,
        id: &ConversationId,
        change: ConversationChange<'_>,
        set_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Option<ConversationItem>, Error> {
        let partition = keys::conversation_partition(user, id);
        let update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(keys::PK, s(&partition))
            .key(keys::SK, s(keys::CONVERSATION_SK))
            .condition_expression(
                "attribute_exists(PK) AND (attribute_not_exists(#setAt) OR #setAt <= :setAt)",
            )
            .expression_attribute_names("#setAt", change.set_at_attribute())
            .expression_attribute_values(":setAt", s(&keys::sortable_time(set_at)))
            .expression_attribute_values(":now", s(&keys::sortable_time(now)))
            .expression_attribute_values(":changed", s(&self.change_stamp(id)))
            .return_values(ReturnValue::AllNew);
        let stamps = "updatedAt = :now, changedAt = :changed, #setAt = :setAt";
        let shed = self.shed_stored_twice();
        let update = match change {
            ConversationChange::Rename(title) => update
                .update_expression(format!(
                    "SET title = :title, titleLower = :lower, {stamps} {shed}"
                ))
                .expression_attribute_values(":title", s(title.as_str()))
                .expression_attribute_values(":lower", s(&title.as_str().to_lowercase())),
            ConversationChange::Archive(archived) => update
                .update_expression(format!(
                    "SET isArchived = :archived, ownerState = :state, {stamps} \
                     {shed}"
                ))
                .expression_attribute_values(":archived", AttributeValue::Bool(archived))
                .expression_attribute_values(":state", s(&keys::owner_state(user, archived))),
            ConversationChange::Tags(tags) => update
                .update_expression(format!("SET tags = :tags, {stamps} {shed}"))
                .expression_attribute_values(
                    ":tags",
                    AttributeValue::L(tags.iter().map(|t| s(t)).collect()),
                ),
        };
        match update.send().await {
            Ok(output) => output.attributes.map(from_item).transpose(),
            Err(e) if is_conditional_check_failure(&e) => {
                match self.conversation_exists(user, id).await? {
                    false => Ok(None),
                    true => Err(Error::Superseded(format!(
                        "the {} was changed more recently; this change was not applied",
                        change.what()
                    ))),
                }
            }
            Err(e) => Err(store_error("change conversation", e)),
        }
    }

    /// Deletes the conversation's own item, which takes it out of every listing at once, and
    /// leaves a tombstone in its place in the owner's change log (until `tombstone_expires`),
    /// in one transaction. Returns false if there was no conversation.
    pub async fn delete_conversation_item(
        &self,
        user: &UserId,
        id: &ConversationId,
        now: DateTime<Utc>,
        tombstone_expires: DateTime<Utc>,
    ) -> Result<bool, Error> {
        let delete = Delete::builder()
            .table_name(&self.table)
            .set_key(Some(conversation_key(user, id)))
            .condition_expression("attribute_exists(PK)")
            .build()
            .map_err(|e| Error::internal("build delete", e))?;
        let tombstone = Tombstone::new(user, *id, self.change_stamp(id), now, tombstone_expires);
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(to_item(&tombstone)?))
            .build()
            .map_err(|e| Error::internal("build tombstone", e))?;
        let writes = vec![
            TransactWriteItem::builder().delete(delete).build(),
            TransactWriteItem::builder().put(put).build(),
        ];
        match self.transact(writes, "delete conversation").await? {
            None => Ok(true),
            Some(cancelled) if cancelled.condition_failed(0) => Ok(false),
            Some(cancelled) => Err(cancelled.into_error("delete conversation")),
        }
    }

    /// Deletes every item left in a conversation's partition, in batches of 25 with bounded
    /// concurrency, until it is empty (true) or `deadline` passes (false: call again).
    pub async fn purge_conversation(
        &self,
        user: &UserId,
        id: &ConversationId,
        deadline: Instant,
    ) -> Result<bool, Error> {
        let partition = keys::conversation_partition(user, id);
        loop {
            if Instant::now() >= deadline {
                return Ok(false);
            }
            let output = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("PK = :pk")
                .expression_attribute_values(":pk", s(&partition))
                .projection_expression("PK, SK")
                .consistent_read(true)
                .limit((BATCH_WRITE_MAX * PURGE_CONCURRENCY * 4) as i32)
                .send()
                .await
                .map_err(|e| store_error("read conversation for purge", e))?;
            let keys = output.items.unwrap_or_default();
            if keys.is_empty() {
                return Ok(true);
            }
            let batches: Vec<Vec<Item>> =
                keys.chunks(BATCH_WRITE_MAX).map(<[Item]>::to_vec).collect();
            stream::iter(batches)
                .map(|batch| self.delete_batch(batch))
                .buffer_unordered(PURGE_CONCURRENCY)
                .try_collect::<Vec<()>>()
                .await?;
        }
    }

    pub(super) async fn delete_batch(&self, keys: Vec<Item>) -> Result<(), Error> {
        let requests = keys
            .into_iter()
            .map(|key| {
                DeleteRequest::builder()
                    .set_key(Some(key))
                    .build()
                    .map(|delete| WriteRequest::builder().delete_request(delete).build())
                    .map_err(|e| Error::internal("build batch delete", e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.write_batch(requests).await
    }
}

#[cfg(test)]
mod stored_twice_tests {
    use super::{REMOVE_STORED_TWICE, STORED_TWICE};

    #[test]
    fn the_attributes_removed_are_named_alike_in_both_forms() {
        assert_eq!(
            REMOVE_STORED_TWICE,
            format!("REMOVE {}", STORED_TWICE.join(", "))
        );
    }
}
