//! `POST /mobile/batch`: the operations an app queued while offline, run in order, each with
//! its own result, each applied exactly once however often the batch is sent again.
//!
//! Every operation carries the app's own id (`opId`). What a write operation answered when it
//! succeeded is recorded under that id (for `BATCH_RECORD_DAYS`), and a replay of the id gets
//! that answer back without running anything. Every write is also idempotent by its keys, so
//! an operation whose record was never written (the function stopped in between) is safe to
//! run again: a conversation made offline gets an id derived from the user and the app's
//! `clientConversationId`, a message is appended under its `clientMessageId` (the `opId` when
//! it has none), and an edit carries the time it was made, the later edit winning.

use chrono::{DateTime, Utc};
use lambda_http::http::StatusCode;
use lambda_http::{Body, Request};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use tokio::time::Instant;
use uuid::Uuid;

use super::request::caller;
use super::wire::{
    AddMessageBody, ConversationView, ConversationWithMessagesView, EditMessageBody, ErrorDetail,
    MessageView,
};
use super::{append_message, download_links, error_detail, json, respond, HandlerResult, State};
use crate::attachments::DownloadLinks;
use crate::error::Error;
use crate::model::{ConversationId, Tags, Title, UserId};
use crate::service::{DEFAULT_MESSAGE_WINDOW, MAX_MESSAGE_WINDOW};
use crate::store::{
    Claim, ConversationChange, OperationRecord, OperationRecords, RecordedAnswer, RESPONSE_BUDGET,
};
use domain::usage::Metered;

/// Operations one batch may hold.
pub const MAX_BATCH_OPERATIONS: usize = 100;
/// The largest batch body (well inside Lambda's 6 MB request).
pub const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;
/// The longest `opId` and `clientConversationId`.
pub const MAX_CLIENT_ID_CHARS: usize = 128;

/// How long a claim on an operation holds while it runs (far longer than any one operation).
const CLAIM_LEASE: chrono::Duration = chrono::Duration::seconds(30);
/// How often, and how long apart, a copy of a batch looks for the answer of an operation
/// another copy is running.
const CLAIM_ATTEMPTS: u32 = 15;
const CLAIM_WAIT: std::time::Duration = std::time::Duration::from_millis(200);

/// Namespace of the conversation ids derived from an app's ids (UUID v5), fixed forever:
/// changing it would give a replayed create a new conversation.
const CLIENT_CONVERSATION_NAMESPACE: Uuid = Uuid::from_u128(0x6e756d69_6e61_4d6f_6269_6c65436f6e76);

/// The conversation an app made offline under `client_id`, for this user.
pub fn conversation_for_client_id(user: &UserId, client_id: &str) -> ConversationId {
    ConversationId::from(Uuid::new_v5(
        &CLIENT_CONVERSATION_NAMESPACE,
        format!("{user}\n{client_id}").as_bytes(),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchBody {
    operations: Vec<Value>,
}

/// Which conversation an operation is about: the server's id, or the app's id of one it made
/// offline (in this batch or an earlier one).
#[derive(Debug, Default)]
struct Target {
    conversation_id: Option<String>,
    client_conversation_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CreateOperation {
    client_conversation_id: Option<String>,
    title: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RenameOperation {
    title: String,
    client_timestamp: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ArchiveOperation {
    #[serde(default = "archived_by_default")]
    archived: bool,
    client_timestamp: Option<String>,
}

fn archived_by_default() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct TagsOperation {
    tags: Vec<String>,
    client_timestamp: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct GetOperation {
    message_limit: Option<usize>,
    before: Option<String>,
}

/// `editMessage`: a user's message said again, as a sibling on a new branch (the edit's
/// client message id defaults to the operation's id).
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct EditOperation {
    message_id: String,
    content: String,
    #[serde(default)]
    metadata: crate::model::Metadata,
    client_message_id: Option<String>,
    client_timestamp: Option<String>,
}

/// `switchBranch`: the newest leaf under a message (or its sibling at `position`) becomes the
/// active one; the later switch by `clientTimestamp` wins.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SwitchOperation {
    message_id: String,
    position: Option<u32>,
    client_timestamp: Option<String>,
}

/// `deleteMessage`: a message and every message that grew from it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct DeleteMessageOperation {
    message_id: String,
}

/// An operation with nothing but its conversation (`delete`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoFields {}

/// What one operation answered.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Outcome {
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<ErrorDetail>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OperationResultView<'a> {
    op_id: Option<&'a str>,
    status: u16,
    #[serde(flatten)]
    outcome: &'a Outcome,
    /// The answer recorded when this operation first ran; nothing ran now.
    replayed: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BatchView<'a> {
    results: Vec<OperationResultView<'a>>,
    /// The server's id of every conversation the batch named by the app's id.
    conversation_ids: Map<String, Value>,
}

/// `POST /mobile/batch`
pub async fn mobile_batch(state: &State, request: Request) -> HandlerResult {
    respond(async {
        let user = caller(&request)?;
        let operations = parse_batch(&request)?;
        let ids: Vec<Result<Option<&str>, Error>> = operations.iter().map(operation_id).collect();
        let known: Vec<&str> = ids
            .iter()
            .filter_map(|id| id.as_ref().ok().copied().flatten())
            .collect();
        let mut records = state
            .conversations
            .store()
            .operation_records(&user, &known)
            .await?;
        // A batch sent again whose every operation was applied before is answered from its
        // records: nothing new is done, so nothing is counted against the user's rate.
        let replay_only = ids
            .iter()
            .all(|id| matches!(id, Ok(Some(op)) if records.contains_key(*op)));
        if !replay_only {
            state
                .usage
                .admit(&user, Metered::Batch, state.now())
                .await?;
        }
        let mut runner = Runner {
            state,
            user: &user,
            deadline: Instant::now() + state.config.batch_time_budget,
            read_budget: RESPONSE_BUDGET,
            client_ids: Map::new(),
        };
        let mut results = Vec::with_capacity(operations.len());
        for (operation, op_id) in operations.iter().zip(ids) {
            let (status, outcome, replayed) = match &op_id {
                Ok(Some(op_id)) => Box::pin(runner.run(op_id, operation, &mut records)).await?,
                // A read changes nothing: it needs no id to be applied once.
                Ok(None) if kind_of(operation) == "getConversation" => {
                    settled(Box::pin(runner.apply("getConversation", "", operation, false)).await)
                }
                Ok(None) => failed(&Error::invalid(format!(
                    "an operation that changes anything needs an opId of 1 to \
                     {MAX_CLIENT_ID_CHARS} printable ASCII characters, to be applied once"
                ))),
                Err(error) => failed(error),
            };
            crate::metrics::batch_operation(match (replayed, &outcome.error) {
                (true, _) => "replayed",
                (false, None) => "applied",
                (false, Some(_)) => "failed",
            });
            results.push((op_id.ok().flatten(), status, outcome, replayed));
        }
        Ok(json(
            StatusCode::OK,
            &BatchView {
                results: results
                    .iter()
                    .map(|(op_id, status, outcome, replayed)| OperationResultView {
                        op_id: *op_id,
                        status: *status,
                        outcome,
                        replayed: *replayed,
                    })
                    .collect(),
                conversation_ids: runner.client_ids,
            },
        ))
    })
    .await
}

/// The batch's operations. What makes the whole batch unreadable (not JSON, too large, too
/// many operations) is refused whole; anything wrong with one operation is its own result.
fn parse_batch(request: &Request) -> Result<Vec<Value>, Error> {
    let bytes: &[u8] = match request.body() {
        Body::Empty => &[],
        Body::Text(text) => text.as_bytes(),
        Body::Binary(bytes) => bytes,
        _ => return Err(Error::invalid("unsupported body encoding")),
    };
    if bytes.len() > MAX_BATCH_BYTES {
        return Err(Error::TooLarge(format!(
            "a batch must be at most {MAX_BATCH_BYTES} bytes; send it in parts"
        )));
    }
    let body: BatchBody = super::request::json_bytes(bytes)?
        .ok_or_else(|| Error::invalid("a JSON body is required"))?;
    if body.operations.is_empty() {
        return Err(Error::invalid("operations must not be empty"));
    }
    if body.operations.len() > MAX_BATCH_OPERATIONS {
        return Err(Error::TooLarge(format!(
            "a batch holds at most {MAX_BATCH_OPERATIONS} operations; send it in parts"
        )));
    }
    Ok(body.operations)
}

/// An operation's `opId`: none when it has none, an error when it is not a usable one.
fn operation_id(operation: &Value) -> Result<Option<&str>, Error> {
    if !operation.is_object() {
        return Err(Error::invalid("each operation must be a JSON object"));
    }
    match operation.get("opId") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(id)) if valid_client_id(id) => Ok(Some(id)),
        Some(_) => Err(Error::invalid(format!(
            "opId must be 1 to {MAX_CLIENT_ID_CHARS} printable ASCII characters"
        ))),
    }
}

/// The conversation whose content an answer holds: a message names it, a conversation is it.
fn conversation_in(kind: &str, outcome: &Outcome) -> Option<ConversationId> {
    // A preset's answer holds none.
    if kind.ends_with("Preset") {
        return None;
    }
    let body = outcome.body.as_ref()?;
    let id = body.get("conversationId").or_else(|| body.get("id"))?;
    ConversationId::parse(id.as_str()?).ok()
}

fn kind_of(operation: &Value) -> &str {
    operation.get("type").and_then(Value::as_str).unwrap_or("")
}

fn valid_client_id(id: &str) -> bool {
    !id.is_empty()
        && id.chars().count() <= MAX_CLIENT_ID_CHARS
        && id.chars().all(|c| c.is_ascii_graphic())
}

/// Runs one batch's operations for one user.
struct Runner<'a> {
    state: &'a State,
    user: &'a UserId,
    /// Operations not started by then are answered `not_run` (the function's time is bounded).
    deadline: Instant,
    /// Message content the batch's reads may still return.
    read_budget: usize,
    client_ids: Map<String, Value>,
}

impl Runner<'_> {
    /// The operation's status and outcome, and whether it is a recorded answer replayed.
    /// Only a failure to read or write the records themselves fails the whole batch.
    async fn run(
        &mut self,
        op_id: &str,
        operation: &Value,
        records: &mut OperationRecords,
    ) -> Result<(u16, Outcome, bool), Error> {
        let kind = kind_of(operation);
        let fingerprint = fingerprint(operation);
        if let Some(record) = records.get(op_id) {
            if record.fingerprint != fingerprint {
                return Ok(failed(&Error::OperationReused(op_id.to_owned())));
            }
            if let Some(answer) = &record.answer {
                self.note_client_id(operation);
                return replayed(answer);
            }
        }
        if kind == "getConversation" {
            // Reads change nothing: they are answered afresh every time.
            return Ok(settled(
                Box::pin(self.apply(kind, op_id, operation, false)).await,
            ));
        }
        if Instant::now() >= self.deadline {
            return Ok(failed(&Error::NotRun));
        }
        let store = self.state.conversations.store();
        let expires = self.state.now() + self.state.config.batch_record_retention;
        let mut again = false;
        for attempt in 1..=CLAIM_ATTEMPTS {
            let now = self.state.now();
            let claim = store
                .claim_operation(
                    self.user,
                    op_id,
                    &fingerprint,
                    now,
                    now + CLAIM_LEASE,
                    expires,
                )
                .await?;
            match claim {
                Claim::Claimed { again: lapsed } => {
                    again = lapsed;
                    break;
                }
                Claim::Answered(answer) => {
                    self.note_client_id(operation);
                    return replayed(&answer);
                }
                Claim::Reused => return Ok(failed(&Error::OperationReused(op_id.to_owned()))),
                // Another copy of this batch is running it: wait for its answer.
                Claim::Running if attempt < CLAIM_ATTEMPTS => tokio::time::sleep(CLAIM_WAIT).await,
                Claim::Running => {
                    return Ok(failed(&Error::Conflict(
                        "another request is applying this operation; send the batch again \
                         shortly for its answer"
                            .to_owned(),
                    )))
                }
            }
        }
        // On the heap: an operation's future is as large as the largest kind's.
        let (status, outcome, _) =
            settled(Box::pin(self.apply(kind, op_id, operation, again)).await);
        if outcome.error.is_some() {
            // It changed nothing: a replay evaluates it again.
            if let Err(error) = store.release_operation(self.user, op_id).await {
                tracing::warn!(error = %crate::error::chain(&error), "claim not released; its lease will lapse");
            }
            return Ok((status, outcome, false));
        }
        let answer = RecordedAnswer {
            status,
            result: serde_json::to_string(&outcome)
                .map_err(|e| Error::internal("write operation record", e))?,
        };
        match store
            .answer_operation(
                self.user,
                op_id,
                &fingerprint,
                answer.clone(),
                conversation_in(kind, &outcome),
                expires,
            )
            .await
        {
            Ok(()) => {
                records.insert(
                    op_id.to_owned(),
                    OperationRecord {
                        fingerprint,
                        answer: Some(answer),
                        lease_until: 0,
                    },
                );
            }
            // Applied and answered; a replay after the lease runs it again, to the same effect.
            Err(error) => {
                tracing::warn!(error = %crate::error::chain(&error), "operation answer not recorded")
            }
        }
        Ok((status, outcome, false))
    }

    /// Runs one operation: its status and body, or why it failed (then it changed nothing).
    /// `again` when an earlier run of it may have done its work and stopped before its answer
    /// was kept.
    async fn apply(
        &mut self,
        kind: &str,
        op_id: &str,
        operation: &Value,
        again: bool,
    ) -> Result<(u16, Option<Value>), Error> {
        let state = self.state;
        let user = self.user;
        let now = state.now();
        let fields = fields_of(operation);
        match kind {
            "createConversation" => {
                let op: CreateOperation = parse(fields)?;
                let client_id = op.client_conversation_id.as_deref().unwrap_or(op_id);
                if !valid_client_id(client_id) {
                    return Err(invalid_client_conversation_id());
                }
                let id = conversation_for_client_id(user, client_id);
                self.client_ids
                    .insert(client_id.to_owned(), Value::String(id.to_string()));
                let title = op.title.as_deref().map(Title::parse).transpose()?;
                let tags = Tags::parse(&op.tags)?;
                let conversation = state
                    .conversations
                    .create_with_id(user, id, title, tags, now)
                    .await?;
                Ok((201, Some(to_value(&ConversationView::from(&conversation))?)))
            }
            "addMessage" => {
                let (id, body): (_, AddMessageBody) = self.target_and(fields)?;
                // Boxed: the append (S3 and DynamoDB calls) is the largest operation's future.
                let appended =
                    Box::pin(append_message(state, user, &id, body, Some(op_id))).await?;
                let no_links = DownloadLinks::new();
                let mut body = to_value(&MessageView::new(&appended.message, &no_links))?;
                // The app holds the content it sent: the batch's answer leaves it out.
                if let Value::Object(fields) = &mut body {
                    fields.remove("content");
                    fields.insert(
                        "contentBytes".to_owned(),
                        Value::from(appended.message.content.len()),
                    );
                }
                Ok((201, Some(body)))
            }
            "editMessage" => {
                let (id, op): (_, EditOperation) = self.target_and(fields)?;
                let target = parse_message_id(&op.message_id)?;
                let edit = EditMessageBody {
                    content: op.content,
                    metadata: op.metadata,
                    client_message_id: op.client_message_id.or_else(|| Some(op_id.to_owned())),
                    client_timestamp: op.client_timestamp,
                };
                let edited = Box::pin(super::edit_in(state, user, &id, &target, edit)).await?;
                let no_links = DownloadLinks::new();
                let mut body = to_value(
                    &MessageView::new(&edited.message, &no_links).with_siblings(edited.siblings),
                )?;
                // As for `addMessage`: the app holds the content it sent.
                if let Value::Object(fields) = &mut body {
                    fields.remove("content");
                    fields.insert(
                        "contentBytes".to_owned(),
                        Value::from(edited.message.content.len()),
                    );
                }
                Ok((201, Some(body)))
            }
            "switchBranch" => {
                let (id, op): (_, SwitchOperation) = self.target_and(fields)?;
                let target = parse_message_id(&op.message_id)?;
                if op.position == Some(0) {
                    return Err(Error::invalid("position counts from 1"));
                }
                let made_at = made_at(op.client_timestamp.as_deref(), now)?;
                // On the heap, as every operation that walks the tree: the batch's own future
                // holds one of each kind.
                let found = Box::pin(state.conversations.switch_branch(
                    user,
                    &id,
                    &target,
                    op.position,
                    made_at,
                ))
                .await?;
                Ok((
                    200,
                    Some(to_value(&ConversationView::from(&found.conversation))?),
                ))
            }
            "deleteMessage" => {
                let (id, op): (_, DeleteMessageOperation) = self.target_and(fields)?;
                let target = parse_message_id(&op.message_id)?;
                let budget = self
                    .deadline
                    .saturating_duration_since(Instant::now())
                    .min(state.config.delete_purge_budget);
                Box::pin(
                    state
                        .conversations
                        .delete_message(user, &id, &target, budget),
                )
                .await?;
                Ok((204, None))
            }
            "rename" => {
                let (id, op): (_, RenameOperation) = self.target_and(fields)?;
                let title = Title::parse(&op.title)?;
                let made_at = made_at(op.client_timestamp.as_deref(), now)?;
                let conversation = state
                    .conversations
                    .edit(user, &id, ConversationChange::Rename(&title), made_at, now)
                    .await?;
                Ok((200, Some(to_value(&ConversationView::from(&conversation))?)))
            }
            "archive" => {
                let (id, op): (_, ArchiveOperation) = self.target_and(fields)?;
                let made_at = made_at(op.client_timestamp.as_deref(), now)?;
                let conversation = state
                    .conversations
                    .edit(
                        user,
                        &id,
                        ConversationChange::Archive(op.archived),
                        made_at,
                        now,
                    )
                    .await?;
                Ok((200, Some(to_value(&ConversationView::from(&conversation))?)))
            }
            "setTags" => {
                let (id, op): (_, TagsOperation) = self.target_and(fields)?;
                let tags = Tags::parse(&op.tags)?.into_vec();
                let made_at = made_at(op.client_timestamp.as_deref(), now)?;
                let conversation = state
                    .conversations
                    .edit(user, &id, ConversationChange::Tags(&tags), made_at, now)
                    .await?;
                Ok((200, Some(to_value(&ConversationView::from(&conversation))?)))
            }
            "delete" => {
                let (id, _): (_, NoFields) = self.target_and(fields)?;
                // The purge worker removes the messages: the batch's time is for operations.
                match state
                    .conversations
                    .delete(user, &id, now, std::time::Duration::ZERO)
                    .await
                {
                    Ok(_) => Ok((204, None)),
                    // Deleted before (an earlier run of this very operation): done.
                    Err(Error::NotFound) if state.conversations.was_deleted(user, &id).await? => {
                        Ok((204, None))
                    }
                    Err(error) => Err(error),
                }
            }
            "getConversation" => {
                let (id, op): (_, GetOperation) = self.target_and(fields)?;
                let limit = op.message_limit.unwrap_or(DEFAULT_MESSAGE_WINDOW);
                if !(1..=MAX_MESSAGE_WINDOW).contains(&limit) {
                    return Err(Error::invalid(format!(
                        "messageLimit must be a whole number from 1 to {MAX_MESSAGE_WINDOW}"
                    )));
                }
                // A read is bounded like a write: by the batch's time, and by the room left
                // in its answer (once a read found none, no later one is even made).
                if Instant::now() >= self.deadline {
                    return Err(Error::NotRun);
                }
                let no_room = || {
                    Error::TooLarge(
                        "the batch's answer has no room left for this conversation; \
                         read it on its own"
                            .to_owned(),
                    )
                };
                if self.read_budget == 0 {
                    return Err(no_room());
                }
                let found = state
                    .conversations
                    .get(user, &id, limit, op.before.as_deref())
                    .await?;
                let size = crate::sync::response_bytes(&found);
                if size > self.read_budget {
                    self.read_budget = 0;
                    return Err(no_room());
                }
                self.read_budget -= size;
                let links = download_links(state, user, &found.messages).await?;
                Ok((
                    200,
                    Some(to_value(&ConversationWithMessagesView::new(
                        &found, &links,
                    ))?),
                ))
            }
            "createPreset" => {
                let body: super::presets::CreateBody = parse(fields)?;
                // Its id derived from the operation's: run again after its answer was lost,
                // it finds the preset it made.
                let id = crate::model::PresetId::from(Uuid::new_v5(
                    &CLIENT_CONVERSATION_NAMESPACE,
                    format!("{user}\npreset\n{op_id}").as_bytes(),
                ));
                let preset = super::presets::create_in(state, user, Some(id), body).await?;
                Ok((201, Some(preset_answer(&preset)?)))
            }
            "updatePreset" => {
                let mut fields = fields;
                let id = take_preset_id(&mut fields)?;
                let body: super::presets::PresetBody = parse(fields)?;
                let preset = state.presets.update(user, &id, body.into(), now).await?;
                Ok((200, Some(preset_answer(&preset)?)))
            }
            "deletePreset" => {
                let mut fields = fields;
                let id = take_preset_id(&mut fields)?;
                let _: NoFields = parse(fields)?;
                match state.presets.delete(user, &id).await {
                    Ok(()) => Ok((204, None)),
                    // Deleted by an earlier run of this very operation, whose answer was lost.
                    Err(Error::NotFound) if again => Ok((204, None)),
                    Err(error) => Err(error),
                }
            }
            "" => Err(Error::invalid("each operation needs a type")),
            other => Err(Error::invalid(format!(
                "unknown operation type {other:?}; expected createConversation, addMessage, \
                 editMessage, switchBranch, deleteMessage, rename, archive, setTags, delete, \
                 getConversation, createPreset, updatePreset or deletePreset"
            ))),
        }
    }

    /// The conversation an operation names, and the rest of its fields.
    fn target_and<T: DeserializeOwned>(
        &mut self,
        mut fields: Map<String, Value>,
    ) -> Result<(ConversationId, T), Error> {
        let target = take_target(&mut fields)?;
        let rest = parse(fields)?;
        Ok((self.resolve(target)?, rest))
    }

    /// The server id of the conversation an operation names.
    fn resolve(&mut self, target: Target) -> Result<ConversationId, Error> {
        match (target.conversation_id, target.client_conversation_id) {
            (Some(id), None) => ConversationId::parse(&id),
            (None, Some(client_id)) => {
                if !valid_client_id(&client_id) {
                    return Err(invalid_client_conversation_id());
                }
                let id = conversation_for_client_id(self.user, &client_id);
                self.client_ids
                    .insert(client_id, Value::String(id.to_string()));
                Ok(id)
            }
            _ => Err(Error::invalid(
                "name the conversation by exactly one of conversationId and clientConversationId",
            )),
        }
    }

    /// Adds a replayed operation's app conversation id to the batch's map.
    fn note_client_id(&mut self, operation: &Value) {
        let client_id = match operation.get("clientConversationId") {
            Some(Value::String(id)) => Some(id.as_str()),
            _ if operation.get("type").and_then(Value::as_str) == Some("createConversation") => {
                operation.get("opId").and_then(Value::as_str)
            }
            _ => None,
        };
        if let Some(client_id) = client_id.filter(|id| valid_client_id(id)) {
            let id = conversation_for_client_id(self.user, client_id);
            self.client_ids
                .insert(client_id.to_owned(), Value::String(id.to_string()));
        }
    }
}

/// What an operation that ran answers.
fn settled(result: Result<(u16, Option<Value>), Error>) -> (u16, Outcome, bool) {
    match result {
        Ok((status, body)) => (status, Outcome { body, error: None }, false),
        Err(error) => failed(&error),
    }
}

/// A recorded answer, given again.
fn replayed(answer: &RecordedAnswer) -> Result<(u16, Outcome, bool), Error> {
    let outcome = serde_json::from_str(&answer.result)
        .map_err(|e| Error::internal("read operation record", e))?;
    Ok((answer.status, outcome, true))
}

fn failed(error: &Error) -> (u16, Outcome, bool) {
    let (status, detail) = error_detail(error);
    (
        status.as_u16(),
        Outcome {
            body: None,
            error: Some(detail),
        },
        false,
    )
}

/// The operation's own fields: everything but `opId` and `type`.
fn fields_of(operation: &Value) -> Map<String, Value> {
    let mut fields = operation.as_object().cloned().unwrap_or_default();
    fields.remove("opId");
    fields.remove("type");
    fields
}

/// Takes the conversation fields out of `fields` (for operations whose own body refuses
/// unknown fields).
fn take_target(fields: &mut Map<String, Value>) -> Result<Target, Error> {
    let mut text = |name: &str| match fields.remove(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(value)) => Ok(Some(value)),
        Some(_) => Err(Error::invalid(format!("{name} must be a string"))),
    };
    Ok(Target {
        conversation_id: text("conversationId")?,
        client_conversation_id: text("clientConversationId")?,
    })
}

/// A preset as a batch answers it: without its instructions and starter prompts, which the
/// app sent (or reads with `GET /presets` and the next sync), so fifty of them cannot crowd
/// the answer.
fn preset_answer(preset: &domain::preset::Preset) -> Result<Value, Error> {
    let mut body = to_value(&super::presets::PresetView::from(preset))?;
    if let Value::Object(fields) = &mut body {
        fields.remove("instructions");
        fields.remove("starterPrompts");
    }
    Ok(body)
}

/// Takes a preset operation's `presetId` out of `fields`.
fn take_preset_id(fields: &mut Map<String, Value>) -> Result<crate::model::PresetId, Error> {
    fields
        .remove("presetId")
        .and_then(|id| {
            id.as_str()
                .and_then(|id| crate::model::PresetId::parse(id).ok())
        })
        .ok_or_else(|| Error::invalid("presetId must be a preset's id"))
}

fn parse<T: DeserializeOwned>(fields: Map<String, Value>) -> Result<T, Error> {
    serde_json::from_value(Value::Object(fields))
        .map_err(|e| Error::invalid(format!("invalid operation: {e}")))
}

fn to_value(view: &impl Serialize) -> Result<Value, Error> {
    serde_json::to_value(view).map_err(|e| Error::internal("encode result", e))
}

fn parse_message_id(raw: &str) -> Result<crate::model::MessageId, Error> {
    crate::model::MessageId::parse(raw)
        .map_err(|_| Error::invalid("messageId must be a message's id"))
}

fn invalid_client_conversation_id() -> Error {
    Error::invalid(format!(
        "clientConversationId must be 1 to {MAX_CLIENT_ID_CHARS} printable ASCII characters"
    ))
}

/// When an edit was made: the app's clock (never later than now), or now if it gives none.
fn made_at(client_timestamp: Option<&str>, now: DateTime<Utc>) -> Result<DateTime<Utc>, Error> {
    Ok(super::wire::client_timestamp(client_timestamp)?.map_or(now, |t| t.min(now)))
}

/// A digest of an operation as sent (object keys in sorted order), to tell a replay from a
/// different operation reusing its id.
fn fingerprint(operation: &Value) -> String {
    let canonical = serde_json::to_string(operation).unwrap_or_default();
    let digest = Sha256::digest(canonical.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_apps_conversation_id_derives_the_same_server_id_for_the_same_user_only() {
        let alice = UserId::parse("alice").unwrap();
        let bob = UserId::parse("bob").unwrap();
        assert_eq!(
            conversation_for_client_id(&alice, "c1"),
            conversation_for_client_id(&alice, "c1")
        );
        assert_ne!(
            conversation_for_client_id(&alice, "c1"),
            conversation_for_client_id(&bob, "c1")
        );
        assert_ne!(
            conversation_for_client_id(&alice, "c1"),
            conversation_for_client_id(&alice, "c2")
        );
    }

    #[test]
    fn the_fingerprint_ignores_key_order_but_not_content() {
        let a: Value = serde_json::from_str(r#"{"opId":"1","type":"rename","title":"A"}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"title":"A","type":"rename","opId":"1"}"#).unwrap();
        let c: Value = serde_json::from_str(r#"{"opId":"1","type":"rename","title":"B"}"#).unwrap();
        assert_eq!(fingerprint(&a), fingerprint(&b));
        assert_ne!(fingerprint(&a), fingerprint(&c));
    }

    #[test]
    fn an_edit_made_in_the_future_counts_as_made_now() {
        let now = Utc::now();
        let later = (now + chrono::Duration::days(1)).to_rfc3339();
        assert_eq!(made_at(Some(&later), now).unwrap(), now);
        assert!(made_at(Some("yesterday"), now).is_err());
        assert_eq!(made_at(None, now).unwrap(), now);
    }
}
