//! Exactly-once records of the mobile batch's operations: one item per operation id, under the
//! user's `USER#<user>#BATCH` partition. A request claims an operation (a lease) before it runs
//! it, then records what it answered, kept until its TTL; a concurrent copy of the same
//! operation finds the claim and waits for the answer instead of running it again.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{from_item, is_conditional_check_failure, item_key, s, store_error, to_item, Store};
use domain::error::Error;
use domain::keys;
use domain::model::{ConversationId, UserId};

/// What an operation answered the first time, kept for its replays.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordedAnswer {
    pub status: u16,
    /// The result's JSON, exactly as answered.
    pub result: String,
}

/// An operation's record: claimed (running, until its lease ends) or answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OperationRecord {
    /// A digest of the operation as first sent: the same id with other content is refused.
    pub fingerprint: String,
    /// Set once the operation has answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<RecordedAnswer>,
    /// While running: when the claim lapses (epoch milliseconds) and another may run it.
    #[serde(default)]
    pub lease_until: i64,
}

/// What claiming an operation found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This request runs it; `again` when an earlier claim of it lapsed unanswered (that run
    /// may have done its work before it stopped).
    Claimed { again: bool },
    /// It ran before: its answer.
    Answered(RecordedAnswer),
    /// Another request is running it now.
    Running,
    /// The id belongs to a different operation.
    Reused,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct OperationItem {
    #[serde(rename = "PK")]
    pk: String,
    #[serde(rename = "SK")]
    sk: String,
    entity: String,
    #[serde(flatten)]
    record: OperationRecord,
    /// The conversation whose content the answer holds (its title, or a message): deleting
    /// the conversation deletes the record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    conversation_id: Option<ConversationId>,
    /// TTL: replays are answered from the record for the documented window.
    expires_at: i64,
}

/// Records found for a batch, by operation id.
pub type OperationRecords = HashMap<String, OperationRecord>;

impl Store {
    /// The records of those of `operations` that were claimed or answered (one call per 100).
    pub async fn operation_records(
        &self,
        user: &UserId,
        operations: &[&str],
    ) -> Result<OperationRecords, Error> {
        let partition = keys::operation_partition(user);
        let mut unique: Vec<&str> = operations.to_vec();
        unique.sort_unstable();
        unique.dedup();
        let keys = unique
            .iter()
            .map(|id| item_key(&partition, &keys::operation_sort_key(id)))
            .collect();
        let mut found = OperationRecords::new();
        for item in self.batch_get(keys, None).await? {
            let item: OperationItem = from_item(item)?;
            if let Some(id) = item.sk.strip_prefix("OP#") {
                found.insert(id.to_owned(), item.record);
            }
        }
        Ok(found)
    }

    /// Claims an operation for `lease_until` (epoch ms), unless it is answered, claimed by a
    /// live lease, or its id is another operation's.
    pub async fn claim_operation(
        &self,
        user: &UserId,
        operation: &str,
        fingerprint: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        expires: DateTime<Utc>,
    ) -> Result<Claim, Error> {
        let item = self.operation_item(
            user,
            operation,
            OperationRecord {
                fingerprint: fingerprint.to_owned(),
                answer: None,
                lease_until: lease_until.timestamp_millis(),
            },
            expires,
        );
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(to_item(&item)?))
            .condition_expression(
                "attribute_not_exists(PK) OR (attribute_not_exists(answer) \
                 AND leaseUntil < :now AND fingerprint = :fingerprint)",
            )
            .expression_attribute_values(
                ":now",
                aws_sdk_dynamodb::types::AttributeValue::N(now.timestamp_millis().to_string()),
            )
            .expression_attribute_values(":fingerprint", s(fingerprint))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld)
            .send()
            .await;
        match result {
            Ok(output) => Ok(Claim::Claimed {
                again: output.attributes.is_some_and(|old| !old.is_empty()),
            }),
            Err(e) if is_conditional_check_failure(&e) => {
                let existing = self
                    .get(&item.pk, &item.sk)
                    .await?
                    .map(from_item::<OperationItem>)
                    .transpose()?;
                Ok(match existing {
                    // Released between the two calls: try again.
                    None => Claim::Running,
                    Some(found) if found.record.fingerprint != fingerprint => Claim::Reused,
                    Some(found) => match found.record.answer {
                        Some(answer) => Claim::Answered(answer),
                        None => Claim::Running,
                    },
                })
            }
            Err(e) => Err(store_error("claim operation", e)),
        }
    }

    /// Records a claimed operation's answer, which holds content of `conversation` if any.
    pub async fn answer_operation(
        &self,
        user: &UserId,
        operation: &str,
        fingerprint: &str,
        answer: RecordedAnswer,
        conversation: Option<ConversationId>,
        expires: DateTime<Utc>,
    ) -> Result<(), Error> {
        let item = OperationItem {
            conversation_id: conversation,
            ..self.operation_item(
                user,
                operation,
                OperationRecord {
                    fingerprint: fingerprint.to_owned(),
                    answer: Some(answer),
                    lease_until: 0,
                },
                expires,
            )
        };
        self.put(&item, "record operation").await
    }

    /// Gives up a claim (the operation failed and changed nothing): a replay runs it again.
    pub async fn release_operation(&self, user: &UserId, operation: &str) -> Result<(), Error> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(item_key(
                &keys::operation_partition(user),
                &keys::operation_sort_key(operation),
            )))
            .condition_expression("attribute_not_exists(answer)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if is_conditional_check_failure(&e) => Ok(()),
            Err(e) => Err(store_error("release operation", e)),
        }
    }

    fn operation_item(
        &self,
        user: &UserId,
        operation: &str,
        record: OperationRecord,
        expires: DateTime<Utc>,
    ) -> OperationItem {
        OperationItem {
            pk: keys::operation_partition(user),
            sk: keys::operation_sort_key(operation),
            entity: "BatchOperation".to_owned(),
            record,
            conversation_id: None,
            expires_at: expires.timestamp(),
        }
    }
}
