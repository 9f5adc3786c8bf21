//! The table's stream, fed to the functions it feeds the way Lambda's event source mappings
//! feed them in AWS: records read from the local server's DynamoDB Streams API, filtered by
//! the template's filter patterns, in batches of the template's size, each function from its
//! own position (a batch it reports failed comes again, from the failed record, at the next
//! poll, up to the template's `MaximumRetryAttempts`). The dispatcher among them sends
//! changes to the queues on the local server, which feed the background functions as
//! Lambda's SQS event source mappings do: batches of the template's size, what a function
//! reports failed visible again at the next poll, until its queue's `maxReceiveCount`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use assistant::State;
use aws_lambda_events::event::dynamodb::{Event, EventRecord};
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use aws_lambda_events::event::streams::DynamoDbEventResponse;
use aws_sdk_dynamodbstreams::types::ShardIteratorType;
use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, MessageSystemAttributeName, QueueAttributeName,
};
use chrono::Utc;
use lambda_runtime::LambdaEvent;
use serde_json::Value;
use shared::streams;
use shared::table_changes::{from_queue, Dispatcher, Worker};

use crate::template::{QueueSubscription, StreamSubscription, Template};

#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("the table has no stream")]
    NoStream,
    #[error("{0}")]
    Api(String),
    #[error("template: {0}")]
    Template(String),
}

/// A function the table's changes feed: from the stream, or through its queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamConsumer {
    DispatchTableChanges,
    InvalidateCachedReads,
    IndexForSearch,
    PurgeDeletedConversations,
    SummarizeConversations,
    RunAccountExports,
    MigrateHeldMemory,
}

impl StreamConsumer {
    pub fn for_binary(binary: &str) -> Option<Self> {
        Some(match binary {
            "dispatch-table-changes" => Self::DispatchTableChanges,
            "invalidate-cached-reads" => Self::InvalidateCachedReads,
            "index-for-search" => Self::IndexForSearch,
            "purge-deleted-conversations" => Self::PurgeDeletedConversations,
            "summarize-conversations" => Self::SummarizeConversations,
            "run-account-exports" => Self::RunAccountExports,
            "migrate-held-memory" => Self::MigrateHeldMemory,
            _ => return None,
        })
    }

    /// A minute to the deadline, as the functions' handlers see it.
    fn context() -> lambda_runtime::Context {
        let mut context = lambda_runtime::Context::default();
        context.deadline = (Utc::now().timestamp_millis() + 60_000) as u64;
        context
    }

    /// Runs a stream function's handler on one batch of the stream.
    async fn call(
        self,
        state: &State,
        dispatcher: &Dispatcher,
        event: Event,
    ) -> Result<DynamoDbEventResponse, shared::Error> {
        let event = LambdaEvent::new(event, Self::context());
        match self {
            Self::DispatchTableChanges => dispatcher.dispatch(event).await,
            Self::InvalidateCachedReads => {
                streams::invalidate_cached_reads(state.conversations.cache(), event).await
            }
            other => Err(shared::Error::internal(
                "local stream",
                format!("{other:?} reads a queue, not the stream"),
            )),
        }
    }

    /// Runs a queue function's handler on one batch of its queue.
    async fn call_queued(
        self,
        state: &State,
        event: SqsEvent,
    ) -> Result<SqsBatchResponse, shared::Error> {
        let event = LambdaEvent::new(event, Self::context());
        match self {
            Self::IndexForSearch => {
                from_queue(event, |changes| streams::index_for_search(state, changes)).await
            }
            Self::PurgeDeletedConversations => {
                from_queue(event, |changes| {
                    streams::purge_deleted_conversations(state, changes)
                })
                .await
            }
            Self::SummarizeConversations => {
                from_queue(event, |changes| {
                    assistant::streams::summarize_conversations(state, changes)
                })
                .await
            }
            Self::RunAccountExports => {
                from_queue(event, |changes| {
                    streams::run_account_exports(state, changes)
                })
                .await
            }
            Self::MigrateHeldMemory => {
                from_queue(event, |changes| {
                    assistant::streams::migrate_held_memory(state, changes)
                })
                .await
            }
            other => Err(shared::Error::internal(
                "local queue",
                format!("{other:?} reads the stream, not a queue"),
            )),
        }
    }
}

/// A queue function's feed: its queue on the local server, and how it is read.
struct QueueFeed {
    consumer: StreamConsumer,
    url: String,
    batch_size: usize,
    max_receives: Option<usize>,
    /// Whether the queue may hold messages: it is read only then (after the dispatcher sent
    /// changes, or while messages wait to come again), not at every poll of an idle table.
    may_hold: bool,
}

/// One function's feed: its filters, batch size, and the records it has yet to take.
struct Feed {
    consumer: StreamConsumer,
    batch_size: usize,
    filters: Vec<Value>,
    max_retries: Option<usize>,
    pending: VecDeque<EventRecord>,
    /// Deliveries of the record at the head of `pending` that failed.
    failed_deliveries: usize,
}

/// Reads the table's stream and feeds its functions, and the queues the dispatcher fills.
pub struct StreamPoller {
    state: State,
    /// The state a function runs with, where it is not `state` (a benchmark meters each
    /// function's calls through a state of its own).
    states: HashMap<StreamConsumer, State>,
    client: aws_sdk_dynamodbstreams::Client,
    stream_arn: String,
    /// Where each shard is read next.
    iterators: HashMap<String, String>,
    feeds: Vec<Feed>,
    sqs: aws_sdk_sqs::Client,
    dispatcher: Dispatcher,
    queue_feeds: Vec<QueueFeed>,
}

impl StreamPoller {
    /// Feeds the template's stream and queue functions (those in `only`, when given, and the
    /// dispatcher when any queue function is) from the stream's current end: records written
    /// before are not delivered. Each queue is made on the local server, named after the
    /// table, so every state's queues are its own.
    pub async fn from_latest(
        state: State,
        template: &Template,
        only: Option<&[StreamConsumer]>,
    ) -> Result<Self, StreamError> {
        let subscriptions = template
            .stream_subscriptions()
            .map_err(|e| StreamError::Template(e.to_string()))?;
        let mut feeds = Vec::new();
        for StreamSubscription {
            binary,
            batch_size,
            filters,
            max_retries,
        } in subscriptions
        {
            let consumer = StreamConsumer::for_binary(&binary).ok_or_else(|| {
                StreamError::Template(format!("no handler for the stream function {binary}"))
            })?;
            if let Some(pattern) = filters.iter().find(|p| !pattern_supported(p)) {
                return Err(StreamError::Template(format!(
                    "{binary}: filter pattern {pattern} uses a rule the local poller lacks"
                )));
            }
            let wanted = match (only, consumer) {
                (None, _) => true,
                (Some(only), StreamConsumer::DispatchTableChanges) => only
                    .iter()
                    .any(|c| !matches!(c, StreamConsumer::InvalidateCachedReads)),
                (Some(only), consumer) => only.contains(&consumer),
            };
            if !wanted {
                continue;
            }
            feeds.push(Feed {
                consumer,
                batch_size: batch_size.max(1),
                filters,
                max_retries,
                pending: VecDeque::new(),
                failed_deliveries: 0,
            });
        }
        let config = aws_config::load_from_env().await;
        let sqs = aws_sdk_sqs::Client::new(&config);
        let mut queues = BTreeMap::new();
        let mut queue_feeds = Vec::new();
        let queue_subscriptions = template
            .queue_subscriptions()
            .map_err(|e| StreamError::Template(e.to_string()))?;
        for QueueSubscription {
            binary,
            queue,
            batch_size,
            max_receives,
        } in queue_subscriptions
        {
            let consumer = StreamConsumer::for_binary(&binary).ok_or_else(|| {
                StreamError::Template(format!("no handler for the queue function {binary}"))
            })?;
            let worker = Worker::ALL
                .into_iter()
                .find(|w| w.binary() == binary)
                .ok_or_else(|| {
                    StreamError::Template(format!("{binary} is not a dispatcher's worker"))
                })?;
            let name = format!("{}-{queue}.fifo", state.config.table_name);
            let url = sqs
                .create_queue()
                .queue_name(&name)
                .attributes(QueueAttributeName::FifoQueue, "true")
                .send()
                .await
                .map_err(|e| StreamError::Api(format!("create queue {name}: {e:?}")))?
                .queue_url
                .unwrap_or_default();
            queues.insert(worker, url.clone());
            if only.is_none_or(|only| only.contains(&consumer)) {
                queue_feeds.push(QueueFeed {
                    consumer,
                    url,
                    batch_size: batch_size.clamp(1, 10),
                    max_receives,
                    may_hold: true,
                });
            }
        }
        let dispatcher = Dispatcher::new(sqs.clone(), queues);
        let dynamodb = aws_sdk_dynamodb::Client::new(&config);
        let table = dynamodb
            .describe_table()
            .table_name(&state.config.table_name)
            .send()
            .await
            .map_err(|e| StreamError::Api(format!("describe table: {e:?}")))?;
        let stream_arn = table
            .table
            .and_then(|t| t.latest_stream_arn)
            .ok_or(StreamError::NoStream)?;
        let mut poller = Self {
            state,
            states: HashMap::new(),
            client: aws_sdk_dynamodbstreams::Client::new(&config),
            stream_arn,
            iterators: HashMap::new(),
            feeds,
            sqs,
            dispatcher,
            queue_feeds,
        };
        poller.start_at_latest().await?;
        Ok(poller)
    }

    /// This poller, running `consumer` with `state` instead of its own.
    pub fn with_state_for(mut self, consumer: StreamConsumer, state: State) -> Self {
        self.states.insert(consumer, state);
        self
    }

    async fn start_at_latest(&mut self) -> Result<(), StreamError> {
        let stream = self
            .client
            .describe_stream()
            .stream_arn(&self.stream_arn)
            .send()
            .await
            .map_err(|e| StreamError::Api(format!("describe stream: {e:?}")))?;
        let shards = stream
            .stream_description
            .and_then(|d| d.shards)
            .unwrap_or_default();
        for shard in shards {
            let Some(id) = shard.shard_id else { continue };
            let iterator = self
                .client
                .get_shard_iterator()
                .stream_arn(&self.stream_arn)
                .shard_id(&id)
                .shard_iterator_type(ShardIteratorType::Latest)
                .send()
                .await
                .map_err(|e| StreamError::Api(format!("get shard iterator: {e:?}")))?;
            if let Some(iterator) = iterator.shard_iterator {
                self.iterators.insert(id, iterator);
            }
        }
        Ok(())
    }

    /// Reads every record written since the last poll and feeds each stream function its
    /// batches, then each queue function its queue's messages, until each has taken all or
    /// reported a failure (those come again at the next poll). Returns how many records and
    /// messages were delivered: none when the table's changes have all been acted on.
    pub async fn poll_once(&mut self) -> Result<usize, StreamError> {
        let read = self.read_new_records().await?;
        let dispatching = self.feeds.iter().any(|feed| {
            feed.consumer == StreamConsumer::DispatchTableChanges && !feed.pending.is_empty()
        });
        for feed in &mut self.feeds {
            let state = self.states.get(&feed.consumer).unwrap_or(&self.state);
            feed.deliver(state, &self.dispatcher).await;
        }
        let mut received = 0;
        for feed in &mut self.queue_feeds {
            if !(dispatching || feed.may_hold) {
                continue;
            }
            let state = self.states.get(&feed.consumer).unwrap_or(&self.state);
            let (taken, left) = feed.deliver(state, &self.sqs).await?;
            received += taken;
            feed.may_hold = left;
        }
        Ok(read + received)
    }

    /// Polls every `interval`, for as long as the process runs (what `numina-local serve`
    /// does beside the API).
    pub async fn run(mut self, interval: Duration) -> Result<(), StreamError> {
        loop {
            if let Err(error) = self.poll_once().await {
                tracing::warn!(error = %error, "stream poll failed");
            }
            tokio::time::sleep(interval).await;
        }
    }

    /// Reads the new records into the feeds whose filters they pass (a shard's position moves
    /// only past records handed over, so a failed read loses nothing).
    async fn read_new_records(&mut self) -> Result<usize, StreamError> {
        let mut read = 0;
        let shards: Vec<String> = self.iterators.keys().cloned().collect();
        for shard in shards {
            while let Some(iterator) = self.iterators.get(&shard).cloned() {
                let output = self
                    .client
                    .get_records()
                    .shard_iterator(iterator)
                    .limit(1000)
                    .send()
                    .await
                    .map_err(|e| StreamError::Api(format!("get records: {e:?}")))?;
                let page = output.records.unwrap_or_default();
                let empty = page.is_empty();
                read += page.len();
                let records: Vec<EventRecord> =
                    page.into_iter().map(|r| self.event_record(r)).collect();
                for record in records {
                    for feed in &mut self.feeds {
                        if matches_filters(&feed.filters, &record) {
                            feed.pending.push_back(record.clone());
                        }
                    }
                }
                match output.next_shard_iterator {
                    Some(next) => self.iterators.insert(shard.clone(), next),
                    None => self.iterators.remove(&shard),
                };
                if empty {
                    break;
                }
            }
        }
        Ok(read)
    }

    /// A record as Lambda delivers it.
    fn event_record(&self, record: aws_sdk_dynamodbstreams::types::Record) -> EventRecord {
        let mut event = EventRecord::default();
        event.event_id = record.event_id.unwrap_or_default();
        event.event_name = record
            .event_name
            .map(|name| name.as_str().to_owned())
            .unwrap_or_default();
        event.event_source = Some("aws:dynamodb".to_owned());
        event.event_version = record.event_version;
        event.aws_region = record.aws_region.unwrap_or_default();
        event.event_source_arn = Some(self.stream_arn.clone());
        if let Some(change) = record.dynamodb {
            event.change.keys = change.keys.unwrap_or_default().into();
            event.change.new_image = change.new_image.unwrap_or_default().into();
            event.change.old_image = change.old_image.unwrap_or_default().into();
            event.change.sequence_number = change.sequence_number;
            if let Some(at) = change
                .approximate_creation_date_time
                .and_then(|at| chrono::DateTime::from_timestamp_millis(at.to_millis().ok()?))
            {
                event.change.approximate_creation_date_time = at;
            }
            event.change.size_bytes = change.size_bytes.unwrap_or_default();
        }
        event
    }
}

impl QueueFeed {
    /// Delivers the queue's messages in batches until it is empty or a batch reports a
    /// failure (its failed messages are made visible again for the next poll; past the
    /// queue's `maxReceiveCount` a message is given up, as SQS moves it to the dead-letter
    /// queue). Returns how many messages were received, and whether some wait to come again.
    async fn deliver(
        &self,
        state: &State,
        sqs: &aws_sdk_sqs::Client,
    ) -> Result<(usize, bool), StreamError> {
        let mut received = 0;
        loop {
            let output = sqs
                .receive_message()
                .queue_url(&self.url)
                .max_number_of_messages(self.batch_size as i32)
                .message_system_attribute_names(MessageSystemAttributeName::All)
                .visibility_timeout(60)
                .send()
                .await
                .map_err(|e| StreamError::Api(format!("receive messages: {e:?}")))?;
            let messages = output.messages.unwrap_or_default();
            if messages.is_empty() {
                return Ok((received, false));
            }
            received += messages.len();
            let mut event = SqsEvent::default();
            event.records = messages
                .iter()
                .map(|m| {
                    let mut message = SqsMessage::default();
                    message.message_id = m.message_id.clone();
                    message.receipt_handle = m.receipt_handle.clone();
                    message.body = m.body.clone();
                    message.attributes = m
                        .attributes
                        .clone()
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k.as_str().to_owned(), v))
                        .collect();
                    message.event_source = Some("aws:sqs".to_owned());
                    message
                })
                .collect();
            let failed: Vec<String> = match self.consumer.call_queued(state, event).await {
                Ok(response) => response
                    .batch_item_failures
                    .into_iter()
                    .map(|f| f.item_identifier)
                    .collect(),
                Err(error) => {
                    tracing::warn!(consumer = ?self.consumer, error = %error, "queue batch failed");
                    messages
                        .iter()
                        .filter_map(|m| m.message_id.clone())
                        .collect()
                }
            };
            let mut again = false;
            let mut done = Vec::new();
            for message in &messages {
                let id = message.message_id.clone().unwrap_or_default();
                let handle = message.receipt_handle.clone().unwrap_or_default();
                let receives: usize = message
                    .attributes
                    .as_ref()
                    .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(1);
                let given_up = self.max_receives.is_some_and(|max| receives >= max);
                if failed.contains(&id) && !given_up {
                    again = true;
                    sqs.change_message_visibility()
                        .queue_url(&self.url)
                        .receipt_handle(handle)
                        .visibility_timeout(0)
                        .send()
                        .await
                        .map_err(|e| StreamError::Api(format!("release a message: {e:?}")))?;
                    continue;
                }
                if failed.contains(&id) {
                    tracing::error!(consumer = ?self.consumer, "gave up on a queued change after its receives (SQS would move it to the dead-letter queue)");
                }
                done.push(
                    DeleteMessageBatchRequestEntry::builder()
                        .id(done.len().to_string())
                        .receipt_handle(handle)
                        .build()
                        .map_err(|e| StreamError::Api(format!("delete a message: {e}")))?,
                );
            }
            if !done.is_empty() {
                sqs.delete_message_batch()
                    .queue_url(&self.url)
                    .set_entries(Some(done))
                    .send()
                    .await
                    .map_err(|e| StreamError::Api(format!("delete messages: {e:?}")))?;
            }
            if again {
                tracing::warn!(consumer = ?self.consumer, "queued changes come again at the next poll");
                return Ok((received, true));
            }
        }
    }
}

impl Feed {
    /// Delivers the pending records in batches until all are taken or one batch fails.
    async fn deliver(&mut self, state: &State, dispatcher: &Dispatcher) {
        while !self.pending.is_empty() {
            let take = self.batch_size.min(self.pending.len());
            let mut event = Event::default();
            event.records = self.pending.iter().take(take).cloned().collect();
            let failed_from = match self.consumer.call(state, dispatcher, event.clone()).await {
                Ok(response) => match response.batch_item_failures.first() {
                    None => None,
                    // Lambda takes a failure it cannot place as the whole batch's.
                    Some(failure) => Some(
                        event
                            .records
                            .iter()
                            .position(|r| {
                                r.change.sequence_number.is_some()
                                    && r.change.sequence_number == failure.item_identifier
                            })
                            .unwrap_or(0),
                    ),
                },
                // A function error: Lambda retries the whole batch.
                Err(error) => {
                    tracing::warn!(consumer = ?self.consumer, error = %error, "stream batch failed");
                    Some(0)
                }
            };
            let Some(index) = failed_from else {
                self.pending.drain(..take);
                self.failed_deliveries = 0;
                continue;
            };
            self.pending.drain(..index);
            self.failed_deliveries = if index == 0 {
                self.failed_deliveries + 1
            } else {
                1
            };
            if self
                .max_retries
                .is_some_and(|max| self.failed_deliveries > max)
            {
                tracing::error!(consumer = ?self.consumer, "gave up on a stream record after its retries (Lambda would send it to the failure destination)");
                self.pending.pop_front();
                self.failed_deliveries = 0;
                continue;
            }
            tracing::warn!(consumer = ?self.consumer, "records come again at the next poll");
            return;
        }
    }
}

/// Whether a record passes a function's filters (any of them; all records without filters),
/// by Lambda's event filtering rules for the parts the template uses: fields matched by
/// their values, values by equality or `prefix`.
pub fn matches_filters(filters: &[Value], record: &EventRecord) -> bool {
    if filters.is_empty() {
        return true;
    }
    let Ok(record) = serde_json::to_value(record) else {
        return false;
    };
    filters
        .iter()
        .any(|pattern| matches_pattern(pattern, &record))
}

fn matches_pattern(pattern: &Value, value: &Value) -> bool {
    match pattern {
        Value::Object(fields) => fields.iter().all(|(name, field_pattern)| {
            value
                .get(name)
                .is_some_and(|field| matches_pattern(field_pattern, field))
        }),
        Value::Array(rules) => rules.iter().any(|rule| matches_rule(rule, value)),
        _ => false,
    }
}

fn matches_rule(rule: &Value, value: &Value) -> bool {
    match rule {
        Value::Object(rule) => match (rule.get("prefix"), value) {
            (Some(Value::String(prefix)), Value::String(value)) => value.starts_with(prefix),
            _ => false,
        },
        literal => literal == value,
    }
}

/// Whether the poller knows every rule of a pattern (equality and `prefix`).
fn pattern_supported(pattern: &Value) -> bool {
    match pattern {
        Value::Object(fields) => fields.values().all(pattern_supported),
        Value::Array(rules) => rules.iter().all(|rule| match rule {
            Value::Object(rule) => {
                rule.len() == 1 && rule.get("prefix").is_some_and(Value::is_string)
            }
            Value::Array(_) => false,
            _ => true,
        }),
        _ => false,
    }
}
