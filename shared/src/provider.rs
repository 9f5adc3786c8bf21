//! Model providers behind one trait: Amazon Bedrock's Converse API (the production default),
//! any OpenAI-compatible chat-completions endpoint, and a deterministic local model for
//! running locally and in tests. Which one, and which model, is configuration.

use std::str::FromStr;

use aws_sdk_bedrockruntime::types::{
    ContentBlock, ConversationRole, ConverseOutput, InferenceConfiguration,
    Message as BedrockMessage, SystemContentBlock,
};
use futures::future::BoxFuture;
use serde::Deserialize;
use serde_json::json;

use crate::context::{ContextMessage, Tokenizer};
use crate::error::Error;
use crate::model::Role;

/// What a model is asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelRequest {
    pub model: String,
    /// System messages first, then the conversation oldest first, ending with the prompt.
    pub messages: Vec<ContextMessage>,
    pub max_output_tokens: u32,
}

/// What a model answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelReply {
    pub text: String,
    pub input_tokens: u64,
    pub output_tokens: u64,
}

/// Why a model gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("the model provider failed: {0}")]
    Failed(String),
}

/// A chat model.
pub trait ModelProvider: Send + Sync {
    /// The provider's name, for metadata and logs.
    fn name(&self) -> &'static str;
    fn complete<'a>(
        &'a self,
        request: &'a ModelRequest,
    ) -> BoxFuture<'a, Result<ModelReply, ProviderError>>;
}

/// The providers a deployment can choose (`MODEL_PROVIDER`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderKind {
    Bedrock,
    OpenAiCompatible,
    Local,
}

impl ProviderKind {
    pub fn default_model(self) -> &'static str {
        match self {
            Self::Bedrock => "amazon.nova-lite-v1:0",
            Self::OpenAiCompatible => "gpt-4o-mini",
            Self::Local => LocalModel::MODEL,
        }
    }
}

impl FromStr for ProviderKind {
    type Err = Error;

    fn from_str(name: &str) -> Result<Self, Error> {
        match name {
            "bedrock" => Ok(Self::Bedrock),
            "openai" => Ok(Self::OpenAiCompatible),
            "local" => Ok(Self::Local),
            other => Err(Error::Config(format!(
                "MODEL_PROVIDER must be bedrock, openai or local, not {other:?}"
            ))),
        }
    }
}

/// A deterministic stand-in for a model: the same request always gets the same reply, and
/// its token counts are real counts of what it was sent and what it said.
pub struct LocalModel {
    tokenizer: Tokenizer,
}

impl LocalModel {
    pub const MODEL: &'static str = "numina-local-1";

    pub fn new(tokenizer: Tokenizer) -> Self {
        Self { tokenizer }
    }
}

impl ModelProvider for LocalModel {
    fn name(&self) -> &'static str {
        "local"
    }

    fn complete<'a>(
        &'a self,
        request: &'a ModelRequest,
    ) -> BoxFuture<'a, Result<ModelReply, ProviderError>> {
        Box::pin(async move {
            let prompt = request
                .messages
                .iter()
                .rev()
                .find(|m| m.role == Role::User)
                .map(|m| m.content.as_str())
                .unwrap_or_default();
            let excerpt: String = prompt.chars().take(200).collect();
            let earlier = request.messages.len().saturating_sub(1);
            let text = format!(
                "You said: \"{excerpt}\". I have {earlier} earlier message{} in view.",
                if earlier == 1 { "" } else { "s" }
            );
            let input_tokens = request
                .messages
                .iter()
                .map(|m| self.tokenizer.message_cost(&m.content) as u64)
                .sum();
            let output_tokens = self.tokenizer.count(&text) as u64;
            Ok(ModelReply {
                text,
                input_tokens,
                output_tokens,
            })
        })
    }
}

/// Any endpoint that speaks OpenAI's chat-completions API.
pub struct OpenAiCompatible {
    http: reqwest::Client,
    base_url: String,
    api_key: Option<String>,
}

/// Makes aws-lc-rs (the crypto the AWS SDK already uses) the process's TLS provider, so HTTP
/// clients built without a provider of their own work. Safe to call more than once.
pub fn install_tls_provider() {
    let _already_installed = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

impl OpenAiCompatible {
    pub fn new(base_url: &str, api_key: Option<String>) -> Self {
        install_tls_provider();
        Self {
            http: reqwest::Client::new(),
            base_url: base_url.trim_end_matches('/').to_owned(),
            api_key,
        }
    }
}

#[derive(Deserialize)]
struct ChatCompletion {
    choices: Vec<ChatChoice>,
    usage: Option<ChatUsage>,
}

#[derive(Deserialize)]
struct ChatChoice {
    message: ChatMessage,
}

#[derive(Deserialize)]
struct ChatMessage {
    content: Option<String>,
}

#[derive(Deserialize)]
struct ChatUsage {
    prompt_tokens: u64,
    completion_tokens: u64,
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::User => "user",
        Role::Assistant => "assistant",
        Role::System => "system",
    }
}

impl ModelProvider for OpenAiCompatible {
    fn name(&self) -> &'static str {
        "openai"
    }

    fn complete<'a>(
        &'a self,
        request: &'a ModelRequest,
    ) -> BoxFuture<'a, Result<ModelReply, ProviderError>> {
        Box::pin(async move {
            let body = json!({
                "model": request.model,
                "max_tokens": request.max_output_tokens,
                "messages": request
                    .messages
                    .iter()
                    .map(|m| json!({ "role": role_name(m.role), "content": m.content }))
                    .collect::<Vec<_>>(),
            });
            let mut call = self
                .http
                .post(format!("{}/chat/completions", self.base_url))
                .json(&body);
            if let Some(key) = &self.api_key {
                call = call.bearer_auth(key);
            }
            let response = call
                .send()
                .await
                .map_err(|e| ProviderError::Failed(e.to_string()))?;
            let status = response.status();
            if !status.is_success() {
                return Err(ProviderError::Failed(format!("HTTP {status}")));
            }
            let completion: ChatCompletion = response
                .json()
                .await
                .map_err(|e| ProviderError::Failed(format!("unreadable reply: {e}")))?;
            let text = completion
                .choices
                .into_iter()
                .next()
                .and_then(|c| c.message.content)
                .ok_or_else(|| ProviderError::Failed("the reply had no content".into()))?;
            let usage = completion.usage.unwrap_or(ChatUsage {
                prompt_tokens: 0,
                completion_tokens: 0,
            });
            Ok(ModelReply {
                text,
                input_tokens: usage.prompt_tokens,
                output_tokens: usage.completion_tokens,
            })
        })
    }
}

/// Amazon Bedrock through the Converse API.
pub struct Bedrock {
    client: aws_sdk_bedrockruntime::Client,
}

impl Bedrock {
    pub fn new(client: aws_sdk_bedrockruntime::Client) -> Self {
        Self { client }
    }
}

/// Converse takes system text apart and turns that alternate, starting with the user:
/// system messages become system blocks, consecutive messages of one role are joined, and
/// assistant turns before the first user turn are dropped.
pub fn converse_turns(messages: &[ContextMessage]) -> (Vec<String>, Vec<(Role, String)>) {
    let mut system = Vec::new();
    let mut turns: Vec<(Role, String)> = Vec::new();
    for message in messages {
        match message.role {
            Role::System => system.push(message.content.clone()),
            role => match turns.last_mut() {
                Some((last, text)) if *last == role => {
                    text.push_str("\n\n");
                    text.push_str(&message.content);
                }
                None if role == Role::Assistant => {}
                _ => turns.push((role, message.content.clone())),
            },
        }
    }
    (system, turns)
}

impl ModelProvider for Bedrock {
    fn name(&self) -> &'static str {
        "bedrock"
    }

    fn complete<'a>(
        &'a self,
        request: &'a ModelRequest,
    ) -> BoxFuture<'a, Result<ModelReply, ProviderError>> {
        Box::pin(async move {
            let (system, turns) = converse_turns(&request.messages);
            let messages = turns
                .into_iter()
                .map(|(role, text)| {
                    let role = if role == Role::User {
                        ConversationRole::User
                    } else {
                        ConversationRole::Assistant
                    };
                    BedrockMessage::builder()
                        .role(role)
                        .content(ContentBlock::Text(text))
                        .build()
                        .map_err(|e| ProviderError::Failed(e.to_string()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let output = self
                .client
                .converse()
                .model_id(&request.model)
                .set_system(Some(
                    system.into_iter().map(SystemContentBlock::Text).collect(),
                ))
                .set_messages(Some(messages))
                .inference_config(
                    InferenceConfiguration::builder()
                        .max_tokens(i32::try_from(request.max_output_tokens).unwrap_or(i32::MAX))
                        .build(),
                )
                .send()
                .await
                .map_err(|e| ProviderError::Failed(crate::error::chain(&e)))?;
            let text = match output.output() {
                Some(ConverseOutput::Message(message)) => message
                    .content()
                    .iter()
                    .filter_map(|block| block.as_text().ok().cloned())
                    .collect::<Vec<_>>()
                    .join(""),
                _ => return Err(ProviderError::Failed("the reply had no message".into())),
            };
            let usage = output.usage();
            Ok(ModelReply {
                text,
                input_tokens: usage.map_or(0, |u| u64::try_from(u.input_tokens()).unwrap_or(0)),
                output_tokens: usage.map_or(0, |u| u64::try_from(u.output_tokens()).unwrap_or(0)),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::TokenizerKind;

    fn message(role: Role, content: &str) -> ContextMessage {
        ContextMessage {
            role,
            content: content.to_owned(),
        }
    }

    #[test]
    fn converse_turns_alternate_and_start_with_the_user() {
        let (system, turns) = converse_turns(&[
            message(Role::System, "be kind"),
            message(Role::Assistant, "orphan reply"),
            message(Role::User, "a"),
            message(Role::User, "b"),
            message(Role::Assistant, "c"),
            message(Role::System, "summary"),
            message(Role::User, "d"),
        ]);
        assert_eq!(system, vec!["be kind", "summary"]);
        assert_eq!(
            turns,
            vec![
                (Role::User, "a\n\nb".to_owned()),
                (Role::Assistant, "c".to_owned()),
                (Role::User, "d".to_owned())
            ]
        );
    }

    #[tokio::test]
    async fn the_local_model_is_deterministic_and_counts_real_tokens() {
        let model = LocalModel::new(Tokenizer::new(TokenizerKind::Cl100kBase));
        let request = ModelRequest {
            model: LocalModel::MODEL.into(),
            messages: vec![message(Role::User, "hello there")],
            max_output_tokens: 100,
        };
        let first = model.complete(&request).await.unwrap();
        assert_eq!(first, model.complete(&request).await.unwrap());
        assert!(first.text.contains("hello there"));
        assert_eq!(
            first.input_tokens,
            2 + crate::context::TOKENS_PER_MESSAGE as u64
        );
        assert!(first.output_tokens > 0);
    }
}
