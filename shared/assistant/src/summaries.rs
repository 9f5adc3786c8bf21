//! Conversation summaries, written by the model provider in the background.
//!
//! A conversation is *due* once it holds `every` messages more than its summary has taken in
//! (`summarizedThrough`). The table's stream tells `summarize-conversations` of every change
//! to a conversation item (an append raises its `messageCount`); for a conversation that is
//! due, it reads the messages after the last one the summary took in (`summarizedUntil`),
//! oldest first, as many as fit `input_tokens`, and asks the model to fold them into the
//! previous summary. The new summary is stored only over the one it was made from, so a
//! repeated or racing run changes nothing. Appends never wait for any of this.
//!
//! A conversation far behind (a migration or an import of thousands of messages) is
//! summarized a window at a time: each stored summary is itself a change on the stream, and
//! the conversation is still due until the summary reaches its end.
//!
//! The context a model is sent (`crate::service`) starts with the summary, so the
//! messages left out of a long conversation's context are still represented.

use std::sync::Arc;
use std::time::Duration;

use ai::context::{ContextMessage, Tokenizer};
use ai::provider::{ModelProvider, ModelRequest};
use domain::error::Error;
use domain::model::{ConversationId, Message, Role, UserId};
use shared::store::{ConversationItem, Store, SummaryUpdate};

/// New messages that make a conversation due for a new summary (`SUMMARY_EVERY_MESSAGES`).
pub const DEFAULT_SUMMARY_EVERY: u64 = 20;
/// Messages read for one summary at most.
pub const SUMMARY_WINDOW: usize = 200;
/// Messages read at a time (each up to 2 MiB: pages keep a run's memory small).
const SUMMARY_PAGE: usize = 20;
/// Tokens of messages sent for one summary at most (`SUMMARY_INPUT_TOKENS`).
pub const DEFAULT_SUMMARY_INPUT_TOKENS: usize = 12_000;
/// Characters of one message sent at most: a very long message is represented by its start.
pub const MESSAGE_EXCERPT_CHARS: usize = 4_000;
/// Tokens the model may answer with.
pub const SUMMARY_OUTPUT_TOKENS: u32 = 400;
/// Characters of a summary kept at most.
pub const MAX_SUMMARY_CHARS: usize = 4_000;

/// The instruction the model is given.
pub const SUMMARY_INSTRUCTION: &str = "You keep a running summary of a conversation between a \
user and an AI assistant. Given the summary so far (if any) and the messages since, write the \
new summary: the user's goals, facts they shared, decisions and open questions, in at most \
200 words. Answer with the summary only.";

/// How summaries are made (from the configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SummarySettings {
    /// New messages that make a conversation due; 0 turns summaries off.
    pub every: u64,
    pub input_tokens: usize,
    pub model: String,
    pub timeout: Duration,
}

/// What one attempt at a conversation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SummaryOutcome {
    /// The conversation is gone, or not due (any longer).
    NotDue,
    /// A new summary was stored, taking in this many messages more.
    Written { messages: usize, through: u64 },
    /// Another run stored a summary first; this one was dropped.
    Superseded,
}

/// Writes conversations' summaries through the model provider.
#[derive(Clone)]
pub struct Summaries {
    store: Store,
    provider: Arc<dyn ModelProvider>,
    tokenizer: Tokenizer,
    settings: SummarySettings,
}

impl Summaries {
    pub fn new(
        store: Store,
        provider: Arc<dyn ModelProvider>,
        tokenizer: Tokenizer,
        settings: SummarySettings,
    ) -> Self {
        Self {
            store,
            provider,
            tokenizer,
            settings,
        }
    }

    pub fn settings(&self) -> &SummarySettings {
        &self.settings
    }

    /// Whether `conversation` holds enough messages its summary has not taken in.
    pub fn is_due(&self, conversation: &ConversationItem) -> bool {
        self.settings.every > 0
            && conversation.message_count
                >= conversation
                    .summarized_through
                    .saturating_add(self.settings.every)
    }

    /// Brings the conversation's summary forward by one window of messages, if it is due.
    /// A model that fails or takes too long is an error (`ModelFailed`, `ModelTimeout`) and
    /// nothing is stored: the conversation stays due, and the next attempt tries again.
    pub async fn summarize(
        &self,
        user: &UserId,
        id: &ConversationId,
    ) -> Result<SummaryOutcome, Error> {
        let Some(conversation) = self.store.conversation(user, id).await? else {
            return Ok(SummaryOutcome::NotDue);
        };
        // A branched conversation's summary is of its active path: one of a branch it has
        // left is written again from the root.
        let conversation = conversation.on_active_path();
        if !self.is_due(&conversation) {
            return Ok(SummaryOutcome::NotDue);
        }
        // About four characters a token: enough text for the budget, which `request` fills.
        let messages = self
            .store
            .messages_to_summarize(
                &conversation,
                SUMMARY_PAGE,
                SUMMARY_WINDOW,
                self.settings.input_tokens.saturating_mul(4),
                MESSAGE_EXCERPT_CHARS,
            )
            .await?;
        let (request, taken) = self.request(conversation.summary.as_deref(), &messages);
        let update = match messages[..taken].last() {
            // Nothing after the last message taken in (messages stored with older times, by
            // an import): the summary stands, and reaches the end as it is.
            None => SummaryUpdate {
                summary: conversation.summary.clone().unwrap_or_default(),
                through: conversation.message_count,
                until: conversation.summarized_until.clone(),
            },
            Some(last) => {
                let reply =
                    tokio::time::timeout(self.settings.timeout, self.provider.complete(&request))
                        .await
                        .map_err(|_| Error::ModelTimeout)?
                        .map_err(|e| Error::ModelFailed(e.to_string()))?;
                let summary: String = reply.text.trim().chars().take(MAX_SUMMARY_CHARS).collect();
                if summary.is_empty() {
                    return Err(Error::ModelFailed("the model answered with nothing".into()));
                }
                SummaryUpdate {
                    summary,
                    through: conversation
                        .summarized_through
                        .saturating_add(taken as u64)
                        .min(conversation.message_count),
                    until: Some(last.sort_key()),
                }
            }
        };
        let stored = self
            .store
            .save_summary(user, id, conversation.summarized_through, &update)
            .await?;
        Ok(if stored {
            SummaryOutcome::Written {
                messages: taken,
                through: update.through,
            }
        } else {
            SummaryOutcome::Superseded
        })
    }

    /// The model request for folding `messages` (oldest first) into `previous`, and how many
    /// of them it holds: as many as fit the input budget, at least one.
    pub fn request(&self, previous: Option<&str>, messages: &[Message]) -> (ModelRequest, usize) {
        let mut transcript = String::new();
        if let Some(previous) = previous.filter(|s| !s.trim().is_empty()) {
            transcript.push_str("Summary so far:\n");
            transcript.push_str(previous);
            transcript.push_str("\n\n");
        }
        transcript.push_str("Messages since:\n");
        let mut used = self.tokenizer.count(&transcript);
        let mut taken = 0;
        for message in messages {
            let excerpt: String = message
                .content
                .chars()
                .take(MESSAGE_EXCERPT_CHARS)
                .collect();
            let line = format!("{}: {}\n", speaker(message.role), excerpt);
            let cost = self.tokenizer.count(&line);
            if taken > 0 && used + cost > self.settings.input_tokens {
                break;
            }
            used += cost;
            transcript.push_str(&line);
            taken += 1;
        }
        let request = ModelRequest {
            model: self.settings.model.clone(),
            messages: vec![
                ContextMessage::new(Role::System, SUMMARY_INSTRUCTION),
                ContextMessage::new(Role::User, transcript),
            ],
            max_output_tokens: SUMMARY_OUTPUT_TOKENS,
            temperature: None,
        };
        (request, taken)
    }
}

fn speaker(role: Role) -> &'static str {
    match role {
        Role::User => "User",
        Role::Assistant => "Assistant",
        Role::System => "System",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ai::context::TokenizerKind;
    use ai::provider::LocalModel;

    fn summaries(every: u64, input_tokens: usize) -> Summaries {
        let tokenizer = Tokenizer::new(TokenizerKind::O200kBase);
        let sdk = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .build();
        Summaries::new(
            Store::new(aws_sdk_dynamodb::Client::new(&sdk), "unused"),
            Arc::new(LocalModel::new(tokenizer)),
            tokenizer,
            SummarySettings {
                every,
                input_tokens,
                model: LocalModel::MODEL.into(),
                timeout: Duration::from_secs(1),
            },
        )
    }

    fn message(n: usize, content: &str) -> Message {
        Message {
            id: domain::model::MessageId::generate(),
            conversation_id: ConversationId::generate(),
            role: if n.is_multiple_of(2) {
                Role::User
            } else {
                Role::Assistant
            },
            content: content.to_owned(),
            timestamp: chrono::Utc::now(),
            attachments: Vec::new(),
            metadata: Default::default(),
            client_message_id: None,
            client_timestamp: None,
            token_count: None,
            slot: None,
        }
    }

    #[test]
    fn the_request_folds_the_messages_into_the_previous_summary() {
        let summaries = summaries(20, 10_000);
        let messages = [message(0, "I'm planning Lisbon"), message(1, "Great idea")];
        let (request, taken) = summaries.request(Some("The user likes trains."), &messages);
        assert_eq!(taken, 2);
        assert_eq!(request.messages[0].role, Role::System);
        let transcript = &request.messages[1].content;
        assert!(transcript.starts_with("Summary so far:\nThe user likes trains."));
        assert!(transcript.contains("User: I'm planning Lisbon\nAssistant: Great idea\n"));
    }

    #[test]
    fn the_request_stops_at_the_input_budget_but_always_takes_one_message() {
        let summaries = summaries(20, 200);
        let long = "word ".repeat(5_000);
        let messages: Vec<Message> = (0..10).map(|n| message(n, &long)).collect();
        let (request, taken) = summaries.request(None, &messages);
        assert_eq!(taken, 1, "one message, cut to its excerpt");
        assert!(request.messages[1].content.len() < MESSAGE_EXCERPT_CHARS + 100);

        let short: Vec<Message> = (0..100).map(|n| message(n, "hello there")).collect();
        let (_, taken) = summaries.request(None, &short);
        assert!(taken > 1 && taken < 100, "{taken}");
    }
}
