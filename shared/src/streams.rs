//! Handlers for the table's change stream.
//!
//! `invalidate_cached_reads`: every change to a user's conversations bumps the user's cache
//! generation. Requests already bump it after each write; this consumer makes sure of it
//! when a request could not reach the cache, retrying (as Lambda redelivers the records it
//! reports as failed) until the cache is back, so no cached read outlives a write by more
//! than the time the cache is unreachable.
//!
//! `purge_deleted_conversations`:
//! Deleting a conversation removes its `META` item first (the commit point: it is gone from
//! every read at once) and then as many of its messages as the request's time budget allows.
//! The stream reports that removal; this handler removes whatever the request left behind, so
//! a conversation of any length is deleted completely without any request timing out.

use std::time::Duration;

use aws_lambda_events::event::dynamodb::Event;
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use chrono::Utc;
use lambda_runtime::LambdaEvent;
use serde::Deserialize;

use crate::error::{chain, Error};
use crate::keys;
use crate::state::State;

/// Time kept back from the invocation's deadline to report back before Lambda stops us.
const DEADLINE_MARGIN: Duration = Duration::from_secs(2);

#[derive(Deserialize)]
struct TableKeys {
    #[serde(rename = "PK")]
    partition: String,
    #[serde(rename = "SK")]
    sort: String,
}

/// Purges the partitions of deleted conversations. A record whose purge did not finish is
/// reported as a batch item failure, so Lambda delivers it again and the purge resumes.
pub async fn purge_deleted_conversations(
    state: &State,
    event: LambdaEvent<Event>,
) -> Result<DynamoDbEventResponse, Error> {
    let deadline_ms = i64::try_from(event.context.deadline).unwrap_or(i64::MAX);
    let mut response = DynamoDbEventResponse::default();
    for record in event.payload.records {
        if record.event_name != "REMOVE" {
            continue;
        }
        let Ok(keys) = serde_dynamo::from_item::<_, TableKeys>(record.change.keys) else {
            continue;
        };
        if keys.sort != keys::CONVERSATION_SK {
            continue;
        }
        let Some((user, conversation)) = keys::parse_conversation_partition(&keys.partition) else {
            tracing::warn!("stream record with an unexpected partition key; skipped");
            continue;
        };
        let left_ms = deadline_ms.saturating_sub(Utc::now().timestamp_millis());
        let budget = Duration::from_millis(u64::try_from(left_ms).unwrap_or(0))
            .saturating_sub(DEADLINE_MARGIN);
        let finished = match state
            .conversations
            .purge(&user, &conversation, budget)
            .await
        {
            Ok(finished) => finished,
            Err(error) => {
                tracing::error!(error = %chain(&error), "purge failed");
                false
            }
        };
        if finished {
            crate::metrics::conversation_purged();
        }
        if !finished {
            // Lambda resumes from the first failed record; the ones after it come again too.
            let mut failure = DynamoDbBatchItemFailure::default();
            failure.item_identifier = record.change.sequence_number;
            response.batch_item_failures.push(failure);
            break;
        }
    }
    Ok(response)
}

/// Bumps the cache generation of every user whose conversations the records changed. The
/// first record of a user whose bump failed is reported, so Lambda delivers it and every
/// later one again.
pub async fn invalidate_cached_reads(
    state: &State,
    event: LambdaEvent<Event>,
) -> Result<DynamoDbEventResponse, Error> {
    let cache = state.conversations.cache();
    let mut response = DynamoDbEventResponse::default();
    let mut done: Vec<crate::model::UserId> = Vec::new();
    for record in event.payload.records {
        let Ok(keys) = serde_dynamo::from_item::<_, TableKeys>(record.change.keys) else {
            continue;
        };
        let Some((user, _)) = keys::parse_conversation_partition(&keys.partition) else {
            continue;
        };
        if done.contains(&user) {
            continue;
        }
        if cache.try_invalidate_user(&user).await.is_err() {
            let mut failure = DynamoDbBatchItemFailure::default();
            failure.item_identifier = record.change.sequence_number;
            response.batch_item_failures.push(failure);
            break;
        }
        crate::metrics::cache_invalidation();
        done.push(user);
    }
    Ok(response)
}
