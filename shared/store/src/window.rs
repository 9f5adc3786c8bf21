//! Reading a conversation's messages: its newest window with the conversation item in one
//! query, older pages, oldest first for exports, all within one response's budget.

use aws_sdk_dynamodb::types::AttributeValue;

use domain::cursor::Position;
use domain::error::Error;
use domain::keys;
use domain::model::{ConversationId, Message, MessageId, UserId};
use domain::tree::{Path, Siblings};

use super::summaries::SummaryItem;
use super::tree::{is_seal, PathItem};
use super::{
    from_item, page_limit, s, start_key, store_error, ConversationItem, Item, MessageItem, Store,
};

/// A conversation's item with a window of its newest messages (newest first).
pub struct ConversationWindow {
    pub conversation: Option<ConversationItem>,
    pub messages_newest_first: Vec<Message>,
    /// Position of the oldest message returned, when older ones exist.
    pub older: Option<Position>,
    /// The siblings of the messages returned that have any (a branched conversation's).
    pub siblings: Vec<(MessageId, Siblings)>,
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
                (keys::PK.to_owned(), m.pk.as_str().to_owned()),
                (keys::SK.to_owned(), m.sk.as_str().to_owned()),
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
        siblings: Vec::new(),
    }
}

/// A conversation's partition as read newest first (its summary, its path and its own item,
/// if there, then its messages) as the items they are: the mapping every read of a
/// conversation runs.
pub fn conversation_and_messages(
    items: Vec<Item>,
) -> Result<(Option<ConversationItem>, Vec<MessageItem>), Error> {
    let mut items = items.into_iter().peekable();
    let summary = match items.next_if(SummaryItem::is_summary) {
        Some(item) => Some(from_item::<SummaryItem>(item)?),
        None => None,
    };
    let path = match items.next_if(PathItem::is_path) {
        Some(item) => Some(from_item::<PathItem>(item)?.path),
        None => None,
    };
    let conversation = match items.next_if(is_conversation) {
        Some(item) => Some(
            from_item::<ConversationItem>(item)?
                .with_summary(summary)
                .with_path(path),
        ),
        None => None,
    };
    let messages = items
        .filter(|item| !is_seal(item))
        .map(MessageItem::from_attributes)
        .collect::<Result<Vec<_>, _>>()?;
    Ok((conversation, messages))
}

fn is_conversation(item: &Item) -> bool {
    matches!(item.get(keys::SK), Some(AttributeValue::S(sk)) if sk == keys::CONVERSATION_SK)
}

impl Store {
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
                    // The summary, the path, the conversation, `limit` messages and one to know
                    // of more.
                    .read_partition_newest_first(&partition, limit + 4, None)
                    .await?;
                let (conversation, messages) = conversation_and_messages(items)?;
                match conversation {
                    Some(conversation) if conversation.is_branched() => {
                        self.path_window(&partition, conversation, limit, None)
                            .await
                    }
                    conversation => {
                        self.budgeted_window(conversation, messages, limit, more)
                            .await
                    }
                }
            }
            Some(position) => {
                if position.get(keys::PK) != Some(&partition) {
                    return Err(Error::invalid("cursor is not valid for this request"));
                }
                let before = position
                    .get(keys::SK)
                    .and_then(|sk| keys::MessageSortKey::parse(sk))
                    .ok_or_else(|| Error::invalid("cursor is not valid for this request"))?;
                let start = start_key(position);
                let (conversation, page) = tokio::try_join!(
                    self.conversation(user, id),
                    self.read_partition_newest_first(&partition, limit + 1, Some(start)),
                )?;
                if let Some(branched) = conversation.as_ref().filter(|c| c.is_branched()) {
                    return self
                        .path_window(&partition, branched.clone(), limit, Some(&before))
                        .await;
                }
                let (items, more) = page;
                let messages = items
                    .into_iter()
                    .filter(|item| !is_seal(item))
                    .map(MessageItem::from_attributes)
                    .collect::<Result<Vec<_>, _>>()?;
                self.budgeted_window(conversation, messages, limit, more)
                    .await
            }
        }
    }

    /// A branched conversation's window: a page of its active path, with its messages'
    /// siblings.
    async fn path_window(
        &self,
        partition: &str,
        conversation: ConversationItem,
        limit: usize,
        before: Option<&keys::MessageSortKey>,
    ) -> Result<ConversationWindow, Error> {
        let conversation = conversation.on_active_path();
        let path = conversation.path.clone().unwrap_or_else(Path::trunk);
        let page = self.path_page(partition, &path, before, limit).await?;
        let mut window = self
            .budgeted_window(Some(conversation), page.messages, limit, false)
            .await?;
        window.siblings = page
            .siblings
            .into_iter()
            .filter(|(id, _)| window.messages_newest_first.iter().any(|m| m.id == *id))
            .collect();
        Ok(window)
    }

    /// A page of messages within the response budget: measured as stored, their content read
    /// from S3, then measured again as they are.
    pub(super) async fn budgeted_window(
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
    pub(super) async fn read_partition_newest_first(
        &self,
        partition: &str,
        wanted: usize,
        start: Option<Item>,
    ) -> Result<(Vec<Item>, bool), Error> {
        let (low, high) = keys::conversation_and_messages_range();
        self.read_up_to(wanted, start, "read conversation", |start, limit| {
            self.range_query(partition, low, high)
                .scan_index_forward(false)
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
        let (items, next) = self
            .message_items_oldest_first(user, id, after, limit)
            .await?;
        let messages = self
            .with_content(items)
            .await?
            .into_iter()
            .map(MessageItem::into_message)
            .collect();
        Ok((messages, next))
    }

    /// Like [`Store::message_items_oldest_first`], of the messages the conversation shows: a
    /// branched conversation's active path (`crate::tree`), every message of one that never
    /// branched. What exports write.
    pub async fn shown_message_items_oldest_first(
        &self,
        user: &UserId,
        id: &ConversationId,
        after: Option<Item>,
        limit: usize,
    ) -> Result<(Vec<MessageItem>, Option<Item>), Error> {
        let partition = keys::conversation_partition(user, id);
        let read = self.conversation_and_summary(&partition, None).await?;
        if !read.is_branched() {
            return self
                .message_items_oldest_first(user, id, after, limit)
                .await;
        }
        let path = read.path.unwrap_or_else(Path::trunk);
        let after = match after.as_ref().and_then(|item| item.get(keys::SK)) {
            Some(AttributeValue::S(sk)) => Some(
                keys::MessageSortKey::parse(sk)
                    .ok_or_else(|| Error::invalid("an export's position is not a message"))?,
            ),
            _ => None,
        };
        let items = self
            .path_messages_oldest_first(&partition, &path, after.as_ref(), limit)
            .await?;
        let next = (items.len() == limit)
            .then(|| {
                items
                    .last()
                    .map(|m| super::item_key(&partition, m.sk.as_str()))
            })
            .flatten();
        Ok((items, next))
    }

    /// Like [`Store::messages_oldest_first`], with the content kept in the bucket left there
    /// (read each with [`Store::load_content`]): a page of any content size in little memory.
    pub async fn message_items_oldest_first(
        &self,
        user: &UserId,
        id: &ConversationId,
        after: Option<Item>,
        limit: usize,
    ) -> Result<(Vec<MessageItem>, Option<Item>), Error> {
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
            .filter(|item| !is_seal(item))
            .map(MessageItem::from_attributes)
            .collect::<Result<Vec<_>, _>>()?;
        Ok((items, output.last_evaluated_key))
    }
}
