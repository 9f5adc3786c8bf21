//! A conversation's summary: the messages it has not taken in yet, and writing a new one
//! over the one it was made from (a stale or repeated run changes nothing).
//!
//! With slot keys on (`Store::with_slot_keys`), a summary is an item of its own beside the
//! conversation's (`keys::SUMMARY_SK`), in no index: a model's summary (up to 4,000
//! characters) would take the conversation's item past 1 KB, and every append, which rewrites
//! that item and its `ByStateActivity` entry, would cost 3 write units more. The conversation's
//! item keeps the summary's first [`SUMMARY_PREVIEW_CHARS`] characters, for lists and sync,
//! which the next append brings up to date ([`Store::summary_preview_due`]): a summary costs
//! one write, and never moves an index. With slot keys off, the summary is written in the
//! conversation's item, as before.

use aws_sdk_dynamodb::types::AttributeValue;
use serde::{Deserialize, Serialize};

use super::tree::PathItem;
use super::{
    from_item, is_conditional_check_failure, item_key, s, store_error, to_item, ConversationItem,
    Item, Store,
};
use domain::error::Error;
use domain::keys;
use domain::model::{ConversationId, Message, UserId};

/// Characters of a summary the conversation's item keeps (lists and sync show them): a whole
/// summary of up to 4,000 characters is read with the conversation.
pub const SUMMARY_PREVIEW_CHARS: usize = 240;

/// The start of `summary` the conversation's item keeps: all of it when it is short, else its
/// first [`SUMMARY_PREVIEW_CHARS`] characters at most, cut after a word, ending with "…".
pub fn summary_preview(summary: &str) -> String {
    if summary.chars().count() <= SUMMARY_PREVIEW_CHARS {
        return summary.to_owned();
    }
    let head: String = summary.chars().take(SUMMARY_PREVIEW_CHARS - 1).collect();
    let cut = match head.rfind(char::is_whitespace) {
        Some(space) if space > head.len() / 2 => &head[..space],
        _ => head.as_str(),
    };
    format!("{}…", cut.trim_end())
}

/// A conversation's summary in its own item (slot keys on).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct SummaryItem {
    #[serde(rename = "PK")]
    pk: String,
    #[serde(rename = "SK")]
    sk: String,
    /// Deflated when the store compresses text (`deflated`).
    #[serde(deserialize_with = "super::deflated::text")]
    pub(super) summary: String,
    /// What the conversation's item keeps of it ([`summary_preview`]).
    #[serde(deserialize_with = "super::deflated::text")]
    pub(super) preview: String,
    pub(super) summarized_through: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) summarized_until: Option<String>,
}

impl SummaryItem {
    pub(super) fn is_summary(item: &Item) -> bool {
        matches!(item.get(keys::SK), Some(AttributeValue::S(sk)) if sk == keys::SUMMARY_SK)
    }
}

/// A conversation's item with the items beside it: its summary and (branched) its path.
#[derive(Default)]
pub(super) struct ConversationRead {
    pub(super) conversation: Option<Item>,
    pub(super) summary: Option<SummaryItem>,
    pub(super) path: Option<domain::tree::Path>,
}

impl ConversationRead {
    /// Whether the conversation has ever branched (its path, or its branch count, says so).
    pub(super) fn is_branched(&self) -> bool {
        self.path.is_some()
            || self
                .conversation
                .as_ref()
                .is_some_and(|item| item.contains_key("branches"))
    }
}

impl ConversationItem {
    /// The conversation with the summary of its summary item when that has taken in as much
    /// as the one its own item holds, or more (the item holds the preview the last append
    /// brought, or a whole summary written before summaries had items of their own).
    pub(super) fn with_summary(mut self, summary: Option<SummaryItem>) -> Self {
        if let Some(summary) =
            summary.filter(|summary| summary.summarized_through >= self.summarized_through)
        {
            self.summary = Some(summary.summary);
            self.summarized_through = summary.summarized_through;
            self.summarized_until = summary.summarized_until;
        }
        self
    }
}

/// The preview an append brings into the conversation's item: a summary taken in more than
/// the item's (`Store::summary_preview_due`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct PreviewDue {
    pub(super) preview: String,
    pub(super) through: u64,
    /// The summary's last message: kept with the preview, so the conversation's item stays
    /// whole to a release that reads only it (docs/operations.md, "Slot keys").
    pub(super) until: Option<String>,
}

/// A summary to store, and how far into the conversation it reaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SummaryUpdate {
    pub summary: String,
    /// The messages it has taken in, in all.
    pub through: u64,
    /// The sort key of the newest message it has taken in.
    pub until: Option<String>,
}

impl Store {
    /// Messages of the conversation after the last one its summary took in, oldest first,
    /// with their content: read a page of `page` at a time while they stay within `chars` (by
    /// their first `excerpt_chars` each) and `limit`, so a run over very long messages never
    /// holds more than a page of them beyond what it sends.
    pub async fn messages_to_summarize(
        &self,
        conversation: &ConversationItem,
        page: usize,
        limit: usize,
        chars: usize,
        excerpt_chars: usize,
    ) -> Result<Vec<Message>, Error> {
        let user = conversation.user_id();
        let id = &conversation.conversation_id();
        if conversation.is_branched() {
            return self
                .path_messages_to_summarize(conversation, page, limit, chars, excerpt_chars)
                .await;
        }
        let mut after = conversation
            .summarized_until
            .as_deref()
            .map(|sort_key| item_key(&keys::conversation_partition(user, id), sort_key));
        let mut messages = Vec::new();
        let mut used = 0;
        loop {
            let wanted = page.min(limit - messages.len());
            let (found, next) = self.messages_oldest_first(user, id, after, wanted).await?;
            for message in found {
                used += message.content.chars().take(excerpt_chars).count();
                messages.push(message);
            }
            match next {
                Some(next) if used < chars && messages.len() < limit => after = Some(next),
                _ => return Ok(messages),
            }
        }
    }

    /// [`Store::messages_to_summarize`] of a branched conversation: the messages of its active
    /// path after the summary's last (from the root when that is not on the path: see
    /// `ConversationItem::on_active_path`).
    async fn path_messages_to_summarize(
        &self,
        conversation: &ConversationItem,
        page: usize,
        limit: usize,
        chars: usize,
        excerpt_chars: usize,
    ) -> Result<Vec<Message>, Error> {
        let partition =
            keys::conversation_partition(conversation.user_id(), &conversation.conversation_id());
        let path = conversation
            .path
            .clone()
            .unwrap_or_else(domain::tree::Path::trunk);
        let mut after = conversation
            .summarized_until
            .as_deref()
            .and_then(keys::MessageSortKey::parse)
            .filter(|until| path.segment_of(until).is_some());
        let mut messages = Vec::new();
        let mut used = 0;
        loop {
            let wanted = page.min(limit - messages.len());
            let found = self
                .path_messages_oldest_first(&partition, &path, after.as_ref(), wanted)
                .await?;
            let full = found.len() == wanted;
            after = found.last().map(|m| m.sk.clone());
            for message in self.with_content(found).await? {
                used += message.content.chars().take(excerpt_chars).count();
                messages.push(message.into_message());
            }
            if !full || used >= chars || messages.len() >= limit {
                return Ok(messages);
            }
        }
    }

    /// The conversation's item with its summary, read consistently in one query (the two
    /// items sort side by side); `None` when the conversation is gone (a summary item left by
    /// a summary written as it was deleted is not a conversation).
    pub async fn conversation(
        &self,
        user: &UserId,
        id: &ConversationId,
    ) -> Result<Option<ConversationItem>, Error> {
        let read = self
            .conversation_and_summary(&keys::conversation_partition(user, id), None)
            .await?;
        read.conversation
            .map(|item| {
                Ok(from_item::<ConversationItem>(item)?
                    .with_summary(read.summary)
                    .with_path(read.path))
            })
            .transpose()
    }

    /// Whether the conversation exists (its item alone, keys only: no summary read).
    pub async fn conversation_exists(
        &self,
        user: &UserId,
        id: &ConversationId,
    ) -> Result<bool, Error> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(item_key(
                &keys::conversation_partition(user, id),
                keys::CONVERSATION_SK,
            )))
            .projection_expression("PK")
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| store_error("read the conversation", e))?;
        Ok(output.item.is_some())
    }

    /// The conversation's item, its summary item and its path as stored (only the attributes
    /// in `projection`, when given, which must name `SK`), in one consistent query.
    pub(super) async fn conversation_and_summary(
        &self,
        partition: &str,
        projection: Option<&str>,
    ) -> Result<ConversationRead, Error> {
        let output = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("PK = :pk AND SK BETWEEN :item AND :summary")
            .expression_attribute_values(":pk", s(partition))
            .expression_attribute_values(":item", s(keys::CONVERSATION_SK))
            .expression_attribute_values(":summary", s(keys::SUMMARY_SK))
            .set_projection_expression(projection.map(str::to_owned))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| store_error("read the conversation", e))?;
        let mut read = ConversationRead::default();
        for item in output.items.unwrap_or_default() {
            if SummaryItem::is_summary(&item) {
                read.summary = Some(from_item::<SummaryItem>(item)?);
            } else if PathItem::is_path(&item) {
                // Only a read that asks for the path gets it (an append's does not).
                if item.contains_key("path") {
                    read.path = Some(from_item::<PathItem>(item)?.path);
                }
            } else {
                read.conversation = Some(item);
            }
        }
        Ok(read)
    }

    /// What of a conversation's summary item its item does not hold yet, read together (the
    /// read an append makes of its conversation): the preview the append brings in.
    pub(super) fn summary_preview_due(
        conversation: &Item,
        summary: Option<&SummaryItem>,
    ) -> Option<PreviewDue> {
        let held = match conversation.get("summarizedThrough") {
            Some(AttributeValue::N(n)) => n.parse::<u64>().unwrap_or(0),
            _ => 0,
        };
        summary
            .filter(|summary| summary.summarized_through > held)
            .map(|summary| PreviewDue {
                preview: summary.preview.clone(),
                through: summary.summarized_through,
                until: summary.summarized_until.clone(),
            })
    }

    /// Stores `update` as the conversation's summary if its summary still reaches exactly
    /// `made_from` messages (the one this update was made from). Returns false when it does
    /// not (another run stored one first) or the conversation is gone: nothing is changed.
    /// With slot keys on, it is the summary's own item, and the conversation's item takes its
    /// preview at the next append (`SummaryItem`); otherwise it is written in the
    /// conversation's item, stamped in the owner's change log, so the next sync carries it.
    pub async fn save_summary(
        &self,
        user: &UserId,
        id: &ConversationId,
        made_from: u64,
        update: &SummaryUpdate,
    ) -> Result<bool, Error> {
        if self.slot_keys {
            return self.put_summary_item(user, id, made_from, update).await;
        }
        // Over the one it was made from, or one the item holds that has taken in less: a
        // summary item written while the switch was on may have taken in more than the
        // item's preview (made from it, this one goes on from there).
        let condition = "attribute_exists(PK) AND \
             (attribute_not_exists(summarizedThrough) OR summarizedThrough <= :from)";
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(keys::PK, s(&keys::conversation_partition(user, id)))
            .key(keys::SK, s(keys::CONVERSATION_SK))
            .condition_expression(condition)
            .expression_attribute_values(":from", AttributeValue::N(made_from.to_string()))
            .expression_attribute_values(
                ":summary",
                super::deflated::text_attribute(&update.summary, self.compress_text),
            )
            .expression_attribute_values(":through", AttributeValue::N(update.through.to_string()))
            .expression_attribute_values(":changed", s(&self.change_stamp(id)));
        let mut set =
            "summary = :summary, summarizedThrough = :through, changedAt = :changed".to_owned();
        if let Some(until) = &update.until {
            set.push_str(", summarizedUntil = :until");
            request = request.expression_attribute_values(":until", s(until));
        }
        // `summaryUpdatedAt`, written before issue 18, was read by no release: it goes.
        let remove = match self.shed_stored_twice() {
            "" => "REMOVE summaryUpdatedAt".to_owned(),
            shed => format!("{shed}, summaryUpdatedAt"),
        };
        let expression = format!("SET {set} {remove}");
        match request.update_expression(expression).send().await {
            Ok(_) => Ok(true),
            Err(e) if is_conditional_check_failure(&e) => Ok(false),
            Err(e) => Err(store_error("save summary", e)),
        }
    }
}

impl Store {
    /// The item that keeps `update` as the summary of the conversation in `partition`.
    pub(super) fn summary_item(
        &self,
        partition: &str,
        update: &SummaryUpdate,
    ) -> Result<Item, Error> {
        let record = SummaryItem {
            pk: partition.to_owned(),
            sk: keys::SUMMARY_SK.to_owned(),
            summary: update.summary.clone(),
            preview: summary_preview(&update.summary),
            summarized_through: update.through,
            summarized_until: update.until.clone(),
        };
        let mut item = to_item(&record)?;
        item.insert(
            "summary".to_owned(),
            super::deflated::text_attribute(&record.summary, self.compress_text),
        );
        item.insert(
            "preview".to_owned(),
            super::deflated::text_attribute(&record.preview, self.compress_text),
        );
        Ok(item)
    }

    /// Puts the summary's own item over the one it was made from (none, when `made_from` is
    /// what the conversation's item held: a summary written there before, or none).
    async fn put_summary_item(
        &self,
        user: &UserId,
        id: &ConversationId,
        made_from: u64,
        update: &SummaryUpdate,
    ) -> Result<bool, Error> {
        let partition = keys::conversation_partition(user, id);
        let item = self.summary_item(&partition, update)?;
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            // Over the one it was made from, or one taken in less (written by an earlier run
            // that a release without summary items then overtook in the conversation's item).
            .condition_expression("attribute_not_exists(PK) OR summarizedThrough <= :from")
            .expression_attribute_values(":from", AttributeValue::N(made_from.to_string()))
            .send()
            .await;
        match put {
            Ok(_) => {}
            Err(e) if is_conditional_check_failure(&e) => return Ok(false),
            Err(e) => return Err(store_error("save summary", e)),
        }
        // Deleted while the model wrote it: what the delete's purge may have passed already
        // goes now (the hourly sweep would find it too).
        if self.get(&partition, keys::CONVERSATION_SK).await?.is_none() {
            self.client
                .delete_item()
                .table_name(&self.table)
                .set_key(Some(item_key(&partition, keys::SUMMARY_SK)))
                .send()
                .await
                .map_err(|e| store_error("remove the summary of a deleted conversation", e))?;
            return Ok(false);
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_summary_is_its_own_preview() {
        assert_eq!(summary_preview("They plan a trip."), "They plan a trip.");
        let exact = "a".repeat(SUMMARY_PREVIEW_CHARS);
        assert_eq!(summary_preview(&exact), exact);
    }

    #[test]
    fn a_long_summary_is_cut_after_a_word_within_the_preview() {
        let summary = "The user plans a garden with raised beds. ".repeat(20);
        let preview = summary_preview(&summary);
        assert!(
            preview.chars().count() <= SUMMARY_PREVIEW_CHARS,
            "{preview}"
        );
        assert!(preview.ends_with('…'), "{preview}");
        let kept = preview.trim_end_matches('…');
        assert!(summary.starts_with(kept));
        assert!(summary[kept.len()..].starts_with(' '), "cut after a word");
    }

    #[test]
    fn a_preview_of_text_without_spaces_is_cut_at_its_length() {
        let summary = "é".repeat(1_000);
        let preview = summary_preview(&summary);
        assert_eq!(preview.chars().count(), SUMMARY_PREVIEW_CHARS);
    }
}
