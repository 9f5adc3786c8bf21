//! What every access pattern shares: the item type and DynamoDB's limits, transactions that
//! are retried when they lose a race, batch calls that finish their unprocessed part, reads
//! of a key range, positions and cursors' start keys, item conversion, error mapping.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, Delete, KeysAndAttributes, Put, TransactWriteItem, WriteRequest,
};
use serde::{Deserialize, Serialize};

use domain::cursor::Position;
use domain::error::Error;
use domain::keys::{self, Index};
use domain::model::{ConversationId, UserId};

use super::Store;

pub(crate) type Item = HashMap<String, AttributeValue>;

/// DynamoDB's limit on items in one BatchWriteItem call.
pub(crate) const BATCH_WRITE_MAX: usize = 25;

/// DynamoDB's limit on keys in one BatchGetItem call.
const BATCH_GET_MAX: usize = 100;

/// Attempts for a transaction that lost a race with another one on the same conversation.
pub(crate) const TRANSACTION_ATTEMPTS: u32 = 6;

/// Attempts for the unprocessed part of a batch call.
const BATCH_ATTEMPTS: u32 = 8;

/// Where an item stands in `index`: the attributes DynamoDB needs to continue after it.
pub(super) fn position_in(index: Index, item: &Item) -> Position {
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

pub(super) fn position_of(key: &Item) -> Position {
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

/// The key of a conversation's item.
pub(crate) fn conversation_key(user: &UserId, id: &ConversationId) -> Item {
    item_key(
        &keys::conversation_partition(user, id),
        keys::CONVERSATION_SK,
    )
}

pub(crate) fn s(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_owned())
}

pub(crate) fn n(value: i64) -> AttributeValue {
    AttributeValue::N(value.to_string())
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

pub fn is_conditional_check_failure<E: ProvideErrorMetadata, R>(error: &SdkError<E, R>) -> bool {
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

impl Store {
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
    /// for), across as many 1 MB query pages as that takes (`usize::MAX`: all of them).
    /// Returns whether items remain.
    pub(crate) async fn read_up_to<F>(
        &self,
        wanted: usize,
        start: Option<Item>,
        context: &'static str,
        query: F,
    ) -> Result<(Vec<Item>, bool), Error>
    where
        F: Fn(
            Option<Item>,
            i32,
        ) -> aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder,
    {
        self.read_kept_up_to(wanted, start, context, |_| true, query)
            .await
    }

    /// `read_up_to`, counting only the items `keep` accepts (the others are dropped): for a
    /// condition a key condition cannot say.
    pub(crate) async fn read_kept_up_to<F>(
        &self,
        wanted: usize,
        mut start: Option<Item>,
        context: &'static str,
        keep: impl Fn(&Item) -> bool,
        query: F,
    ) -> Result<(Vec<Item>, bool), Error>
    where
        F: Fn(
            Option<Item>,
            i32,
        ) -> aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder,
    {
        let mut items = Vec::with_capacity(wanted.min(1000));
        loop {
            let output = query(start.take(), page_limit(wanted - items.len()))
                .send()
                .await
                .map_err(|e| store_error(context, e))?;
            items.extend(output.items.unwrap_or_default().into_iter().filter(&keep));
            match output.last_evaluated_key {
                Some(next) if items.len() < wanted => start = Some(next),
                Some(_) => return Ok((items, true)),
                None => return Ok((items, false)),
            }
        }
    }

    /// Writes `item` as it is (no condition).
    pub async fn put<T: Serialize>(&self, item: &T, context: &'static str) -> Result<(), Error> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(to_item(item)?))
            .send()
            .await
            .map_err(|e| store_error(context, e))?;
        Ok(())
    }

    /// Every item of `partition` whose sort key begins with `prefix`, read consistently across
    /// as many query pages as that takes: for a partition of bounded size (a user's presets,
    /// links or grants).
    pub(crate) async fn all_with_prefix(
        &self,
        partition: &str,
        prefix: &str,
        context: &'static str,
    ) -> Result<Vec<Item>, Error> {
        let (items, _) = self
            .read_up_to(usize::MAX, None, context, |start, limit| {
                self.client
                    .query()
                    .table_name(&self.table)
                    .key_condition_expression("PK = :pk AND begins_with(SK, :prefix)")
                    .expression_attribute_values(":pk", s(partition))
                    .expression_attribute_values(":prefix", s(prefix))
                    .consistent_read(true)
                    .limit(limit)
                    .set_exclusive_start_key(start)
            })
            .await?;
        Ok(items)
    }

    /// Deletes the caller's own `record` and the item it names (`named`) in one transaction,
    /// only while the record exists: what revoking a link or a grant does, so a request can
    /// only reach what its caller's own record names. `false` when there was no record.
    pub(crate) async fn delete_record_and_named(
        &self,
        record: Item,
        named: Item,
        context: &'static str,
    ) -> Result<bool, Error> {
        let delete = |key: Item, condition: Option<&str>| {
            Delete::builder()
                .table_name(&self.table)
                .set_key(Some(key))
                .set_condition_expression(condition.map(str::to_owned))
                .build()
                .map(|delete| TransactWriteItem::builder().delete(delete).build())
                .map_err(|e| Error::internal("build a delete", e))
        };
        let writes = vec![
            delete(record, Some("attribute_exists(PK)"))?,
            delete(named, None)?,
        ];
        match self.transact(writes, context).await? {
            None => Ok(true),
            Some(cancelled) if cancelled.condition_failed(0) => Ok(false),
            Some(cancelled) => Err(cancelled.into_error(context)),
        }
    }

    /// A consistent query of `partition`'s items from sort key `low` to `high`, inclusive:
    /// where every range read of a conversation's items starts.
    pub(crate) fn range_query(
        &self,
        partition: &str,
        low: &str,
        high: &str,
    ) -> aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder {
        self.client
            .query()
            .table_name(&self.table)
            .key_condition_expression("PK = :pk AND SK BETWEEN :low AND :high")
            .expression_attribute_values(":pk", s(partition))
            .expression_attribute_values(":low", s(low))
            .expression_attribute_values(":high", s(high))
            .consistent_read(true)
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
