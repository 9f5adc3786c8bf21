//! The migration's access patterns: what is already migrated, conditional batched writes of
//! migrated messages, each user's migration state, and each scheduled run's summary.

use std::collections::HashSet;

use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, TransactWriteItem, Update};
use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};

use super::{
    append::AppendOutcome, backoff, conversation_key, from_item, is_conditional_check_failure,
    item_key, put_new, s, store_error, to_item, Cancellation, Store, TRANSACTION_ATTEMPTS,
};
use domain::error::Error;
use domain::keys;
use domain::migration::{MigrationState, RunSummary, UserSummary};
use domain::model::{
    Attachment, ClientMessageId, ConversationId, Message, MessageId, Title, UserId,
};

/// DynamoDB's limit on the items of one transaction.
pub const TRANSACTION_MAX_ITEMS: usize = 100;
/// What one migration transaction may carry: well under DynamoDB's 4 MB per transaction.
const TRANSACTION_MAX_BYTES: usize = 3 * 1024 * 1024;

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MigrationStateItem {
    #[serde(rename = "PK")]
    pk: String,
    #[serde(rename = "SK")]
    sk: String,
    entity: String,
    #[serde(flatten)]
    state: MigrationState,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RunItem {
    #[serde(rename = "PK")]
    pk: String,
    #[serde(rename = "SK")]
    sk: String,
    entity: String,
    #[serde(flatten)]
    summary: RunSummary,
}

/// One user's outcome in one run (expires with the table's TTL; the run's totals stay).
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RunUserItem {
    #[serde(rename = "PK")]
    pk: String,
    #[serde(rename = "SK")]
    sk: String,
    entity: String,
    /// The outcome, listing at most `RUN_USER_SKIPPED_LISTED` skipped items (each of which
    /// can be long), so the record stays far below the item size limit.
    #[serde(flatten)]
    summary: UserSummary,
    skipped_total: usize,
    expires_at: i64,
}

const RUN_USER_SKIPPED_LISTED: usize = 50;

/// A rough upper bound of a message item's size, to keep transactions under their limit.
pub fn message_item_bytes(message: &Message) -> usize {
    let metadata = serde_json::to_vec(&message.metadata).map_or(0, |m| m.len());
    let attachments: usize = message
        .attachments
        .iter()
        .map(Attachment::stored_bytes)
        .sum();
    message.content.len() + metadata + attachments + 512
}

/// Splits messages into transactions: each leaves one item for the conversation's update and
/// stays within `max_items` items and the byte budget.
pub fn transaction_chunks(messages: &[Message], max_items: usize) -> Vec<&[Message]> {
    let per_chunk = max_items.clamp(2, TRANSACTION_MAX_ITEMS) - 1;
    let mut chunks = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (i, message) in messages.iter().enumerate() {
        let size = message_item_bytes(message);
        if i > start && (i - start == per_chunk || bytes + size > TRANSACTION_MAX_BYTES) {
            chunks.push(&messages[start..i]);
            start = i;
            bytes = 0;
        }
        bytes += size;
    }
    if start < messages.len() {
        chunks.push(&messages[start..]);
    }
    chunks
}

impl Store {
    pub async fn migration_state(&self, user: &UserId) -> Result<Option<MigrationState>, Error> {
        let item = self
            .get(&keys::migration_partition(user), keys::MIGRATION_STATE_SK)
            .await?;
        Ok(item
            .map(from_item::<MigrationStateItem>)
            .transpose()?
            .map(|item| item.state))
    }

    pub async fn save_migration_state(
        &self,
        user: &UserId,
        state: &MigrationState,
    ) -> Result<(), Error> {
        let item = MigrationStateItem {
            pk: keys::migration_partition(user),
            sk: keys::MIGRATION_STATE_SK.to_owned(),
            entity: "MigrationState".to_owned(),
            state: state.clone(),
        };
        self.put(&item, "save migration state").await
    }

    /// Which of the user's conversations exist.
    pub async fn existing_conversations(
        &self,
        user: &UserId,
        ids: &[ConversationId],
    ) -> Result<HashSet<ConversationId>, Error> {
        let keys = ids.iter().map(|id| conversation_key(user, id)).collect();
        Ok(self
            .batch_get(keys, Some("PK"))
            .await?
            .iter()
            .filter_map(|item| match item.get(keys::PK) {
                Some(AttributeValue::S(pk)) => keys::parse_conversation_partition(pk),
                _ => None,
            })
            .map(|(_, id)| id)
            .collect())
    }

    /// Which of these messages of the user's are stored already.
    pub async fn existing_messages(
        &self,
        user: &UserId,
        messages: &[Message],
    ) -> Result<HashSet<MessageId>, Error> {
        // Where each is if stored: by its time and id, or at the slot its memory entry names.
        let keys = messages
            .iter()
            .map(|m| {
                item_key(
                    &keys::conversation_partition(user, &m.conversation_id),
                    &m.sort_key(),
                )
            })
            .collect();
        let found = self
            .batch_get(keys, Some("SK, id"))
            .await?
            .into_iter()
            .map(|item| {
                let key = match item.get(keys::SK) {
                    Some(AttributeValue::S(key)) => keys::MessageSortKey::parse(key),
                    _ => None,
                };
                match (key.map(|key| key.place()), item.get("id")) {
                    (Some(keys::MessagePlace::Timed { message, .. }), _) => Ok(message),
                    // Kept by slot: its id is in `id`, as its 16 bytes.
                    (Some(keys::MessagePlace::Slot(_)), Some(AttributeValue::B(id))) => {
                        uuid::Uuid::from_slice(id.as_ref())
                            .map(MessageId::from)
                            .map_err(|_| Error::internal("read messages", "a malformed message id"))
                    }
                    _ => Err(Error::internal("read messages", "not a message's key")),
                }
            })
            .collect::<Result<HashSet<MessageId>, Error>>()?;
        // A slot held by another message does not hold this one.
        Ok(messages
            .iter()
            .map(|m| m.id)
            .filter(|id| found.contains(id))
            .collect())
    }

    /// Stores migrated messages of one conversation in one transaction (a chunk from
    /// `transaction_chunks`) and counts them on it. Each message is written only if absent, so
    /// a re-run stores nothing twice: messages found stored are dropped and the rest retried.
    /// Returns how many this call stored. `NotFound` if the conversation is gone. Into a
    /// conversation that holds messages kept by slot, they go by slot
    /// (`append_migrated_by_slot`).
    pub async fn append_migrated(
        &self,
        user: &UserId,
        conversation: &ConversationId,
        messages: &[Message],
        auto_title: Option<&Title>,
    ) -> Result<usize, Error> {
        let mut pending: Vec<&Message> = messages.iter().collect();
        let mut attempt = 0;
        while !pending.is_empty() {
            attempt += 1;
            // The messages first (large content goes to S3, which takes a while), then the
            // count update: its change-log stamp is taken just before the transaction is sent.
            let mut puts = Vec::with_capacity(pending.len());
            for message in &pending {
                let item = self.message_to_item(&self.message_item(user, message).await?)?;
                puts.push(
                    TransactWriteItem::builder()
                        .put(put_new(&self.table, item)?)
                        .build(),
                );
            }
            let mut writes = vec![TransactWriteItem::builder()
                .update(self.count_migrated(user, conversation, pending.len(), auto_title)?)
                .build()];
            writes.extend(puts);
            let error = match self
                .client
                .transact_write_items()
                .set_transact_items(Some(writes))
                .send()
                .await
            {
                Ok(_) => return Ok(pending.len()),
                Err(error) => error,
            };
            let Some(cancelled) = Cancellation::of(&error) else {
                return Err(store_error("append migrated messages", error));
            };
            if cancelled.condition_failed(0) {
                // Appended to by slot since the caller looked (`holds_slots`): a time key would
                // sort before those messages, so these go after them.
                if self.holds_slots(user, conversation).await? {
                    // Not those another run stored meanwhile (their puts were refused too).
                    let mut refused = (1..).map(|i| cancelled.condition_failed(i));
                    let pending: Vec<Message> = pending
                        .into_iter()
                        .filter(|_| !refused.next().unwrap_or(false))
                        .cloned()
                        .collect();
                    let stored = self
                        .append_migrated_by_slot(user, conversation, &pending, auto_title)
                        .await?;
                    return Ok(stored);
                }
                return Err(Error::NotFound);
            }
            let stored_before: Vec<bool> = (0..pending.len())
                .map(|i| cancelled.condition_failed(i + 1))
                .collect();
            if stored_before.contains(&true) {
                let mut stored = stored_before.into_iter();
                pending.retain(|_| !stored.next().unwrap_or(false));
                continue;
            }
            if !cancelled.worth_retrying() || attempt >= TRANSACTION_ATTEMPTS {
                return Err(store_error("append migrated messages", error));
            }
            backoff(attempt).await;
        }
        Ok(0)
    }

    /// Appends migrated messages to a conversation that holds messages kept by slot, oldest
    /// first, each after the messages it holds (a slot cannot go between two others): each
    /// exactly once, by a client message id derived from its own id (`migrated-<id>`), so a
    /// re-run, which does not find it by its time, finds its record. Its time becomes its
    /// arrival's, and the time it was said is kept as its `clientTimestamp`. Returns how many
    /// this call stored. `NotFound` if the conversation is gone.
    pub async fn append_migrated_by_slot(
        &self,
        user: &UserId,
        conversation: &ConversationId,
        messages: &[Message],
        auto_title: Option<&Title>,
    ) -> Result<usize, Error> {
        let mut stored = 0;
        for message in messages {
            debug_assert_eq!(&message.conversation_id, conversation);
            let client_id = ClientMessageId::parse(&format!("migrated-{}", message.id))?;
            let said_at = message.timestamp;
            let message = Message {
                client_message_id: Some(client_id.as_str().to_owned()),
                client_timestamp: message.client_timestamp.or(Some(said_at.trunc_subsecs(3))),
                ..message.clone()
            };
            match self
                .append_message(user, &message, Some(&client_id), auto_title)
                .await?
            {
                AppendOutcome::Stored(_) => stored += 1,
                AppendOutcome::AlreadyStored(_) => {}
                AppendOutcome::ConversationMissing => return Err(Error::NotFound),
            }
        }
        Ok(stored)
    }

    fn count_migrated(
        &self,
        user: &UserId,
        conversation: &ConversationId,
        count: usize,
        auto_title: Option<&Title>,
    ) -> Result<Update, Error> {
        let shed = self.shed_stored_twice();
        let mut expression = format!("SET changedAt = :changed ADD messageCount :count {shed}");
        let mut update = Update::builder()
            .table_name(&self.table)
            .key(
                keys::PK,
                s(&keys::conversation_partition(user, conversation)),
            )
            .key(keys::SK, s(keys::CONVERSATION_SK))
            // Not into a conversation that holds slots: `append_migrated` goes by slot there.
            .condition_expression("attribute_exists(PK) AND attribute_not_exists(tip)")
            .expression_attribute_values(":count", AttributeValue::N(count.to_string()))
            .expression_attribute_values(":changed", s(&self.change_stamp(conversation)));
        if let Some(title) = auto_title {
            expression = format!(
                "SET changedAt = :changed, autoTitle = if_not_exists(autoTitle, :auto), \
                 autoTitleLower = if_not_exists(autoTitleLower, :autoLower) \
                 ADD messageCount :count {shed}"
            );
            update = update
                .expression_attribute_values(":auto", s(title.as_str()))
                .expression_attribute_values(":autoLower", s(&title.as_str().to_lowercase()));
        }
        update
            .update_expression(expression)
            .build()
            .map_err(|e| Error::internal("build migration count", e))
    }

    /// Moves a conversation's last activity forward to `to`; never back.
    pub async fn raise_last_activity(
        &self,
        user: &UserId,
        conversation: &ConversationId,
        to: DateTime<Utc>,
    ) -> Result<(), Error> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(
                keys::PK,
                s(&keys::conversation_partition(user, conversation)),
            )
            .key(keys::SK, s(keys::CONVERSATION_SK))
            .update_expression(format!(
                "SET lastActivity = :to, changedAt = :changed {}",
                self.shed_stored_twice()
            ))
            .condition_expression("attribute_exists(PK) AND lastActivity < :to")
            .expression_attribute_values(":to", s(&keys::sortable_time(to)))
            .expression_attribute_values(":changed", s(&self.change_stamp(conversation)))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if is_conditional_check_failure(&e) => Ok(()),
            Err(e) => Err(store_error("raise last activity", e)),
        }
    }

    /// Starts a run's summary; starting the same run again leaves it as it is.
    pub async fn start_run(&self, summary: &RunSummary) -> Result<(), Error> {
        let item = RunItem {
            pk: keys::migration_run_partition(&summary.run_id),
            sk: keys::MIGRATION_RUN_SK.to_owned(),
            entity: "MigrationRun".to_owned(),
            summary: summary.clone(),
        };
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(to_item(&item)?))
            .condition_expression("attribute_not_exists(PK)")
            .send()
            .await;
        match result {
            Ok(_) => {}
            Err(e) if is_conditional_check_failure(&e) => {}
            Err(e) => return Err(store_error("start migration run", e)),
        }
        self.point_to_latest_run(summary).await
    }

    /// Records `summary`'s run as the latest one started (what the health check reports),
    /// unless a later one is recorded already.
    async fn point_to_latest_run(&self, summary: &RunSummary) -> Result<(), Error> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item(keys::PK, s(keys::MIGRATION_LATEST_PK))
            .item(keys::SK, s(keys::MIGRATION_LATEST_SK))
            .item("runId", s(&summary.run_id))
            .item("startedAt", s(&summary.started_at))
            .condition_expression("attribute_not_exists(PK) OR startedAt <= :started")
            .expression_attribute_values(":started", s(&summary.started_at))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if is_conditional_check_failure(&e) => Ok(()),
            Err(e) => Err(store_error("record latest migration run", e)),
        }
    }

    /// The summary of the latest run started, if any.
    pub async fn latest_run(&self) -> Result<Option<RunSummary>, Error> {
        let pointer = self
            .get(keys::MIGRATION_LATEST_PK, keys::MIGRATION_LATEST_SK)
            .await?;
        let run = match pointer.as_ref().and_then(|p| p.get("runId")) {
            Some(AttributeValue::S(run)) => run.clone(),
            _ => return Ok(None),
        };
        self.run_summary(&run).await
    }

    /// Records one user's outcome in a run, once: the user's record and the run's totals
    /// change in one transaction, so a retried step does not count the user twice. Returns
    /// false if the user was already counted in this run.
    pub async fn count_user_in_run(
        &self,
        run: &str,
        user: &UserSummary,
        expires_at: DateTime<Utc>,
    ) -> Result<bool, Error> {
        let record = RunUserItem {
            pk: keys::migration_run_partition(run),
            sk: keys::migration_run_user_sort_key(&user.user_id),
            entity: "MigrationRunUser".to_owned(),
            summary: UserSummary {
                skipped: user
                    .skipped
                    .iter()
                    .take(RUN_USER_SKIPPED_LISTED)
                    .cloned()
                    .collect(),
                ..user.clone()
            },
            skipped_total: user.skipped.len(),
            expires_at: expires_at.timestamp(),
        };
        let totals = Update::builder()
            .table_name(&self.table)
            .key(keys::PK, s(&keys::migration_run_partition(run)))
            .key(keys::SK, s(keys::MIGRATION_RUN_SK))
            .update_expression(
                "ADD #users :one, conversationsCreated :conversations, \
                 messagesMigrated :messages, messagesAlreadyPresent :present, \
                 messagesSkipped :skipped, messagesOfDeletedConversations :deleted",
            )
            .condition_expression("attribute_exists(PK)")
            .expression_attribute_names("#users", "users")
            .expression_attribute_values(":one", number(1))
            .expression_attribute_values(":conversations", number(user.conversations_created))
            .expression_attribute_values(":messages", number(user.messages_migrated))
            .expression_attribute_values(":present", number(user.messages_already_present))
            .expression_attribute_values(":skipped", number(user.skipped.len() as u64))
            .expression_attribute_values(":deleted", number(user.messages_of_deleted_conversations))
            .build()
            .map_err(|e| Error::internal("build run totals", e))?;
        let result = self
            .client
            .transact_write_items()
            .transact_items(
                TransactWriteItem::builder()
                    .put(put_new(&self.table, to_item(&record)?)?)
                    .build(),
            )
            .transact_items(TransactWriteItem::builder().update(totals).build())
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(error) => {
                let already_counted =
                    Cancellation::of(&error).is_some_and(|c| c.condition_failed(0));
                if already_counted {
                    Ok(false)
                } else {
                    Err(store_error("count user in run", error))
                }
            }
        }
    }

    /// Marks a run finished and returns its summary.
    pub async fn finish_run(&self, run: &str, at: DateTime<Utc>) -> Result<RunSummary, Error> {
        let output = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(keys::PK, s(&keys::migration_run_partition(run)))
            .key(keys::SK, s(keys::MIGRATION_RUN_SK))
            .update_expression("SET finishedAt = :at, #status = :finished")
            .condition_expression("attribute_exists(PK)")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":at", s(&keys::sortable_time(at)))
            .expression_attribute_values(":finished", s("finished"))
            .return_values(ReturnValue::AllNew)
            .send()
            .await
            .map_err(|e| store_error("finish migration run", e))?;
        let item = output
            .attributes
            .ok_or_else(|| Error::internal("finish migration run", "no attributes returned"))?;
        Ok(from_item::<RunItem>(item)?.summary)
    }

    pub async fn run_summary(&self, run: &str) -> Result<Option<RunSummary>, Error> {
        let item = self
            .get(&keys::migration_run_partition(run), keys::MIGRATION_RUN_SK)
            .await?;
        Ok(item
            .map(from_item::<RunItem>)
            .transpose()?
            .map(|item| item.summary))
    }
}

fn number(n: u64) -> AttributeValue {
    AttributeValue::N(n.to_string())
}
