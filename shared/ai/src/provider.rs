//! Model providers behind one trait: Amazon Bedrock's Converse API (the production default),
//! any OpenAI-compatible chat-completions endpoint, and a deterministic local model for
//! running locally and in tests. Which one, and which model, is configuration.

use std::str::FromStr;

use aws_sdk_bedrockruntime::types::{
    ContentBlock, ContentBlockDelta, ConversationRole, ConverseStreamOutput,
    InferenceConfiguration, Message as BedrockMessage, SystemContentBlock,
};
use eventsource_stream::Eventsource;
use futures::future::BoxFuture;
use futures::stream::{self, BoxStream};
use futures::{StreamExt, TryStreamExt};
use serde::Deserialize;
use serde_json::json;

use crate::context::{ContextMessage, Tokenizer};
use domain::error::Error;
use domain::model::Role;

/// What a model is asked.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelRequest {
    pub model: String,
    /// System messages first, then the conversation oldest first, ending with the prompt.
    pub messages: Vec<ContextMessage>,
    pub max_output_tokens: u32,
    /// The model's own default when `None` (a conversation's preset may set one).
    pub temperature: Option<f32>,
}

/// What a model answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelReply {
    pub text: String,
    pub input_tokens: u64,
    pub output_tokens: u64,
}

impl ModelReply {
    /// Adds a piece of a streamed reply; returns the text it added, if any.
    pub fn absorb(&mut self, delta: ModelDelta) -> Option<String> {
        match delta {
            ModelDelta::Text(text) => {
                self.text.push_str(&text);
                Some(text)
            }
            ModelDelta::Usage {
                input_tokens,
                output_tokens,
            } => {
                self.input_tokens = input_tokens;
                self.output_tokens = output_tokens;
                None
            }
        }
    }
}

/// Why a model gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("the model provider failed: {0}")]
    Failed(String),
}

/// A piece of a reply, as the model generates it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelDelta {
    Text(String),
    /// What the request cost, when the provider reports it (once, at the end).
    Usage {
        input_tokens: u64,
        output_tokens: u64,
    },
}

/// A chat model.
pub trait ModelProvider: Send + Sync {
    /// The provider's name, for metadata and logs.
    fn name(&self) -> &'static str;

    /// The reply as the model generates it.
    fn stream<'a>(
        &'a self,
        request: &'a ModelRequest,
    ) -> BoxStream<'a, Result<ModelDelta, ProviderError>>;

    /// The whole reply.
    fn complete<'a>(
        &'a self,
        request: &'a ModelRequest,
    ) -> BoxFuture<'a, Result<ModelReply, ProviderError>> {
        Box::pin(async move {
            let mut reply = ModelReply {
                text: String::new(),
                input_tokens: 0,
                output_tokens: 0,
            };
            let mut deltas = self.stream(request);
            while let Some(delta) = deltas.next().await {
                reply.absorb(delta?);
            }
            Ok(reply)
        })
    }
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

impl LocalModel {
    fn reply_to(&self, request: &ModelRequest) -> String {
        let prompt = request
            .messages
            .iter()
            .rev()
            .find(|m| m.role == Role::User)
            .map(|m| m.content.as_str())
            .unwrap_or_default();
        // A long prompt is quoted by its start and its end.
        let length = prompt.chars().count();
        let excerpt: String = if length <= 200 {
            prompt.to_owned()
        } else {
            let start: String = prompt.chars().take(100).collect();
            let end: String = prompt.chars().skip(length - 100).collect();
            format!("{start} … {end}")
        };
        let earlier = request.messages.len().saturating_sub(1);
        format!(
            "You said: \"{excerpt}\". I have {earlier} earlier message{} in view.",
            if earlier == 1 { "" } else { "s" }
        )
    }
}

impl ModelProvider for LocalModel {
    fn name(&self) -> &'static str {
        "local"
    }

    /// The reply word by word, then its real token counts.
    fn stream<'a>(
        &'a self,
        request: &'a ModelRequest,
    ) -> BoxStream<'a, Result<ModelDelta, ProviderError>> {
        let text = self.reply_to(request);
        let input_tokens = request
            .messages
            .iter()
            .map(|m| self.tokenizer.message_cost(&m.content) as u64)
            .sum();
        let output_tokens = self.tokenizer.count(&text) as u64;
        let mut pieces: Vec<Result<ModelDelta, ProviderError>> = text
            .split_inclusive(' ')
            .map(|word| Ok(ModelDelta::Text(word.to_owned())))
            .collect();
        pieces.push(Ok(ModelDelta::Usage {
            input_tokens,
            output_tokens,
        }));
        stream::iter(pieces).boxed()
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

/// One `data:` event of a streamed chat completion.
#[derive(Deserialize)]
struct ChatChunk {
    #[serde(default)]
    choices: Vec<ChunkChoice>,
    usage: Option<ChatUsage>,
}

#[derive(Deserialize)]
struct ChunkChoice {
    #[serde(default)]
    delta: ChunkDelta,
}

#[derive(Default, Deserialize)]
struct ChunkDelta {
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

    /// Server-sent events from `/chat/completions` with `stream: true`.
    fn stream<'a>(
        &'a self,
        request: &'a ModelRequest,
    ) -> BoxStream<'a, Result<ModelDelta, ProviderError>> {
        let mut body = json!({
            "model": request.model,
            "max_tokens": request.max_output_tokens,
            "stream": true,
            "stream_options": { "include_usage": true },
            "messages": request
                .messages
                .iter()
                .map(|m| json!({ "role": role_name(m.role), "content": m.content }))
                .collect::<Vec<_>>(),
        });
        if let Some(temperature) = request.temperature {
            body["temperature"] = json!(temperature);
        }
        let mut call = self
            .http
            .post(format!("{}/chat/completions", self.base_url))
            .json(&body);
        if let Some(key) = &self.api_key {
            call = call.bearer_auth(key);
        }
        let failed = |e: &dyn std::fmt::Display| ProviderError::Failed(e.to_string());
        stream::once(async move {
            let response = call.send().await.map_err(|e| failed(&e))?;
            let status = response.status();
            if !status.is_success() {
                return Err(ProviderError::Failed(format!("HTTP {status}")));
            }
            let events = response
                .bytes_stream()
                .eventsource()
                .map_err(move |e| failed(&e))
                .try_take_while(|event| std::future::ready(Ok(event.data.trim() != "[DONE]")))
                .and_then(|event| {
                    std::future::ready(
                        serde_json::from_str::<ChatChunk>(&event.data)
                            .map_err(|e| ProviderError::Failed(format!("unreadable event: {e}"))),
                    )
                })
                .map_ok(|chunk| {
                    let mut deltas: Vec<Result<ModelDelta, ProviderError>> = chunk
                        .choices
                        .into_iter()
                        .filter_map(|choice| choice.delta.content)
                        .filter(|text| !text.is_empty())
                        .map(|text| Ok(ModelDelta::Text(text)))
                        .collect();
                    if let Some(usage) = chunk.usage {
                        deltas.push(Ok(ModelDelta::Usage {
                            input_tokens: usage.prompt_tokens,
                            output_tokens: usage.completion_tokens,
                        }));
                    }
                    stream::iter(deltas)
                })
                .try_flatten();
            Ok(events)
        })
        .try_flatten()
        .boxed()
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

    /// ConverseStream: text deltas, then the metadata event's usage.
    fn stream<'a>(
        &'a self,
        request: &'a ModelRequest,
    ) -> BoxStream<'a, Result<ModelDelta, ProviderError>> {
        let failed = |e: &dyn std::error::Error| ProviderError::Failed(domain::error::chain(e));
        stream::once(async move {
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
                        .map_err(|e| failed(&e))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let output = self
                .client
                .converse_stream()
                .model_id(&request.model)
                .set_system(Some(
                    system.into_iter().map(SystemContentBlock::Text).collect(),
                ))
                .set_messages(Some(messages))
                .inference_config(
                    InferenceConfiguration::builder()
                        .max_tokens(i32::try_from(request.max_output_tokens).unwrap_or(i32::MAX))
                        // Converse takes 0 to 1; a preset's higher setting is its hottest.
                        .set_temperature(request.temperature.map(|t| t.min(1.0)))
                        .build(),
                )
                .send()
                .await
                .map_err(|e| failed(&e))?;
            let events = stream::try_unfold(output.stream, move |mut receiver| async move {
                loop {
                    let Some(event) = receiver.recv().await.map_err(|e| failed(&e))? else {
                        return Ok(None);
                    };
                    let delta = match event {
                        ConverseStreamOutput::ContentBlockDelta(block) => match block.delta {
                            Some(ContentBlockDelta::Text(text)) => ModelDelta::Text(text),
                            _ => continue,
                        },
                        ConverseStreamOutput::Metadata(metadata) => match metadata.usage {
                            Some(usage) => ModelDelta::Usage {
                                input_tokens: u64::try_from(usage.input_tokens).unwrap_or(0),
                                output_tokens: u64::try_from(usage.output_tokens).unwrap_or(0),
                            },
                            None => continue,
                        },
                        _ => continue,
                    };
                    return Ok(Some((delta, receiver)));
                }
            });
            Ok(events)
        })
        .try_flatten()
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::TokenizerKind;

    fn message(role: Role, content: &str) -> ContextMessage {
        ContextMessage::new(role, content)
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
        let model = LocalModel::new(Tokenizer::new(TokenizerKind::O200kBase));
        let request = ModelRequest {
            model: LocalModel::MODEL.into(),
            messages: vec![message(Role::User, "hello there")],
            max_output_tokens: 100,
            temperature: None,
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
