//! A conversation's summary: the messages it has not taken in yet, and writing a new one
//! over the one it was made from (a stale or repeated run changes nothing).

use aws_sdk_dynamodb::types::AttributeValue;

use super::{is_conditional_check_failure, item_key, s, store_error, ConversationItem, Store};
use domain::error::Error;
use domain::keys;
use domain::model::{ConversationId, Message, UserId};

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

    /// Stores `update` as the conversation's summary if its summary still reaches exactly
    /// `made_from` messages (the one this update was made from). Returns false when it does
    /// not (another run stored one first) or the conversation is gone: nothing is changed.
    /// The change is stamped in the owner's change log, so the next sync carries it.
    pub async fn save_summary(
        &self,
        user: &UserId,
        id: &ConversationId,
        made_from: u64,
        update: &SummaryUpdate,
    ) -> Result<bool, Error> {
        let condition = if made_from == 0 {
            "attribute_exists(PK) AND (attribute_not_exists(summarizedThrough) OR summarizedThrough = :from)"
        } else {
            "attribute_exists(PK) AND summarizedThrough = :from"
        };
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
