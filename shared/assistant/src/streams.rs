//! `summarize_conversations`: brings the summary of each conversation that is due forward
//! (`crate::summaries`), off the request path of the appends that made it due. Fed by the
//! table's stream (conversation items only, by the template's event filter).
//!
//! `migrate_held_memory`: moves the short-term memory entries kept only there (a completion
//! whose conversation store failed) into their conversations within minutes of being said,
//! rather than at the next daily migration, which they might not outlive.

use aws_lambda_events::event::dynamodb::Event;
use aws_lambda_events::event::streams::DynamoDbEventResponse;
use domain::error::{chain, Error};
use domain::keys;
use domain::model::{ConversationId, UserId};
use lambda_runtime::LambdaEvent;
use shared::store::Store;
use shared::streams::{failed_from, time_left, DEADLINE_MARGIN};

use crate::state::State;

/// Summarizes the conversations the records show due (once each, by their new image, in the
/// order they come). A summary the model could not write is counted and its record reported,
/// so Lambda delivers it (and the records after it) again, up to the mapping's retry limit;
/// the conversation also stays due, so its next change tries again. A conversation whose
/// turn would not finish before the deadline is reported the same way, without counting.
pub async fn summarize_conversations(
    state: &State,
    event: LambdaEvent<Event>,
) -> Result<DynamoDbEventResponse, Error> {
    let deadline_ms = event.context.deadline;
    let summaries = &state.summaries;
    let mut seen = std::collections::BTreeSet::new();
    for record in &event.payload.records {
        if record.event_name == "REMOVE" || record.change.new_image.is_empty() {
            continue;
        }
        let Some((user, id)) = due_conversation(summaries, record) else {
            continue;
        };
        if !seen.insert((user.clone(), id)) {
            continue;
        }
        if time_left(deadline_ms) < summaries.settings().timeout + DEADLINE_MARGIN {
            return Ok(failed_from(Some(record)));
        }
        let outcome = summaries.summarize(&user, &id).await;
        match outcome {
            Ok(crate::summaries::SummaryOutcome::Written { .. }) => shared::metrics::summary(true),
            Ok(_) => {}
            Err(error) => {
                tracing::error!(error = %chain(&error), "could not summarize a conversation");
                if matches!(error, Error::ModelFailed(_) | Error::ModelTimeout) {
                    shared::metrics::summary(false);
                }
                return Ok(failed_from(Some(record)));
            }
        }
    }
    Ok(DynamoDbEventResponse::default())
}

/// The conversation a record names, if it may be due: a conversation's item that its new image
/// shows due, or a summary just written (its conversation may still be far behind: the
/// summarizer reads and decides).
fn due_conversation(
    summaries: &crate::summaries::Summaries,
    record: &aws_lambda_events::event::dynamodb::EventRecord,
) -> Option<(UserId, ConversationId)> {
    let sort_key = match record.change.keys.get(keys::SK) {
        Some(serde_dynamo::AttributeValue::S(sort_key)) => sort_key.as_str(),
        _ => return None,
    };
    if sort_key == keys::SUMMARY_SK {
        let partition = match record.change.keys.get(keys::PK) {
            Some(serde_dynamo::AttributeValue::S(partition)) => partition,
            _ => return None,
        };
        return keys::parse_conversation_partition(partition);
    }
    let conversation = Store::conversation_of_image(record.change.new_image.clone().into()).ok()?;
    summaries.is_due(&conversation).then(|| {
        (
            conversation.user_id().clone(),
            conversation.conversation_id(),
        )
    })
}

/// Runs each user's migration for the held entries the records show (once a user, as the
/// daily migration would: the same grouping and conditional writes, so an entry already
/// there is found, not copied), then lets each entry the migration took in expire as any
/// entry. A user whose migration fails is reported from their first record, so it comes again
/// (the entries stay held meanwhile). An entry the migration cannot take (it breaks a
/// message's limits) is named in the logs and let expire.
pub async fn migrate_held_memory(
    state: &State,
    event: LambdaEvent<Event>,
) -> Result<DynamoDbEventResponse, Error> {
    #[derive(serde::Deserialize)]
    struct Keys {
        #[serde(rename = "PK")]
        partition: String,
        #[serde(rename = "SK")]
        sort: String,
    }
    let now = state.now();
    let mut migrated: Vec<(domain::model::UserId, domain::migration::UserSummary)> = Vec::new();
    for record in &event.payload.records {
        let Ok(keys) = serde_dynamo::from_item::<_, Keys>(record.change.keys.clone()) else {
            continue;
        };
        let Some(user) = domain::keys::parse_memory_partition(&keys.partition) else {
            continue;
        };
        let entry = match Store::memory_entry_of_image(record.change.new_image.clone().into()) {
            Ok(entry) if entry.held => entry,
            Ok(_) => continue,
            Err(error) => {
                tracing::error!(error = %chain(&error), "a held memory entry cannot be read; it stays until it expires");
                continue;
            }
        };
        let summary = match migrated.iter().find(|(done, _)| *done == user) {
            Some((_, summary)) => summary.clone(),
            None => match state.migrator.migrate_memory(&user, false, now).await {
                Ok(summary) => {
                    migrated.push((user.clone(), summary.clone()));
                    summary
                }
                Err(error) => {
                    tracing::error!(error = %chain(&error), "could not migrate held memory");
                    return Ok(failed_from(Some(record)));
                }
            },
        };
        if let Some(skipped) = summary.skipped.iter().find(|s| s.key == keys.sort) {
            tracing::warn!(reason = %skipped.reason, "a held memory entry cannot be migrated; it expires as any entry");
        }
        if let Err(error) = state.assistant.memory().release(&user, &entry).await {
            tracing::error!(error = %chain(&error), "could not release a held memory entry");
            return Ok(failed_from(Some(record)));
        }
    }
    Ok(DynamoDbEventResponse::default())
}
