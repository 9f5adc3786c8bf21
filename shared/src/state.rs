//! What every function needs, built once per cold start and shared by every invocation.

use std::sync::Arc;

use aws_config::SdkConfig;
use chrono::{DateTime, Utc};

use crate::account_export::AccountExports;
use crate::attachments::Attachments;
use crate::cache::Cache;
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::cursor_keys::Cursors;
use crate::error::Error;
use crate::export::Exports;
use crate::migration::{MigrationOptions, Migrator};
use crate::presets::Presets;
use crate::search::Search;
use crate::service::Conversations;
use crate::sharing::Sharing;
use crate::store::{ContentObjects, LazyS3, Store};
use crate::sync::MobileSync;
use crate::usage::Usage;

/// What every handler needs, built once per cold start.
#[derive(Clone)]
pub struct State {
    pub conversations: Conversations,
    pub migrator: Migrator,
    pub sync: MobileSync,
    pub search: Search,
    pub exports: Exports,
    /// Share links: made, listed and revoked by their owners, read by anyone holding one.
    pub sharing: Sharing,
    /// The users' presets and the operator's templates.
    pub presets: Presets,
    pub account_exports: AccountExports,
    /// Each user's limits on the expensive routes, and their counts.
    pub usage: Usage,
    /// The attachments bucket, when configured.
    pub attachments: Option<Attachments>,
    pub config: Config,
    pub clock: Arc<dyn Clock>,
}

impl State {
    /// Reads the configuration and builds the SDK clients from the environment (in AWS, the
    /// function's role and region; locally, `AWS_ENDPOINT_URL` points at the local servers).
    pub async fn from_env() -> Result<Self, Error> {
        Self::from_env_reaching(Bucket::Used)
    }

    /// The state of a function that never reads or writes the attachments bucket (no
    /// message content, attachment or export): no S3 client is built, so none is linked.
    pub async fn from_env_without_bucket() -> Result<Self, Error> {
        Self::from_env_reaching(Bucket::Unused)
    }

    fn from_env_reaching(bucket: Bucket) -> Result<Self, Error> {
        let config = Config::from_env()?;
        if config.cache.is_none() && config.cache_name.is_some() {
            // Only the health function looks a cache up by name (it alone links ElastiCache).
            tracing::warn!("CACHE_NAME is set without CACHE_URL: running without the cache");
        }
        let sdk = crate::aws::sdk_config_from_env();
        Ok(Self::build(config, &sdk, Arc::new(SystemClock), bucket))
    }

    pub fn new(config: Config, sdk: &SdkConfig) -> Self {
        Self::with_clock(config, sdk, Arc::new(SystemClock))
    }

    /// State whose time comes from `clock` (tests move it by hand).
    pub fn with_clock(config: Config, sdk: &SdkConfig, clock: Arc<dyn Clock>) -> Self {
        Self::build(config, sdk, clock, Bucket::Used)
    }

    /// Like [`State::with_clock`], for a function that never reaches the attachments bucket:
    /// no S3 client, no attachments, message content never read from an object.
    pub fn without_bucket(config: Config, sdk: &SdkConfig, clock: Arc<dyn Clock>) -> Self {
        Self::build(config, sdk, clock, Bucket::Unused)
    }

    fn build(config: Config, sdk: &SdkConfig, clock: Arc<dyn Clock>, bucket: Bucket) -> Self {
        crate::metrics::install(&config.metrics_namespace);
        // Built on first use: most requests never reach S3.
        let s3 = match bucket {
            Bucket::Used => config.attachments_bucket.as_ref().map(|name| {
                let client = LazyS3::new(
                    aws_sdk_s3::config::Builder::from(sdk)
                        .force_path_style(config.s3_force_path_style)
                        .build(),
                );
                (client, name)
            }),
            Bucket::Unused => None,
        };
        let mut store = Store::new(
            aws_sdk_dynamodb::Client::from_conf(
                aws_sdk_dynamodb::config::Builder::from(sdk)
                    .retry_config(store_retries(config.store_max_attempts))
                    .build(),
            ),
            config.table_name.clone(),
        )
        .with_clock(clock.clone())
        .with_item_shape(config.item_shape)
        .with_compressed_text(config.compress_text)
        .with_slot_keys(config.slot_keys);
        if let Some((s3, bucket)) = &s3 {
            store = store.with_content_objects(ContentObjects::new(s3.clone(), *bucket));
        }
        let cache = Cache::configured(config.cache.clone());
        let cursors = Cursors::from_source(&config.cursor_keys, sdk);
        let attachments = s3
            .as_ref()
            .map(|(s3, bucket)| Attachments::new(s3.clone(), *bucket, config.attachment_max_bytes));
        let conversations = Conversations::new(store.clone(), cursors.clone(), cache.clone())
            .with_attachments(attachments.clone())
            .with_tombstone_retention(config.tombstone_retention);
        let sharing = Sharing::new(conversations.clone(), attachments.clone());
        let presets = Presets::new(
            store.clone(),
            cache.clone(),
            config.preset_models.clone(),
            config.preset_templates.clone(),
        );
        let sync = MobileSync::new(conversations.clone(), config.sync_settle);
        let search = Search::new(store.clone(), cursors);
        let exports = Exports::new(store.clone());
        let account_exports = AccountExports::new(
            store.clone(),
            exports.clone(),
            config.export_conversations_per_run,
        )
        .with_retry_base(config.export_retry_base);
        let usage = Usage::new(store.clone(), config.limits.clone());
        let migrator = Migrator::new(
            store.clone(),
            MigrationOptions {
                session_gap: config.migration_session_gap,
                ..MigrationOptions::default()
            },
        )
        .with_cache(cache);
        Self {
            conversations,
            migrator,
            sync,
            search,
            exports,
            sharing,
            presets,
            account_exports,
            usage,
            attachments,
            config,
            clock,
        }
    }

    /// The time of this request, at the precision the store keeps.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }
}

/// Whether a function reaches the attachments bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bucket {
    Used,
    Unused,
}

/// The DynamoDB client's retry policy: the SDK's standard mode (throttling, transient and
/// connection errors are retried, with exponential backoff and jitter, while its retry quota
/// lasts), `attempts` in all, the first retry after about 25 ms and none more than 1 s
/// later. What still fails is `Error::Unavailable`: 503 with `Retry-After`.
pub fn store_retries(attempts: u32) -> aws_sdk_dynamodb::config::retry::RetryConfig {
    aws_sdk_dynamodb::config::retry::RetryConfig::standard()
        .with_max_attempts(attempts)
        .with_initial_backoff(std::time::Duration::from_millis(25))
        .with_max_backoff(std::time::Duration::from_secs(1))
}
