//! Exactly-once records of the mobile batch's operations: one item per operation id, under the
//! user's `USER#<user>#BATCH` partition, holding what the operation answered, until its TTL.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{from_item, is_conditional_check_failure, item_key, store_error, to_item, Store};
use crate::error::Error;
use crate::keys;
use crate::model::UserId;

/// What an operation answered the first time, kept for its replays.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OperationRecord {
    /// A digest of the operation as first sent: the same id with other content is refused.
    pub fingerprint: String,
    pub status: u16,
    /// The result's JSON, exactly as answered.
    pub result: String,
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
    /// TTL: replays are answered from the record for the documented window.
    expires_at: i64,
}

/// Records found for a batch, by operation id.
pub type OperationRecords = HashMap<String, OperationRecord>;

impl Store {
    /// The records of those of `operations` that were recorded (one call per 100 ids).
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

    /// Records what an operation answered, unless a concurrent replay recorded it first: then
    /// that record is returned, and it is the answer to give.
    pub async fn record_operation(
        &self,
        user: &UserId,
        operation: &str,
        record: &OperationRecord,
        expires: DateTime<Utc>,
    ) -> Result<Option<OperationRecord>, Error> {
        let partition = keys::operation_partition(user);
        let sort_key = keys::operation_sort_key(operation);
        let item = OperationItem {
            pk: partition.clone(),
            sk: sort_key.clone(),
            entity: "BatchOperation".to_owned(),
            record: record.clone(),
            expires_at: expires.timestamp(),
        };
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(to_item(&item)?))
            .condition_expression("attribute_not_exists(PK)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(None),
            Err(e) if is_conditional_check_failure(&e) => {
                let existing = self
                    .get(&partition, &sort_key)
                    .await?
                    .ok_or_else(|| Error::internal("record operation", "record vanished"))?;
                Ok(Some(from_item::<OperationItem>(existing)?.record))
            }
            Err(e) => Err(store_error("record operation", e)),
        }
    }
}
