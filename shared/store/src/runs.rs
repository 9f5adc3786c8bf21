//! A branched conversation's tree as an export keeps it and an import puts it back
//! (`domain::export::ExportedBranch`): beside the messages it shows (its active path), each
//! run of messages off that path, with the message the run grew from. Each branch holds at
//! most one such run: the whole branch when the path does not take it, or what follows the
//! message the path leaves it at.

use aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem, Update};

use domain::error::Error;
use domain::keys::{self, MessageSortKey, Slot};
use domain::model::{ConversationId, Message, MessageId, UserId};
use domain::tree::{self, BranchNumber, Path};

use super::tree::{is_seal, BranchItem};
use super::{from_item, item_key, put_new, s, to_item, Item, MessageItem, Store};

/// How many messages an import's transaction puts, beside the conversation's item, the
/// branch's item and its fork mark.
const IMPORT_CHUNK: usize = 90;

/// A run of messages off a conversation's active path: the message it grew from, and where
/// its messages are.
pub struct RunOffPath {
    /// `None`: the root (a branch of the first message's edits, the trunk when it is not shown).
    pub parent: Option<MessageId>,
    /// The first key of the run (exclusive when `after`), and the last.
    low: String,
    high: String,
    after: bool,
}

impl Store {
    /// The runs of the conversation's messages off its active path, by branch number; none
    /// for a conversation that never branched.
    pub async fn runs_off_path(
        &self,
        user: &UserId,
        conversation: &ConversationId,
    ) -> Result<Vec<RunOffPath>, Error> {
        let partition = keys::conversation_partition(user, conversation);
        let read = self.conversation_and_summary(&partition, None).await?;
        if !read.is_branched() {
            return Ok(Vec::new());
        }
        let path = read.path.unwrap_or_else(Path::trunk);
        let mut branches: Vec<(BranchNumber, Option<String>)> = vec![(tree::TRUNK, None)];
        for item in self.branch_items(&partition).await? {
            let number = item_branch(&item)?;
            if number != tree::TRUNK {
                let branch: BranchItem = from_item(item)?;
                branches.push((number, branch.parent));
            }
        }
        let mut runs = Vec::new();
        // Branches left out: forked at a deleted message, or inside such a branch (branches
        // are numbered as they were made, so a branch's fork is on a branch before it).
        let mut left_out = std::collections::BTreeSet::new();
        for (branch, fork) in branches {
            let forked_in = fork
                .as_deref()
                .and_then(MessageSortKey::parse)
                .map(|key| tree::branch_of(&key));
            if forked_in.is_some_and(|parent| left_out.contains(&parent)) {
                left_out.insert(branch);
                continue;
            }
            if branch == path.active_branch() {
                continue;
            }
            let (low, high) = keys::branch_range(branch);
            let on_path = path.segments().iter().find(|s| s.branch == branch);
            let (parent_key, low, after) = match on_path.and_then(|s| s.through.clone()) {
                Some(through) => (Some(through.clone()), through, true),
                None => (fork, low, false),
            };
            let parent = match parent_key {
                Some(key) => match self.message_id_at(&partition, &key).await? {
                    Some(id) => Some(id),
                    None => {
                        // Forked at a message deleted since (edits and replies now check their
                        // parent; a branch made before that check can be left so): its messages
                        // grew from nothing that exists, and no file could put them back.
                        tracing::warn!(branch, "a branch forks at a deleted message: not exported");
                        left_out.insert(branch);
                        continue;
                    }
                },
                None => None,
            };
            let run = RunOffPath {
                parent,
                low,
                high,
                after,
            };
            if self.run_holds_messages(&partition, &run).await? {
                runs.push(run);
            }
        }
        Ok(runs)
    }

    /// Whether a run holds a message: one read of at most a page, not the run.
    async fn run_holds_messages(&self, partition: &str, run: &RunOffPath) -> Result<bool, Error> {
        let start = run.after.then(|| item_key(partition, &run.low));
        let (items, _) = self
            .read_kept_up_to(
                1,
                start,
                "read a branch",
                |item| !is_seal(item),
                |start, limit| {
                    self.range_query(partition, &run.low, &run.high)
                        .limit(limit)
                        .set_exclusive_start_key(start)
                },
            )
            .await?;
        Ok(!items.is_empty())
    }

    /// A run's messages, oldest first (their content left in the bucket: `load_content`).
    pub async fn run_items(
        &self,
        user: &UserId,
        conversation: &ConversationId,
        run: &RunOffPath,
    ) -> Result<Vec<MessageItem>, Error> {
        let partition = keys::conversation_partition(user, conversation);
        let start = run.after.then(|| item_key(&partition, &run.low));
        let (items, _) = self
            .read_kept_up_to(
                usize::MAX,
                start,
                "read a branch",
                |item| !is_seal(item),
                |start, limit| {
                    self.range_query(&partition, &run.low, &run.high)
                        .limit(limit)
                        .set_exclusive_start_key(start)
                },
            )
            .await?;
        items
            .into_iter()
            .map(MessageItem::from_attributes)
            .collect()
    }

    /// Puts a run of an export back (see the module's documentation): `messages` as a branch
    /// forked at the message `parent` (`None`: the root), not shown, in transactions of the
    /// branch's items and up to 90 messages (within a transaction's 4 MB), each counted on the
    /// conversation. A run put back before goes on from where it stopped: a transaction's
    /// messages are put back all or none, so the branch's tip says how many are. Returns the
    /// messages stored.
    pub async fn import_run(
        &self,
        user: &UserId,
        conversation: &ConversationId,
        parent: Option<&MessageId>,
        messages: &[Message],
    ) -> Result<usize, Error> {
        let partition = keys::conversation_partition(user, conversation);
        let Some(first) = messages.first() else {
            return Ok(0);
        };
        let state = self.tree_state(&partition).await?.ok_or(Error::NotFound)?;
        let resumed = match self
            .find_message(&partition, &state.path, &first.id)
            .await?
        {
            Some(found) => {
                let branch = tree::branch_of(&found.item.sk);
                let done = self.imported_so_far(&partition, branch, messages).await?;
                if done >= messages.len() {
                    return Ok(0);
                }
                Some((branch, done))
            }
            None => None,
        };
        let parent = match (parent, resumed) {
            (Some(id), None) => Some(
                self.find_message(&partition, &state.path, id)
                    .await?
                    .ok_or_else(|| {
                        Error::invalid(format!(
                            "a branch grows from message {id}, which the file does not hold"
                        ))
                    })?
                    .item
                    .sk,
            ),
            _ => None,
        };
        let branch = match resumed {
            Some((branch, _)) => branch,
            None => state.branches.checked_add(1).ok_or_else(|| {
                Error::Conflict("this conversation holds as many branches as it can".into())
            })?,
        };
        let parent_branch = parent.as_ref().map_or(tree::TRUNK, tree::branch_of);
        let base = match self.branch(&partition, parent_branch).await? {
            Some(item) if parent_branch != tree::TRUNK => item.path,
            _ => Path::trunk(),
        };
        let done = resumed.map_or(0, |(_, done)| done);
        let mut number = done as u64;
        let chunks = super::transaction_chunks(&messages[done..], IMPORT_CHUNK);
        for (index, chunk) in chunks.into_iter().enumerate() {
            let creates_the_branch = resumed.is_none() && index == 0;
            let mut parent_check = None;
            let mut writes = Vec::with_capacity(chunk.len() + 3);
            let mut items = Vec::with_capacity(chunk.len());
            for message in chunk {
                number += 1;
                let slot = Slot { branch, number };
                let stored = Message {
                    slot: Some(slot),
                    ..message.clone()
                };
                items.push(self.message_to_item(&self.message_item(user, &stored).await?)?);
            }
            let tip = Slot { branch, number };
            let last = chunk.last().map_or(first.timestamp, |m| m.timestamp);
            let mut counted = Update::builder()
                .table_name(&self.table)
                .key(keys::PK, s(&partition))
                .key(keys::SK, s(keys::CONVERSATION_SK))
                .expression_attribute_values(":count", AttributeValue::N(chunk.len().to_string()))
                .expression_attribute_values(":changed", s(&self.change_stamp(conversation)));
            if creates_the_branch {
                counted = counted
                    .update_expression(format!(
                        "SET branches = :branch, changedAt = :changed ADD messageCount :count {}",
                        self.shed_stored_twice()
                    ))
                    .expression_attribute_values(":branch", AttributeValue::N(branch.to_string()));
                counted = if state.branches == 0 {
                    counted.condition_expression(
                        "attribute_exists(PK) AND attribute_not_exists(branches)",
                    )
                } else {
                    counted
                        .condition_expression("attribute_exists(PK) AND branches = :was")
                        .expression_attribute_values(
                            ":was",
                            AttributeValue::N(state.branches.to_string()),
                        )
                };
                writes.push(
                    TransactWriteItem::builder()
                        .put(put_new(
                            &self.table,
                            to_item(&BranchItem::new(
                                &partition,
                                branch,
                                parent.as_ref().map(|p| p.as_str().to_owned()),
                                base.forked_at(parent.as_ref(), branch),
                                tip,
                                last,
                            ))?,
                        )?)
                        .build(),
                );
                writes.push(
                    TransactWriteItem::builder()
                        .put(put_new(
                            &self.table,
                            item_key(
                                &partition,
                                &keys::fork_sort_key(
                                    parent.as_ref().map(MessageSortKey::as_str),
                                    branch,
                                ),
                            ),
                        )?)
                        .build(),
                );
                // Not forked at a message deleted since it was found (its index once the
                // count goes first).
                if let Some(parent) = &parent {
                    writes.push(self.still_there(&partition, parent.as_str())?);
                    parent_check = Some(writes.len());
                }
            } else {
                counted = counted
                    .update_expression(format!(
                        "SET changedAt = :changed ADD messageCount :count {}",
                        self.shed_stored_twice()
                    ))
                    .condition_expression("attribute_exists(PK)");
                writes.push(self.branch_tip(&partition, tip, last)?);
            }
            writes.insert(
                0,
                TransactWriteItem::builder()
                    .update(
                        counted
                            .build()
                            .map_err(|e| Error::internal("build update", e))?,
                    )
                    .build(),
            );
            for item in items {
                writes.push(
                    TransactWriteItem::builder()
                        .put(put_new(&self.table, item)?)
                        .build(),
                );
            }
            if let Some(cancelled) = self.transact(writes, "import a branch").await? {
                if parent_check.is_some_and(|index| cancelled.condition_failed(index)) {
                    return Err(Error::Conflict(
                        "the message a branch grows from was deleted meanwhile".into(),
                    ));
                }
                return Err(cancelled.into_error("import a branch"));
            }
        }
        Ok(messages.len() - done)
    }

    /// How many of a run's `messages` an earlier import put back on `branch`: its tip's
    /// number, when the message there is the run's at that place (else the run is not one an
    /// import made there, and all of it counts as there).
    async fn imported_so_far(
        &self,
        partition: &str,
        branch: BranchNumber,
        messages: &[Message],
    ) -> Result<usize, Error> {
        if branch == tree::TRUNK {
            return Ok(messages.len());
        }
        let tip = self
            .branch(partition, branch)
            .await?
            .and_then(|item| item.tip)
            .and_then(|tip| Slot::parse_tip(&tip));
        let Some(tip) = tip.filter(|tip| tip.branch == branch) else {
            return Ok(messages.len());
        };
        let Ok(done) = usize::try_from(tip.number) else {
            return Ok(messages.len());
        };
        let expected = done.checked_sub(1).and_then(|at| messages.get(at));
        let stored = self.get(partition, &keys::slot_sort_key(tip)).await?;
        let matches = match (expected, stored) {
            (Some(expected), Some(item)) if !is_seal(&item) => {
                MessageItem::from_attributes(item)?.id() == expected.id
            }
            _ => false,
        };
        Ok(if matches { done } else { messages.len() })
    }

    /// A branch's item moved on to `tip`, last written at `last`.
    fn branch_tip(
        &self,
        partition: &str,
        tip: Slot,
        last: chrono::DateTime<chrono::Utc>,
    ) -> Result<TransactWriteItem, Error> {
        Ok(TransactWriteItem::builder()
            .update(
                Update::builder()
                    .table_name(&self.table)
                    .key(keys::PK, s(partition))
                    .key(keys::SK, s(&keys::branch_sort_key(tip.branch)))
                    .update_expression("SET tip = :tip, lastWrite = :last")
                    .expression_attribute_values(":tip", s(&tip.tip_text()))
                    .expression_attribute_values(":last", s(&keys::sortable_time(last)))
                    .build()
                    .map_err(|e| Error::internal("build update", e))?,
            )
            .build())
    }

    /// Every branch item of a conversation, by number.
    async fn branch_items(&self, partition: &str) -> Result<Vec<Item>, Error> {
        let (low, high) = (
            keys::branch_sort_key(tree::TRUNK),
            keys::branch_sort_key(tree::MAX_BRANCHES),
        );
        let (items, _) = self
            .read_up_to(usize::MAX, None, "read branches", |start, limit| {
                self.range_query(partition, &low, &high)
                    .limit(limit)
                    .set_exclusive_start_key(start)
            })
            .await?;
        Ok(items)
    }

    /// The id of the message under `key`, if it is there.
    async fn message_id_at(&self, partition: &str, key: &str) -> Result<Option<MessageId>, Error> {
        match self.get(partition, key).await? {
            Some(item) => Ok(Some(MessageItem::from_attributes(item)?.id())),
            None => Ok(None),
        }
    }
}

fn item_branch(item: &Item) -> Result<BranchNumber, Error> {
    match item.get(keys::SK) {
        Some(AttributeValue::S(sk)) => sk
            .strip_prefix(keys::BRANCH_PREFIX)
            .and_then(|n| BranchNumber::from_str_radix(n, 16).ok())
            .ok_or_else(|| Error::internal("read branches", "a branch item's key")),
        _ => Err(Error::internal("read branches", "an item without its key")),
    }
}
