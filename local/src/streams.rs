//! The table's stream, fed to the stream functions' handlers the way Lambda's event source
//! mappings feed them in AWS: records read from the local server's DynamoDB Streams API,
//! filtered by the template's filter patterns, in batches of the template's size, each
//! function from its own position (a batch it reports failed comes again, from the failed
//! record, at the next poll, up to the template's `MaximumRetryAttempts`).

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use assistant::State;
use aws_lambda_events::event::dynamodb::{Event, EventRecord};
use aws_lambda_events::event::streams::DynamoDbEventResponse;
use aws_sdk_dynamodbstreams::types::ShardIteratorType;
use chrono::Utc;
use lambda_runtime::LambdaEvent;
use serde_json::Value;
use shared::streams;

use crate::template::{StreamSubscription, Template};

#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("the table has no stream")]
    NoStream,
    #[error("{0}")]
    Api(String),
    #[error("template: {0}")]
    Template(String),
}

/// A function the stream feeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamConsumer {
    IndexForSearch,
    PurgeDeletedConversations,
    InvalidateCachedReads,
    SummarizeConversations,
    RunAccountExports,
}

impl StreamConsumer {
    pub fn for_binary(binary: &str) -> Option<Self> {
        Some(match binary {
            "index-for-search" => Self::IndexForSearch,
            "purge-deleted-conversations" => Self::PurgeDeletedConversations,
            "invalidate-cached-reads" => Self::InvalidateCachedReads,
            "summarize-conversations" => Self::SummarizeConversations,
            "run-account-exports" => Self::RunAccountExports,
            _ => return None,
        })
    }

    /// Runs the function's handler on one batch, with a minute to its deadline.
    pub async fn call(
        self,
        state: &State,
        event: Event,
    ) -> Result<DynamoDbEventResponse, shared::Error> {
        let mut context = lambda_runtime::Context::default();
        context.deadline = (Utc::now().timestamp_millis() + 60_000) as u64;
        let event = LambdaEvent::new(event, context);
        match self {
            Self::IndexForSearch => streams::index_for_search(state, event).await,
            Self::PurgeDeletedConversations => {
                streams::purge_deleted_conversations(state, event).await
            }
            Self::InvalidateCachedReads => {
                streams::invalidate_cached_reads(state.conversations.cache(), event).await
            }
            Self::SummarizeConversations => {
                assistant::streams::summarize_conversations(state, event).await
            }
            Self::RunAccountExports => streams::run_account_exports(state, event).await,
        }
    }
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

/// Reads the table's stream and feeds its functions.
pub struct StreamPoller {
    state: State,
    client: aws_sdk_dynamodbstreams::Client,
    stream_arn: String,
    /// Where each shard is read next.
    iterators: HashMap<String, String>,
    feeds: Vec<Feed>,
}

impl StreamPoller {
    /// Feeds the template's stream functions (those in `only`, when given) from the stream's
    /// current end: records written before are not delivered.
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
            if only.is_some_and(|only| !only.contains(&consumer)) {
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
            client: aws_sdk_dynamodbstreams::Client::new(&config),
            stream_arn,
            iterators: HashMap::new(),
            feeds,
        };
        poller.start_at_latest().await?;
        Ok(poller)
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

    /// Reads every record written since the last poll and feeds each function its batches,
    /// until each has taken all its records or reported a failure (those come again at the
    /// next poll). Returns how many records were read.
    pub async fn poll_once(&mut self) -> Result<usize, StreamError> {
        let read = self.read_new_records().await;
        for feed in &mut self.feeds {
            feed.deliver(&self.state).await;
        }
        read
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
            event.change.size_bytes = change.size_bytes.unwrap_or_default();
        }
        event
    }
}

impl Feed {
    /// Delivers the pending records in batches until all are taken or one batch fails.
    async fn deliver(&mut self, state: &State) {
        while !self.pending.is_empty() {
            let take = self.batch_size.min(self.pending.len());
            let mut event = Event::default();
            event.records = self.pending.iter().take(take).cloned().collect();
            let failed_from = match self.consumer.call(state, event.clone()).await {
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
