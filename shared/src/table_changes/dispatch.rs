//! Sending the table's changes to the functions' queues: the stream's dispatcher.

use std::collections::BTreeMap;

use aws_lambda_events::event::dynamodb::{Event, EventRecord};
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use lambda_runtime::LambdaEvent;

use super::{route, string_attribute, Worker};
use crate::error::{chain, Error};

/// SQS's largest message, and largest batch, in bytes (256 KiB: what every region and the
/// local server take).
const MAX_MESSAGE_BYTES: usize = 256 * 1024;
/// Characters of a message group id at most.
const MAX_GROUP_ID_CHARS: usize = 128;
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
            let group = message_group(record);
            let deduplication = if record.event_id.is_empty() {
                record.change.sequence_number.clone().unwrap_or_default()
            } else {
                record.event_id.clone()
            };
            for worker in route(record) {
                let body = match message_body(&worker.shape(record)) {
                    Ok(body) => body,
                    Err(error) => {
                        tracing::error!(error = %chain(&error), "a change could not be dispatched");
                        first_failed = Some(index);
                        break;
                    }
                };
                outgoing.entry(worker).or_default().push(Outgoing {
                    record: index,
                    body,
                    group: group.clone(),
                    deduplication: deduplication.clone(),
                });
            }
            if first_failed.is_some() {
                break;
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

/// The record as its message. SQS takes messages up to `MAX_MESSAGE_BYTES` of some
/// characters only: a record that would be larger goes without its old image (only a title's
/// change reads it, and a conversation's item is far smaller), then without its new image too
/// (a message's: its indexer reads it back by its keys); U+FFFE and U+FFFF, which SQS refuses
/// and JSON writes as they are, are written as escapes.
fn message_body(record: &EventRecord) -> Result<String, Error> {
    let write = |record: &EventRecord| -> Result<String, Error> {
        let body =
            serde_json::to_string(record).map_err(|e| Error::internal("write a change", e))?;
        Ok(body
            .replace('\u{FFFE}', "\\ufffe")
            .replace('\u{FFFF}', "\\uffff"))
    };
    let body = write(record)?;
    if body.len() <= MAX_MESSAGE_BYTES {
        return Ok(body);
    }
    let mut smaller = record.clone();
    smaller.change.old_image = Default::default();
    let body = write(&smaller)?;
    if body.len() <= MAX_MESSAGE_BYTES {
        return Ok(body);
    }
    smaller.change.new_image = Default::default();
    write(&smaller)
}

/// The record's message group: the item's partition key (its changes stay in order), hashed
/// when longer than SQS allows.
fn message_group(record: &EventRecord) -> String {
    let partition = string_attribute(&record.change.keys, "PK").unwrap_or("table");
    if partition.len() <= MAX_GROUP_ID_CHARS {
        return partition.to_owned();
    }
    use sha2::{Digest, Sha256};
    Sha256::digest(partition.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(event_name: &str, sk: &str) -> EventRecord {
        let mut record = EventRecord::default();
        record.event_name = event_name.to_owned();
        record.change.keys =
            serde_dynamo::to_item(serde_json::json!({"PK": "USER#u#CONV#c", "SK": sk})).unwrap();
        record
    }

    #[test]
    fn a_record_is_its_message_and_comes_back_as_it_was() {
        let mut original = record("MODIFY", "META");
        original.event_id = "e1".into();
        original.change.sequence_number = Some("100".into());
        original.change.old_image =
            serde_dynamo::to_item(serde_json::json!({"title": "Before"})).unwrap();
        let body = message_body(&original).unwrap();
        let back: EventRecord = serde_json::from_str(&body).unwrap();
        assert_eq!(back, original);
    }

    #[test]
    fn a_message_too_large_with_its_image_goes_by_its_keys() {
        let mut large = record("INSERT", "MESSAGE#2026#m");
        // Control characters take six bytes each as JSON.
        large.change.new_image = serde_dynamo::to_item(
            serde_json::json!({"content": "\u{1}".repeat(MAX_MESSAGE_BYTES / 5)}),
        )
        .unwrap();
        let body = message_body(&large).unwrap();
        assert!(body.len() <= MAX_MESSAGE_BYTES);
        let back: EventRecord = serde_json::from_str(&body).unwrap();
        assert!(back.change.new_image.is_empty());
        assert_eq!(back.change.keys, large.change.keys);
    }

    #[test]
    fn characters_sqs_refuses_are_written_as_escapes() {
        let mut odd = record("INSERT", "MESSAGE#2026#m");
        odd.change.new_image =
            serde_dynamo::to_item(serde_json::json!({"content": "a\u{FFFE}b\u{FFFF}"})).unwrap();
        let body = message_body(&odd).unwrap();
        assert!(!body.contains('\u{FFFE}') && !body.contains('\u{FFFF}'));
        let back: EventRecord = serde_json::from_str(&body).unwrap();
        assert_eq!(back, odd);
    }

    #[test]
    fn a_long_partition_key_is_hashed_into_a_group_id() {
        let mut long = record("INSERT", "META");
        long.change.keys = serde_dynamo::to_item(
            serde_json::json!({"PK": format!("USER#{}#CONV#c", "u".repeat(200)), "SK": "META"}),
        )
        .unwrap();
        assert_eq!(message_group(&long).len(), 64);
        assert_eq!(message_group(&record("INSERT", "META")), "USER#u#CONV#c");
    }

    #[test]
    fn a_record_too_large_for_a_message_goes_without_its_old_image() {
        let mut large = record("MODIFY", "META");
        large.change.old_image =
            serde_dynamo::to_item(serde_json::json!({"summary": "x".repeat(MAX_MESSAGE_BYTES)}))
                .unwrap();
        let body = message_body(&large).unwrap();
        let back: EventRecord = serde_json::from_str(&body).unwrap();
        assert!(back.change.old_image.is_empty());
        assert_eq!(back.change.keys, large.change.keys);
    }
}
