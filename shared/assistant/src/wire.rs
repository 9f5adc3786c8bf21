//! The JSON shapes of the context and completion endpoints (camelCase). Request bodies refuse
//! unknown fields, so a typo is a 400 rather than a silently ignored field.

use domain::model::Role;
use serde::{Deserialize, Serialize};

/// `GET /conversations/context[/{id}]`: what to send a model, oldest first.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContextView<'a> {
    /// `conversation` or `shortTermMemory`.
    pub source: &'static str,
    pub conversation_id: Option<String>,
    pub messages: Vec<ContextMessageView<'a>>,
    pub token_count: usize,
    pub max_tokens: usize,
    pub omitted_messages: usize,
    pub tokenizer: &'static str,
}

#[derive(Debug, Serialize)]
pub struct ContextMessageView<'a> {
    pub role: Role,
    pub content: &'a str,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CompletionBody {
    /// Absent when the request regenerates a reply.
    pub prompt: Option<String>,
    /// A reply of the conversation to answer again, as its sibling (`domain::tree`).
    pub regenerate: Option<String>,
    pub conversation_id: Option<String>,
    #[serde(default)]
    pub stream: bool,
    pub max_tokens: Option<u32>,
    pub model: Option<String>,
    pub request_id: Option<String>,
}

/// `POST /completion`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CompletionView<'a> {
    pub response: &'a str,
    pub conversation_id: Option<String>,
    pub prompt_message_id: String,
    pub reply_message_id: String,
    pub model: &'a str,
    pub usage: UsageView,
    pub latency_ms: u64,
    /// `conversation`, or `shortTermMemory` when the conversation store failed.
    pub saved_to: &'static str,
    pub fallback: bool,
    pub replayed: bool,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageView {
    pub input_tokens: u64,
    pub output_tokens: u64,
}
