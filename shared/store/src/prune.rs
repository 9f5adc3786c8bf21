//! Deleting a message and every message that grew from it (`domain::tree`): the rest of its
//! branch after it, and every branch forked from those, with their branch items, fork marks
//! and seals; then what was derived from them outside the conversation's messages (its
//! summary, short-term memory entries, completion records, content kept in S3).
//!
//! In this order, so that a request stopped anywhere can be sent again and finishes the job:
//! 1. if the conversation shows a branch under the message, it moves to the message's parent's
//!    branch first (as a switch does: the old branch sealed, so no append lands on it);
//! 2. what was derived from the doomed messages is deleted (the message itself still there, a
//!    repeated request finds it and does this again);
//! 3. the doomed items are deleted in transactions of at most 98 items, each also taking the
//!    count of the messages it deletes off the conversation's `messageCount` (so the count is
//!    exact whatever stops between them), deepest first, the message itself in the last, with
//!    the conversation's summary (which may quote them) and, when the first message goes, the
//!    title derived from it;
//! 4. their content objects in S3 are removed.

use std::time::Duration;

use aws_sdk_dynamodb::types::{AttributeValue, Delete, TransactWriteItem, Update};
use tokio::time::Instant;

use domain::error::Error;
use domain::keys::{self, MessageSortKey, Slot};
use domain::model::{ConversationId, MessageId, UserId};
use domain::tree::{self, BranchNumber, Path};

use super::tree::is_seal;
use super::{item_key, s, Item, MessageItem, Store};

/// Items a delete's transaction removes at most: with the conversation's item and, in the
/// last, its summary item, 100 (DynamoDB's limit on a transaction).
const PRUNE_CHUNK: usize = 98;

/// One item a delete removes.
struct Doomed {
    key: String,
    /// A message's id and content object (`None`: a seal, a mark or a branch item).
    message: Option<(MessageId, Option<String>)>,
}

/// What the last transaction of a delete also drops.
#[derive(Debug, Clone, Copy)]
struct Last {
    /// The automatic title, derived from the conversation's first message.
    untitled: bool,
}

/// What deleting a message removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pruned {
    /// The messages deleted: the one named and every one that grew from it.
    pub messages: u64,
}

impl Store {
    /// Deletes the message `target` of the user's conversation and every message that grew
    /// from it (see the module's documentation). `NotFound` when the conversation or the
    /// message is not there; `Unavailable` when `budget` ran out first (the request sent again
    /// goes on where this one stopped).
    pub async fn delete_message(
        &self,
        user: &UserId,
        conversation: &ConversationId,
        target: &MessageId,
        budget: Duration,
    ) -> Result<Pruned, Error> {
        let deadline = Instant::now() + budget;
        let partition = keys::conversation_partition(user, conversation);
        let (state, found) = self.state_and_message(&partition, target).await?;
        let message_key = found.item.sk.clone();
        let parent = found.parent.clone();
        // 1. Off the doomed branches first: the parent's branch becomes the active one.
        if state.path.segment_of(&message_key).is_some() {
            let keep = parent.as_ref().map_or(tree::TRUNK, tree::branch_of);
            if keep != state.path.active_branch() {
                self.switch_to_branch(&partition, conversation, &state, keep)
                    .await?;
            }
        }
        // 2. What was derived from them.
        let doomed = self
            .doomed_items(&partition, &message_key, parent.as_ref())
            .await?;
        let ids: Vec<MessageId> = doomed
            .iter()
            .filter_map(|d| d.message.as_ref().map(|(id, _)| *id))
            .collect();
        self.forget_messages(user, conversation, &ids).await?;
        // 3. The items, the message itself last.
        let objects: Vec<String> = doomed
            .iter()
            .filter_map(|d| d.message.as_ref().and_then(|(_, object)| object.clone()))
            .collect();
        let messages = ids.len() as u64;
        // From the end: the last chunk holds the message and what goes with it.
        let mut chunks: Vec<&[Doomed]> = doomed.rchunks(PRUNE_CHUNK).collect();
        chunks.reverse();
        for (index, chunk) in chunks.iter().enumerate() {
            if Instant::now() >= deadline {
                return Err(Error::Unavailable(
                    "the message is still being deleted: send the request again".into(),
                ));
            }
            let last = (index + 1 == chunks.len()).then_some(Last {
                // The first message goes: the title derived from it too (the next user
                // message names the conversation again).
                untitled: parent.is_none(),
            });
            self.delete_chunk(&partition, conversation, state.branches, chunk, last)
                .await?;
        }
        // 4. Their content in S3.
        for object in objects {
            self.delete_content(&object).await;
        }
        // 5. A link made to one of them while they went (after step 2) is revoked too.
        Box::pin(self.forget_shares(user, conversation, Some(&ids))).await?;
        Ok(Pruned { messages })
    }

    /// The conversation's tree and the message `target` in it.
    async fn state_and_message(
        &self,
        partition: &str,
        target: &MessageId,
    ) -> Result<(super::tree::TreeState, super::tree::Found), Error> {
        let state = self.tree_state(partition).await?.ok_or(Error::NotFound)?;
        let found = self
            .find_message(partition, &state.path, target)
            .await?
            .ok_or(Error::NotFound)?;
        Ok((state, found))
    }

    /// Every item that goes with the message under `message` (whose parent is `parent`): the
    /// rest of its branch from it, each branch forked there and, recursively, from those, each
    /// with its branch item and fork mark after its messages (so a delete stopped in between
    /// still finds what is left by the marks); the message itself last, with its branch's item
    /// and mark when it was the branch's first message.
    async fn doomed_items(
        &self,
        partition: &str,
        message: &MessageSortKey,
        parent: Option<&MessageSortKey>,
    ) -> Result<Vec<Doomed>, Error> {
        let branch = tree::branch_of(message);
        // (branch, the first key of it that goes, its fork mark when the whole branch goes)
        let mut runs: Vec<(BranchNumber, String, Option<String>)> =
            vec![(branch, message.as_str().to_owned(), None)];
        let mut index = 0;
        while index < runs.len() {
            let (run_branch, from, _) = runs[index].clone();
            let (_, end) = keys::branch_range(run_branch);
            for (at, fork) in self.fork_marks(partition, Some(&from), Some(&end)).await? {
                let mark = keys::fork_sort_key(at.as_deref(), fork);
                runs.push((fork, keys::branch_range(fork).0, Some(mark)));
            }
            index += 1;
        }
        let mut doomed = Vec::new();
        // Forks deepest first (each was found after the branch it grew from), the message's
        // own branch last, each newest first: the message itself is the last message.
        for (run_branch, from, mark) in runs.iter().rev() {
            let (_, end) = keys::branch_range(*run_branch);
            for item in self
                .items_between(partition, from, &end)
                .await?
                .into_iter()
                .rev()
            {
                doomed.push(doomed_of(item)?);
            }
            if let Some(mark) = mark {
                doomed.push(Doomed {
                    key: keys::branch_sort_key(*run_branch),
                    message: None,
                });
                doomed.push(Doomed {
                    key: mark.clone(),
                    message: None,
                });
            }
        }
        // The message was its branch's first: the branch goes, in the same (last) transaction.
        let first_of_branch =
            branch != tree::TRUNK && parent.is_none_or(|p| tree::branch_of(p) != branch);
        if first_of_branch {
            doomed.push(Doomed {
                key: keys::branch_sort_key(branch),
                message: None,
            });
            doomed.push(Doomed {
                key: keys::fork_sort_key(parent.map(MessageSortKey::as_str), branch),
                message: None,
            });
        }
        Ok(doomed)
    }

    /// The items of a conversation's partition from `low` to `high` (inclusive), oldest first:
    /// their keys, and a message's id and content object.
    async fn items_between(
        &self,
        partition: &str,
        low: &str,
        high: &str,
    ) -> Result<Vec<Item>, Error> {
        let (items, _) = self
            .read_up_to(
                usize::MAX,
                None,
                "read a message's descendants",
                |start, limit| {
                    self.range_query(partition, low, high)
                        .limit(limit)
                        .set_exclusive_start_key(start)
                },
            )
            .await?;
        Ok(items)
    }

    /// Deletes `chunk` and takes its messages off the conversation's count, in one
    /// transaction; the `last` also drops the conversation's summary (and title) derived
    /// from them.
    async fn delete_chunk(
        &self,
        partition: &str,
        conversation: &ConversationId,
        branches: BranchNumber,
        chunk: &[Doomed],
        last: Option<Last>,
    ) -> Result<(), Error> {
        let messages = chunk.iter().filter(|d| d.message.is_some()).count();
        // The last also drops the summary, which may quote the messages gone.
        let mut removed: Vec<&str> = Vec::new();
        if let Some(last) = last {
            removed.extend(["summary", "summarizedThrough", "summarizedUntil"]);
            if last.untitled {
                removed.extend(["autoTitle", "autoTitleLower"]);
            }
        }
        removed.extend(self.stored_twice());
        let mut update = String::from("SET changedAt = :changed ADD messageCount :minus");
        if !removed.is_empty() {
            update.push_str(" REMOVE ");
            update.push_str(&removed.join(", "));
        }
        let mut counted = Update::builder()
            .table_name(&self.table)
            .key(keys::PK, s(partition))
            .key(keys::SK, s(keys::CONVERSATION_SK))
            .update_expression(update);
        // No branch made since the doomed items were read (one could grow from them): else the
        // request, sent again, reads them again.
        counted = if branches == 0 {
            counted.condition_expression("attribute_exists(PK) AND attribute_not_exists(branches)")
        } else {
            counted
                .condition_expression("attribute_exists(PK) AND branches = :branches")
                .expression_attribute_values(":branches", AttributeValue::N(branches.to_string()))
        };
        let mut writes = vec![TransactWriteItem::builder()
            .update(
                counted
                    .expression_attribute_values(":changed", s(&self.change_stamp(conversation)))
                    .expression_attribute_values(
                        ":minus",
                        AttributeValue::N(format!("-{messages}")),
                    )
                    .build()
                    .map_err(|e| Error::internal("build update", e))?,
            )
            .build()];
        for doomed in chunk {
            let mut delete = Delete::builder()
                .table_name(&self.table)
                .set_key(Some(item_key(partition, &doomed.key)));
            if doomed.message.is_some() {
                // Counted once: a message another delete took first fails the transaction.
                delete = delete.condition_expression("attribute_exists(PK)");
            }
            writes.push(
                TransactWriteItem::builder()
                    .delete(
                        delete
                            .build()
                            .map_err(|e| Error::internal("build delete", e))?,
                    )
                    .build(),
            );
        }
        if last.is_some() {
            writes.push(
                TransactWriteItem::builder()
                    .delete(
                        Delete::builder()
                            .table_name(&self.table)
                            .set_key(Some(item_key(partition, keys::SUMMARY_SK)))
                            .build()
                            .map_err(|e| Error::internal("build delete", e))?,
                    )
                    .build(),
            );
        }
        match self.transact(writes, "delete a message").await? {
            None => Ok(()),
            Some(cancelled) if cancelled.condition_failed(0) => {
                match self.get(partition, keys::CONVERSATION_SK).await?.is_some() {
                    false => Err(Error::NotFound),
                    true => Err(Error::Conflict(
                        "the conversation branched while the message was deleted: send the \
                         request again"
                            .into(),
                    )),
                }
            }
            Some(_) => Err(Error::Conflict(
                "the conversation changed while the message was deleted: send the request again"
                    .into(),
            )),
        }
    }

    /// The conversation moved onto `branch` (its tip and path as it left them), as a switch
    /// moves it, on the condition that nothing moved it first.
    async fn switch_to_branch(
        &self,
        partition: &str,
        conversation: &ConversationId,
        state: &super::tree::TreeState,
        branch: BranchNumber,
    ) -> Result<(), Error> {
        let (tip, path) = match self.branch(partition, branch).await? {
            Some(item) => (
                item.tip.as_deref().and_then(Slot::parse_tip),
                item.path.clone(),
            ),
            None => (None, Path::trunk()),
        };
        let made_at = keys::sortable_time(chrono::Utc::now());
        let moved = self
            .move_active_branch(partition, conversation, state, tip, path, &made_at)
            .await?;
        if moved {
            Ok(())
        } else {
            Err(Error::Conflict(
                "the conversation changed while the message was deleted: send the request again"
                    .into(),
            ))
        }
    }
}

fn doomed_of(item: Item) -> Result<Doomed, Error> {
    let key = match item.get(keys::SK) {
        Some(AttributeValue::S(sk)) => sk.clone(),
        _ => {
            return Err(Error::internal(
                "delete a message",
                "an item without its key",
            ))
        }
    };
    if is_seal(&item) {
        return Ok(Doomed { key, message: None });
    }
    let message = MessageItem::from_attributes(item)?;
    Ok(Doomed {
        key,
        message: Some((message.id(), message.content_object.clone())),
    })
}
