//! The table's changes, from its one background reader of the stream to the functions that
//! act on them.
//!
//! DynamoDB Streams serves at most two readers per shard at once; past that they throttle one
//! another. So the stream has two: `invalidate-cached-reads` (the cache must hear of a change
//! within a second) and `dispatch-table-changes`, which sends each record to the queue of each
//! function it concerns (`Worker::wants`: what the functions' own stream filters said before).
//! The queues are FIFO, grouped by the record's partition key and deduplicated by its event
//! id, so each function still gets one item's changes once and in order, in batches of its
//! own size, retried alone, and after its retries in its own dead-letter queue. A function
//! reads its queue through [`from_queue`]: its handler takes the records as the stream gave
//! them, and what it reports failed comes again.

use std::future::Future;

use aws_lambda_events::event::dynamodb::{Event, EventRecord};
use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use aws_lambda_events::event::streams::DynamoDbEventResponse;
use lambda_runtime::LambdaEvent;

use crate::keys;

/// The dispatcher, for the function that reads the stream (and the local runner): the only
/// part that sends to the queues, so only it links their client (feature `dispatch`).
#[cfg(feature = "dispatch")]
mod dispatch;
#[cfg(feature = "dispatch")]
pub use dispatch::Dispatcher;

/// A function the table's changes are dispatched to, through its queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Worker {
    /// `index-for-search`: new messages.
    SearchIndex,
    /// `summarize-conversations`: changed conversations (one may be due for a summary).
    Summaries,
    /// `purge-deleted-conversations`: deleted conversations, and share links gone.
    Purge,
    /// `run-account-exports`: running account exports (each run's checkpoint starts the next).
    AccountExports,
    /// `migrate-held-memory`: short-term memory entries kept only there (their conversation's
    /// store failed), moved into their conversations within minutes.
    HeldMemory,
}

impl Worker {
    pub const ALL: [Worker; 5] = [
        Worker::SearchIndex,
        Worker::Summaries,
        Worker::Purge,
        Worker::AccountExports,
        Worker::HeldMemory,
    ];

    /// The variable naming the function's queue in the dispatcher's environment.
    pub fn queue_variable(self) -> &'static str {
        match self {
            Self::SearchIndex => "SEARCH_INDEX_QUEUE_URL",
            Self::Summaries => "SUMMARY_QUEUE_URL",
            Self::Purge => "PURGE_QUEUE_URL",
            Self::AccountExports => "ACCOUNT_EXPORT_QUEUE_URL",
            Self::HeldMemory => "HELD_MEMORY_QUEUE_URL",
        }
    }

    /// The function's binary.
    pub fn binary(self) -> &'static str {
        match self {
            Self::SearchIndex => "index-for-search",
            Self::Summaries => "summarize-conversations",
            Self::Purge => "purge-deleted-conversations",
            Self::AccountExports => "run-account-exports",
            Self::HeldMemory => "migrate-held-memory",
        }
    }

    /// Whether the function acts on this change.
    pub fn wants(self, record: &EventRecord) -> bool {
        let sort_key = string_attribute(&record.change.keys, "SK").unwrap_or_default();
        let event = record.event_name.as_str();
        match self {
            Self::SearchIndex => event == "INSERT" && keys::is_message_sort_key(sort_key),
            // A changed conversation (an append may make it due), and a summary written (a
            // conversation far behind stays due: its next window follows).
            Self::Summaries => {
                (event == "MODIFY" && sort_key == keys::CONVERSATION_SK)
                    || (matches!(event, "INSERT" | "MODIFY") && sort_key == keys::SUMMARY_SK)
            }
            // A deleted conversation, and a share link gone (revoked, expired, or with its
            // conversation or message): the copies of the files it showed go with it.
            Self::Purge => {
                event == "REMOVE"
                    && (sort_key == keys::CONVERSATION_SK || sort_key == keys::SHARE_SK)
            }
            Self::AccountExports => {
                matches!(event, "INSERT" | "MODIFY")
                    && sort_key.starts_with(keys::EXPORT_PREFIX)
                    && string_attribute(&record.change.new_image, "status") == Some("running")
            }
            Self::HeldMemory => {
                event == "INSERT"
                    && sort_key.starts_with(keys::MEMORY_ENTRY_PREFIX)
                    && matches!(
                        record.change.new_image.get("held"),
                        Some(serde_dynamo::AttributeValue::Bool(true))
                    )
            }
        }
    }
}

impl Worker {
    /// The record as this function is sent it: only the images it reads (the purge reads
    /// only the keys; the indexer, the summarizer, the exporter the new image), so a queue
    /// holds no more of a conversation than its function needs.
    pub fn shape(self, record: &EventRecord) -> EventRecord {
        let mut shaped = record.clone();
        match self {
            Self::SearchIndex | Self::Summaries | Self::AccountExports | Self::HeldMemory => {
                shaped.change.old_image = Default::default()
            }
            Self::Purge => {
                shaped.change.old_image = Default::default();
                shaped.change.new_image = Default::default();
            }
        }
        shaped
    }
}

/// The functions a change concerns.
pub fn route(record: &EventRecord) -> Vec<Worker> {
    Worker::ALL
        .into_iter()
        .filter(|worker| worker.wants(record))
        .collect()
}

pub(crate) fn string_attribute<'a>(item: &'a serde_dynamo::Item, name: &str) -> Option<&'a str> {
    match item.get(name)? {
        serde_dynamo::AttributeValue::S(value) => Some(value),
        _ => None,
    }
}

/// Runs a function's handler on the records of its queue's messages, as the stream gave
/// them, one message group (one item's partition) at a time, in the order the queue gave
/// them. In a group, the message of the first record the handler reports failed and every
/// later message of that group come again (a FIFO queue holds them back until then); so does
/// a message that is not a record, and what follows it in its group; a handler that fails
/// outright fails its group. Other groups are not held back by it.
pub async fn from_queue<F, Fut, E>(
    event: LambdaEvent<SqsEvent>,
    handler: F,
) -> Result<SqsBatchResponse, E>
where
    F: Fn(LambdaEvent<Event>) -> Fut,
    Fut: Future<Output = Result<DynamoDbEventResponse, E>> + Send,
    E: std::fmt::Display,
{
    let LambdaEvent { payload, context } = event;
    let mut groups: Vec<(String, Vec<SqsMessage>)> = Vec::new();
    for message in payload.records {
        let group = message
            .attributes
            .get("MessageGroupId")
            .cloned()
            .unwrap_or_default();
        match groups.iter_mut().find(|(name, _)| *name == group) {
            Some((_, messages)) => messages.push(message),
            None => groups.push((group, vec![message])),
        }
    }
    let mut answer = SqsBatchResponse::default();
    for (_, messages) in groups {
        let failed_from = handle_group(&messages, &context, &handler).await;
        if let Some(first) = failed_from {
            answer
                .batch_item_failures
                .extend(messages[first..].iter().map(|message| {
                    let mut failure = BatchItemFailure::default();
                    failure.item_identifier = message.message_id.clone().unwrap_or_default();
                    failure
                }));
        }
    }
    Ok(answer)
}

/// Runs the handler on one group's records; returns where the group failed from, if it did.
async fn handle_group<F, Fut, E>(
    messages: &[SqsMessage],
    context: &lambda_runtime::Context,
    handler: &F,
) -> Option<usize>
where
    F: Fn(LambdaEvent<Event>) -> Fut,
    Fut: Future<Output = Result<DynamoDbEventResponse, E>> + Send,
    E: std::fmt::Display,
{
    let mut records = Vec::with_capacity(messages.len());
    for message in messages {
        match message
            .body
            .as_deref()
            .map(serde_json::from_str::<EventRecord>)
        {
            Some(Ok(record)) => records.push(record),
            _ => {
                tracing::error!(
                    message = message.message_id.as_deref().unwrap_or("?"),
                    "a queued message is not a table change"
                );
                break;
            }
        }
    }
    let unreadable_from = (records.len() < messages.len()).then_some(records.len());
    if records.is_empty() {
        return unreadable_from;
    }
    let sequence_numbers: Vec<Option<String>> = records
        .iter()
        .map(|record| record.change.sequence_number.clone())
        .collect();
    let mut stream_event = Event::default();
    stream_event.records = records;
    // Boxed: the handler's own future is deep, and this one wraps it.
    let handling: std::pin::Pin<Box<dyn Future<Output = Result<DynamoDbEventResponse, E>> + Send>> =
        Box::pin(handler(LambdaEvent::new(stream_event, context.clone())));
    let response = match handling.await {
        Ok(response) => response,
        Err(error) => {
            tracing::error!(error = %error, "a group of table changes failed");
            return Some(0);
        }
    };
    let reported = response
        .batch_item_failures
        .iter()
        .filter_map(|failure| {
            sequence_numbers
                .iter()
                .position(|number| number.is_some() && *number == failure.item_identifier)
        })
        .min();
    match (reported, unreadable_from) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use aws_lambda_events::event::streams::DynamoDbBatchItemFailure;

    fn record(event_name: &str, sk: &str, status: Option<&str>) -> EventRecord {
        let mut record = EventRecord::default();
        record.event_name = event_name.to_owned();
        record.change.keys =
            serde_dynamo::to_item(serde_json::json!({"PK": "USER#u#CONV#c", "SK": sk})).unwrap();
        if let Some(status) = status {
            record.change.new_image =
                serde_dynamo::to_item(serde_json::json!({"status": status})).unwrap();
        }
        record
    }

    #[test]
    fn each_change_goes_to_the_functions_that_act_on_it() {
        let message = record("INSERT", "MESSAGE#2026-12-04T00:00:00.000000Z#m", None);
        assert_eq!(route(&message), [Worker::SearchIndex]);
        assert_eq!(route(&record("MODIFY", "META", None)), [Worker::Summaries]);
        assert_eq!(
            route(&record("INSERT", "META#SUMMARY", None)),
            [Worker::Summaries]
        );
        assert_eq!(
            route(&record("MODIFY", "META#SUMMARY", None)),
            [Worker::Summaries]
        );
        assert!(route(&record("REMOVE", "META#SUMMARY", None)).is_empty());
        assert_eq!(route(&record("REMOVE", "META", None)), [Worker::Purge]);
        // A share link gone: the copies of its files go.
        assert_eq!(route(&record("REMOVE", "LINK", None)), [Worker::Purge]);
        assert_eq!(
            route(&record("MODIFY", "EXPORT#e", Some("running"))),
            [Worker::AccountExports]
        );
        let mut held = record("INSERT", "MEMORY#2026#m", None);
        held.change.new_image = serde_dynamo::to_item(serde_json::json!({"held": true})).unwrap();
        assert_eq!(route(&held), [Worker::HeldMemory]);
        for nobody in [
            record("MODIFY", "EXPORT#e", Some("done")),
            record("INSERT", "META", None),
            record("INSERT", "TERM#t#ferry", None),
            record("REMOVE", "MESSAGE#2026#m", None),
            record("INSERT", "MEMORY#2026#m", None),
            record("INSERT", "LINK", None),
            record("REMOVE", "LINK#c#t", None),
        ] {
            assert_eq!(route(&nobody), [], "{nobody:?}");
        }
    }

    fn queued(bodies: &[String]) -> LambdaEvent<SqsEvent> {
        let mut event = SqsEvent::default();
        event.records = bodies
            .iter()
            .enumerate()
            .map(|(n, body)| {
                let mut message = aws_lambda_events::event::sqs::SqsMessage::default();
                message.message_id = Some(format!("m{n}"));
                message.body = Some(body.clone());
                message
            })
            .collect();
        LambdaEvent::new(event, lambda_runtime::Context::default())
    }

    fn numbered(n: usize) -> String {
        let mut record = record("INSERT", "META", None);
        record.change.sequence_number = Some(format!("{n}"));
        serde_json::to_string(&record).unwrap()
    }

    #[tokio::test]
    async fn a_failed_record_and_every_later_message_come_again() {
        let bodies: Vec<String> = (0..4).map(numbered).collect();
        let answer = from_queue(queued(&bodies), |event: LambdaEvent<Event>| async move {
            assert_eq!(event.payload.records.len(), 4);
            let mut response = DynamoDbEventResponse::default();
            let mut failure = DynamoDbBatchItemFailure::default();
            failure.item_identifier = Some("2".into());
            response.batch_item_failures.push(failure);
            Ok::<_, Error>(response)
        })
        .await
        .unwrap();
        let ids: Vec<&str> = answer
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        assert_eq!(ids, ["m2", "m3"]);
    }

    #[tokio::test]
    async fn a_message_that_is_not_a_record_comes_again_with_what_follows() {
        let bodies = vec![numbered(0), "not a record".to_owned(), numbered(2)];
        let answer = from_queue(queued(&bodies), |event: LambdaEvent<Event>| async move {
            assert_eq!(event.payload.records.len(), 1, "the records before it");
            Ok::<_, Error>(DynamoDbEventResponse::default())
        })
        .await
        .unwrap();
        let ids: Vec<&str> = answer
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        assert_eq!(ids, ["m1", "m2"]);
    }

    #[tokio::test]
    async fn a_failure_holds_back_only_its_own_group() {
        let bodies: Vec<String> = (0..4).map(numbered).collect();
        let mut event = queued(&bodies);
        for (n, message) in event.payload.records.iter_mut().enumerate() {
            let group = if n % 2 == 0 { "a" } else { "b" };
            message
                .attributes
                .insert("MessageGroupId".into(), group.into());
        }
        // Group a holds records 0 and 2, group b 1 and 3; record 0 fails.
        let answer = from_queue(event, |event: LambdaEvent<Event>| async move {
            let mut response = DynamoDbEventResponse::default();
            if event.payload.records[0].change.sequence_number.as_deref() == Some("0") {
                let mut failure = DynamoDbBatchItemFailure::default();
                failure.item_identifier = Some("0".into());
                response.batch_item_failures.push(failure);
            }
            Ok::<_, Error>(response)
        })
        .await
        .unwrap();
        let ids: Vec<&str> = answer
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        assert_eq!(ids, ["m0", "m2"], "group b went through");
    }

    #[tokio::test]
    async fn a_batch_handled_whole_reports_nothing() {
        let bodies: Vec<String> = (0..3).map(numbered).collect();
        let answer = from_queue(queued(&bodies), |_| async {
            Ok::<_, Error>(DynamoDbEventResponse::default())
        })
        .await
        .unwrap();
        assert!(answer.batch_item_failures.is_empty());
    }
}
