//! Appending a message: the message, its conversation's count and activity, and its client
//! message id, in one transaction that a retry with the same id finds done.

use aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem, Update};
use serde::{Deserialize, Serialize};

use domain::error::Error;
use domain::keys;
use domain::model::{ClientMessageId, Message, Title, UserId};

use super::{from_item, put_new, s, to_item, MessageItem, Store};

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

impl Store {
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

    pub(super) async fn append_item(
        &self,
        user: &UserId,
        message: &Message,
        message_item: MessageItem,
        client_id: Option<&ClientMessageId>,
        auto_title: Option<&Title>,
    ) -> Result<AppendOutcome, Error> {
        let partition = keys::conversation_partition(user, &message.conversation_id);
        let message_key = message_item.sk.as_str().to_owned();
        let now = keys::sortable_time(message.timestamp);

        // No `changedAt`: the change log places an append by its last activity
        // (`Store::changes_after`), so `ByChange` does not move.
        let shed = self.shed_stored_twice();
        let mut update_expression =
            format!("SET lastActivity = :now, updatedAt = :now ADD messageCount :one {shed}");
        let mut update = Update::builder()
            .table_name(&self.table)
            .key(keys::PK, s(&partition))
            .key(keys::SK, s(keys::CONVERSATION_SK))
            .condition_expression("attribute_exists(PK)")
            .expression_attribute_values(":now", s(&now))
            .expression_attribute_values(":one", AttributeValue::N("1".to_owned()));
        if let Some(title) = auto_title {
            update_expression = format!(
                "SET lastActivity = :now, updatedAt = :now, \
                 autoTitle = if_not_exists(autoTitle, :auto), \
                 autoTitleLower = if_not_exists(autoTitleLower, :autoLower) \
                 ADD messageCount :one {shed}"
            );
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
                .put(put_new(&self.table, self.message_to_item(&message_item)?)?)
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

    pub(super) async fn replayed_message(
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
}
