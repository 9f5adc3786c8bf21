//! Metrics as CloudWatch Embedded Metric Format: JSON lines on stdout, which Lambda ships to
//! CloudWatch Logs and CloudWatch turns into metrics (no API call, no added latency).
//!
//! The domain records through the `metrics` facade (the helpers below name every metric the
//! dashboard and alarms in `template.yaml` use); `metrics_cloudwatch_embedded` collects them,
//! and each function writes what one invocation recorded when it ends (`observed`). Dimensions
//! stay low-cardinality: an endpoint's route, a function's name, an outcome; never a user.

use std::future::Future;
use std::io::Write;
use std::sync::OnceLock;
use std::time::Duration;

use lambda_runtime::Diagnostic;
use metrics::{counter, describe_counter, describe_histogram, histogram, Unit};
use metrics_cloudwatch_embedded::Collector;

use crate::error::{chain, Error};
use std::convert::Infallible;

use domain::migration::RunSummary;

/// The namespace when `METRICS_NAMESPACE` is not set (the template sets one per stack).
pub const NAMESPACE: &str = "NuminaConversations";

/// Every metric's name, as the dashboard and alarms spell them.
pub mod names {
    pub const REQUESTS: &str = "Requests";
    pub const SERVER_ERRORS: &str = "ServerErrors";
    pub const CLIENT_ERRORS: &str = "ClientErrors";
    pub const LATENCY: &str = "Latency";
    pub const CONVERSATIONS_CREATED: &str = "ConversationsCreated";
    pub const MESSAGES_ADDED: &str = "MessagesAdded";
    pub const MESSAGE_BYTES: &str = "MessageBytes";
    pub const CACHE_HITS: &str = "CacheHits";
    pub const CACHE_MISSES: &str = "CacheMisses";
    pub const CACHE_ERRORS: &str = "CacheErrors";
    pub const SHORT_TERM_MEMORY_FALLBACKS: &str = "ShortTermMemoryFallbacks";
    pub const ATTACHMENT_BYTES: &str = "AttachmentBytes";
    pub const BATCH_OPERATIONS: &str = "BatchOperations";
    pub const INVOCATIONS: &str = "Invocations";
    pub const FAILURES: &str = "Failures";
    pub const CONVERSATIONS_PURGED: &str = "ConversationsPurged";
    pub const CACHE_INVALIDATIONS: &str = "CacheInvalidations";
    pub const MIGRATION_USERS: &str = "MigrationUsers";
    pub const MIGRATION_USERS_FAILED: &str = "MigrationUsersFailed";
    pub const MIGRATION_CONVERSATIONS_CREATED: &str = "MigrationConversationsCreated";
    pub const MIGRATION_MESSAGES_MIGRATED: &str = "MigrationMessagesMigrated";
    pub const MIGRATION_MESSAGES_SKIPPED: &str = "MigrationMessagesSkipped";
    pub const MESSAGES_INDEXED: &str = "MessagesIndexed";
    pub const SEARCH_BLOCKS_WRITTEN: &str = "SearchBlocksWritten";
    pub const SUMMARIES_WRITTEN: &str = "SummariesWritten";
    pub const SUMMARY_FAILURES: &str = "SummaryFailures";
    pub const ACCOUNT_EXPORTS: &str = "AccountExports";
    pub const RATE_LIMITED: &str = "RateLimited";
    pub const MODEL_TOKENS: &str = "ModelTokens";
    pub const MODEL_TOKENS_NOT_COUNTED: &str = "ModelTokensNotCounted";
    pub const DELETES_SWEPT: &str = "DeletesSwept";
    pub const DELETES_UNSWEPT: &str = "DeletesUnswept";
    pub const SWEEPS_INCOMPLETE: &str = "SweepsIncomplete";

    /// Every metric the service writes.
    pub const ALL: [&str; 33] = [
        REQUESTS,
        SERVER_ERRORS,
        CLIENT_ERRORS,
        LATENCY,
        CONVERSATIONS_CREATED,
        MESSAGES_ADDED,
        MESSAGE_BYTES,
        CACHE_HITS,
        CACHE_MISSES,
        CACHE_ERRORS,
        SHORT_TERM_MEMORY_FALLBACKS,
        ATTACHMENT_BYTES,
        BATCH_OPERATIONS,
        INVOCATIONS,
        FAILURES,
        CONVERSATIONS_PURGED,
        CACHE_INVALIDATIONS,
        MIGRATION_USERS,
        MIGRATION_USERS_FAILED,
        MIGRATION_CONVERSATIONS_CREATED,
        MIGRATION_MESSAGES_MIGRATED,
        MIGRATION_MESSAGES_SKIPPED,
        MESSAGES_INDEXED,
        SEARCH_BLOCKS_WRITTEN,
        SUMMARIES_WRITTEN,
        SUMMARY_FAILURES,
        ACCOUNT_EXPORTS,
        RATE_LIMITED,
        MODEL_TOKENS,
        MODEL_TOKENS_NOT_COUNTED,
        DELETES_SWEPT,
        DELETES_UNSWEPT,
        SWEEPS_INCOMPLETE,
    ];
}
use names::*;

/// Installs the process's collector as the `metrics` recorder, writing to `namespace` (the
/// first call wins; functions call it at cold start with `METRICS_NAMESPACE`).
pub fn install(namespace: &str) -> &'static Collector {
    static COLLECTOR: OnceLock<&'static Collector> = OnceLock::new();
    COLLECTOR.get_or_init(|| {
        let collector = metrics_cloudwatch_embedded::Builder::new()
            .cloudwatch_namespace(namespace.to_owned())
            .init()
            .expect("the metrics recorder is installed once, here");
        describe_histogram!(LATENCY, Unit::Milliseconds, "time to answer a request");
        describe_counter!(
            MESSAGE_BYTES,
            Unit::Bytes,
            "content bytes of messages added"
        );
        describe_counter!(ATTACHMENT_BYTES, Unit::Bytes, "bytes of files attached");
        collector
    })
}

/// The process's collector (installed with the default namespace if nothing installed one).
pub fn collector() -> &'static Collector {
    install(NAMESPACE)
}

/// Writes what was recorded since the last flush, one EMF document per dimension set.
pub fn flush(sink: impl Write) {
    if let Err(error) = collector().flush(sink) {
        tracing::warn!(error = %error, "metrics not written");
    }
}

/// Runs one invocation and writes its metrics to `sink` when it ends: the function's
/// invocations and failures (by `function`), and whatever the work recorded.
pub async fn observed<T, E: Diagnosed, W: Write>(
    function: &'static str,
    work: impl Future<Output = Result<T, E>>,
    sink: impl FnOnce() -> W,
) -> Result<T, Diagnostic> {
    collector();
    let result = work.await;
    counter!(INVOCATIONS, "Function" => function).increment(1);
    if result.is_err() {
        counter!(FAILURES, "Function" => function).increment(1);
    }
    flush(sink());
    result.map_err(Diagnosed::diagnostic)
}

/// How a failed invocation reaches Lambda.
pub trait Diagnosed {
    fn diagnostic(self) -> Diagnostic;
}

/// The error type Lambda reports is the variant's name, which Step Functions' `Retry` and
/// `Catch` match on; the message is the whole cause chain.
impl Diagnosed for Error {
    fn diagnostic(self) -> Diagnostic {
        Diagnostic {
            error_type: self.kind().to_owned(),
            error_message: chain(&self),
        }
    }
}

impl Diagnosed for Infallible {
    fn diagnostic(self) -> Diagnostic {
        match self {}
    }
}

/// One answered API request, by its route (`GET /conversations/{id}`).
pub fn request(endpoint: &str, status: u16, took: Duration) {
    let endpoint = endpoint.to_owned();
    counter!(REQUESTS, "Endpoint" => endpoint.clone()).increment(1);
    match status {
        500.. => counter!(SERVER_ERRORS, "Endpoint" => endpoint.clone()).increment(1),
        400..=499 => counter!(CLIENT_ERRORS, "Endpoint" => endpoint.clone()).increment(1),
        _ => {}
    }
    histogram!(LATENCY, "Endpoint" => endpoint).record(took.as_secs_f64() * 1000.0);
}

pub fn conversation_created() {
    counter!(CONVERSATIONS_CREATED).increment(1);
}

pub fn message_added(content_bytes: usize) {
    counter!(MESSAGES_ADDED).increment(1);
    counter!(MESSAGE_BYTES).increment(content_bytes as u64);
}

pub fn cache_lookup(hit: bool) {
    match hit {
        true => counter!(CACHE_HITS).increment(1),
        false => counter!(CACHE_MISSES).increment(1),
    }
}

pub fn cache_error() {
    counter!(CACHE_ERRORS).increment(1);
}

pub fn short_term_memory_fallback() {
    counter!(SHORT_TERM_MEMORY_FALLBACKS).increment(1);
}

pub fn attachment_attached(bytes: u64) {
    counter!(ATTACHMENT_BYTES).increment(bytes);
}

/// One batch operation, by what came of it (`applied`, `replayed` or `failed`).
pub fn batch_operation(outcome: &'static str) {
    counter!(BATCH_OPERATIONS, "Outcome" => outcome).increment(1);
}

pub fn conversation_purged() {
    counter!(CONVERSATIONS_PURGED).increment(1);
}

/// Deletes a sweep found with nothing left, those whose purge it could not finish, and
/// whether it reached every pending delete (out of time, or a shard unreadable).
pub fn deletes_swept(finished: usize, unfinished: usize, complete: bool) {
    counter!(DELETES_SWEPT).increment(finished as u64);
    counter!(DELETES_UNSWEPT).increment(unfinished as u64);
    counter!(SWEEPS_INCOMPLETE).increment(u64::from(!complete));
}

/// Messages the search indexer read, and the search blocks it wrote for them (one write unit
/// each).
pub fn search_indexed(messages: usize, blocks: usize) {
    counter!(MESSAGES_INDEXED).increment(messages as u64);
    counter!(SEARCH_BLOCKS_WRITTEN).increment(blocks as u64);
}

/// A conversation summary stored, or one the model could not write (retried later).
pub fn summary(written: bool) {
    counter!(if written {
        SUMMARIES_WRITTEN
    } else {
        SUMMARY_FAILURES
    })
    .increment(1);
}

/// An account export started, finished or failed (`Outcome`).
pub fn account_export(outcome: &'static str) {
    counter!(ACCOUNT_EXPORTS, "Outcome" => outcome).increment(1);
}

/// A request refused for its user's limit of its kind (`Kind`, `domain::usage::Metered`).
pub fn rate_limited(kind: &'static str) {
    counter!(RATE_LIMITED, "Kind" => kind).increment(1);
}

/// Model tokens a completion spent (what the spend alarm watches).
pub fn model_tokens(tokens: u64) {
    counter!(MODEL_TOKENS).increment(tokens);
}

/// Model tokens spent but not added to their user's daily count (the table failed).
pub fn tokens_not_counted(tokens: u64) {
    counter!(MODEL_TOKENS_NOT_COUNTED).increment(tokens);
}

pub fn cache_invalidation() {
    counter!(CACHE_INVALIDATIONS).increment(1);
}

/// A finished migration run's totals, by mode (`Migrate` or `DryRun`).
pub fn migration_run(summary: &RunSummary) {
    let mode = if summary.dry_run { "DryRun" } else { "Migrate" };
    for (name, value) in [
        (MIGRATION_USERS, summary.users),
        (MIGRATION_USERS_FAILED, summary.users_failed),
        (
            MIGRATION_CONVERSATIONS_CREATED,
            summary.conversations_created,
        ),
        (MIGRATION_MESSAGES_MIGRATED, summary.messages_migrated),
        (MIGRATION_MESSAGES_SKIPPED, summary.messages_skipped),
    ] {
        // Zeros too: a run that failed no user still says so.
        counter!(name, "Mode" => mode).absolute(value);
    }
}
