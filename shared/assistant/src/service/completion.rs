//! Completions: the prompt saved, the model called, the reply saved, to the conversation and
//! to short-term memory, whole or streamed; a retried request answered from its record.

use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, SubsecRound, Utc};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::memory::MemoryEntry;
use ai::context::{ContextMessage, DEFAULT_MAX_TOKENS, DEFAULT_MESSAGE_LIMIT, TOKENS_PER_MESSAGE};
use ai::provider::ModelRequest;
use domain::error::{chain, Error};
use domain::model::{
    kept_client_timestamp, ClientMessageId, ConversationId, Message, MessageId, Metadata,
    NewMessage, Role, Tags, Title, TokenCount, UserId,
};
use shared::store::CompletionRecord;

use super::Assistant;

/// Largest prompt accepted, in UTF-8 bytes (larger is 413).
pub const MAX_PROMPT_BYTES: usize = 32 * 1024;
pub const DEFAULT_MAX_OUTPUT_TOKENS: u32 = 1_024;
pub const MAX_OUTPUT_TOKENS: u32 = 8_192;
/// Longest request id a client may send (its messages' client ids add a suffix).
pub const MAX_REQUEST_ID_CHARS: usize = 100;
/// A prompt without a conversation id continues the user's latest conversation when it was
/// active this recently, and starts a new one otherwise (clients that predate conversations).
pub const LEGACY_SESSION_GAP: Duration = Duration::minutes(30);
/// How long a completion's result is kept to answer a retry of the same request.
pub const COMPLETION_RECORD_TTL: Duration = Duration::hours(24);

/// What a completion asks for, already within bounds.
#[derive(Debug, Clone, PartialEq)]
pub struct CompletionRequest {
    /// Empty when the request regenerates a reply.
    pub prompt: String,
    /// The reply to answer again (`domain::tree`): the model gets what came before it, and
    /// its answer becomes the reply's sibling on a new branch, which the conversation shows.
    pub regenerate: Option<MessageId>,
    pub conversation_id: Option<ConversationId>,
    /// The client's id for this request: a retry with the same id is answered from the first
    /// result, without a second model call or any new message.
    pub request_id: Option<ClientMessageId>,
    /// `None`: the conversation's preset's, else `DEFAULT_MAX_OUTPUT_TOKENS`.
    pub max_output_tokens: Option<u32>,
    /// `None`: the conversation's preset's (while it is allowed), else the default model.
    pub model: Option<String>,
}

impl CompletionRequest {
    pub fn parse(
        prompt: String,
        conversation_id: Option<&str>,
        request_id: Option<&str>,
        max_output_tokens: Option<u32>,
        model: Option<String>,
    ) -> Result<Self, Error> {
        if prompt.trim().is_empty() {
            return Err(Error::invalid("prompt must not be empty"));
        }
        Self::parse_checked(
            prompt,
            None,
            conversation_id,
            request_id,
            max_output_tokens,
            model,
        )
    }

    /// A request that answers the reply `regenerate` of conversation `conversation_id` again,
    /// with no prompt of its own.
    pub fn regenerating(
        regenerate: &str,
        conversation_id: Option<&str>,
        request_id: Option<&str>,
        max_output_tokens: Option<u32>,
        model: Option<String>,
    ) -> Result<Self, Error> {
        let reply = MessageId::parse(regenerate)
            .map_err(|_| Error::invalid("regenerate must be a reply's message id"))?;
        if conversation_id.is_none() {
            return Err(Error::invalid(
                "regenerate needs the conversationId of the reply's conversation",
            ));
        }
        Self::parse_checked(
            String::new(),
            Some(reply),
            conversation_id,
            request_id,
            max_output_tokens,
            model,
        )
    }

    fn parse_checked(
        prompt: String,
        regenerate: Option<MessageId>,
        conversation_id: Option<&str>,
        request_id: Option<&str>,
        max_output_tokens: Option<u32>,
        model: Option<String>,
    ) -> Result<Self, Error> {
        if prompt.len() > MAX_PROMPT_BYTES {
            return Err(Error::TooLarge(format!(
                "prompt is {} bytes; the limit is {MAX_PROMPT_BYTES} bytes",
                prompt.len()
            )));
        }
        if max_output_tokens.is_some_and(|tokens| !(1..=MAX_OUTPUT_TOKENS).contains(&tokens)) {
            return Err(Error::invalid(format!(
                "maxTokens must be from 1 to {MAX_OUTPUT_TOKENS}"
            )));
        }
        let request_id =
            match request_id {
                Some(id) if id.chars().count() > MAX_REQUEST_ID_CHARS => {
                    return Err(Error::invalid(format!(
                        "requestId must be at most {MAX_REQUEST_ID_CHARS} characters"
                    )))
                }
                Some(id) => Some(ClientMessageId::parse(id).map_err(|_| {
                    Error::invalid("requestId must be printable ASCII without spaces")
                })?),
                None => None,
            };
        Ok(Self {
            prompt,
            regenerate,
            conversation_id: conversation_id.map(ConversationId::parse).transpose()?,
            request_id,
            max_output_tokens,
            model,
        })
    }
}

/// What a completion did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Completion {
    pub reply: String,
    /// The conversation both messages were saved to; `None` when the conversation store
    /// failed and they were kept in short-term memory only.
    pub conversation_id: Option<ConversationId>,
    pub prompt_message_id: MessageId,
    pub reply_message_id: MessageId,
    pub model: String,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub latency_ms: u64,
    /// True when the conversation store failed and short-term memory kept the exchange.
    pub fell_back_to_short_term_memory: bool,
    /// True when this answers a retry from the first result.
    #[serde(default)]
    pub replayed: bool,
}

/// What the record of a request id says.
enum RecordState {
    Done(Completion),
    /// Another attempt with this id is still within its lease.
    InProgress,
    Free,
}

/// A prompt saved and ready for the model.
struct Prepared {
    user: UserId,
    request_id: Option<ClientMessageId>,
    conversation: Option<ConversationId>,
    /// The conversation the exchange belongs to, even when it is kept only in short-term
    /// memory (which names it, so the migration moves it there).
    belongs_to: Option<ConversationId>,
    prompt_message: Message,
    model_request: ModelRequest,
    now: DateTime<Utc>,
    /// The reply this answer regenerates: it is saved as that reply's sibling.
    regenerates: Option<MessageId>,
}

/// Either a retry's earlier answer, or a prompt ready for the model.
enum Start {
    Replayed(Completion),
    Ready(Box<Prepared>),
}

/// What a streaming completion reports, in order: pieces of the reply, then the outcome.
#[derive(Debug)]
pub enum CompletionEvent {
    Delta(String),
    Done(Completion),
    Failed(Error),
}

/// How many events a streaming completion buffers for a slow reader.
const STREAM_BUFFER: usize = 64;

impl Assistant {
    /// Answers a prompt: loads the context, saves the prompt, calls the model, saves the
    /// reply, to the conversation and to short-term memory. When the conversation store fails
    /// the exchange is kept in short-term memory and the result says so; when the model fails
    /// the prompt stays saved and the error is 502 or 504.
    #[tracing::instrument(skip_all)]
    pub async fn complete(
        &self,
        user: &UserId,
        request: CompletionRequest,
        now: DateTime<Utc>,
    ) -> Result<Completion, Error> {
        let prepared = match self.start(user, request, now).await? {
            Start::Replayed(done) => return Ok(done),
            Start::Ready(prepared) => prepared,
        };
        let (user, request_id) = (prepared.user.clone(), prepared.request_id.clone());
        let started = Instant::now();
        let outcome = match tokio::time::timeout(
            self.model_timeout,
            self.provider.complete(&prepared.model_request),
        )
        .await
        {
            Err(_) => Err(Error::ModelTimeout),
            Ok(Err(error)) => Err(Error::ModelFailed(error.to_string())),
            Ok(Ok(reply)) => self.finish(*prepared, reply, started.elapsed()).await,
        };
        if outcome.is_err() {
            self.release(&user, request_id.as_ref()).await;
        }
        outcome
    }

    /// Like [`complete`](Self::complete), with the reply's pieces reported as they come.
    /// Everything before the model call happens before this returns (so its errors are
    /// ordinary errors); the generation then runs in its own task, to the end and saved,
    /// whether or not anyone still reads the events.
    #[tracing::instrument(skip_all)]
    pub async fn complete_streaming(
        &self,
        user: &UserId,
        request: CompletionRequest,
        now: DateTime<Utc>,
    ) -> Result<tokio::sync::mpsc::Receiver<CompletionEvent>, Error> {
        let (events, receiver) = tokio::sync::mpsc::channel(STREAM_BUFFER);
        let prepared = match self.start(user, request, now).await? {
            Start::Replayed(done) => {
                // A retry: the earlier answer, whole.
                let _ = events
                    .send(CompletionEvent::Delta(done.reply.clone()))
                    .await;
                let _ = events.send(CompletionEvent::Done(done)).await;
                return Ok(receiver);
            }
            Start::Ready(prepared) => prepared,
        };
        let assistant = self.clone();
        tokio::spawn(async move {
            let (user, request_id) = (prepared.user.clone(), prepared.request_id.clone());
            let outcome = assistant.generate(*prepared, &events).await;
            if outcome.is_err() {
                assistant.release(&user, request_id.as_ref()).await;
            }
            let last = match outcome {
                Ok(done) => CompletionEvent::Done(done),
                Err(error) => CompletionEvent::Failed(error),
            };
            // The reader may be gone; the reply is saved either way.
            let _ = events.send(last).await;
        });
        Ok(receiver)
    }

    /// Streams the model's reply to `events` (while anyone listens), then saves it.
    async fn generate(
        &self,
        prepared: Prepared,
        events: &tokio::sync::mpsc::Sender<CompletionEvent>,
    ) -> Result<Completion, Error> {
        let started = Instant::now();
        let mut reply = ai::provider::ModelReply {
            text: String::new(),
            input_tokens: 0,
            output_tokens: 0,
        };
        let mut deltas = self.provider.stream(&prepared.model_request);
        loop {
            // The timeout bounds the wait for each piece, so a long reply may take its time
            // while a stalled model cannot hold the request.
            let next = match tokio::time::timeout(self.model_timeout, deltas.next()).await {
                Err(_) => return Err(Error::ModelTimeout),
                Ok(None) => break,
                Ok(Some(Err(error))) => return Err(Error::ModelFailed(error.to_string())),
                Ok(Some(Ok(delta))) => delta,
            };
            if let Some(text) = reply.absorb(next) {
                if !events.is_closed() {
                    let _ = events.send(CompletionEvent::Delta(text)).await;
                }
            }
        }
        drop(deltas);
        self.finish(prepared, reply, started.elapsed()).await
    }

    /// Whether the request repeats one already answered (its `requestId`'s record is done).
    pub async fn is_answered(
        &self,
        user: &UserId,
        request: &CompletionRequest,
        now: DateTime<Utc>,
    ) -> Result<bool, Error> {
        Ok(match &request.request_id {
            Some(request_id) => matches!(
                self.completion_record(user, request_id, now).await?,
                RecordState::Done(_)
            ),
            None => false,
        })
    }

    /// Everything before the model: a retry's earlier answer, or the prompt saved and the
    /// model's request built from the context.
    async fn start(
        &self,
        user: &UserId,
        request: CompletionRequest,
        now: DateTime<Utc>,
    ) -> Result<Start, Error> {
        if let Some(request_id) = &request.request_id {
            if let Some(replayed) = self.claim_or_replay(user, request_id, now).await? {
                return Ok(Start::Replayed(replayed));
            }
        }
        if let Some(model) = &request.model {
            if !self.allowed_models.contains(model) {
                return Err(Error::invalid(format!(
                    "model must be one of: {}",
                    self.allowed_models.join(", ")
                )));
            }
        }
        if let Some(reply) = request.regenerate {
            return self.start_regenerating(user, request, reply, now).await;
        }

        // Where the exchange is kept: the named conversation, or for clients that send none,
        // their current session's conversation.
        let mut conversation = match request.conversation_id {
            Some(id) => Some(id),
            None => match self.legacy_session(user, &request.prompt, now).await {
                Ok(id) => Some(id),
                Err(error) => {
                    tracing::warn!(error = %chain(&error), "conversation store failed; using short-term memory");
                    None
                }
            },
        };

        let belongs_to = conversation;
        // Counted once: for the budget here, and stored with the prompt for later contexts.
        let prompt_tokens = self.tokenizer.count(&request.prompt);
        let budget = DEFAULT_MAX_TOKENS.saturating_sub(prompt_tokens + TOKENS_PER_MESSAGE);
        let context = match conversation {
            Some(id) => match self
                .conversation_context(user, id, budget, DEFAULT_MESSAGE_LIMIT, None)
                .await
            {
                Ok(context) => context,
                Err(Error::NotFound) => return Err(Error::NotFound),
                Err(error) => {
                    tracing::warn!(error = %chain(&error), "conversation store failed; using short-term memory");
                    conversation = None;
                    self.memory_context(user, budget, DEFAULT_MESSAGE_LIMIT, now)
                        .await?
                }
            },
            None => {
                self.memory_context(user, budget, DEFAULT_MESSAGE_LIMIT, now)
                    .await?
            }
        };

        let prompt = NewMessage {
            role: Role::User,
            content: request.prompt.clone(),
            attachments: Vec::new(),
            metadata: Metadata::new(),
            client_message_id: derived_client_id(request.request_id.as_ref(), "prompt"),
            client_timestamp: None,
            token_count: Some(TokenCount::new(self.tokenizer.kind().name(), prompt_tokens)),
        };
        let (prompt_message, kept_in) = self
            .save(user, conversation, belongs_to, prompt, now)
            .await?;

        let model_request = self.model_request(&request, &context);
        let mut messages = context.selection.messages;
        messages.push(ContextMessage::new(Role::User, request.prompt));
        Ok(Start::Ready(Box::new(Prepared {
            user: user.clone(),
            request_id: request.request_id,
            conversation: kept_in,
            belongs_to,
            prompt_message,
            model_request: ModelRequest {
                messages,
                ..model_request
            },
            now,
            regenerates: None,
        })))
    }

    /// The model, output limit and temperature of a completion (its messages left for the
    /// caller): what the request names, else what the conversation's preset keeps (its model
    /// only while the operator still allows it), else the defaults.
    fn model_request(
        &self,
        request: &CompletionRequest,
        context: &super::ModelContext,
    ) -> ModelRequest {
        let settings = context.settings.as_ref();
        let model = request
            .model
            .clone()
            .or_else(|| {
                settings
                    .and_then(|s| s.model.clone())
                    .filter(|model| self.allowed_models.contains(model))
            })
            .unwrap_or_else(|| self.default_model.clone());
        ModelRequest {
            model,
            messages: Vec::new(),
            max_output_tokens: request
                .max_output_tokens
                .or_else(|| settings.and_then(|s| s.max_tokens))
                .unwrap_or(DEFAULT_MAX_OUTPUT_TOKENS)
                .min(MAX_OUTPUT_TOKENS),
            #[allow(clippy::cast_possible_truncation)]
            temperature: settings.and_then(|s| s.temperature).map(|t| t as f32),
        }
    }

    /// Everything before the model for a reply regenerated: what came before the reply on the
    /// conversation's active path, its prompt the message the reply answered (saved already).
    async fn start_regenerating(
        &self,
        user: &UserId,
        request: CompletionRequest,
        reply: MessageId,
        now: DateTime<Utc>,
    ) -> Result<Start, Error> {
        let id = request
            .conversation_id
            .ok_or_else(|| Error::invalid("regenerate needs a conversationId"))?;
        let (reply_key, prompt_message) = self
            .conversations
            .store()
            .regeneration(user, &id, &reply)
            .await?;
        let context = self
            .conversation_context(
                user,
                id,
                DEFAULT_MAX_TOKENS,
                DEFAULT_MESSAGE_LIMIT,
                Some(&reply_key),
            )
            .await?;
        let model_request = ModelRequest {
            messages: context.selection.messages.clone(),
            ..self.model_request(&request, &context)
        };
        Ok(Start::Ready(Box::new(Prepared {
            user: user.clone(),
            request_id: request.request_id,
            conversation: Some(id),
            belongs_to: Some(id),
            prompt_message,
            model_request,
            now,
            regenerates: Some(reply),
        })))
    }

    /// Saves the reply (with what it cost) and records the completion for retries.
    async fn finish(
        &self,
        prepared: Prepared,
        reply: ai::provider::ModelReply,
        latency: StdDuration,
    ) -> Result<Completion, Error> {
        let Prepared {
            user,
            request_id,
            conversation,
            belongs_to,
            prompt_message,
            model_request,
            now,
            regenerates,
        } = prepared;
        if let Some(usage) = &self.usage {
            let spent = reply.input_tokens.saturating_add(reply.output_tokens);
            usage.spend_tokens(&user, spent, now).await;
        }
        let latency_ms = u64::try_from(latency.as_millis()).unwrap_or(u64::MAX);
        let metadata = Metadata::from([
            ("model".to_owned(), model_request.model.clone().into()),
            ("provider".to_owned(), self.provider.name().into()),
            ("inputTokens".to_owned(), reply.input_tokens.into()),
            ("outputTokens".to_owned(), reply.output_tokens.into()),
            ("latencyMs".to_owned(), latency_ms.into()),
        ]);
        // After the prompt, and after this attempt began: a retry whose prompt was stored by
        // an earlier attempt must not place its reply (and the conversation's last activity,
        // which is its place in the sync change log) back at that attempt's time.
        let replied_at = (prompt_message.timestamp.max(now)
            + Duration::from_std(latency)
                .unwrap_or_default()
                .max(Duration::microseconds(1)))
        .trunc_subsecs(6);
        let answer = NewMessage {
            role: Role::Assistant,
            token_count: Some(self.tokenizer.token_count(&reply.text)),
            content: reply.text.clone(),
            attachments: Vec::new(),
            metadata,
            client_message_id: derived_client_id(request_id.as_ref(), "reply"),
            client_timestamp: None,
        };
        let (reply_message, kept_in) = match (regenerates, conversation) {
            (Some(reply), Some(id)) => {
                self.save_regenerated(&user, id, &reply, answer, replied_at)
                    .await?
            }
            _ => {
                self.save_reply(
                    &user,
                    conversation,
                    belongs_to,
                    &prompt_message,
                    answer,
                    replied_at,
                )
                .await?
            }
        };

        let completion = Completion {
            reply: reply.text,
            conversation_id: kept_in,
            prompt_message_id: prompt_message.id,
            reply_message_id: reply_message.id,
            model: model_request.model,
            input_tokens: reply.input_tokens,
            output_tokens: reply.output_tokens,
            latency_ms,
            fell_back_to_short_term_memory: kept_in.is_none(),
            replayed: false,
        };
        if completion.fell_back_to_short_term_memory && conversation.is_some() {
            shared::metrics::short_term_memory_fallback();
        }
        if let Some(request_id) = &request_id {
            if let Err(error) = self
                .record_completion(
                    &user,
                    request_id,
                    kept_in.or(conversation),
                    &completion,
                    now,
                )
                .await
            {
                // The exchange is saved; only a retry's deduplication is weaker.
                tracing::warn!(error = %chain(&error), "completion record not written");
            }
        }
        Ok(completion)
    }

    /// Saves a message to the conversation (when there is one and the store works) and
    /// always to short-term memory, whose entry names the conversation it `belongs_to`.
    /// Returns the stored message and where it was kept.
    async fn save(
        &self,
        user: &UserId,
        conversation: Option<ConversationId>,
        belongs_to: Option<ConversationId>,
        message: NewMessage,
        now: DateTime<Utc>,
    ) -> Result<(Message, Option<ConversationId>), Error> {
        let mut kept_in = None;
        let mut stored = None;
        if let Some(id) = conversation {
            match self
                .conversations
                .add_message(user, &id, message.clone(), now)
                .await
            {
                Ok(appended) => {
                    stored = Some(appended.message);
                    kept_in = Some(id);
                }
                Err(Error::NotFound) => return Err(Error::NotFound),
                Err(error) => {
                    tracing::warn!(error = %chain(&error), "conversation store failed; using short-term memory");
                }
            }
        }
        let stored = stored.unwrap_or_else(|| Message {
            id: MessageId::generate(),
            conversation_id: belongs_to.unwrap_or_else(|| ConversationId::from(uuid::Uuid::nil())),
            role: message.role,
            content: message.content,
            timestamp: now,
            attachments: message.attachments,
            metadata: message.metadata,
            client_message_id: message.client_message_id.map(|c| c.as_str().to_owned()),
            client_timestamp: kept_client_timestamp(message.client_timestamp, now),
            token_count: message.token_count,
            slot: None,
        });
        self.remember(user, &stored, belongs_to, kept_in).await?;
        Ok((stored, kept_in))
    }

    /// Saves the reply to `prompt` as [`Assistant::save`] does, with the prompt's branch kept
    /// (`Conversations::add_reply`) when the prompt was kept in the conversation.
    async fn save_reply(
        &self,
        user: &UserId,
        conversation: Option<ConversationId>,
        belongs_to: Option<ConversationId>,
        prompt: &Message,
        answer: NewMessage,
        now: DateTime<Utc>,
    ) -> Result<(Message, Option<ConversationId>), Error> {
        let Some(id) = conversation.filter(|id| prompt.conversation_id == *id) else {
            return self.save(user, conversation, belongs_to, answer, now).await;
        };
        match self
            .conversations
            .add_reply(user, &id, prompt, answer.clone(), now)
            .await
        {
            Ok(appended) => {
                self.remember(user, &appended.message, belongs_to, Some(id))
                    .await?;
                Ok((appended.message, Some(id)))
            }
            Err(Error::NotFound) => Err(Error::NotFound),
            Err(error) => {
                tracing::warn!(error = %chain(&error), "conversation store failed; using short-term memory");
                self.save(user, None, belongs_to, answer, now).await
            }
        }
    }

    /// Saves a regenerated reply as the sibling of the reply `reply` (`domain::tree`), on a new
    /// branch the conversation shows, and to short-term memory.
    async fn save_regenerated(
        &self,
        user: &UserId,
        id: ConversationId,
        reply: &MessageId,
        answer: NewMessage,
        now: DateTime<Utc>,
    ) -> Result<(Message, Option<ConversationId>), Error> {
        let edited = self
            .conversations
            .edit_message(user, &id, reply, answer, now)
            .await?;
        self.remember(user, &edited.message, Some(id), Some(id))
            .await?;
        Ok((edited.message, Some(id)))
    }

    /// Writes a saved message to short-term memory (held there when no conversation kept it).
    async fn remember(
        &self,
        user: &UserId,
        stored: &Message,
        belongs_to: Option<ConversationId>,
        kept_in: Option<ConversationId>,
    ) -> Result<(), Error> {
        // The stored message's own id and time, so a retried save writes the same entry, and
        // the conversation asked for, so a migration can move an entry kept only here into it.
        let mut entry: MemoryEntry = self.memory.entry(
            stored.id,
            stored.role,
            stored.content.clone(),
            belongs_to,
            stored.metadata.clone(),
            stored.timestamp,
        );
        entry.attachments = stored.attachments.clone();
        entry.token_count = stored.token_count.clone();
        entry.slot = stored.slot;
        // Kept only here: held until the stream's migration moves it into its conversation.
        if kept_in.is_none() {
            entry.held = true;
            entry.expires_at = stored.timestamp + domain::memory::HELD_RETENTION;
        }
        match self
            .memory
            .remember(user, std::slice::from_ref(&entry))
            .await
        {
            Ok(()) => {}
            // Nothing kept it anywhere: the client must retry.
            Err(error) if kept_in.is_none() => return Err(error),
            Err(error) => tracing::warn!(error = %chain(&error), "short-term memory not written"),
        }
        Ok(())
    }

    /// The conversation a prompt without a conversation id belongs to: the user's latest
    /// active conversation if it was active within the session gap, else a new one named
    /// after the prompt.
    async fn legacy_session(
        &self,
        user: &UserId,
        prompt: &str,
        now: DateTime<Utc>,
    ) -> Result<ConversationId, Error> {
        let latest = self.conversations.latest_active(user).await?;
        if let Some(current) = latest.filter(|c| now - c.last_activity <= LEGACY_SESSION_GAP) {
            return Ok(current.id);
        }
        let created = self
            .conversations
            .create(
                user,
                Some(Title::derived_from(prompt)),
                Tags::default(),
                now,
            )
            .await?;
        Ok(created.id)
    }

    async fn completion_record(
        &self,
        user: &UserId,
        request_id: &ClientMessageId,
        now: DateTime<Utc>,
    ) -> Result<RecordState, Error> {
        let store = self.conversations.store();
        Ok(
            match store.completion_record(user, request_id, now).await? {
                CompletionRecord::Done(result) => RecordState::Done(
                    serde_json::from_str(&result)
                        .map_err(|e| Error::internal("decode completion record", e))?,
                ),
                CompletionRecord::InProgress => RecordState::InProgress,
                CompletionRecord::Free => RecordState::Free,
            },
        )
    }

    /// Claims the request id for this attempt, so that two attempts of one request never both
    /// call the model; a claim refused reads the record: the first answer for a retry of an
    /// answered request (`Some`), a conflict while another attempt holds it. The record is
    /// read only when the claim is refused (the request before its first answer reads
    /// nothing more).
    async fn claim_or_replay(
        &self,
        user: &UserId,
        request_id: &ClientMessageId,
        now: DateTime<Utc>,
    ) -> Result<Option<Completion>, Error> {
        // Freed between a refused claim and its read (the other attempt failed and gave it
        // back): claimed on the second try, else refused as in progress.
        for _ in 0..2 {
            if self.claim(user, request_id, now).await? {
                return Ok(None);
            }
            match self.completion_record(user, request_id, now).await? {
                RecordState::Done(done) => {
                    return Ok(Some(Completion {
                        replayed: true,
                        ..done
                    }))
                }
                RecordState::InProgress => break,
                RecordState::Free => continue,
            }
        }
        Err(Error::Conflict(
            "a request with this id is still being answered; retry shortly".into(),
        ))
    }

    /// Takes the request id for this attempt; false if another attempt holds it or is done.
    async fn claim(
        &self,
        user: &UserId,
        request_id: &ClientMessageId,
        now: DateTime<Utc>,
    ) -> Result<bool, Error> {
        let lease =
            Duration::from_std(self.model_timeout).unwrap_or_default() + Duration::seconds(30);
        self.conversations
            .store()
            .claim_completion(
                user,
                request_id,
                now + lease,
                now + COMPLETION_RECORD_TTL,
                now,
            )
            .await
    }

    /// Gives the request id back after a failed attempt, so the client's retry can proceed.
    async fn release(&self, user: &UserId, request_id: Option<&ClientMessageId>) {
        let Some(request_id) = request_id else {
            return;
        };
        let released = self
            .conversations
            .store()
            .release_completion(user, request_id)
            .await;
        if let Err(error) = released {
            // The lease runs out on its own.
            tracing::warn!(error = %chain(&error), "completion record not released");
        }
    }

    async fn record_completion(
        &self,
        user: &UserId,
        request_id: &ClientMessageId,
        conversation: Option<ConversationId>,
        completion: &Completion,
        now: DateTime<Utc>,
    ) -> Result<(), Error> {
        let result = serde_json::to_string(completion)
            .map_err(|e| Error::internal("encode completion", e))?;
        self.conversations
            .store()
            .record_completion(
                user,
                request_id,
                conversation,
                result,
                now + COMPLETION_RECORD_TTL,
            )
            .await
    }
}

/// The client message id of one of a request's messages, so a retried request's appends are
/// recognised as repeats.
fn derived_client_id(request_id: Option<&ClientMessageId>, part: &str) -> Option<ClientMessageId> {
    request_id.and_then(|r| ClientMessageId::parse(&format!("{}:{part}", r.as_str())).ok())
}
