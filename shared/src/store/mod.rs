//! The single-table repository: item shapes, and one method per access pattern.
//! Key strings come from `keys`; items convert with `serde_dynamo`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, ConditionCheck, Delete, DeleteRequest, KeysAndAttributes, Put, ReturnValue,
    TransactWriteItem, Update, WriteRequest,
};
use aws_sdk_dynamodb::Client;
use chrono::{DateTime, Utc};
use futures::{stream, StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

mod completions;
mod content;
mod exports;
mod memory;
mod message;
mod migration;
#[cfg(test)]
mod no_panics;
mod operations;
mod search;
mod summaries;
mod sync;
pub use completions::CompletionRecord;
pub use content::{ContentObjects, INLINE_CONTENT_BYTES};
pub use exports::{ExportFile, ExportJob, ExportStatus};
pub use memory::HeldMemory;
pub use message::MessageItem;
pub use migration::{message_item_bytes, transaction_chunks, TRANSACTION_MAX_ITEMS};
pub use operations::{Claim, OperationRecord, OperationRecords, RecordedAnswer};
pub use search::{entry_item_bytes, IndexChange};
pub use summaries::SummaryUpdate;
use sync::Tombstone;
pub use sync::{ChangeEntry, ChangePage, SnapshotPage};

use crate::clock::{Clock, SystemClock};
use crate::cursor::Position;
use crate::error::Error;
use crate::keys::{self, Index};
use crate::model::{ClientMessageId, Conversation, ConversationId, Message, Title, UserId};
use domain::export::ExportedConversation;

pub(crate) type Item = HashMap<String, AttributeValue>;

/// DynamoDB's limit on items in one BatchWriteItem call.
pub(crate) const BATCH_WRITE_MAX: usize = 25;
/// DynamoDB's limit on keys in one BatchGetItem call.
const BATCH_GET_MAX: usize = 100;
/// How many batch deletes of one purge run at once.
const PURGE_CONCURRENCY: usize = 4;
/// Query pages a filtered listing reads before it hands back a cursor with what it found.
const MAX_FILTERED_PAGES: usize = 8;
/// Items a filtered listing evaluates per query page.
const FILTERED_PAGE_ITEMS: usize = 200;
/// Attempts for a transaction that lost a race with another one on the same conversation.
pub(crate) const TRANSACTION_ATTEMPTS: u32 = 6;
/// Attempts for the unprocessed part of a batch call.
const BATCH_ATTEMPTS: u32 = 8;

/// A conversation as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConversationItem {
    #[serde(rename = "PK")]
    pk: String,
    #[serde(rename = "SK")]
    sk: String,
    entity: String,
    owner: String,
    owner_state: String,
    pub user_id: UserId,
    pub conversation_id: ConversationId,
    /// Set by the user (create or rename); wins over `auto_title`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    title_lower: Option<String>,
    /// Derived once, from the first user message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    auto_title_lower: Option<String>,
    #[serde(with = "keys::sortable")]
    pub last_activity: DateTime<Utc>,
    #[serde(with = "keys::sortable")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "keys::sortable")]
    pub updated_at: DateTime<Utc>,
    pub is_archived: bool,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
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
    changed_at: Option<String>,
    /// When the title, the archive state and the tags were last set, by the time of the
    /// change they came with (the client's, for an offline change): the later one wins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    title_set_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    archive_set_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tags_set_at: Option<String>,
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
            pk: keys::conversation_partition(user, &id),
            sk: keys::CONVERSATION_SK.to_owned(),
            entity: "Conversation".to_owned(),
            owner: keys::owner(user),
            owner_state: keys::owner_state(user, false),
            user_id: user.clone(),
            conversation_id: id,
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
        }
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

/// Records that a client message id was used, and for which message.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ClientMessageItem {
    #[serde(rename = "PK")]
    pk: String,
    #[serde(rename = "SK")]
    sk: String,
    entity: String,
    message_key: String,
}

/// What an append found.
pub enum AppendOutcome {
    Stored,
    /// The client message id was used before: this is the message stored then.
    AlreadyStored(Message),
    ConversationMissing,
}

/// A conversation's item with a window of its newest messages (newest first).
pub struct ConversationWindow {
    pub conversation: Option<ConversationItem>,
    pub messages_newest_first: Vec<Message>,
    /// Position of the oldest message returned, when older ones exist.
    pub older: Option<Position>,
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

/// The table, through the access patterns the service needs.
#[derive(Clone)]
pub struct Store {
    pub(crate) client: Client,
    pub(crate) table: String,
    pub(crate) content: Option<ContentObjects>,
    /// Stamps every write with its place in the owner's change log.
    pub(crate) clock: Arc<dyn Clock>,
}

impl Store {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
            content: None,
            clock: Arc::new(SystemClock),
        }
    }

    /// A store whose change-log stamps come from `clock`.
    pub fn with_clock(self, clock: Arc<dyn Clock>) -> Self {
        Self { clock, ..self }
    }

    /// The change-log position of a write to `conversation` made now.
    pub(crate) fn change_stamp(&self, conversation: &ConversationId) -> String {
        keys::changed_at(self.clock.now(), conversation)
    }

    /// A store that keeps large message content in S3 (without it, such content is refused).
    pub fn with_content_objects(self, content: ContentObjects) -> Self {
        Self {
            content: Some(content),
            ..self
        }
    }

    pub fn table_name(&self) -> &str {
        &self.table
    }

    /// The table's status as DynamoDB reports it (health checks), in a few words if unknown.
    pub async fn table_status(&self) -> Result<String, String> {
        let output = self
            .client
            .describe_table()
            .table_name(&self.table)
            .send()
            .await
            .map_err(|e| crate::aws::describe_sdk_error(&e))?;
        Ok(output
            .table()
            .and_then(|t| t.table_status())
            .map_or_else(|| "UNKNOWN".to_owned(), |s| s.as_str().to_owned()))
    }

    pub async fn put_new_conversation(&self, conversation: &ConversationItem) -> Result<(), Error> {
        let item = self.stamped(conversation);
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(to_item(&item)?))
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
        let item = self.stamped(conversation);
        let user = &conversation.user_id;
        let tombstone = ConditionCheck::builder()
            .table_name(&self.table)
            .set_key(Some(item_key(
                &keys::tombstone_partition(user),
                &keys::tombstone_sort_key(&conversation.conversation_id),
            )))
            .condition_expression("attribute_not_exists(PK)")
            .build()
            .map_err(|e| Error::internal("build tombstone check", e))?;
        let writes = vec![
            TransactWriteItem::builder()
                .put(put_new(&self.table, to_item(&item)?)?)
                .build(),
            TransactWriteItem::builder()
                .condition_check(tombstone)
                .build(),
        ];
        Ok(match self.transact(writes, "create conversation").await? {
            None => Creation::Created,
            Some(cancelled) if cancelled.condition_failed(1) => Creation::Deleted,
            Some(cancelled) if cancelled.condition_failed(0) => Creation::AlreadyExists,
            Some(cancelled) => return Err(cancelled.into_error("create conversation")),
        })
    }

    /// Sends a transaction, again after a backoff while it loses races with other
    /// transactions or is throttled. `None` once it is applied; the cancellation (which item's
    /// condition failed) when it cannot be.
    pub(crate) async fn transact(
        &self,
        writes: Vec<TransactWriteItem>,
        context: &'static str,
    ) -> Result<Option<Cancellation>, Error> {
        for attempt in 1..=TRANSACTION_ATTEMPTS {
            let error = match self
                .client
                .transact_write_items()
                .set_transact_items(Some(writes.clone()))
                .send()
                .await
            {
                Ok(_) => return Ok(None),
                Err(error) => error,
            };
            let Some(cancelled) = Cancellation::of(&error) else {
                return Err(store_error(context, error));
            };
            if !cancelled.worth_retrying() {
                return Ok(Some(cancelled));
            }
            if attempt == TRANSACTION_ATTEMPTS {
                // Still losing races or throttled: the client may retry (503).
                return Err(Error::Unavailable(Box::new(error)));
            }
            backoff(attempt).await;
        }
        unreachable!("the last attempt returns")
    }

    /// Reads up to `wanted` items with `query` (given where to start and how many to ask
    /// for), across as many 1 MB query pages as that takes. Returns whether items remain.
    pub(crate) async fn read_up_to<F>(
        &self,
        wanted: usize,
        mut start: Option<Item>,
        context: &'static str,
        query: F,
    ) -> Result<(Vec<Item>, bool), Error>
    where
        F: Fn(
            Option<Item>,
            i32,
        ) -> aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder,
    {
        let mut items = Vec::with_capacity(wanted);
        loop {
            let output = query(start.take(), page_limit(wanted - items.len()))
                .send()
                .await
                .map_err(|e| store_error(context, e))?;
            items.extend(output.items.unwrap_or_default());
            match output.last_evaluated_key {
                Some(next) if items.len() < wanted => start = Some(next),
                Some(_) => return Ok((items, true)),
                None => return Ok((items, false)),
            }
        }
    }

    /// Writes `item` as it is (no condition).
    pub(crate) async fn put<T: Serialize>(
        &self,
        item: &T,
        context: &'static str,
    ) -> Result<(), Error> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(to_item(item)?))
            .send()
            .await
            .map_err(|e| store_error(context, e))?;
        Ok(())
    }

    /// The conversation as written now: with its place in the change log.
    fn stamped(&self, conversation: &ConversationItem) -> ConversationItem {
        ConversationItem {
            changed_at: Some(self.change_stamp(&conversation.conversation_id)),
            ..conversation.clone()
        }
    }

    /// Stores a message and counts it on its conversation, atomically: the message, the
    /// conversation's count and activity, and the client id record (when given) are one
    /// transaction, so the count cannot drift and a retried append cannot store twice.
    pub async fn append_message(
        &self,
        user: &UserId,
        message: &Message,
        client_id: Option<&ClientMessageId>,
        auto_title: Option<&Title>,
    ) -> Result<AppendOutcome, Error> {
        let message_item = self.message_item(user, message).await?;
        let content_object = message_item.content_object.clone();
        let outcome = self
            .append_item(user, message, message_item, client_id, auto_title)
            .await;
        if !matches!(outcome, Ok(AppendOutcome::Stored)) {
            // This attempt's content object belongs to no message (a retry found the first
            // one, or the conversation is gone): remove it.
            if let Some(key) = content_object {
                self.delete_content(&key).await;
            }
        }
        outcome
    }

    async fn append_item(
        &self,
        user: &UserId,
        message: &Message,
        message_item: MessageItem,
        client_id: Option<&ClientMessageId>,
        auto_title: Option<&Title>,
    ) -> Result<AppendOutcome, Error> {
        let partition = keys::conversation_partition(user, &message.conversation_id);
        let message_key = message_item.sk.clone();
        let now = keys::sortable_time(message.timestamp);

        let mut update_expression =
            "SET lastActivity = :now, updatedAt = :now, changedAt = :changed \
             ADD messageCount :one"
                .to_owned();
        let mut update = Update::builder()
            .table_name(&self.table)
            .key(keys::PK, s(&partition))
            .key(keys::SK, s(keys::CONVERSATION_SK))
            .condition_expression("attribute_exists(PK)")
            .expression_attribute_values(":now", s(&now))
            .expression_attribute_values(
                ":changed",
                s(&self.change_stamp(&message.conversation_id)),
            )
            .expression_attribute_values(":one", AttributeValue::N("1".to_owned()));
        if let Some(title) = auto_title {
            update_expression = "SET lastActivity = :now, updatedAt = :now, changedAt = :changed, \
                 autoTitle = if_not_exists(autoTitle, :auto), \
                 autoTitleLower = if_not_exists(autoTitleLower, :autoLower) \
                 ADD messageCount :one"
                .to_owned();
            update = update
                .expression_attribute_values(":auto", s(title.as_str()))
                .expression_attribute_values(":autoLower", s(&title.as_str().to_lowercase()));
        }
        let update = update
            .update_expression(update_expression)
            .build()
            .map_err(|e| Error::internal("build append update", e))?;

        let mut writes = vec![
            TransactWriteItem::builder().update(update).build(),
            TransactWriteItem::builder()
                .put(put_new(&self.table, to_item(&message_item)?)?)
                .build(),
        ];
        if let Some(client_id) = client_id {
            let record = ClientMessageItem {
                pk: partition.clone(),
                sk: keys::client_message_sort_key(client_id),
                entity: "ClientMessage".to_owned(),
                message_key: message_key.clone(),
            };
            writes.push(
                TransactWriteItem::builder()
                    .put(put_new(&self.table, to_item(&record)?)?)
                    .build(),
            );
        }

        match self.transact(writes, "append message").await? {
            None => Ok(AppendOutcome::Stored),
            Some(cancelled) if cancelled.condition_failed(0) => {
                Ok(AppendOutcome::ConversationMissing)
            }
            Some(cancelled) => match client_id {
                // Only a client id record sits at index 2.
                Some(client_id) if cancelled.condition_failed(2) => {
                    self.replayed_message(&partition, client_id).await
                }
                _ => Err(cancelled.into_error("append message")),
            },
        }
    }

    async fn replayed_message(
        &self,
        partition: &str,
        client_id: &ClientMessageId,
    ) -> Result<AppendOutcome, Error> {
        let record = self
            .get(partition, &keys::client_message_sort_key(client_id))
            .await?
            .ok_or_else(|| Error::internal("replay append", "client message record vanished"))?;
        let record: ClientMessageItem = from_item(record)?;
        let message = self
            .get(partition, &record.message_key)
            .await?
            .ok_or_else(|| Error::internal("replay append", "recorded message is missing"))?;
        let message: MessageItem = from_item(message)?;
        let message = self.load_content(message).await?;
        Ok(AppendOutcome::AlreadyStored(message.into_message()))
    }

    pub(crate) async fn get(&self, partition: &str, sort_key: &str) -> Result<Option<Item>, Error> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(keys::PK, s(partition))
            .key(keys::SK, s(sort_key))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| store_error("get item", e))?;
        Ok(output.item)
    }

    pub async fn conversation(
        &self,
        user: &UserId,
        id: &ConversationId,
    ) -> Result<Option<ConversationItem>, Error> {
        self.get(
            &keys::conversation_partition(user, id),
            keys::CONVERSATION_SK,
        )
        .await?
        .map(from_item)
        .transpose()
    }

    /// The conversation and its newest `limit` messages in one descending query (the
    /// conversation item sorts first), or, continuing from `older_than`, the next older
    /// messages (then the conversation item is read beside the query).
    pub async fn conversation_window(
        &self,
        user: &UserId,
        id: &ConversationId,
        limit: usize,
        older_than: Option<Position>,
    ) -> Result<ConversationWindow, Error> {
        let partition = keys::conversation_partition(user, id);
        match older_than {
            None => {
                let (items, more) = self
                    .read_partition_newest_first(&partition, limit + 2, None)
                    .await?;
                let (conversation, messages) = conversation_and_messages(items)?;
                self.budgeted_window(conversation, messages, limit, more)
                    .await
            }
            Some(position) => {
                if position.get(keys::PK) != Some(&partition) {
                    return Err(Error::invalid("cursor is not valid for this request"));
                }
                let start = start_key(position);
                let (conversation, page) = tokio::try_join!(
                    self.conversation(user, id),
                    self.read_partition_newest_first(&partition, limit + 1, Some(start)),
                )?;
                let (items, more) = page;
                let messages = items
                    .into_iter()
                    .map(MessageItem::from_attributes)
                    .collect::<Result<Vec<_>, _>>()?;
                self.budgeted_window(conversation, messages, limit, more)
                    .await
            }
        }
    }

    /// A page of messages within the response budget: measured as stored, their content read
    /// from S3, then measured again as they are.
    async fn budgeted_window(
        &self,
        conversation: Option<ConversationItem>,
        messages: Vec<MessageItem>,
        limit: usize,
        more: bool,
    ) -> Result<ConversationWindow, Error> {
        let (messages, cut) = within_response_budget(messages, limit, MessageItem::response_bytes);
        let messages = self.with_content(messages).await?;
        let (messages, read_cut) =
            within_response_budget(messages, limit, MessageItem::response_bytes);
        Ok(window(
            conversation,
            messages,
            limit,
            more || cut || read_cut,
        ))
    }

    /// Reads up to `wanted` items of a conversation's range, newest first, across as many
    /// 1 MB query pages as that takes. Returns whether items remain after them.
    async fn read_partition_newest_first(
        &self,
        partition: &str,
        wanted: usize,
        start: Option<Item>,
    ) -> Result<(Vec<Item>, bool), Error> {
        let (low, high) = keys::conversation_and_messages_range();
        self.read_up_to(wanted, start, "read conversation", |start, limit| {
            self.client
                .query()
                .table_name(&self.table)
                .key_condition_expression("PK = :pk AND SK BETWEEN :low AND :high")
                .expression_attribute_values(":pk", s(partition))
                .expression_attribute_values(":low", s(low))
                .expression_attribute_values(":high", s(high))
                .scan_index_forward(false)
                .consistent_read(true)
                .limit(limit)
                .set_exclusive_start_key(start)
        })
        .await
    }

    /// Up to `limit` of a conversation's messages, oldest first, after `after` (where the
    /// previous page ended), with their content; and where the next page starts, if any.
    pub async fn messages_oldest_first(
        &self,
        user: &UserId,
        id: &ConversationId,
        after: Option<Item>,
        limit: usize,
    ) -> Result<(Vec<Message>, Option<Item>), Error> {
        let output = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("PK = :pk AND begins_with(SK, :messages)")
            .expression_attribute_values(":pk", s(&keys::conversation_partition(user, id)))
            .expression_attribute_values(":messages", s(keys::MESSAGE_PREFIX))
            .consistent_read(true)
            .limit(page_limit(limit))
            .set_exclusive_start_key(after)
            .send()
            .await
            .map_err(|e| store_error("read messages", e))?;
        let items = output
            .items
            .unwrap_or_default()
            .into_iter()
            .map(MessageItem::from_attributes)
            .collect::<Result<Vec<_>, _>>()?;
        let messages = self
            .with_content(items)
            .await?
            .into_iter()
            .map(MessageItem::into_message)
            .collect();
        Ok((messages, output.last_evaluated_key))
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
    async fn conversations_by_key(&self, entries: &[Item]) -> Result<Vec<ConversationItem>, Error> {
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
            by_partition.insert(conversation.pk.clone(), conversation);
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

    /// The items found under `keys` (strongly consistent, optionally only the attributes in
    /// `projection`), in 100-key BatchGetItem calls, retrying unprocessed keys with backoff.
    pub(crate) async fn batch_get(
        &self,
        keys: Vec<Item>,
        projection: Option<&str>,
    ) -> Result<Vec<Item>, Error> {
        let mut found = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(BATCH_GET_MAX) {
            let mut keys = chunk.to_vec();
            for attempt in 1..=BATCH_ATTEMPTS {
                let request = KeysAndAttributes::builder()
                    .set_keys(Some(keys))
                    .set_projection_expression(projection.map(str::to_owned))
                    .consistent_read(true)
                    .build()
                    .map_err(|e| Error::internal("build batch get", e))?;
                let mut output = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, request)
                    .send()
                    .await
                    .map_err(|e| store_error("batch get", e))?;
                found.extend(
                    output
                        .responses
                        .as_mut()
                        .and_then(|r| r.remove(&self.table))
                        .unwrap_or_default(),
                );
                keys = output
                    .unprocessed_keys
                    .and_then(|mut u| u.remove(&self.table))
                    .map(|k| k.keys)
                    .unwrap_or_default();
                if keys.is_empty() {
                    break;
                }
                if attempt == BATCH_ATTEMPTS {
                    return Err(Error::Unavailable("batch get stayed unprocessed".into()));
                }
                backoff(attempt).await;
            }
        }
        Ok(found)
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
        let update = match change {
            ConversationChange::Rename(title) => update
                .update_expression(format!("SET title = :title, titleLower = :lower, {stamps}"))
                .expression_attribute_values(":title", s(title.as_str()))
                .expression_attribute_values(":lower", s(&title.as_str().to_lowercase())),
            ConversationChange::Archive(archived) => update
                .update_expression(format!(
                    "SET isArchived = :archived, ownerState = :state, {stamps}"
                ))
                .expression_attribute_values(":archived", AttributeValue::Bool(archived))
                .expression_attribute_values(":state", s(&keys::owner_state(user, archived))),
            ConversationChange::Tags(tags) => update
                .update_expression(format!("SET tags = :tags, {stamps}"))
                .expression_attribute_values(
                    ":tags",
                    AttributeValue::L(tags.iter().map(|t| s(t)).collect()),
                ),
        };
        match update.send().await {
            Ok(output) => output.attributes.map(from_item).transpose(),
            Err(e) if is_conditional_check_failure(&e) => {
                match self.conversation(user, id).await? {
                    None => Ok(None),
                    Some(_) => Err(Error::Superseded(format!(
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
            .set_key(Some(item_key(
                &keys::conversation_partition(user, id),
                keys::CONVERSATION_SK,
            )))
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

    async fn delete_batch(&self, keys: Vec<Item>) -> Result<(), Error> {
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

    /// Sends up to 25 writes in one BatchWriteItem, retrying the unprocessed part with backoff.
    pub(crate) async fn write_batch(&self, mut requests: Vec<WriteRequest>) -> Result<(), Error> {
        debug_assert!(requests.len() <= BATCH_WRITE_MAX);
        for attempt in 1..=BATCH_ATTEMPTS {
            let output = self
                .client
                .batch_write_item()
                .request_items(&self.table, requests)
                .send()
                .await
                .map_err(|e| store_error("write batch", e))?;
            requests = output
                .unprocessed_items
                .and_then(|mut u| u.remove(&self.table))
                .unwrap_or_default();
            if requests.is_empty() {
                return Ok(());
            }
            backoff(attempt).await;
        }
        Err(Error::Unavailable("batch write stayed unprocessed".into()))
    }
}

/// What one response may carry of messages (as Lambda returns them: see
/// `model::message_response_bytes`), well inside Lambda's 6 MB response.
pub const RESPONSE_BUDGET: usize = 4 * 1024 * 1024;

/// The first of `items` (newest first, at most `limit` of them) whose `size` fits the response
/// budget (always at least one), and whether any were left for the next page.
fn within_response_budget<T>(
    mut items: Vec<T>,
    limit: usize,
    size: impl Fn(&T) -> usize,
) -> (Vec<T>, bool) {
    let mut total = 0;
    let mut keep = 0;
    for item in items.iter().take(limit) {
        total += size(item);
        if keep > 0 && total > RESPONSE_BUDGET {
            break;
        }
        keep += 1;
    }
    let cut = keep < items.len().min(limit);
    if cut {
        items.truncate(keep);
    }
    (items, cut)
}

fn window(
    conversation: Option<ConversationItem>,
    mut messages: Vec<MessageItem>,
    limit: usize,
    more_in_store: bool,
) -> ConversationWindow {
    let older_exists = more_in_store || messages.len() > limit;
    messages.truncate(limit);
    let older = if older_exists {
        messages.last().map(|m| {
            Position::from([
                (keys::PK.to_owned(), m.pk.clone()),
                (keys::SK.to_owned(), m.sk.clone()),
            ])
        })
    } else {
        None
    };
    ConversationWindow {
        conversation,
        messages_newest_first: messages
            .into_iter()
            .map(MessageItem::into_message)
            .collect(),
        older,
    }
}

/// A conversation's partition as read newest first (its own item, if there, then its
/// messages) as the items they are: the mapping every read of a conversation runs.
pub fn conversation_and_messages(
    items: Vec<Item>,
) -> Result<(Option<ConversationItem>, Vec<MessageItem>), Error> {
    let mut items = items.into_iter().peekable();
    let conversation = match items.next_if(is_conversation) {
        Some(item) => Some(from_item::<ConversationItem>(item)?),
        None => None,
    };
    let messages = items
        .map(MessageItem::from_attributes)
        .collect::<Result<Vec<_>, _>>()?;
    Ok((conversation, messages))
}

fn is_conversation(item: &Item) -> bool {
    matches!(item.get(keys::SK), Some(AttributeValue::S(sk)) if sk == keys::CONVERSATION_SK)
}

/// Where an item stands in `index`: the attributes DynamoDB needs to continue after it.
fn position_in(index: Index, item: &Item) -> Position {
    index
        .key_attributes()
        .into_iter()
        .filter_map(|name| match item.get(name) {
            Some(AttributeValue::S(value)) => Some((name.to_owned(), value.clone())),
            _ => None,
        })
        .collect()
}

/// Where a query continues from a position it handed out (all our key attributes are strings).
pub(crate) fn start_key(position: Position) -> Item {
    position
        .into_iter()
        .map(|(name, value)| (name, AttributeValue::S(value)))
        .collect()
}

fn position_of(key: &Item) -> Position {
    key.iter()
        .filter_map(|(name, value)| match value {
            AttributeValue::S(value) => Some((name.clone(), value.clone())),
            _ => None,
        })
        .collect()
}

/// A query's `Limit`: what is still wanted, within the 1..=1000 the design ever asks for.
pub(crate) fn page_limit(wanted: usize) -> i32 {
    wanted.clamp(1, 1000) as i32
}

/// The primary key of an item.
pub(crate) fn item_key(pk: &str, sk: &str) -> Item {
    Item::from([(keys::PK.to_owned(), s(pk)), (keys::SK.to_owned(), s(sk))])
}

pub(crate) fn s(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_owned())
}

pub(crate) fn put_new(table: &str, item: Item) -> Result<Put, Error> {
    Put::builder()
        .table_name(table)
        .set_item(Some(item))
        .condition_expression("attribute_not_exists(PK)")
        .build()
        .map_err(|e| Error::internal("build put", e))
}

pub(crate) fn to_item<T: Serialize>(value: &T) -> Result<Item, Error> {
    serde_dynamo::to_item(value).map_err(|e| Error::internal("encode item", e))
}

pub(crate) fn from_item<T: for<'de> Deserialize<'de>>(item: Item) -> Result<T, Error> {
    // serde_dynamo panics on a value of a type this SDK does not know (the SDK reads one as
    // `Unknown`, which only its parser can make): refuse it first.
    if item.values().any(holds_unknown_type) {
        return Err(Error::internal(
            "decode item",
            "an attribute holds a type this SDK does not know",
        ));
    }
    serde_dynamo::from_item(item).map_err(|e| Error::internal("decode item", e))
}

pub(super) fn holds_unknown_type(value: &AttributeValue) -> bool {
    match value {
        AttributeValue::M(map) => map.values().any(holds_unknown_type),
        AttributeValue::L(list) => list.iter().any(holds_unknown_type),
        other => other.is_unknown(),
    }
}

/// Why a transaction was cancelled: one reason code per item, in the order of its items.
pub(crate) struct Cancellation(Vec<Option<String>>);

impl Cancellation {
    /// The reasons, if the error is a cancelled transaction.
    pub(crate) fn of<R>(error: &SdkError<TransactWriteItemsError, R>) -> Option<Self> {
        match error.as_service_error() {
            Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) => Some(Self(
                cancelled
                    .cancellation_reasons()
                    .iter()
                    .map(|r| r.code().map(str::to_owned))
                    .collect(),
            )),
            _ => None,
        }
    }

    /// Whether the condition of the item at `index` failed.
    pub(crate) fn condition_failed(&self, index: usize) -> bool {
        self.0.get(index).and_then(|c| c.as_deref()) == Some("ConditionalCheckFailed")
    }

    /// A cancellation no caller expected, as an error (its reasons, for the log).
    pub(crate) fn into_error(self, context: &'static str) -> Error {
        Error::internal(context, format!("transaction cancelled: {:?}", self.0))
    }

    /// Whether the transaction lost a race or was throttled: the same transaction may succeed
    /// after a backoff.
    pub(crate) fn worth_retrying(&self) -> bool {
        self.0.iter().any(|c| {
            matches!(
                c.as_deref(),
                Some("TransactionConflict" | "ThrottlingError")
            )
        })
    }
}

pub(crate) fn is_conditional_check_failure<E: ProvideErrorMetadata, R>(
    error: &SdkError<E, R>,
) -> bool {
    error.code() == Some("ConditionalCheckFailedException")
}

/// Throttling is the client's to retry (503); anything else is ours (500).
pub(crate) fn store_error<E, R>(context: &'static str, error: SdkError<E, R>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    // Throttled, or the store unreachable or failing on its side (after the SDK's own
    // retries): the client may retry, and nothing was left half-written (every multi-item
    // write is one transaction).
    let unavailable = matches!(
        error.code(),
        Some(
            "ProvisionedThroughputExceededException"
                | "ThrottlingException"
                | "RequestLimitExceeded"
                | "InternalServerError"
                | "ServiceUnavailable"
        )
    ) || matches!(
        error,
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) | SdkError::ResponseError(_)
    );
    if unavailable {
        Error::Unavailable(Box::new(error))
    } else {
        Error::internal(context, error)
    }
}

/// Exponential backoff with full jitter, for the retries the SDK cannot do for us
/// (cancelled transactions and the unprocessed part of batch calls).
pub(crate) async fn backoff(attempt: u32) {
    let cap_ms = 20u64 << attempt.min(6);
    let sleep_ms = rand::random_range(0..=cap_ms);
    tokio::time::sleep(Duration::from_millis(sleep_ms)).await;
}
