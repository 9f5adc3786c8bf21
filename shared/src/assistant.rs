//! What the AI side of the app needs: the context to send a model for a conversation (or,
//! without one, from short-term memory), chosen within a token budget.

use chrono::{DateTime, Utc};

use crate::context::{select, ContextMessage, Selection, Tokenizer};
use crate::error::Error;
use crate::keys::{self, Index};
use crate::memory::ShortTermMemory;
use crate::model::{ConversationId, Role, UserId};
use crate::service::Conversations;

/// Where a context came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContextSource {
    Conversation(ConversationId),
    ShortTermMemory,
}

/// The messages to send a model, and what was left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelContext {
    pub source: ContextSource,
    pub selection: Selection,
}

/// The assistant's operations, over conversations and short-term memory.
#[derive(Clone)]
pub struct Assistant {
    conversations: Conversations,
    memory: ShortTermMemory,
    tokenizer: Tokenizer,
    system_prompt: Option<String>,
}

impl Assistant {
    pub fn new(
        conversations: Conversations,
        memory: ShortTermMemory,
        tokenizer: Tokenizer,
        system_prompt: Option<String>,
    ) -> Self {
        Self {
            conversations,
            memory,
            tokenizer,
            system_prompt,
        }
    }

    pub fn memory(&self) -> &ShortTermMemory {
        &self.memory
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The context of conversation `id`; without an id, of the user's most recently active
    /// conversation, or else of their short-term memory.
    #[tracing::instrument(skip_all)]
    pub async fn context(
        &self,
        user: &UserId,
        id: Option<ConversationId>,
        max_tokens: usize,
        limit: usize,
        now: DateTime<Utc>,
    ) -> Result<ModelContext, Error> {
        let id = match id {
            Some(id) => Some(id),
            None => self.most_recent_active(user).await?,
        };
        match id {
            Some(id) => self.conversation_context(user, id, max_tokens, limit).await,
            None => self.memory_context(user, max_tokens, limit, now).await,
        }
    }

    async fn most_recent_active(&self, user: &UserId) -> Result<Option<ConversationId>, Error> {
        let (latest, _) = self
            .conversations
            .store()
            .list_conversations(
                Index::ByStateActivity,
                &keys::owner_state(user, false),
                1,
                None,
                None,
            )
            .await?;
        Ok(latest.first().map(|c| c.conversation_id))
    }

    /// One query: the conversation item and its newest `limit` messages.
    async fn conversation_context(
        &self,
        user: &UserId,
        id: ConversationId,
        max_tokens: usize,
        limit: usize,
    ) -> Result<ModelContext, Error> {
        let window = self
            .conversations
            .store()
            .conversation_window(user, &id, limit, None)
            .await?;
        let conversation = window.conversation.ok_or(Error::NotFound)?;
        let mut preamble = self.system_preamble();
        if let Some(summary) = conversation.summary.filter(|s| !s.trim().is_empty()) {
            preamble.push(ContextMessage {
                role: Role::System,
                content: format!("Summary of the conversation so far: {summary}"),
            });
        }
        let recent: Vec<ContextMessage> = window
            .messages_newest_first
            .into_iter()
            .map(|m| ContextMessage {
                role: m.role,
                content: m.content,
            })
            .collect();
        let mut selection = select(&self.tokenizer, preamble, &recent, max_tokens, limit);
        // Everything older than the window was left out too.
        let kept = recent.len() - selection.omitted;
        selection.omitted = usize::try_from(conversation.message_count)
            .unwrap_or(usize::MAX)
            .saturating_sub(kept);
        Ok(ModelContext {
            source: ContextSource::Conversation(id),
            selection,
        })
    }

    async fn memory_context(
        &self,
        user: &UserId,
        max_tokens: usize,
        limit: usize,
        now: DateTime<Utc>,
    ) -> Result<ModelContext, Error> {
        let recent: Vec<ContextMessage> = self
            .memory
            .recall(user, limit, now)
            .await?
            .into_iter()
            .map(|entry| ContextMessage {
                role: entry.role,
                content: entry.content,
            })
            .collect();
        Ok(ModelContext {
            source: ContextSource::ShortTermMemory,
            selection: select(
                &self.tokenizer,
                self.system_preamble(),
                &recent,
                max_tokens,
                limit,
            ),
        })
    }

    fn system_preamble(&self) -> Vec<ContextMessage> {
        self.system_prompt
            .iter()
            .map(|prompt| ContextMessage {
                role: Role::System,
                content: prompt.clone(),
            })
            .collect()
    }
}
