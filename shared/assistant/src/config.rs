//! The assistant's configuration from the environment, read and checked once at cold start
//! (the rest of a function's configuration is `shared::config::Config`).

use std::time::Duration;

use ai::context::TokenizerKind;
use ai::provider::ProviderKind;
use domain::error::Error;
use shared::config::positive_number;

const DEFAULT_SHORT_TERM_TTL_HOURS: u32 = 24;
const DEFAULT_MODEL_TIMEOUT: Duration = Duration::from_secs(25);

#[derive(Clone)]
pub struct ModelConfig {
    /// `SHORT_TERM_TTL_HOURS`: how long short-term memory lives (default 24).
    pub short_term_ttl: chrono::Duration,
    /// `TOKENIZER`: `o200k_base` (the default, and the one encoding this build counts).
    pub tokenizer: TokenizerKind,
    /// `SYSTEM_PROMPT`: sent first in every model context, when set.
    pub system_prompt: Option<String>,
    /// `MODEL_PROVIDER`: `bedrock` (the template's choice), `openai`, or `local` (default).
    pub model_provider: ProviderKind,
    /// `MODEL_ID`: the model used when a request names none (the provider's default if unset).
    pub model_id: String,
    /// `ALLOWED_MODELS`: comma-separated models a request may ask for (default: `MODEL_ID`).
    pub allowed_models: Vec<String>,
    /// `OPENAI_BASE_URL` (required for `openai`) and `OPENAI_API_KEY`.
    pub openai_base_url: Option<String>,
    pub openai_api_key: Option<String>,
    /// `MODEL_TIMEOUT_MS`: how long a model call may take before the request answers 504.
    pub model_timeout: Duration,
    /// `SUMMARY_EVERY_MESSAGES`: new messages that make a conversation due for a new
    /// summary; 0 turns them off.
    pub summary_every: u64,
    /// `SUMMARY_INPUT_TOKENS`: tokens of messages sent to the model for one summary at most.
    pub summary_input_tokens: usize,
}

impl std::fmt::Debug for ModelConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelConfig")
            .field("short_term_ttl", &self.short_term_ttl)
            .field("tokenizer", &self.tokenizer)
            .field(
                "system_prompt",
                &self.system_prompt.as_ref().map(|_| "<set>"),
            )
            .field("model_provider", &self.model_provider)
            .field("model_id", &self.model_id)
            .finish()
    }
}

impl ModelConfig {
    pub fn from_env() -> Result<Self, Error> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads configuration through `lookup`, so tests need not touch the process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let number = |name: &str, default: u64| positive_number(&lookup, name, default);
        let short_term_hours = match lookup("SHORT_TERM_TTL_HOURS") {
            None => DEFAULT_SHORT_TERM_TTL_HOURS,
            Some(hours) => hours
                .parse()
                .ok()
                .filter(|h| (1..=24 * 30).contains(h))
                .ok_or_else(|| {
                    Error::Config("SHORT_TERM_TTL_HOURS must be from 1 to 720".into())
                })?,
        };
        let tokenizer = lookup("TOKENIZER")
            .map(|name| name.parse())
            .transpose()?
            .unwrap_or(TokenizerKind::O200kBase);
        let model_provider = lookup("MODEL_PROVIDER")
            .map(|name| name.parse())
            .transpose()?
            .unwrap_or(ProviderKind::Local);
        let model_id = lookup("MODEL_ID")
            .filter(|m| !m.trim().is_empty())
            .unwrap_or_else(|| model_provider.default_model().to_owned());
        let mut allowed_models: Vec<String> = lookup("ALLOWED_MODELS")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .map(str::to_owned)
            .collect();
        if !allowed_models.contains(&model_id) {
            allowed_models.push(model_id.clone());
        }
        let openai_base_url = lookup("OPENAI_BASE_URL").filter(|u| !u.trim().is_empty());
        if model_provider == ProviderKind::OpenAiCompatible && openai_base_url.is_none() {
            return Err(Error::Config(
                "OPENAI_BASE_URL must be set for MODEL_PROVIDER=openai".into(),
            ));
        }
        let model_timeout = match lookup("MODEL_TIMEOUT_MS") {
            None => DEFAULT_MODEL_TIMEOUT,
            Some(ms) => ms
                .parse()
                .map(Duration::from_millis)
                .map_err(|_| Error::Config("MODEL_TIMEOUT_MS must be a whole number".into()))?,
        };
        let summary_every = match lookup("SUMMARY_EVERY_MESSAGES").as_deref() {
            Some("0") => 0,
            _ => number(
                "SUMMARY_EVERY_MESSAGES",
                crate::summaries::DEFAULT_SUMMARY_EVERY,
            )?,
        };
        let summary_input_tokens = number(
            "SUMMARY_INPUT_TOKENS",
            crate::summaries::DEFAULT_SUMMARY_INPUT_TOKENS as u64,
        )?
        .clamp(500, 100_000) as usize;
        Ok(Self {
            short_term_ttl: chrono::Duration::hours(i64::from(short_term_hours)),
            tokenizer,
            system_prompt: lookup("SYSTEM_PROMPT").filter(|p| !p.trim().is_empty()),
            model_provider,
            model_id,
            allowed_models,
            openai_base_url,
            openai_api_key: lookup("OPENAI_API_KEY").filter(|k| !k.is_empty()),
            model_timeout,
            summary_every,
            summary_input_tokens,
        })
    }
}
