//! Handlers for the table's change stream.
//!
//! `invalidate_cached_reads`: every change to a user's conversations bumps the user's cache
//! generation. Requests already bump it after each write; this consumer makes sure of it
//! when a request could not reach the cache, retrying (as Lambda redelivers the records it
//! reports as failed) until the cache is back, so no cached read outlives a write by more
//! than the time the cache is unreachable.
//!
//! `index_for_search`: keeps the search index (`crate::search`) in step with the table: the
//! terms of each new message (titles are read as they are when a search runs).
//!
//! (`summarize_conversations` is the assistant's: `assistant::streams`.)
//!
//! `run_account_exports`: does the next run of each running account export whose job changed
//! (`crate::account_export`): every run's checkpoint is the change that starts the next.
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

use crate::cache::Cache;
use crate::error::{chain, Error};
use crate::keys;
use crate::model::{ConversationId, Message, UserId};
use crate::search;
use crate::state::State;
use crate::store::{ExportJob, ExportStatus, Store};

/// Time kept back from the invocation's deadline to report back before Lambda stops us.
pub const DEADLINE_MARGIN: Duration = Duration::from_secs(2);

/// The time from now to the invocation's deadline (Lambda's, in epoch milliseconds).
pub fn time_left(deadline_ms: u64) -> Duration {
    let left = i64::try_from(deadline_ms)
        .unwrap_or(i64::MAX)
        .saturating_sub(Utc::now().timestamp_millis());
    Duration::from_millis(u64::try_from(left).unwrap_or(0))
}

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
    let deadline_ms = event.context.deadline;
    let mut response = DynamoDbEventResponse::default();
    for record in event.payload.records {
        if record.event_name != "REMOVE" {
            continue;
        }
        let Ok(keys) = serde_dynamo::from_item::<_, TableKeys>(record.change.keys) else {
            continue;
        };
        if keys.sort == keys::SHARE_SK {
            if let Err(error) = purge_link_files(state, &keys.partition).await {
                tracing::warn!(error = %chain(&error), "a link's files not deleted yet; retried");
                let mut failure = DynamoDbBatchItemFailure::default();
                failure.item_identifier = record.change.sequence_number;
                response.batch_item_failures.push(failure);
                break;
            }
            continue;
        }
        if keys.sort != keys::CONVERSATION_SK {
            continue;
        }
        let Some((user, conversation)) = keys::parse_conversation_partition(&keys.partition) else {
            tracing::warn!("stream record with an unexpected partition key; skipped");
            continue;
        };
        let budget = time_left(deadline_ms).saturating_sub(DEADLINE_MARGIN);
        // The record's time is rounded down to the second (an export begun in that second
        // counts as before); a record without one is taken as of now.
        let deleted_at = Some(record.change.approximate_creation_date_time)
            .filter(|at| at.timestamp() > 0)
            .map_or_else(Utc::now, |at| at + chrono::Duration::seconds(1));
        let finished =
            crate::purge::purge_everything_of(state, &user, &conversation, deleted_at, budget)
                .await;
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

/// Deletes the copies of the files a share link showed, once its item is gone (revoked,
/// expired, or with its conversation or last message).
async fn purge_link_files(state: &State, partition: &str) -> Result<(), Error> {
    let Some(token) = keys::parse_share_partition(partition) else {
        tracing::warn!("stream record of a link with an unexpected partition key; skipped");
        return Ok(());
    };
    if let Some(attachments) = &state.attachments {
        let deleted = attachments.delete_link_files(&token).await?;
        tracing::info!(deleted, "a share link's files deleted");
    }
    Ok(())
}

/// Bumps the cache generation of every user whose conversations the records changed. The
/// first record of a user whose bump failed is reported, so Lambda delivers it and every
/// later one again.
pub async fn invalidate_cached_reads(
    cache: &Cache,
    event: LambdaEvent<Event>,
) -> Result<DynamoDbEventResponse, Error> {
    let mut response = DynamoDbEventResponse::default();
    let mut done: Vec<UserId> = Vec::new();
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

/// Indexes the records' new messages for search, each conversation's in one go (its blocks
/// written once: `search::index_messages`), and first counts any message kept by slot that its
/// append left uncounted (`Store::count_through`: one read, a write only for such a message). A record that cannot be read stops the batch
/// there: the conversations before it are indexed and it is reported, so Lambda delivers it
/// and the rest again; a conversation that cannot be indexed reports its first record. Adding
/// a message's terms again changes nothing, so records delivered again cost nothing more. A
/// conversation deleted while its records were indexed loses the blocks just written: it is
/// checked for after writing, so they never outlive it.
pub async fn index_for_search(
    state: &State,
    event: LambdaEvent<Event>,
) -> Result<DynamoDbEventResponse, Error> {
    let records = event.payload.records;
    let store = state.conversations.store();
    let mut conversations: Vec<NewMessages> = Vec::new();
    let mut first_failed = None;
    for (index, record) in records.iter().enumerate() {
        match new_message(store, record).await {
            Ok(Some((user, conversation, message))) => {
                let found = match conversations
                    .iter_mut()
                    .position(|c| c.user == user && c.conversation == conversation)
                {
                    Some(found) => found,
                    None => {
                        conversations.push(NewMessages {
                            first_record: index,
                            user,
                            conversation,
                            messages: Vec::new(),
                        });
                        conversations.len() - 1
                    }
                };
                // A message gone with its conversation still has it checked: blocks an
                // earlier attempt wrote are removed.
                conversations[found].messages.extend(message);
            }
            Ok(None) => {}
            Err(error) => {
                tracing::error!(error = %chain(&error), "could not read a record for indexing");
                first_failed = Some(index);
                break;
            }
        }
    }
    let (mut messages, mut written) = (0, 0);
    for new in &conversations {
        // A message kept by slot is counted on its conversation by its append; one whose
        // writer stopped before that is counted here (`Store::count_through`).
        // The newest slot of each branch the records name: only the active branch's counts
        // (`count_through` leaves the others), and which one that is only the store knows.
        let mut newest_slots: Vec<keys::Slot> = Vec::new();
        for slot in new.messages.iter().filter_map(|m| m.slot) {
            match newest_slots.iter_mut().find(|s| s.branch == slot.branch) {
                Some(newest) => *newest = (*newest).max(slot),
                None => newest_slots.push(slot),
            }
        }
        let partition = keys::conversation_partition(&new.user, &new.conversation);
        let mut unavailable = false;
        for slot in newest_slots {
            match store.count_through(&partition, slot).await {
                Ok(()) => {}
                // Throttled or unreachable: the records come again.
                Err(error @ Error::Unavailable(_)) => {
                    tracing::error!(error = %chain(&error), "could not count a conversation's messages");
                    unavailable = true;
                    break;
                }
                // What another delivery would not mend must not hold the conversation's
                // records back: the next append counts the slot in any case.
                Err(error) => {
                    tracing::error!(error = %chain(&error), "could not count a conversation's messages; the next append will");
                }
            }
        }
        if unavailable {
            let first = first_failed.map_or(new.first_record, |f: usize| f.min(new.first_record));
            first_failed = Some(first);
            continue;
        }
        match search::index_messages(store, &new.user, &new.conversation, &new.messages).await {
            Ok(blocks) => {
                messages += new.messages.len();
                written += blocks;
            }
            Err(error) => {
                tracing::error!(error = %chain(&error), "could not index a conversation's messages");
                let first =
                    first_failed.map_or(new.first_record, |f: usize| f.min(new.first_record));
                first_failed = Some(first);
            }
        }
    }
    crate::metrics::search_indexed(messages, written);
    Ok(failed_from(first_failed.map(|index| &records[index])))
}

/// One conversation's new messages in a batch of records.
struct NewMessages {
    /// Where its first record is in the batch.
    first_record: usize,
    user: UserId,
    conversation: ConversationId,
    messages: Vec<Message>,
}

/// The conversation a record brings a new message of, if it does, and the message (its
/// content read back from S3 when it was too large for its item, or from the table when the
/// record came without its image; `None` when it is gone with its conversation).
async fn new_message(
    store: &Store,
    record: &aws_lambda_events::event::dynamodb::EventRecord,
) -> Result<Option<(UserId, ConversationId, Option<Message>)>, Error> {
    let Ok(keys) = serde_dynamo::from_item::<_, TableKeys>(record.change.keys.clone()) else {
        return Ok(None);
    };
    let Some((user, conversation)) = keys::parse_conversation_partition(&keys.partition) else {
        return Ok(None);
    };
    if !(keys::is_message_sort_key(&keys.sort) && record.event_name == "INSERT") {
        return Ok(None);
    }
    // A record too large for its queue comes without its image: the message is read back.
    if record.change.new_image.is_empty() {
        let message = store.message_at(&keys.partition, &keys.sort).await?;
        return Ok(Some((user, conversation, message)));
    }
    match store
        .message_of_image(record.change.new_image.clone().into())
        .await
    {
        // A seal (`store::tree`): no message.
        Ok(None) => Ok(None),
        Ok(Some(message)) => Ok(Some((user, conversation, Some(message)))),
        // Content in S3 goes with its conversation: a message of a conversation deleted
        // since has nothing left to index.
        Err(error) => match store.conversation_exists(&user, &conversation).await? {
            false => Ok(Some((user, conversation, None))),
            true => Err(error),
        },
    }
}

/// Does the next run of every running export the records show. Each attempt is counted on
/// its job before it starts (a change, which brings the next attempt when this one fails);
/// a run that failed before its attempt was counted reports its record, for Lambda to
/// deliver again.
pub async fn run_account_exports(
    state: &State,
    event: LambdaEvent<Event>,
) -> Result<DynamoDbEventResponse, Error> {
    let deadline_ms = event.context.deadline;
    let bucket = state
        .attachments
        .as_ref()
        .ok_or_else(|| Error::Config("ATTACHMENTS_BUCKET must be set to export".into()))?;
    let exports = &state.account_exports;
    for record in &event.payload.records {
        if record.event_name == "REMOVE" {
            continue;
        }
        let Ok(job) = serde_dynamo::from_item::<_, ExportJob>(record.change.new_image.clone())
        else {
            continue;
        };
        if job.status != ExportStatus::Running {
            continue;
        }
        // A third of what is left stays in reserve: the last conversation of the run, and
        // writing the checkpoint, happen after the budget is looked at.
        let budget = (time_left(deadline_ms) * 2 / 3).saturating_sub(DEADLINE_MARGIN);
        let (user, id) = (&job.user_id, &job.export_id);
        let ran = exports
            .run(bucket, user, id, job.chunk, budget, state.now())
            .await;
        if let Err(error) = ran {
            tracing::error!(error = %chain(&error), chunk = job.chunk, "an export run failed");
            // An attempt counted on the job brings the next one by itself; one that failed
            // before it was counted needs this record delivered again.
            let counted = exports.status(user, id).await.is_ok_and(|now| {
                now.chunk != job.chunk
                    || now.failures > job.failures
                    || now.status != ExportStatus::Running
            });
            if !counted {
                return Ok(failed_from(Some(record)));
            }
        }
    }
    Ok(DynamoDbEventResponse::default())
}

/// Reports `record` (and so every record after it) as failed: Lambda delivers them again.
pub fn failed_from(
    record: Option<&aws_lambda_events::event::dynamodb::EventRecord>,
) -> DynamoDbEventResponse {
    let mut response = DynamoDbEventResponse::default();
    if let Some(first) = record {
        let mut failure = DynamoDbBatchItemFailure::default();
        failure.item_identifier = first.change.sequence_number.clone();
        response.batch_item_failures.push(failure);
    }
    response
}
