//! A conversation's branches (`domain::tree`, docs/data-model.md "Branches"): reading its
//! active path with each message's siblings, and editing a message, which forks a branch at
//! the message's parent.
//!
//! Beside the messages, a branched conversation keeps:
//! - `META#PATH`: its active path (read with the conversation's item, in the same query);
//! - `BRANCH#<branch>`: a branch's fork, its path, and, once left, its tip;
//! - `FORK#<parent's key>#<branch>`: a mark per branch at the message it forks at, so a page
//!   reads its messages' forks in one range;
//! - a **seal** at the slot after a branch's tip when the conversation leaves it: an append
//!   that read the old tip finds its slot taken, reads the tip again and goes on the active
//!   branch. Slots are never reused.

use std::collections::BTreeMap;

use aws_sdk_dynamodb::types::{AttributeValue, ConditionCheck, Put, TransactWriteItem, Update};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use domain::error::Error;
use domain::keys::{self, MessageSortKey, Slot};
use domain::model::{ClientMessageId, ConversationId, Message, MessageId, Role, UserId};
use domain::tree::{self, BranchNumber, Path, Siblings};

use super::append::AppendOutcome;
use super::{from_item, item_key, put_new, s, to_item, Item, MessageItem, Store};

/// The attribute that makes an item at a slot a seal (it holds no message).
const SEAL: &str = "seal";

/// Whether an item read from a message range is a seal (every reader of messages skips them).
pub(crate) fn is_seal(item: &Item) -> bool {
    item.contains_key(SEAL)
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct PathItem {
    #[serde(rename = "PK")]
    pk: String,
    #[serde(rename = "SK")]
    sk: String,
    pub(super) path: Path,
}

impl PathItem {
    pub(super) fn is_path(item: &Item) -> bool {
        matches!(item.get(keys::SK), Some(AttributeValue::S(sk)) if sk == keys::PATH_SK)
    }
}

/// A branch's own item.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct BranchItem {
    #[serde(rename = "PK")]
    pk: String,
    #[serde(rename = "SK")]
    sk: String,
    /// The sort key of the message it forks at; `None`: the root (or the trunk).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) parent: Option<String>,
    /// The active path while it is the active branch.
    #[serde(default = "Path::trunk")]
    pub(super) path: Path,
    /// Once the conversation has left it: its tip (the seal's slot), and when it was last
    /// written (the conversation's activity as it left).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) tip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_write: Option<String>,
}

impl BranchItem {
    /// A branch forked at the message under `parent` (`None`: the root), not shown: its tip
    /// and last write as its messages left them.
    pub(super) fn new(
        partition: &str,
        branch: BranchNumber,
        parent: Option<String>,
        path: Path,
        tip: Slot,
        last_write: DateTime<Utc>,
    ) -> Self {
        Self {
            pk: partition.to_owned(),
            sk: keys::branch_sort_key(branch),
            parent,
            path,
            tip: Some(tip.tip_text()),
            last_write: Some(keys::sortable_time(last_write)),
        }
    }
}

/// A message found on the tree, with its parent's key (`None`: it is the first message).
pub(super) struct Found {
    pub(super) item: MessageItem,
    pub(super) parent: Option<MessageSortKey>,
}

/// What the tree of a conversation is, as its item and path say.
pub(super) struct TreeState {
    tip: Option<Slot>,
    pub(super) branches: BranchNumber,
    last_activity: DateTime<Utc>,
    pub(super) path: Path,
    /// When the last switch was made, by its maker's clock (`branchSetAt`).
    branch_set_at: Option<String>,
    /// The conversation's last activity when it entered the active branch (`enteredAt`): a
    /// later one was written on this branch.
    entered_at: Option<String>,
}

impl TreeState {
    /// Whether the active branch was written since the conversation entered it (else its
    /// last write is the one its branch item keeps).
    fn written_since_entered(&self) -> bool {
        self.entered_at
            .as_ref()
            .is_none_or(|entered| keys::sortable_time(self.last_activity) > *entered)
    }
}

/// A page of the active path, newest first, with the siblings of its messages that have any.
pub(super) struct PathPage {
    pub(super) messages: Vec<MessageItem>,
    pub(super) siblings: Vec<(MessageId, Siblings)>,
}

/// The leaf a switch goes to: its branch, that branch's tip and path.
struct Leaf {
    branch: BranchNumber,
    tip: Option<Slot>,
    path: Path,
}

/// How many messages one read of the path asks for while looking for a message: the first
/// read, then each one after it.
const FIRST_FIND_PAGE: usize = 16;
const FIND_PAGE: usize = 200;

impl Store {
    /// Up to `wanted` messages of the active path, newest first, from before `before` (its
    /// newest without): each segment read down from where the path leaves it, skipping seals.
    /// With one message past `wanted` when there is one, so the oldest returned knows its
    /// parent; the siblings are those of the first `wanted`.
    pub(super) async fn path_page(
        &self,
        partition: &str,
        path: &Path,
        before: Option<&MessageSortKey>,
        wanted: usize,
    ) -> Result<PathPage, Error> {
        let messages = self
            .path_messages_newest_first(partition, path, before, wanted + 1)
            .await?;
        let siblings = self.siblings_on_page(partition, &messages, wanted).await?;
        Ok(PathPage { messages, siblings })
    }

    pub(super) async fn path_messages_newest_first(
        &self,
        partition: &str,
        path: &Path,
        before: Option<&MessageSortKey>,
        wanted: usize,
    ) -> Result<Vec<MessageItem>, Error> {
        let segments = path.segments();
        let (mut index, mut start) = match before {
            None => (segments.len() - 1, None),
            Some(key) => {
                let index = path.segment_of(key).ok_or_else(|| {
                    Error::Conflict(
                        "the conversation's active branch has changed since this cursor: read it again"
                            .into(),
                    )
                })?;
                (index, Some(item_key(partition, key.as_str())))
            }
        };
        let mut messages = Vec::new();
        loop {
            let (low, high) = segments[index].range();
            let (items, _) = self
                .read_kept_up_to(
                    wanted - messages.len(),
                    start.take(),
                    "read a branch",
                    |item| !is_seal(item),
                    |start, limit| {
                        self.range_query(partition, &low, &high)
                            .scan_index_forward(false)
                            .limit(limit)
                            .set_exclusive_start_key(start)
                    },
                )
                .await?;
            for item in items {
                messages.push(MessageItem::from_attributes(item)?);
            }
            if messages.len() >= wanted || index == 0 {
                return Ok(messages);
            }
            index -= 1;
        }
    }

    /// Up to `wanted` messages of the active path, oldest first, after `after` (from the root
    /// without): each segment read up from where the path enters it, skipping seals.
    pub(super) async fn path_messages_oldest_first(
        &self,
        partition: &str,
        path: &Path,
        after: Option<&MessageSortKey>,
        wanted: usize,
    ) -> Result<Vec<MessageItem>, Error> {
        let segments = path.segments();
        let (mut index, mut start) = match after {
            None => (0, None),
            Some(key) => match path.segment_of(key) {
                Some(index) => (index, Some(item_key(partition, key.as_str()))),
                None => return Ok(Vec::new()),
            },
        };
        let mut messages = Vec::new();
        while index < segments.len() && messages.len() < wanted {
            let (low, high) = segments[index].range();
            let (items, _) = self
                .read_kept_up_to(
                    wanted - messages.len(),
                    start.take(),
                    "read a branch",
                    |item| !is_seal(item),
                    |start, limit| {
                        self.range_query(partition, &low, &high)
                            .limit(limit)
                            .set_exclusive_start_key(start)
                    },
                )
                .await?;
            for item in items {
                messages.push(MessageItem::from_attributes(item)?);
            }
            index += 1;
        }
        Ok(messages)
    }

    /// The siblings of the first `shown` of `page` (newest first, each message's parent the
    /// one after it, the last one's the root when the page reaches it), from the fork marks at
    /// their parents: one query per branch the parents are on.
    async fn siblings_on_page(
        &self,
        partition: &str,
        page: &[MessageItem],
        shown: usize,
    ) -> Result<Vec<(MessageId, Siblings)>, Error> {
        let shown = shown.min(page.len());
        let mut parents: BTreeMap<BranchNumber, (String, String)> = BTreeMap::new();
        for parent in page.iter().skip(1).take(shown) {
            let key = parent.sk.as_str().to_owned();
            parents
                .entry(tree::branch_of(&parent.sk))
                .and_modify(|(low, _)| *low = key.clone())
                .or_insert_with(|| (key.clone(), key));
        }
        let reaches_root = page.len() <= shown;
        let mut forks: BTreeMap<Option<String>, Vec<BranchNumber>> = BTreeMap::new();
        let mut ranges: Vec<(Option<String>, Option<String>)> = parents
            .into_values()
            .map(|(low, high)| (Some(low), Some(high)))
            .collect();
        if reaches_root {
            ranges.push((None, None));
        }
        for (low, high) in ranges {
            for (parent, branch) in self
                .fork_marks(partition, low.as_deref(), high.as_deref())
                .await?
            {
                forks.entry(parent).or_default().push(branch);
            }
        }
        let mut siblings = Vec::new();
        for (index, message) in page.iter().take(shown).enumerate() {
            let parent = page.get(index + 1).map(|p| &p.sk);
            let parent_key = parent.map(|p| p.as_str().to_owned());
            let at_parent = forks.get(&parent_key).map_or(&[][..], Vec::as_slice);
            let branch = tree::branch_of(&message.sk);
            let parent_branch = parent.map_or(tree::TRUNK, tree::branch_of);
            // A branch's first message: whether its parent's branch goes on after the parent
            // (a delete may have taken that message), read only where forks make it count.
            let next_on_parent_branch = branch == parent_branch
                || at_parent.is_empty()
                || self.next_message(partition, parent).await?.is_some();
            let of = Siblings::of(branch, parent_branch, at_parent, next_on_parent_branch);
            if of != Siblings::ONLY {
                siblings.push((message.id(), of));
            }
        }
        Ok(siblings)
    }

    /// The message after `parent` (`None`: the root) on its own branch, if one is there.
    async fn next_message(
        &self,
        partition: &str,
        parent: Option<&MessageSortKey>,
    ) -> Result<Option<MessageSortKey>, Error> {
        let branch = parent.map_or(tree::TRUNK, tree::branch_of);
        let (low, high) = keys::branch_range(branch);
        let start = parent.map(|p| item_key(partition, p.as_str()));
        let (items, _) = self
            .read_kept_up_to(
                1,
                start,
                "read a branch",
                |item| !is_seal(item),
                |start, limit| {
                    self.range_query(partition, &low, &high)
                        .projection_expression(format!("PK, SK, {SEAL}"))
                        .limit(limit)
                        .set_exclusive_start_key(start)
                },
            )
            .await?;
        Ok(items.first().and_then(|item| match item.get(keys::SK) {
            Some(AttributeValue::S(sk)) => MessageSortKey::parse(sk),
            _ => None,
        }))
    }

    /// The fork marks at the messages from `low` to `high` (`None`: at the root), as (parent,
    /// branch), in key order (so each parent's branches by number).
    pub(super) async fn fork_marks(
        &self,
        partition: &str,
        low: Option<&str>,
        high: Option<&str>,
    ) -> Result<Vec<(Option<String>, BranchNumber)>, Error> {
        let (low, high) = keys::fork_range(low, high);
        let (items, _) = self
            .read_up_to(usize::MAX, None, "read forks", |start, limit| {
                self.range_query(partition, &low, &high)
                    .projection_expression("SK")
                    .limit(limit)
                    .set_exclusive_start_key(start)
            })
            .await?;
        Ok(items
            .iter()
            .filter_map(|item| match item.get(keys::SK) {
                Some(AttributeValue::S(sk)) => keys::parse_fork_sort_key(sk)
                    .map(|(parent, branch)| (parent.map(str::to_owned), branch)),
                _ => None,
            })
            .collect())
    }

    /// The conversation's tip, branch count, activity and path, read consistently; `None`
    /// when it is gone.
    pub(super) async fn tree_state(&self, partition: &str) -> Result<Option<TreeState>, Error> {
        let read = self.conversation_and_summary(partition, None).await?;
        let Some(item) = read.conversation else {
            return Ok(None);
        };
        let (tip, last_activity) = super::append::tip_and_activity(&item)?;
        let branches = match item.get("branches") {
            Some(AttributeValue::N(n)) => n
                .parse()
                .map_err(|e| Error::internal("read the conversation", e))?,
            _ => 0,
        };
        let text = |name: &str| match item.get(name) {
            Some(AttributeValue::S(at)) => Some(at.clone()),
            _ => None,
        };
        let (branch_set_at, entered_at) = (text("branchSetAt"), text("enteredAt"));
        Ok(Some(TreeState {
            tip,
            branches,
            last_activity,
            path: read.path.unwrap_or_else(Path::trunk),
            branch_set_at,
            entered_at,
        }))
    }

    /// The message `id` and its parent: looked for on the active path first (newest first),
    /// then anywhere in the conversation.
    pub(super) async fn find_message(
        &self,
        partition: &str,
        path: &Path,
        id: &MessageId,
    ) -> Result<Option<Found>, Error> {
        let mut before: Option<MessageSortKey> = None;
        // Edits are mostly of the last messages: the first read is short.
        let mut wanted = FIRST_FIND_PAGE;
        loop {
            let page = self
                .path_messages_newest_first(partition, path, before.as_ref(), wanted + 1)
                .await?;
            if let Some(index) = page.iter().position(|m| m.id() == *id) {
                let parent = page.get(index + 1).map(|p| p.sk.clone());
                let reached_root = page.len() <= wanted;
                if parent.is_some() || reached_root {
                    return Ok(Some(Found {
                        item: page[index].clone(),
                        parent,
                    }));
                }
                // Its parent is on the next page: read from it.
                before = Some(page[index].sk.clone());
                let next = self
                    .path_messages_newest_first(partition, path, before.as_ref(), 1)
                    .await?;
                return Ok(Some(Found {
                    item: page[index].clone(),
                    parent: next.first().map(|p| p.sk.clone()),
                }));
            }
            if page.len() <= wanted {
                break;
            }
            before = page.get(wanted - 1).map(|m| m.sk.clone());
            wanted = FIND_PAGE;
        }
        self.find_off_path(partition, id).await
    }

    /// The message `id` anywhere in the conversation (a branch the path does not take), with
    /// its parent: the message before it on its branch, else its branch's fork.
    async fn find_off_path(&self, partition: &str, id: &MessageId) -> Result<Option<Found>, Error> {
        let (low, _) = keys::branch_range(tree::TRUNK);
        let (_, high) = keys::branch_range(tree::MAX_BRANCHES);
        let mut start = None;
        let mut last_on_branch: BTreeMap<BranchNumber, MessageSortKey> = BTreeMap::new();
        loop {
            let output = self
                .range_query(partition, &low, &high)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| super::store_error("find a message", e))?;
            for item in output.items.unwrap_or_default() {
                if is_seal(&item) {
                    continue;
                }
                let message = MessageItem::from_attributes(item)?;
                let branch = tree::branch_of(&message.sk);
                if message.id() == *id {
                    let parent = match last_on_branch.remove(&branch) {
                        Some(before) => Some(before),
                        None if branch == tree::TRUNK => None,
                        None => self
                            .branch(partition, branch)
                            .await?
                            .and_then(|b| b.parent.as_deref().and_then(MessageSortKey::parse)),
                    };
                    return Ok(Some(Found {
                        item: message,
                        parent,
                    }));
                }
                last_on_branch.insert(branch, message.sk);
            }
            match output.last_evaluated_key {
                Some(key) => start = Some(key),
                None => return Ok(None),
            }
        }
    }

    pub(super) async fn branch(
        &self,
        partition: &str,
        branch: BranchNumber,
    ) -> Result<Option<BranchItem>, Error> {
        self.get(partition, &keys::branch_sort_key(branch))
            .await?
            .map(from_item)
            .transpose()
    }

    /// Edits the user's message `target` (or, `edited` being an assistant's, regenerates the
    /// reply `target`): `edited` becomes its sibling, the first message of a new branch forked
    /// at its parent, and that branch the active one (the old branch stays, sealed at its
    /// tip). One transaction; with a client id, a retry finds the edit made.
    pub async fn edit_message(
        &self,
        user: &UserId,
        conversation: &ConversationId,
        target: &MessageId,
        edited: &Message,
        client_id: Option<&ClientMessageId>,
    ) -> Result<(AppendOutcome, Siblings), Error> {
        let partition = keys::conversation_partition(user, conversation);
        let item = self.message_item(user, edited).await?;
        let content_object = item.content_object.clone();
        let outcome = self
            .fork(&partition, conversation, target, edited, item, client_id)
            .await;
        let keep_object = matches!(&outcome, Ok((AppendOutcome::Stored(_), _)) | Err(_));
        if !keep_object {
            if let Some(key) = content_object {
                self.delete_content(&key).await;
            }
        }
        outcome
    }

    async fn fork(
        &self,
        partition: &str,
        conversation: &ConversationId,
        target: &MessageId,
        edited: &Message,
        item: MessageItem,
        client_id: Option<&ClientMessageId>,
    ) -> Result<(AppendOutcome, Siblings), Error> {
        for attempt in 1..=super::TRANSACTION_ATTEMPTS {
            let Some(state) = self.tree_state(partition).await? else {
                return Ok((AppendOutcome::ConversationMissing, Siblings::ONLY));
            };
            // Made before (its answer lost)? Its record says where, without a search.
            if let Some(client_id) = client_id {
                if let Some(replayed) = self.replayed_edit(partition, client_id).await? {
                    return Ok(replayed);
                }
            }
            let Some(found) = self.find_message(partition, &state.path, target).await? else {
                return Err(Error::NotFound);
            };
            match (found.item.role, edited.role) {
                (Role::User, Role::User) | (Role::Assistant, Role::Assistant) => {}
                (_, Role::Assistant) => {
                    return Err(Error::invalid(
                        "only an assistant's reply can be regenerated",
                    ))
                }
                _ => return Err(Error::invalid(
                    "only the user's messages can be edited: an assistant's reply is regenerated",
                )),
            }
            let branch = state.branches.checked_add(1).ok_or_else(|| {
                Error::Conflict("this conversation holds as many branches as it can".into())
            })?;
            let parent = found.parent.as_ref();
            let parent_branch = parent.map_or(tree::TRUNK, tree::branch_of);
            let base = match parent {
                Some(parent) if state.path.segment_of(parent).is_some() => state.path.clone(),
                Some(_) if parent_branch != tree::TRUNK => self
                    .branch(partition, parent_branch)
                    .await?
                    .map_or_else(Path::trunk, |b| b.path),
                _ => Path::trunk(),
            };
            let path = base.forked_at(parent, branch);
            let slot = Slot { branch, number: 1 };
            let timestamp = edited
                .timestamp
                .max(state.last_activity + chrono::Duration::microseconds(1));
            let stored = Message {
                slot: Some(slot),
                timestamp,
                ..edited.clone()
            };
            // An edit changes the words: the attachments stay unless it brings its own.
            let attachments = if item.attachments.is_empty() {
                found.item.attachments.clone()
            } else {
                item.attachments.clone()
            };
            let stored = Message {
                attachments: attachments.clone(),
                ..stored
            };
            let at_slot = MessageItem {
                sk: MessageSortKey::at_slot(slot),
                message_id: Some(edited.id),
                timestamp: Some(timestamp),
                attachments,
                ..item.clone()
            };
            let sealed = state.tip.map_or(Slot::trunk(1), |tip| tip.next());
            let forks_before = self
                .fork_marks(
                    partition,
                    parent.map(MessageSortKey::as_str),
                    parent.map(MessageSortKey::as_str),
                )
                .await?
                .len();
            let mut writes = vec![
                self.forked_conversation(partition, conversation, &state, slot, timestamp)?,
                TransactWriteItem::builder()
                    .put(self.put_any(to_item(&PathItem {
                        pk: partition.to_owned(),
                        sk: keys::PATH_SK.to_owned(),
                        path: path.clone(),
                    })?)?)
                    .build(),
                TransactWriteItem::builder()
                    .put(put_new(
                        &self.table,
                        to_item(&BranchItem {
                            pk: partition.to_owned(),
                            sk: keys::branch_sort_key(branch),
                            parent: parent.map(|p| p.as_str().to_owned()),
                            path,
                            tip: None,
                            last_write: None,
                        })?,
                    )?)
                    .build(),
                TransactWriteItem::builder()
                    .put(put_new(
                        &self.table,
                        item_key(
                            partition,
                            &keys::fork_sort_key(parent.map(MessageSortKey::as_str), branch),
                        ),
                    )?)
                    .build(),
                TransactWriteItem::builder()
                    .put(put_new(&self.table, self.message_to_item(&at_slot)?)?)
                    .build(),
                TransactWriteItem::builder()
                    .put(put_new(&self.table, self.seal(partition, sealed))?)
                    .build(),
                self.left_branch(partition, sealed, &state)?,
            ];
            if let Some(client_id) = client_id {
                let mut record = item_key(partition, &keys::client_edit_sort_key(client_id));
                record.insert("messageKey".to_owned(), s(at_slot.sk.as_str()));
                writes.push(
                    TransactWriteItem::builder()
                        .put(put_new(&self.table, record)?)
                        .build(),
                );
            }
            // The parent must still be there: a delete of it since the read above would leave
            // the new branch forked at nothing (the message edited went with it).
            let parent_check = match parent {
                Some(parent) => {
                    writes.push(self.still_there(partition, parent.as_str())?);
                    Some(writes.len() - 1)
                }
                None => None,
            };
            let Some(cancelled) = self.transact(writes, "edit message").await? else {
                // After the parent's next message on its own branch (gone if a delete took
                // it) and the branches forked there before.
                let next = self.next_message(partition, parent).await?.is_some();
                let position =
                    u32::from(next) + u32::try_from(forks_before).unwrap_or(u32::MAX - 2) + 1;
                return Ok((
                    AppendOutcome::Stored(stored),
                    Siblings {
                        count: position,
                        position,
                    },
                ));
            };
            if parent_check.is_some_and(|index| cancelled.condition_failed(index)) {
                return Err(Error::NotFound);
            }
            if let Some(client_id) = client_id.filter(|_| cancelled.condition_failed(7)) {
                // This edit was made meanwhile (a retry running beside it).
                if let Some(replayed) = self.replayed_edit(partition, client_id).await? {
                    return Ok(replayed);
                }
            }
            if cancelled.condition_failed(5) {
                // An append took the slot after the tip and has not counted it yet: count it,
                // then fork after it.
                self.count_through(partition, sealed).await?;
            }
            super::backoff(attempt).await;
        }
        Err(Error::Unavailable(
            "the conversation kept changing while it was edited: try again".into(),
        ))
    }

    /// Appends `reply`, the answer to the message `prompt`: as any append while the
    /// conversation shows the prompt's branch; else (an edit or a switch came while the model
    /// answered) as the first message of a branch forked at the prompt, which the
    /// conversation does not show until the user switches to it: an answer stays with its
    /// question.
    pub async fn append_reply(
        &self,
        user: &UserId,
        prompt: &Message,
        reply: &Message,
        client_id: Option<&ClientMessageId>,
    ) -> Result<AppendOutcome, Error> {
        let partition = keys::conversation_partition(user, &reply.conversation_id);
        let prompt_branch = prompt.slot.map_or(tree::TRUNK, |slot| slot.branch);
        let Some(state) = self.tree_state(&partition).await? else {
            return Ok(AppendOutcome::ConversationMissing);
        };
        // A prompt deleted while the model answered takes its answer with it.
        if self.get(&partition, &prompt.sort_key()).await?.is_none() {
            return Err(Error::NotFound);
        }
        if state.path.active_branch() == prompt_branch {
            return self.append_message(user, reply, client_id, None).await;
        }
        if let Some(client_id) = client_id {
            if let Some((replayed, _)) = self.replayed_edit(&partition, client_id).await? {
                return Ok(replayed);
            }
        }
        let item = self.message_item(user, reply).await?;
        let prompt_key = MessageSortKey::parse(&prompt.sort_key())
            .ok_or_else(|| Error::internal("append a reply", "its prompt has no key"))?;
        for attempt in 1..=super::TRANSACTION_ATTEMPTS {
            let Some(state) = self.tree_state(&partition).await? else {
                return Ok(AppendOutcome::ConversationMissing);
            };
            let branch = state.branches.checked_add(1).ok_or_else(|| {
                Error::Conflict("this conversation holds as many branches as it can".into())
            })?;
            let base = match self.branch(&partition, prompt_branch).await? {
                Some(item) if prompt_branch != tree::TRUNK => item.path,
                _ => Path::trunk(),
            };
            let slot = Slot { branch, number: 1 };
            let stored = Message {
                slot: Some(slot),
                ..reply.clone()
            };
            let at_slot = MessageItem {
                sk: MessageSortKey::at_slot(slot),
                message_id: Some(reply.id),
                timestamp: Some(reply.timestamp),
                ..item.clone()
            };
            let mut counted = Update::builder()
                .table_name(&self.table)
                .key(keys::PK, s(&partition))
                .key(keys::SK, s(keys::CONVERSATION_SK))
                .update_expression(format!(
                    "SET branches = :branches, changedAt = :changed ADD messageCount :one {}",
                    self.shed_stored_twice()
                ))
                .expression_attribute_values(":branches", AttributeValue::N(branch.to_string()))
                .expression_attribute_values(
                    ":changed",
                    s(&self.change_stamp(&reply.conversation_id)),
                )
                .expression_attribute_values(":one", AttributeValue::N("1".to_owned()));
            counted = if state.branches == 0 {
                counted
                    .condition_expression("attribute_exists(PK) AND attribute_not_exists(branches)")
            } else {
                counted
                    .condition_expression("attribute_exists(PK) AND branches = :was")
                    .expression_attribute_values(
                        ":was",
                        AttributeValue::N(state.branches.to_string()),
                    )
            };
            let branch_item = to_item(&BranchItem {
                pk: partition.clone(),
                sk: keys::branch_sort_key(branch),
                parent: Some(prompt_key.as_str().to_owned()),
                path: base.forked_at(Some(&prompt_key), branch),
                tip: Some(slot.tip_text()),
                last_write: Some(keys::sortable_time(reply.timestamp)),
            })?;
            let mut writes = vec![
                TransactWriteItem::builder()
                    .update(
                        counted
                            .build()
                            .map_err(|e| Error::internal("build update", e))?,
                    )
                    .build(),
                TransactWriteItem::builder()
                    .put(put_new(&self.table, branch_item)?)
                    .build(),
                TransactWriteItem::builder()
                    .put(put_new(
                        &self.table,
                        item_key(
                            &partition,
                            &keys::fork_sort_key(Some(prompt_key.as_str()), branch),
                        ),
                    )?)
                    .build(),
                TransactWriteItem::builder()
                    .put(put_new(&self.table, self.message_to_item(&at_slot)?)?)
                    .build(),
            ];
            if let Some(client_id) = client_id {
                let mut record = item_key(&partition, &keys::client_edit_sort_key(client_id));
                record.insert("messageKey".to_owned(), s(at_slot.sk.as_str()));
                writes.push(
                    TransactWriteItem::builder()
                        .put(put_new(&self.table, record)?)
                        .build(),
                );
            }
            // The prompt must still be there (deleted since the read above: the answer goes
            // with it, and no branch forks at nothing).
            writes.push(self.still_there(&partition, prompt_key.as_str())?);
            let prompt_check = writes.len() - 1;
            let Some(cancelled) = self.transact(writes, "append a reply").await? else {
                return Ok(AppendOutcome::Stored(stored));
            };
            if cancelled.condition_failed(prompt_check) {
                return Err(Error::NotFound);
            }
            if let Some(client_id) = client_id.filter(|_| cancelled.condition_failed(4)) {
                if let Some((replayed, _)) = self.replayed_edit(&partition, client_id).await? {
                    return Ok(replayed);
                }
            }
            super::backoff(attempt).await;
        }
        Err(Error::Unavailable(
            "the conversation kept changing while the reply was saved: try again".into(),
        ))
    }

    /// Where regenerating the reply `reply` starts: its key on the conversation's active path
    /// (the context is what comes before it) and the message it answered, its parent.
    pub async fn regeneration(
        &self,
        user: &UserId,
        conversation: &ConversationId,
        reply: &MessageId,
    ) -> Result<(MessageSortKey, Message), Error> {
        let partition = keys::conversation_partition(user, conversation);
        let state = self.tree_state(&partition).await?.ok_or(Error::NotFound)?;
        let found = self
            .find_message(&partition, &state.path, reply)
            .await?
            .ok_or(Error::NotFound)?;
        if found.item.role != Role::Assistant {
            return Err(Error::invalid(
                "only an assistant's reply can be regenerated",
            ));
        }
        if state.path.segment_of(&found.item.sk).is_none() {
            return Err(Error::Conflict(
                "the reply is not on the branch the conversation shows: switch to it first".into(),
            ));
        }
        let parent = found
            .parent
            .ok_or_else(|| Error::invalid("a reply that answers nothing cannot be regenerated"))?;
        let prompt = self
            .get(&partition, parent.as_str())
            .await?
            .ok_or(Error::NotFound)?;
        let prompt = self
            .load_content(MessageItem::from_attributes(prompt)?)
            .await?
            .into_message();
        Ok((found.item.sk, prompt))
    }

    /// Makes the newest leaf under the message `target` the active one (or, with `position`,
    /// under its sibling at that position): the conversation shows and appends to the branch
    /// of that leaf from then on. `false` when that branch was active already. A switch made
    /// (`made_at`, the maker's clock: a device's, offline) before the last one applied is
    /// refused (`Superseded`): the later switch wins, whatever order they arrive in.
    pub async fn switch_branch(
        &self,
        user: &UserId,
        conversation: &ConversationId,
        target: &MessageId,
        position: Option<u32>,
        made_at: DateTime<Utc>,
    ) -> Result<bool, Error> {
        let partition = keys::conversation_partition(user, conversation);
        let made_at = keys::sortable_time(made_at);
        for attempt in 1..=super::TRANSACTION_ATTEMPTS {
            let Some(state) = self.tree_state(&partition).await? else {
                return Err(Error::NotFound);
            };
            if state
                .branch_set_at
                .as_ref()
                .is_some_and(|set| *set > made_at)
            {
                return Err(Error::Superseded(
                    "the branch was switched more recently; this switch was not applied".into(),
                ));
            }
            let Some(found) = self.find_message(&partition, &state.path, target).await? else {
                return Err(Error::NotFound);
            };
            let chosen = match position {
                None => found.item.sk.clone(),
                Some(position) => {
                    self.sibling_at(&partition, found.parent.as_ref(), position)
                        .await?
                }
            };
            let leaf = self.newest_leaf_under(&partition, &state, &chosen).await?;
            let active = state.path.active_branch();
            if leaf.branch == active {
                return Ok(false);
            }
            if self
                .move_active_branch(
                    &partition,
                    conversation,
                    &state,
                    leaf.tip,
                    leaf.path,
                    &made_at,
                )
                .await?
            {
                return Ok(true);
            }
            super::backoff(attempt).await;
        }
        Err(Error::Unavailable(
            "the conversation kept changing while its branch was switched: try again".into(),
        ))
    }

    /// Moves the conversation onto the branch whose tip and path are `tip` and `path`: its
    /// item, its path, a seal after the branch it leaves and that branch's item, in one
    /// transaction. `false` when the conversation changed since `state` was read (an append
    /// left uncounted at the slot to seal is counted first): read it again and retry.
    pub(super) async fn move_active_branch(
        &self,
        partition: &str,
        conversation: &ConversationId,
        state: &TreeState,
        tip: Option<Slot>,
        path: Path,
        made_at: &str,
    ) -> Result<bool, Error> {
        let sealed = state.tip.map_or(Slot::trunk(1), |tip| tip.next());
        let writes = vec![
            self.switched_conversation(partition, conversation, state, tip, made_at)?,
            TransactWriteItem::builder()
                .put(self.put_any(to_item(&PathItem {
                    pk: partition.to_owned(),
                    sk: keys::PATH_SK.to_owned(),
                    path,
                })?)?)
                .build(),
            TransactWriteItem::builder()
                .put(put_new(&self.table, self.seal(partition, sealed))?)
                .build(),
            self.left_branch(partition, sealed, state)?,
        ];
        let Some(cancelled) = self.transact(writes, "switch branch").await? else {
            return Ok(true);
        };
        if cancelled.condition_failed(2) {
            self.count_through(partition, sealed).await?;
        }
        Ok(false)
    }

    /// The child of `parent` (`None`: the root) at `position` among its children: its next
    /// message on its own branch first, then the first messages of the branches forked at it.
    async fn sibling_at(
        &self,
        partition: &str,
        parent: Option<&MessageSortKey>,
        position: u32,
    ) -> Result<MessageSortKey, Error> {
        let forks: Vec<BranchNumber> = self
            .fork_marks(
                partition,
                parent.map(MessageSortKey::as_str),
                parent.map(MessageSortKey::as_str),
            )
            .await?
            .into_iter()
            .map(|(_, branch)| branch)
            .collect();
        let next = self.next_message(partition, parent).await?;
        let children: Vec<MessageSortKey> = next
            .into_iter()
            .chain(
                forks
                    .into_iter()
                    .map(|branch| MessageSortKey::at_slot(Slot { branch, number: 1 })),
            )
            .collect();
        let index = usize::try_from(position.saturating_sub(1)).unwrap_or(usize::MAX);
        children.get(index).cloned().ok_or_else(|| {
            Error::invalid(format!(
                "position must be 1 to {}: the message's siblings",
                children.len()
            ))
        })
    }

    /// The branch whose tip is the newest leaf under `chosen` (written last): `chosen`'s own
    /// branch, or one forked after it, or forked from those.
    async fn newest_leaf_under(
        &self,
        partition: &str,
        state: &TreeState,
        chosen: &MessageSortKey,
    ) -> Result<Leaf, Error> {
        let mut under = vec![tree::branch_of(chosen)];
        let mut frontier = vec![(tree::branch_of(chosen), chosen.as_str().to_owned())];
        while let Some((branch, from)) = frontier.pop() {
            let (_, end) = keys::branch_range(branch);
            for (_, fork) in self.fork_marks(partition, Some(&from), Some(&end)).await? {
                under.push(fork);
                frontier.push((fork, keys::branch_range(fork).0));
            }
        }
        let active = state.path.active_branch();
        // By last write; a tie goes to the branch shown (nothing to move).
        let mut newest: Option<(String, bool, BranchNumber)> = None;
        for &branch in &under {
            let is_active = branch == active;
            let written = if is_active && state.written_since_entered() {
                keys::sortable_time(state.last_activity)
            } else {
                self.branch(partition, branch)
                    .await?
                    .and_then(|b| b.last_write)
                    .unwrap_or_else(|| {
                        if is_active {
                            keys::sortable_time(state.last_activity)
                        } else {
                            String::new()
                        }
                    })
            };
            let candidate = (written, is_active, branch);
            if newest
                .as_ref()
                .is_none_or(|best| (&candidate.0, candidate.1) > (&best.0, best.1))
            {
                newest = Some(candidate);
            }
        }
        let branch = newest.map_or(active, |(_, _, branch)| branch);
        if branch == active {
            return Ok(Leaf {
                branch,
                tip: state.tip,
                path: state.path.clone(),
            });
        }
        let item = self.branch(partition, branch).await?;
        let tip = item
            .as_ref()
            .and_then(|b| b.tip.as_deref())
            .and_then(Slot::parse_tip);
        let path = item.map_or_else(Path::trunk, |b| b.path);
        Ok(Leaf { branch, tip, path })
    }

    /// The conversation's item on another branch: its tip that branch's, on the condition that
    /// its tip is still the one read.
    fn switched_conversation(
        &self,
        partition: &str,
        conversation: &ConversationId,
        state: &TreeState,
        tip: Option<Slot>,
        made_at: &str,
    ) -> Result<TransactWriteItem, Error> {
        let mut update = Update::builder()
            .table_name(&self.table)
            .key(keys::PK, s(partition))
            .key(keys::SK, s(keys::CONVERSATION_SK))
            .expression_attribute_values(":changed", s(&self.change_stamp(conversation)))
            .expression_attribute_values(":made", s(made_at));
        // Entered with the activity of the branch left: written once an append is later.
        update = update
            .expression_attribute_values(":entered", s(&keys::sortable_time(state.last_activity)));
        let mut set =
            String::from("SET changedAt = :changed, branchSetAt = :made, enteredAt = :entered");
        let mut remove = String::new();
        match tip {
            Some(tip) => {
                set.push_str(", tip = :tip");
                update = update.expression_attribute_values(":tip", s(&tip.tip_text()));
            }
            None => remove.push_str(" REMOVE tip"),
        }
        let mut condition = String::from(
            "attribute_exists(PK) AND (attribute_not_exists(branchSetAt) OR branchSetAt <= :made)",
        );
        match state.tip {
            Some(tip) => {
                condition.push_str(" AND tip = :before");
                update = update.expression_attribute_values(":before", s(&tip.tip_text()));
            }
            None => condition.push_str(" AND attribute_not_exists(tip)"),
        }
        Ok(TransactWriteItem::builder()
            .update(
                update
                    .update_expression(format!("{set}{remove}"))
                    .condition_expression(condition)
                    .build()
                    .map_err(|e| Error::internal("build update", e))?,
            )
            .build())
    }

    /// A transaction's check that the message under `sort_key` exists (a fork's parent).
    pub(super) fn still_there(
        &self,
        partition: &str,
        sort_key: &str,
    ) -> Result<TransactWriteItem, Error> {
        Ok(TransactWriteItem::builder()
            .condition_check(
                ConditionCheck::builder()
                    .table_name(&self.table)
                    .set_key(Some(item_key(partition, sort_key)))
                    .condition_expression("attribute_exists(PK)")
                    .build()
                    .map_err(|e| Error::internal("build a parent check", e))?,
            )
            .build())
    }

    /// A seal at `slot` (see the module's documentation).
    fn seal(&self, partition: &str, slot: Slot) -> Item {
        let mut seal = item_key(partition, &keys::slot_sort_key(slot));
        seal.insert(SEAL.to_owned(), AttributeValue::Bool(true));
        seal
    }

    /// The message an edit with `client_id` made, and its siblings now, if one was made.
    async fn replayed_edit(
        &self,
        partition: &str,
        client_id: &ClientMessageId,
    ) -> Result<Option<(AppendOutcome, Siblings)>, Error> {
        let Some(record) = self
            .get(partition, &keys::client_edit_sort_key(client_id))
            .await?
        else {
            return Ok(None);
        };
        let Some(AttributeValue::S(key)) = record.get("messageKey") else {
            return Err(Error::internal(
                "replay an edit",
                "its record names no message",
            ));
        };
        let Some(message) = self.get(partition, key).await? else {
            // Deleted since: the edit is not made again.
            return Err(Error::NotFound);
        };
        let message = MessageItem::from_attributes(message)?;
        let branch = tree::branch_of(&message.sk);
        let parent = self
            .branch(partition, branch)
            .await?
            .and_then(|b| b.parent.as_deref().and_then(MessageSortKey::parse));
        let forks: Vec<BranchNumber> = self
            .fork_marks(
                partition,
                parent.as_ref().map(MessageSortKey::as_str),
                parent.as_ref().map(MessageSortKey::as_str),
            )
            .await?
            .into_iter()
            .map(|(_, fork)| fork)
            .collect();
        let next = self
            .next_message(partition, parent.as_ref())
            .await?
            .is_some();
        let siblings = Siblings::of(
            branch,
            parent.as_ref().map_or(tree::TRUNK, tree::branch_of),
            &forks,
            next,
        );
        Ok(Some((self.already_stored(message).await?, siblings)))
    }

    /// A put of `item` whatever it replaces.
    fn put_any(&self, item: Item) -> Result<Put, Error> {
        Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .build()
            .map_err(|e| Error::internal("build put", e))
    }

    /// The conversation's item moved onto a new branch: its tip the branch's first slot, one
    /// more message and branch, on the condition that no append or other branch came first.
    fn forked_conversation(
        &self,
        partition: &str,
        conversation: &ConversationId,
        state: &TreeState,
        slot: Slot,
        timestamp: DateTime<Utc>,
    ) -> Result<TransactWriteItem, Error> {
        let now = keys::sortable_time(timestamp);
        let mut update = Update::builder()
            .table_name(&self.table)
            .key(keys::PK, s(partition))
            .key(keys::SK, s(keys::CONVERSATION_SK))
            .update_expression(format!(
                "SET tip = :tip, branches = :branches, lastActivity = :now, updatedAt = :now, \
                 changedAt = :changed, enteredAt = :entered ADD messageCount :one {}",
                self.shed_stored_twice()
            ))
            .expression_attribute_values(":tip", s(&slot.tip_text()))
            .expression_attribute_values(":branches", AttributeValue::N(slot.branch.to_string()))
            // Before the edit's message: the new branch counts as written.
            .expression_attribute_values(":entered", s(&keys::sortable_time(state.last_activity)))
            .expression_attribute_values(":now", s(&now))
            .expression_attribute_values(":changed", s(&self.change_stamp(conversation)))
            .expression_attribute_values(":one", AttributeValue::N("1".to_owned()));
        let mut condition = String::from("attribute_exists(PK)");
        match state.tip {
            Some(tip) => {
                condition.push_str(" AND tip = :before");
                update = update.expression_attribute_values(":before", s(&tip.tip_text()));
            }
            None => condition.push_str(" AND attribute_not_exists(tip)"),
        }
        if state.branches == 0 {
            condition.push_str(" AND attribute_not_exists(branches)");
        } else {
            condition.push_str(" AND branches = :was");
            update = update
                .expression_attribute_values(":was", AttributeValue::N(state.branches.to_string()));
        }
        Ok(TransactWriteItem::builder()
            .update(
                update
                    .condition_expression(condition)
                    .build()
                    .map_err(|e| Error::internal("build update", e))?,
            )
            .build())
    }

    /// The branch the conversation leaves keeps its tip (the seal, so an append to it when it
    /// is active again goes after it) and its last write.
    fn left_branch(
        &self,
        partition: &str,
        sealed: Slot,
        state: &TreeState,
    ) -> Result<TransactWriteItem, Error> {
        // Its last write is the conversation's last activity only if it was written since the
        // conversation entered it; else the one it kept.
        let update = if state.written_since_entered() {
            "SET tip = :tip, lastWrite = :last"
        } else {
            "SET tip = :tip, lastWrite = if_not_exists(lastWrite, :last)"
        };
        Ok(TransactWriteItem::builder()
            .update(
                Update::builder()
                    .table_name(&self.table)
                    .key(keys::PK, s(partition))
                    .key(keys::SK, s(&keys::branch_sort_key(sealed.branch)))
                    .update_expression(update)
                    .expression_attribute_values(":tip", s(&sealed.tip_text()))
                    .expression_attribute_values(
                        ":last",
                        s(&keys::sortable_time(state.last_activity)),
                    )
                    .build()
                    .map_err(|e| Error::internal("build update", e))?,
            )
            .build())
    }
}
