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

use std::collections::BTreeMap;
use std::future::Future;

use aws_lambda_events::event::dynamodb::{Event, EventRecord};
use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use lambda_runtime::LambdaEvent;

use crate::error::{chain, Error};
use crate::keys;

/// A function the table's changes are dispatched to, through its queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Worker {
    /// `index-for-search`: new messages, and conversations created or changed (titles).
    SearchIndex,
    /// `summarize-conversations`: changed conversations (one may be due for a summary).
    Summaries,
    /// `purge-deleted-conversations`: deleted conversations.
    Purge,
    /// `run-account-exports`: running account exports (each run's checkpoint starts the next).
    AccountExports,
}

impl Worker {
    pub const ALL: [Worker; 4] = [
        Worker::SearchIndex,
        Worker::Summaries,
        Worker::Purge,
        Worker::AccountExports,
    ];

    /// The variable naming the function's queue in the dispatcher's environment.
    pub fn queue_variable(self) -> &'static str {
        match self {
            Self::SearchIndex => "SEARCH_INDEX_QUEUE_URL",
            Self::Summaries => "SUMMARY_QUEUE_URL",
            Self::Purge => "PURGE_QUEUE_URL",
            Self::AccountExports => "ACCOUNT_EXPORT_QUEUE_URL",
        }
    }

    /// The function's binary.
    pub fn binary(self) -> &'static str {
        match self {
            Self::SearchIndex => "index-for-search",
            Self::Summaries => "summarize-conversations",
            Self::Purge => "purge-deleted-conversations",
            Self::AccountExports => "run-account-exports",
        }
    }

    /// Whether the function acts on this change.
    pub fn wants(self, record: &EventRecord) -> bool {
        let sort_key = string_attribute(&record.change.keys, "SK").unwrap_or_default();
        let event = record.event_name.as_str();
        match self {
            Self::SearchIndex => {
                (event == "INSERT" && keys::is_message_sort_key(sort_key))
                    || (matches!(event, "INSERT" | "MODIFY") && sort_key == keys::CONVERSATION_SK)
            }
            Self::Summaries => event == "MODIFY" && sort_key == keys::CONVERSATION_SK,
            Self::Purge => event == "REMOVE" && sort_key == keys::CONVERSATION_SK,
            Self::AccountExports => {
                matches!(event, "INSERT" | "MODIFY")
                    && sort_key.starts_with(keys::EXPORT_PREFIX)
                    && string_attribute(&record.change.new_image, "status") == Some("running")
            }
        }
    }
}

/// The functions a change concerns.
pub fn route(record: &EventRecord) -> Vec<Worker> {
    Worker::ALL
        .into_iter()
        .filter(|worker| worker.wants(record))
        .collect()
}

fn string_attribute<'a>(item: &'a serde_dynamo::Item, name: &str) -> Option<&'a str> {
    match item.get(name)? {
        serde_dynamo::AttributeValue::S(value) => Some(value),
        _ => None,
    }
}

/// SQS's largest message, and largest batch, in bytes (256 KiB: what every region and the
/// local server take).
const MAX_MESSAGE_BYTES: usize = 256 * 1024;
/// Messages in one `SendMessageBatch` at most.
const MAX_BATCH_MESSAGES: usize = 10;

/// A record on its way to a queue: its place in the stream's batch, and the message.
#[derive(Debug, Clone)]
struct Outgoing {
    record: usize,
    body: String,
    group: String,
    deduplication: String,
}

/// Sends the table's changes to the queues of the functions they concern.
#[derive(Clone)]
pub struct Dispatcher {
    sqs: aws_sdk_sqs::Client,
    queues: BTreeMap<Worker, String>,
}

impl Dispatcher {
    /// A dispatcher to the given queue of each function.
    pub fn new(sqs: aws_sdk_sqs::Client, queues: BTreeMap<Worker, String>) -> Self {
        Self { sqs, queues }
    }

    /// A dispatcher to the queues its environment names (`Worker::queue_variable`).
    pub fn from_env(sqs: aws_sdk_sqs::Client) -> Result<Self, Error> {
        let mut queues = BTreeMap::new();
        for worker in Worker::ALL {
            let variable = worker.queue_variable();
            let url = std::env::var(variable)
                .ok()
                .filter(|url| !url.trim().is_empty())
                .ok_or_else(|| {
                    Error::internal("configuration", format!("{variable} is not set"))
                })?;
            queues.insert(worker, url);
        }
        Ok(Self::new(sqs, queues))
    }

    /// Sends each record to the queue of each function it concerns, queue by queue in the
    /// stream's order. When a queue does not take a message, the first record it did not
    /// take is reported: the stream delivers it and every later one again, and the queues
    /// drop what they already had (the deduplication id is the record's event id).
    pub async fn dispatch(
        &self,
        event: LambdaEvent<Event>,
    ) -> Result<DynamoDbEventResponse, Error> {
        let records = event.payload.records;
        let mut outgoing: BTreeMap<Worker, Vec<Outgoing>> = BTreeMap::new();
        let mut first_failed: Option<usize> = None;
        for (index, record) in records.iter().enumerate() {
            let workers = route(record);
            if workers.is_empty() {
                continue;
            }
            let body = match message_body(record) {
                Ok(body) => body,
                Err(error) => {
                    tracing::error!(error = %chain(&error), "a change could not be dispatched");
                    first_failed = Some(index);
                    break;
                }
            };
            let group = string_attribute(&record.change.keys, "PK")
                .unwrap_or("table")
                .to_owned();
            let deduplication = if record.event_id.is_empty() {
                record.change.sequence_number.clone().unwrap_or_default()
            } else {
                record.event_id.clone()
            };
            for worker in workers {
                outgoing.entry(worker).or_default().push(Outgoing {
                    record: index,
                    body: body.clone(),
                    group: group.clone(),
                    deduplication: deduplication.clone(),
                });
            }
        }
        let sends = outgoing.into_iter().map(|(worker, messages)| async move {
            let messages: Vec<Outgoing> = match first_failed {
                Some(failed) => messages.into_iter().filter(|m| m.record < failed).collect(),
                None => messages,
            };
            self.send_in_order(worker, messages).await
        });
        for not_taken in futures::future::join_all(sends).await.into_iter().flatten() {
            first_failed = Some(first_failed.map_or(not_taken, |f| f.min(not_taken)));
        }
        let mut response = DynamoDbEventResponse::default();
        if let Some(index) = first_failed {
            let mut failure = DynamoDbBatchItemFailure::default();
            failure.item_identifier = records[index].change.sequence_number.clone();
            response.batch_item_failures.push(failure);
        }
        Ok(response)
    }

    /// Sends `messages` to the worker's queue in order; returns the record of the first one
    /// it did not take (the rest are not sent: a queue keeps each group's order).
    async fn send_in_order(&self, worker: Worker, messages: Vec<Outgoing>) -> Option<usize> {
        let queue = &self.queues[&worker];
        let mut pending = messages.as_slice();
        while !pending.is_empty() {
            let mut size = 0;
            let mut count = 0;
            for message in pending.iter().take(MAX_BATCH_MESSAGES) {
                if count > 0 && size + message.body.len() > MAX_MESSAGE_BYTES {
                    break;
                }
                size += message.body.len();
                count += 1;
            }
            let (batch, rest) = pending.split_at(count);
            let entries = batch
                .iter()
                .enumerate()
                .map(|(n, message)| {
                    SendMessageBatchRequestEntry::builder()
                        .id(n.to_string())
                        .message_body(&message.body)
                        .message_group_id(&message.group)
                        .message_deduplication_id(&message.deduplication)
                        .build()
                })
                .collect::<Result<Vec<_>, _>>();
            let sent = match entries {
                Ok(entries) => {
                    self.sqs
                        .send_message_batch()
                        .queue_url(queue)
                        .set_entries(Some(entries))
                        .send()
                        .await
                }
                Err(error) => {
                    tracing::error!(error = %error, "a change's message could not be built");
                    return Some(batch[0].record);
                }
            };
            match sent {
                Ok(output) => {
                    let refused = output
                        .failed()
                        .iter()
                        .filter_map(|entry| entry.id().parse::<usize>().ok())
                        .min();
                    if let Some(n) = refused {
                        tracing::error!(queue = worker.binary(), "a queue refused a change");
                        return Some(batch[n.min(batch.len() - 1)].record);
                    }
                }
                Err(error) => {
                    tracing::error!(
                        queue = worker.binary(),
                        error = %crate::aws::describe_sdk_error(&error),
                        "changes could not be sent"
                    );
                    return Some(batch[0].record);
                }
            }
            pending = rest;
        }
        None
    }
}

/// The record as its message: the record the stream gave, without its old image if it
/// would not fit in a message otherwise (only title changes read it, and a conversation's
/// item is far smaller).
fn message_body(record: &EventRecord) -> Result<String, Error> {
    let body = serde_json::to_string(record).map_err(|e| Error::internal("write a change", e))?;
    if body.len() <= MAX_MESSAGE_BYTES {
        return Ok(body);
    }
    let mut smaller = record.clone();
    smaller.change.old_image = Default::default();
    let body = serde_json::to_string(&smaller).map_err(|e| Error::internal("write a change", e))?;
    if body.len() <= MAX_MESSAGE_BYTES {
        return Ok(body);
    }
    Err(Error::internal(
        "write a change",
        format!("a record of {} bytes is larger than a message", body.len()),
    ))
}

/// Runs a function's handler on the records of its queue's messages, as the stream gave
/// them. The message of the first record the handler reports failed, and every message after
/// it, come again (a FIFO queue holds each group's later messages back until then); so does
/// a message that is not a record, and what follows it.
pub async fn from_queue<F, Fut, E>(
    event: LambdaEvent<SqsEvent>,
    handler: F,
) -> Result<SqsBatchResponse, E>
where
    F: FnOnce(LambdaEvent<Event>) -> Fut,
    Fut: Future<Output = Result<DynamoDbEventResponse, E>> + Send,
{
    let LambdaEvent { payload, context } = event;
    let message_ids: Vec<String> = payload
        .records
        .iter()
        .map(|message| message.message_id.clone().unwrap_or_default())
        .collect();
    let mut records = Vec::with_capacity(payload.records.len());
    for message in &payload.records {
        let record = message
            .body
            .as_deref()
            .map(serde_json::from_str::<EventRecord>);
        match record {
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
    let unreadable_from = (records.len() < message_ids.len()).then_some(records.len());
    let sequence_numbers: Vec<Option<String>> = records
        .iter()
        .map(|record| record.change.sequence_number.clone())
        .collect();
    let mut stream_event = Event::default();
    stream_event.records = records;
    // Boxed: the handler's own future is deep, and this one wraps it.
    let handling: std::pin::Pin<Box<dyn Future<Output = Result<DynamoDbEventResponse, E>> + Send>> =
        Box::pin(handler(LambdaEvent::new(stream_event, context)));
    let response = handling.await?;
    let reported = response
        .batch_item_failures
        .iter()
        .filter_map(|failure| {
            sequence_numbers
                .iter()
                .position(|number| number.is_some() && *number == failure.item_identifier)
        })
        .min();
    let failed_from = match (reported, unreadable_from) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let mut answer = SqsBatchResponse::default();
    if let Some(first) = failed_from {
        answer.batch_item_failures = message_ids[first..]
            .iter()
            .map(|id| {
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = id.clone();
                failure
            })
            .collect();
    }
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(
            route(&record("INSERT", "META", None)),
            [Worker::SearchIndex]
        );
        assert_eq!(
            route(&record("MODIFY", "META", None)),
            [Worker::SearchIndex, Worker::Summaries]
        );
        assert_eq!(route(&record("REMOVE", "META", None)), [Worker::Purge]);
        assert_eq!(
            route(&record("MODIFY", "EXPORT#e", Some("running"))),
            [Worker::AccountExports]
        );
        for nobody in [
            record("MODIFY", "EXPORT#e", Some("done")),
            record("INSERT", "TERM#t#ferry", None),
            record("REMOVE", "MESSAGE#2026#m", None),
            record("INSERT", "MEMORY#2026#m", None),
        ] {
            assert_eq!(route(&nobody), [], "{nobody:?}");
        }
    }

    #[test]
    fn a_record_is_its_message_and_comes_back_as_it_was() {
        let mut original = record("MODIFY", "META", None);
        original.event_id = "e1".into();
        original.change.sequence_number = Some("100".into());
        original.change.old_image =
            serde_dynamo::to_item(serde_json::json!({"title": "Before"})).unwrap();
        let body = message_body(&original).unwrap();
        let back: EventRecord = serde_json::from_str(&body).unwrap();
        assert_eq!(back, original);
    }

    #[test]
    fn a_record_too_large_for_a_message_goes_without_its_old_image() {
        let mut large = record("MODIFY", "META", None);
        large.change.old_image =
            serde_dynamo::to_item(serde_json::json!({"summary": "x".repeat(MAX_MESSAGE_BYTES)}))
                .unwrap();
        let body = message_body(&large).unwrap();
        let back: EventRecord = serde_json::from_str(&body).unwrap();
        assert!(back.change.old_image.is_empty());
        assert_eq!(back.change.keys, large.change.keys);
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
