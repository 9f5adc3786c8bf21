//! Completion records: a client's request id claimed for one attempt at a time (a lease),
//! then holding the attempt's result so a retry is answered from it. The record's result is
//! the assistant's answer as JSON: the store keeps it as it is given.

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{from_item, is_conditional_check_failure, item_key, store_error, to_item, Store};
use domain::error::Error;
use domain::keys;
use domain::model::{ClientMessageId, ConversationId, UserId};

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CompletionItem {
    #[serde(rename = "PK")]
    pk: String,
    #[serde(rename = "SK")]
    sk: String,
    entity: String,
    /// The completion as JSON, once done: the answer to a retry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    result: Option<String>,
    /// The conversation the request named or its exchange was kept in: deleting it deletes
    /// the record, which holds its reply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    conversation_id: Option<ConversationId>,
    /// Until when (epoch milliseconds) the request that claimed this id may still be working.
    #[serde(default)]
    lease_until: i64,
    expires_at: i64,
}

impl CompletionItem {
    fn new(user: &UserId, request_id: &ClientMessageId) -> Self {
        Self {
            pk: keys::completion_partition(user),
            sk: keys::completion_sort_key(request_id),
            entity: "CompletionRecord".to_owned(),
            result: None,
            conversation_id: None,
            lease_until: 0,
            expires_at: 0,
        }
    }
}

/// What the record of a request id says at a moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompletionRecord {
    /// An attempt finished: its result, as it was recorded.
    Done(String),
    /// Another attempt with this id is still within its lease.
    InProgress,
    /// No record, or one that has expired or whose attempt gave up.
    Free,
}

impl Store {
    /// The record of `request_id` as of `now` (read consistently).
    pub async fn completion_record(
        &self,
        user: &UserId,
        request_id: &ClientMessageId,
        now: DateTime<Utc>,
    ) -> Result<CompletionRecord, Error> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(completion_key(user, request_id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| store_error("read completion record", e))?;
        let Some(item) = output.item else {
            return Ok(CompletionRecord::Free);
        };
        let record: CompletionItem = from_item(item)?;
        if record.expires_at <= now.timestamp() {
            return Ok(CompletionRecord::Free);
        }
        Ok(match record.result {
            Some(result) => CompletionRecord::Done(result),
            None if record.lease_until > now.timestamp_millis() => CompletionRecord::InProgress,
            None => CompletionRecord::Free,
        })
    }

    /// Takes `request_id` for an attempt until `lease_until`; false if another attempt holds
    /// it or one is done (and the record has not expired).
    pub async fn claim_completion(
        &self,
        user: &UserId,
        request_id: &ClientMessageId,
        lease_until: DateTime<Utc>,
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<bool, Error> {
        let record = CompletionItem {
            lease_until: lease_until.timestamp_millis(),
            expires_at: expires_at.timestamp(),
            ..CompletionItem::new(user, request_id)
        };
        let claimed = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(to_item(&record)?))
            .condition_expression(
                "attribute_not_exists(PK) OR expiresAt <= :nowSeconds \
                 OR (attribute_not_exists(#result) AND leaseUntil < :nowMillis)",
            )
            .expression_attribute_names("#result", "result")
            .expression_attribute_values(
                ":nowSeconds",
                AttributeValue::N(now.timestamp().to_string()),
            )
            .expression_attribute_values(
                ":nowMillis",
                AttributeValue::N(now.timestamp_millis().to_string()),
            )
            .send()
            .await;
        match claimed {
            Ok(_) => Ok(true),
            Err(e) if is_conditional_check_failure(&e) => Ok(false),
            Err(e) => Err(store_error("claim completion record", e)),
        }
    }

    /// Gives `request_id` back after a failed attempt (a record holding a result stays).
    pub async fn release_completion(
        &self,
        user: &UserId,
        request_id: &ClientMessageId,
    ) -> Result<(), Error> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(completion_key(user, request_id)))
            .condition_expression("attribute_not_exists(#result)")
            .expression_attribute_names("#result", "result")
            .send()
            .await
            .map_err(|e| store_error("release completion record", e))?;
        Ok(())
    }

    /// Records the result of the attempt that holds `request_id`, kept until `expires_at` or
    /// until `conversation` is deleted.
    pub async fn record_completion(
        &self,
        user: &UserId,
        request_id: &ClientMessageId,
        conversation: Option<ConversationId>,
        result: String,
        expires_at: DateTime<Utc>,
    ) -> Result<(), Error> {
        let record = CompletionItem {
            result: Some(result),
            conversation_id: conversation,
            expires_at: expires_at.timestamp(),
            ..CompletionItem::new(user, request_id)
        };
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(to_item(&record)?))
            .send()
            .await
            .map_err(|e| store_error("write completion record", e))?;
        Ok(())
    }
}

fn completion_key(user: &UserId, request_id: &ClientMessageId) -> super::Item {
    item_key(
        &keys::completion_partition(user),
        &keys::completion_sort_key(request_id),
    )
}
