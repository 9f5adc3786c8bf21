//! What a deleted conversation leaves outside its own partition, under its owner: the
//! short-term memory entries of its exchanges, the completion records holding its replies,
//! the batch operation records holding its title or messages, and its search blocks. Each
//! partition of the first three holds at most a day (memory, completions) or
//! `BATCH_RECORD_DAYS` (batch records, under the batch rate limit) of the user's items, by
//! TTL, so reading one whole for the conversation's items is bounded; its search blocks and
//! share links are read by their key prefix.

use aws_sdk_dynamodb::types::AttributeValue;

use super::{s, Item, Store, BATCH_WRITE_MAX};
use domain::error::Error;
use domain::keys;
use domain::model::{ConversationId, UserId};

/// The attribute both kinds of item name their conversation by.
const CONVERSATION_ID: &str = "conversationId";

impl Store {
    /// Deletes the user's short-term memory entries, completion records, batch operation
    /// records, search blocks, share links and grants of conversation `id`; deleting them again finds nothing and changes nothing.
    pub async fn forget_conversation(
        &self,
        user: &UserId,
        id: &ConversationId,
    ) -> Result<(), Error> {
        let (memory_partition, completion_partition, operation_partition) = (
            keys::memory_partition(user),
            keys::completion_partition(user),
            keys::operation_partition(user),
        );
        let memory = self.keys_naming(&memory_partition, keys::MEMORY_ENTRY_PREFIX, id);
        let completions = self.keys_naming(&completion_partition, keys::COMPLETION_PREFIX, id);
        let operations = self.keys_naming(&operation_partition, keys::OPERATION_PREFIX, id);
        let search_blocks = self.delete_search_blocks(user, id);
        let shares = Box::pin(self.forget_shares(user, id, None));
        let grants = Box::pin(self.forget_grants(user, id));
        let (memory, completions, operations, (), (), ()) = futures::try_join!(
            memory,
            completions,
            operations,
            search_blocks,
            shares,
            grants
        )?;
        for batch in memory
            .chunks(BATCH_WRITE_MAX)
            .chain(completions.chunks(BATCH_WRITE_MAX))
            .chain(operations.chunks(BATCH_WRITE_MAX))
        {
            self.delete_batch(batch.to_vec()).await?;
        }
        Ok(())
    }

    /// Deletes the user's short-term memory entries of the messages `ids` of conversation `id`,
    /// the completion records whose result holds any of them (a retry of such a request
    /// would answer a deleted reply) and the links ending at any of them: what a deleted
    /// message leaves outside its conversation.
    pub(super) async fn forget_messages(
        &self,
        user: &UserId,
        id: &ConversationId,
        ids: &[domain::model::MessageId],
    ) -> Result<(), Error> {
        if ids.is_empty() {
            return Ok(());
        }
        // On the heap: a delete's future is deep already (the batch runs it among others).
        Box::pin(self.forget_shares(user, id, Some(ids))).await?;
        let texts: Vec<String> = ids.iter().map(ToString::to_string).collect();
        let memory = self
            .keys_naming(&keys::memory_partition(user), keys::MEMORY_ENTRY_PREFIX, id)
            .await?
            .into_iter()
            .filter(|key| match key.get(keys::SK) {
                // `MEMORY#<time>#<message id>`
                Some(AttributeValue::S(sk)) => sk
                    .rsplit_once('#')
                    .is_some_and(|(_, entry)| texts.iter().any(|t| t == entry)),
                _ => false,
            });
        let completion_partition = keys::completion_partition(user);
        let (records, _) = self
            .read_up_to(
                usize::MAX,
                None,
                "find a deleted message's records",
                |start, limit| {
                    self.client
                        .query()
                        .table_name(&self.table)
                        .key_condition_expression("PK = :pk AND begins_with(SK, :prefix)")
                        .filter_expression("#conversation = :conversation")
                        .expression_attribute_names("#conversation", CONVERSATION_ID)
                        .expression_attribute_values(":pk", s(&completion_partition))
                        .expression_attribute_values(":prefix", s(keys::COMPLETION_PREFIX))
                        .expression_attribute_values(
                            ":conversation",
                            AttributeValue::S(id.to_string()),
                        )
                        .projection_expression("PK, SK, #result")
                        .expression_attribute_names("#result", "result")
                        .consistent_read(true)
                        .limit(limit)
                        .set_exclusive_start_key(start)
                },
            )
            .await?;
        let completions = records.into_iter().filter_map(|mut record| {
            let holds = matches!(record.get("result"), Some(AttributeValue::S(result))
                if texts.iter().any(|t| result.contains(t.as_str())));
            record.remove("result");
            holds.then_some(record)
        });
        let keys: Vec<Item> = memory.chain(completions).collect();
        for batch in keys.chunks(BATCH_WRITE_MAX) {
            self.delete_batch(batch.to_vec()).await?;
        }
        Ok(())
    }

    /// The keys of the items under `prefix` in `partition` that name conversation `id`.
    async fn keys_naming(
        &self,
        partition: &str,
        prefix: &str,
        id: &ConversationId,
    ) -> Result<Vec<Item>, Error> {
        let (found, _) = self
            .read_up_to(
                usize::MAX,
                None,
                "find a deleted conversation's items",
                |start, limit| {
                    self.client
                        .query()
                        .table_name(&self.table)
                        .key_condition_expression("PK = :pk AND begins_with(SK, :prefix)")
                        .filter_expression("#conversation = :conversation")
                        .expression_attribute_names("#conversation", CONVERSATION_ID)
                        .expression_attribute_values(":pk", s(partition))
                        .expression_attribute_values(":prefix", s(prefix))
                        .expression_attribute_values(
                            ":conversation",
                            AttributeValue::S(id.to_string()),
                        )
                        .projection_expression("PK, SK")
                        .consistent_read(true)
                        .limit(limit)
                        .set_exclusive_start_key(start)
                },
            )
            .await?;
        Ok(found)
    }
}
