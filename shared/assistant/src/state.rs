//! What the assistant's functions need, built once per cold start: the conversations'
//! services (`shared::state::State`, which this state derefs to) plus the model provider,
//! the tokenizer, short-term memory and summaries.

use std::ops::Deref;
use std::sync::Arc;

use ai::context::Tokenizer;
use ai::provider::{Bedrock, LocalModel, ModelProvider, OpenAiCompatible, ProviderKind};
use aws_config::SdkConfig;
use domain::clock::{Clock, SystemClock};
use domain::error::Error;
use shared::config::Config;

use crate::config::ModelConfig;
use crate::memory::ShortTermMemory;
use crate::service::{Assistant, ModelSettings};
use crate::summaries::{Summaries, SummarySettings};

#[derive(Clone)]
pub struct State {
    pub core: shared::state::State,
    pub assistant: Assistant,
    pub summaries: Summaries,
    pub model_config: ModelConfig,
}

/// The conversations' services are the assistant's too.
impl Deref for State {
    type Target = shared::state::State;

    fn deref(&self) -> &Self::Target {
        &self.core
    }
}

impl State {
    /// Reads both configurations and builds the clients from the environment.
    pub async fn from_env() -> Result<Self, Error> {
        let model_config = ModelConfig::from_env()?;
        let sdk = shared::aws::sdk_config_from_env();
        Ok(Self::new(Config::from_env()?, model_config, &sdk))
    }

    /// Like [`State::from_env`], for a function that never reaches the attachments bucket
    /// (no S3 client is built).
    pub async fn from_env_without_bucket() -> Result<Self, Error> {
        let model_config = ModelConfig::from_env()?;
        let sdk = shared::aws::sdk_config_from_env();
        let core =
            shared::state::State::without_bucket(Config::from_env()?, &sdk, Arc::new(SystemClock));
        Ok(Self::over(core, model_config, &sdk))
    }

    /// State whose time comes from `clock` (tests move it by hand).
    pub fn with_clock(
        config: Config,
        model_config: ModelConfig,
        sdk: &SdkConfig,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let core = shared::state::State::with_clock(config, sdk, clock);
        Self::over(core, model_config, sdk)
    }

    pub fn new(config: Config, model_config: ModelConfig, sdk: &SdkConfig) -> Self {
        Self::with_clock(config, model_config, sdk, Arc::new(SystemClock))
    }

    /// The assistant over the conversations' services `core`.
    pub fn over(core: shared::state::State, config: ModelConfig, sdk: &SdkConfig) -> Self {
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
        let store = core.conversations.store().clone();
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
            core.conversations.clone(),
            memory,
            tokenizer,
            config.system_prompt.clone(),
            ModelSettings {
                provider,
                default_model: config.model_id.clone(),
                allowed_models: config.allowed_models.clone(),
                timeout: config.model_timeout,
            },
        )
        .counting_tokens_in(core.usage.clone());
        Self {
            core,
            assistant,
            summaries,
            model_config: config,
        }
    }
}
