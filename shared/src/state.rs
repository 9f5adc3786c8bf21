//! What every function needs, built once per cold start and shared by every invocation.

use std::sync::Arc;

use aws_config::SdkConfig;
use chrono::{DateTime, Utc};

use crate::account_export::AccountExports;
use crate::assistant::{Assistant, ModelSettings};
use crate::attachments::Attachments;
use crate::cache::{describe_cache, Cache, CacheSettings};
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::context::Tokenizer;
use crate::cursor::CursorSigner;
use crate::error::Error;
use crate::export::Exports;
use crate::memory::ShortTermMemory;
use crate::migration::{MigrationOptions, Migrator};
use crate::provider::{Bedrock, LocalModel, ModelProvider, OpenAiCompatible, ProviderKind};
use crate::search::Search;
use crate::service::Conversations;
use crate::store::{ContentObjects, Store};
use crate::summaries::{Summaries, SummarySettings};
use crate::sync::MobileSync;

/// What every handler needs, built once per cold start.
#[derive(Clone)]
pub struct State {
    pub conversations: Conversations,
    pub assistant: Assistant,
    pub migrator: Migrator,
    pub sync: MobileSync,
    pub search: Search,
    pub exports: Exports,
    pub account_exports: AccountExports,
    pub summaries: Summaries,
    /// ElastiCache and the cache's name there, when `CACHE_NAME` is configured (health checks
    /// report its status).
    pub managed_cache: Option<(aws_sdk_elasticache::Client, String)>,
    /// The attachments bucket, when configured.
    pub attachments: Option<Attachments>,
    pub config: Config,
    pub clock: Arc<dyn Clock>,
}

impl State {
    /// Reads the configuration and builds the SDK clients from the environment (in AWS, the
    /// function's role and region; locally, `AWS_ENDPOINT_URL` points at the local servers).
    pub async fn from_env() -> Result<Self, Error> {
        let mut config = Config::from_env()?;
        let sdk = aws_config::load_from_env().await;
        if config.cache.is_none() {
            if let Some(name) = config.cache_name.clone() {
                // A cache named but not located: ask ElastiCache once, at cold start. A cache
                // that cannot be found leaves the function running without one.
                let client = aws_sdk_elasticache::Client::new(&sdk);
                match describe_cache(&client, &name).await {
                    Ok(found) => {
                        config.cache = Some(CacheSettings {
                            url: found.url,
                            cluster: found.cluster,
                            timeout: config.cache_timeout,
                            breaker_open_for: config.cache_breaker_open_for,
                            namespace: config.table_name.clone(),
                        })
                    }
                    Err(error) => {
                        tracing::error!(error = %error, "cache {name} not found; running without it")
                    }
                }
            }
        }
        Ok(Self::new(config, &sdk))
    }

    pub fn new(config: Config, sdk: &SdkConfig) -> Self {
        Self::with_clock(config, sdk, Arc::new(SystemClock))
    }

    /// State whose time comes from `clock` (tests move it by hand).
    pub fn with_clock(config: Config, sdk: &SdkConfig, clock: Arc<dyn Clock>) -> Self {
        crate::metrics::install(&config.metrics_namespace);
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(sdk)
                .force_path_style(config.s3_force_path_style)
                .build(),
        );
        let mut store = Store::new(
            aws_sdk_dynamodb::Client::from_conf(
                aws_sdk_dynamodb::config::Builder::from(sdk)
                    .retry_config(store_retries(config.store_max_attempts))
                    .build(),
            ),
            config.table_name.clone(),
        )
        .with_clock(clock.clone());
        if let Some(bucket) = &config.attachments_bucket {
            store = store.with_content_objects(ContentObjects::new(s3.clone(), bucket));
        }
        let tokenizer = Tokenizer::new(config.tokenizer);
        let provider: Arc<dyn ModelProvider> = match config.model_provider {
            ProviderKind::Bedrock => {
                Arc::new(Bedrock::new(aws_sdk_bedrockruntime::Client::new(sdk)))
            }
            ProviderKind::OpenAiCompatible => Arc::new(OpenAiCompatible::new(
                config.openai_base_url.as_deref().unwrap_or_default(),
                config.openai_api_key.clone(),
            )),
            ProviderKind::Local => Arc::new(LocalModel::new(tokenizer)),
        };
        let cache = config
            .cache
            .clone()
            .map(Cache::new)
            .transpose()
            .unwrap_or_else(|error| {
                tracing::error!(error = %error, "cache not usable; running without it");
                None
            })
            .unwrap_or_default();
        let attachments = config
            .attachments_bucket
            .as_ref()
            .map(|bucket| Attachments::new(s3.clone(), bucket, config.attachment_max_bytes));
        let conversations = Conversations::new(
            store.clone(),
            CursorSigner::new(&config.cursor_secret),
            cache.clone(),
        )
        .with_attachments(attachments.clone())
        .with_tombstone_retention(config.tombstone_retention);
        let sync = MobileSync::new(conversations.clone(), config.sync_settle);
        let search = Search::new(store.clone(), CursorSigner::new(&config.cursor_secret));
        let exports = Exports::new(store.clone());
        let account_exports = AccountExports::new(
            store.clone(),
            exports.clone(),
            config.export_conversations_per_run,
        )
        .with_retry_base(config.export_retry_base);
        let migrator = Migrator::new(
            store.clone(),
            MigrationOptions {
                session_gap: config.migration_session_gap,
                ..MigrationOptions::default()
            },
        )
        .with_cache(cache);
        let summaries = Summaries::new(
            store.clone(),
            provider.clone(),
            tokenizer,
            SummarySettings {
                every: config.summary_every,
                input_tokens: config.summary_input_tokens,
                model: config.model_id.clone(),
                timeout: config.model_timeout,
            },
        );
        let memory = ShortTermMemory::new(store, config.short_term_ttl);
        let assistant = Assistant::new(
            conversations.clone(),
            memory,
            tokenizer,
            config.system_prompt.clone(),
            ModelSettings {
                provider,
                default_model: config.model_id.clone(),
                allowed_models: config.allowed_models.clone(),
                timeout: config.model_timeout,
            },
        );
        Self {
            conversations,
            assistant,
            migrator,
            sync,
            search,
            exports,
            account_exports,
            summaries,
            managed_cache: config
                .cache_name
                .clone()
                .map(|name| (aws_sdk_elasticache::Client::new(sdk), name)),
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
