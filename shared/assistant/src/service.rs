//! What the AI side of the app needs: the context to send a model for a conversation (or,
//! without one, from short-term memory), chosen within a token budget; and completions,
//! which save the prompt and the reply so that nothing acknowledged is ever lost.

mod completion;
mod context;

use std::sync::Arc;
use std::time::Duration as StdDuration;

use crate::memory::ShortTermMemory;
use ai::context::Tokenizer;
use ai::provider::ModelProvider;
use shared::service::Conversations;
use shared::usage::Usage;

pub use completion::{
    Completion, CompletionEvent, CompletionRequest, COMPLETION_RECORD_TTL,
    DEFAULT_MAX_OUTPUT_TOKENS, LEGACY_SESSION_GAP, MAX_OUTPUT_TOKENS, MAX_PROMPT_BYTES,
    MAX_REQUEST_ID_CHARS,
};
pub use context::{ContextSource, ModelContext};

/// The assistant's operations, over conversations, short-term memory and a model.
#[derive(Clone)]
pub struct Assistant {
    conversations: Conversations,
    memory: ShortTermMemory,
    tokenizer: Tokenizer,
    system_prompt: Option<String>,
    provider: Arc<dyn ModelProvider>,
    default_model: String,
    allowed_models: Vec<String>,
    model_timeout: StdDuration,
    /// Where the model tokens each completion spends are counted against its user's budget.
    usage: Option<Usage>,
}

/// How the assistant calls its model.
pub struct ModelSettings {
    pub provider: Arc<dyn ModelProvider>,
    pub default_model: String,
    pub allowed_models: Vec<String>,
    pub timeout: StdDuration,
}

impl Assistant {
    pub fn new(
        conversations: Conversations,
        memory: ShortTermMemory,
        tokenizer: Tokenizer,
        system_prompt: Option<String>,
        model: ModelSettings,
    ) -> Self {
        Self {
            conversations,
            memory,
            tokenizer,
            system_prompt,
            provider: model.provider,
            default_model: model.default_model,
            allowed_models: model.allowed_models,
            model_timeout: model.timeout,
            usage: None,
        }
    }

    /// The assistant, counting each completion's model tokens in `usage` (the daily budget
    /// its HTTP layer admits completions against).
    pub fn counting_tokens_in(self, usage: Usage) -> Self {
        Self {
            usage: Some(usage),
            ..self
        }
    }

    pub fn memory(&self) -> &ShortTermMemory {
        &self.memory
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }
}
