//! The single-table key design, in one place. Every key string is built here.
//! `docs/data-model.md` explains the design and lists the access patterns it serves.
//!
//! Base table, one item collection per conversation, owner first in every key:
//!
//! | item            | PK                          | SK                             |
//! |-----------------|-----------------------------|--------------------------------|
//! | conversation    | `USER#<user>#CONV#<conv>`   | `META`                         |
//! | message         | `USER#<user>#CONV#<conv>`   | `MESSAGE#~<branch>#<slot>`     |
//! | (keyed by time) | `USER#<user>#CONV#<conv>`   | `MESSAGE#<timestamp>#<msg id>` |
//! | client msg id   | `USER#<user>#CONV#<conv>`   | `CLIENT_MESSAGE#<client id>`   |
//!
//! `META` sorts after every `MESSAGE#…` key ("MET" > "MES"), so one descending query between
//! `MESSAGE#` and `META` reads the conversation first and then its newest messages; a slot's
//! key sorts after every time-keyed one (`~` > every digit), so a conversation begun before
//! slots goes on after its earlier messages.
//! Only conversation items carry the listing indexes' attributes, so those indexes hold
//! nothing else. `ByChange` (what a mobile sync reads) also holds the tombstones of deleted
//! conversations, kept in the user's `USER#<user>#DELETED` partition until their TTL.

use chrono::{DateTime, SecondsFormat, Utc};

use crate::model::{AttachmentId, ClientMessageId, ConversationId, MessageId, UserId};
use crate::share::ShareToken;

pub const PK: &str = "PK";
pub const SK: &str = "SK";
/// Index partition attribute: all of a user's conversations.
pub const OWNER: &str = "owner";
/// Index partition attribute: a user's conversations in one archive state.
pub const OWNER_STATE: &str = "ownerState";
/// Index sort attributes: the conversation's own timestamps, in sortable form.
pub const LAST_ACTIVITY: &str = "lastActivity";
pub const CREATED_AT: &str = "createdAt";
/// Index sort attribute of `ByChange`: when a conversation (or its tombstone) last changed,
/// by the writer's clock, then its id (`<sortable time>#<conversation id>`), so entries never tie.
pub const CHANGED_AT: &str = "changedAt";
/// The TTL attribute enabled on the table (epoch seconds), for short-term items.
pub const EXPIRES_AT: &str = "expiresAt";
/// Index partition attribute of the marker that lists a user holding short-term memory.
pub const MEMORY_SHARD: &str = "memoryShard";
/// How many partitions the `ByMemoryShard` index spreads users over (a migration reads them
/// in parallel).
pub const MEMORY_SHARDS: u32 = 16;
/// Index partition attribute of `ByPendingPurge`: carried by a tombstone until the sweeper
/// has checked that nothing of its conversation is left (`PURGE_SHARD#<n>`).
pub const PURGE_SHARD: &str = "purgeShard";
/// Index sort attribute of `ByPendingPurge`: when the conversation was deleted (sortable).
pub const DELETED_AT: &str = "deletedAt";
/// How many partitions the `ByPendingPurge` index spreads tombstones over, so that no burst
/// of deletes writes to one index partition.
pub const PURGE_SHARDS: u32 = 16;

pub const CONVERSATION_SK: &str = "META";
/// A conversation's summary, beside its item: sorts right after it, so a conversation read
/// newest first reads its summary, its item, then its messages, in one query.
pub const SUMMARY_SK: &str = "META#SUMMARY";
/// A branched conversation's active path (`tree::Path`), beside its item: read in the same
/// query (it sorts between the item and its summary).
pub const PATH_SK: &str = "META#PATH";
/// The settings a conversation keeps of the preset it was started with (`preset`), beside its
/// item but after its summary: outside the range an append reads.
pub const SETTINGS_SK: &str = "META#~SETTINGS";
pub const MESSAGE_PREFIX: &str = "MESSAGE#";
/// A branch's own item (`BRANCH#<branch>`): its fork, its path, and (once left) its tip.
pub const BRANCH_PREFIX: &str = "BRANCH#";
/// A fork mark (`FORK#<parent's sort key>#<branch>`, or `FORK#ROOT#<branch>`): one per branch,
/// keyed by the message it forks at, so a page of messages reads its messages' forks in one
/// range.
pub const FORK_PREFIX: &str = "FORK#";
const FORK_ROOT: &str = "ROOT";
const CLIENT_MESSAGE_PREFIX: &str = "CLIENT_MESSAGE#";
/// An edit's (or a regenerated reply's) client message id: apart from appends' (the same id
/// sent with an append and an edit names two things).
const CLIENT_EDIT_PREFIX: &str = "CLIENT_EDIT#";

/// A global secondary index of the table, named as in `template.yaml`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Index {
    /// A user's active or archived conversations by last activity.
    ByStateActivity,
    /// All of a user's conversations by creation time (keys and titles only).
    ByCreated,
    /// A user's active or archived conversations by creation time (keys and titles only).
    ByStateCreated,
    /// Users who hold short-term memory, spread over `MEMORY_SHARDS` partitions (keys only).
    ByMemoryShard,
    /// A user's conversations and tombstones in the order they last changed (keys only): the
    /// change log a mobile sync reads.
    ByChange,
    /// Tombstones whose conversation the sweeper has still to check is gone from every copy,
    /// spread over `PURGE_SHARDS` partitions, oldest delete first (keys only).
    ByPendingPurge,
}

impl Index {
    pub const ALL: [Index; 6] = [
        Self::ByStateActivity,
        Self::ByCreated,
        Self::ByStateCreated,
        Self::ByMemoryShard,
        Self::ByChange,
        Self::ByPendingPurge,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::ByStateActivity => "ByStateActivity",
            Self::ByCreated => "ByCreated",
            Self::ByStateCreated => "ByStateCreated",
            Self::ByMemoryShard => "ByMemoryShard",
            Self::ByChange => "ByChange",
            Self::ByPendingPurge => "ByPendingPurge",
        }
    }

    pub fn partition_attribute(self) -> &'static str {
        match self {
            Self::ByCreated | Self::ByChange => OWNER,
            Self::ByStateActivity | Self::ByStateCreated => OWNER_STATE,
            Self::ByMemoryShard => MEMORY_SHARD,
            Self::ByPendingPurge => PURGE_SHARD,
        }
    }

    pub fn sort_attribute(self) -> &'static str {
        match self {
            Self::ByStateActivity => LAST_ACTIVITY,
            Self::ByCreated | Self::ByStateCreated => CREATED_AT,
            Self::ByMemoryShard => PK,
            Self::ByChange => CHANGED_AT,
            Self::ByPendingPurge => DELETED_AT,
        }
    }

    /// Whether the index projects whole conversations, or only keys and titles (then the
    /// listing fetches the items from the table).
    pub fn projects_all(self) -> bool {
        matches!(self, Self::ByStateActivity)
    }

    /// The attributes of an item that make up its position in this index.
    pub fn key_attributes(self) -> [&'static str; 4] {
        [PK, SK, self.partition_attribute(), self.sort_attribute()]
    }
}

/// The partition of one conversation: its item, its messages and its idempotency records.
pub fn conversation_partition(user: &UserId, conversation: &ConversationId) -> String {
    format!("USER#{user}#CONV#{conversation}")
}

/// The owner and conversation of a conversation partition key (as a table stream reports it).
pub fn parse_conversation_partition(partition: &str) -> Option<(UserId, ConversationId)> {
    let rest = partition.strip_prefix("USER#")?;
    let (user, conversation) = rest.split_once("#CONV#")?;
    Some((
        UserId::parse(user).ok()?,
        ConversationId::parse(conversation).ok()?,
    ))
}

/// Serde for a typed key: written as its text, read only from text that parses as one.
macro_rules! key_as_text {
    ($key:ty, $what:literal) => {
        impl serde::Serialize for $key {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.key)
            }
        }

        impl<'de> serde::Deserialize<'de> for $key {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let key = <String as serde::Deserialize>::deserialize(deserializer)?;
                Self::parse(&key).ok_or_else(|| {
                    serde::de::Error::custom(format!(concat!("{:?} is not ", $what), key))
                })
            }
        }
    };
}

/// A conversation's partition key, with the owner and the conversation it names: what the
/// conversation's item keeps of both (it stores neither again). Written as the key's text,
/// and read only from a key that parses, so its owner and id are never missing.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ConversationPartition {
    key: String,
    user: UserId,
    conversation: ConversationId,
}

impl ConversationPartition {
    pub fn new(user: &UserId, conversation: ConversationId) -> Self {
        Self {
            key: conversation_partition(user, &conversation),
            user: user.clone(),
            conversation,
        }
    }

    pub fn parse(key: &str) -> Option<Self> {
        let (user, conversation) = parse_conversation_partition(key)?;
        Some(Self {
            key: key.to_owned(),
            user,
            conversation,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.key
    }

    pub fn user(&self) -> &UserId {
        &self.user
    }

    pub fn conversation(&self) -> ConversationId {
        self.conversation
    }
}

key_as_text!(ConversationPartition, "a conversation's partition key");

/// Sort keys of the search entries of an earlier design (one item per conversation and term,
/// in the conversation's partition): nothing writes them any more, and the search backfill
/// (`search_backfill`) removes those still there.
const LEGACY_TERM_PREFIXES: [&str; 2] = ["TERM#", "TITLE_TERM#"];
pub fn is_legacy_term_sort_key(sort_key: &str) -> bool {
    LEGACY_TERM_PREFIXES
        .iter()
        .any(|prefix| sort_key.starts_with(prefix))
}

/// The partition of a user's search blocks: each lists the terms of a run of one
/// conversation's messages (`search::blocks`), so one query reads a user's whole index.
pub fn search_partition(user: &UserId) -> String {
    format!("USER#{user}#SEARCH")
}

/// The owner of a search partition key.
pub fn parse_search_partition(partition: &str) -> Option<UserId> {
    UserId::parse(partition.strip_prefix("USER#")?.strip_suffix("#SEARCH")?).ok()
}

pub const SEARCH_BLOCK_PREFIX: &str = "BLOCK#";

/// The partition of the search backfill's checkpoints (`search_backfill`): one item per
/// segment of the table's scan, so a run that stops continues where it stopped.
pub const SEARCH_BACKFILL_PK: &str = "SEARCH_BACKFILL";

pub fn search_backfill_sort_key(segment: u32, segments: u32) -> String {
    format!("SEGMENT#{segment}/{segments}")
}

/// How many segments the backfill run that saved this checkpoint scanned in.
pub fn search_backfill_segments(sort_key: &str) -> Option<u32> {
    sort_key
        .strip_prefix("SEGMENT#")?
        .split_once('/')?
        .1
        .parse()
        .ok()
}

/// The sort keys of one conversation's search blocks start with this.
pub fn search_block_prefix(conversation: &ConversationId) -> String {
    format!("{SEARCH_BLOCK_PREFIX}{conversation}#")
}

/// A search block's sort key: its conversation, then the time of the first message it took.
pub fn search_block_sort_key(conversation: &ConversationId, start: DateTime<Utc>) -> String {
    format!(
        "{}{}",
        search_block_prefix(conversation),
        sortable_time(start)
    )
}

/// The conversation and start a search block's sort key names.
pub fn parse_search_block_sort_key(sort_key: &str) -> Option<(ConversationId, DateTime<Utc>)> {
    let (conversation, start) = sort_key
        .strip_prefix(SEARCH_BLOCK_PREFIX)?
        .split_once('#')?;
    let start = DateTime::parse_from_rfc3339(start)
        .ok()?
        .with_timezone(&Utc);
    Some((ConversationId::parse(conversation).ok()?, start))
}

/// The inclusive sort-key range of a conversation's time-keyed messages written from `from`
/// until before `until` (to the last of them without one), by their timestamps. Messages kept
/// in slots (`slot_sort_key`) are outside every such range: [`slot_range`] reads them.
pub fn message_time_range(from: DateTime<Utc>, until: Option<DateTime<Utc>>) -> (String, String) {
    let low = format!("{MESSAGE_PREFIX}{}", sortable_time(from));
    // `#` < `$`: before every `#<message id>` of `until`; `~` sorts after every time and is no
    // key itself, so the range stops before the first slot.
    let high = match until {
        Some(until) => format!("{MESSAGE_PREFIX}{}#", sortable_time(until)),
        None => SLOT_PREFIX.to_owned(),
    };
    (low, high)
}

/// Whether a sort key is a message's.
pub fn is_message_sort_key(sort_key: &str) -> bool {
    sort_key.starts_with(MESSAGE_PREFIX)
}

pub fn message_sort_key(timestamp: DateTime<Utc>, message: &MessageId) -> String {
    format!("{MESSAGE_PREFIX}{}#{message}", sortable_time(timestamp))
}

/// The sort keys of messages kept in slots start with this: `~` sorts after every time, so a
/// conversation's time-keyed messages (written before slots, or moved in by a migration or an
/// import) come first.
pub const SLOT_PREFIX: &str = "MESSAGE#~";

/// A message's place in its conversation when it is kept by slot: the next number of its
/// branch (the trunk, 0, until conversations branch). Only one writer can take a slot, so an
/// occupied slot proves its message was stored, and anyone can count it (docs/data-model.md,
/// "Appending").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Slot {
    pub branch: u16,
    pub number: u64,
}

impl Slot {
    /// The largest slot number a key holds (10 digits).
    pub const MAX_NUMBER: u64 = 9_999_999_999;

    pub const fn trunk(number: u64) -> Self {
        Self { branch: 0, number }
    }

    /// The slot after this one on its branch.
    pub fn next(self) -> Self {
        Self {
            branch: self.branch,
            number: self.number + 1,
        }
    }

    /// As a conversation's `tip` keeps it: `<branch>#<number>`, fixed width.
    pub fn tip_text(self) -> String {
        format!("{:04x}#{:010}", self.branch, self.number)
    }

    /// A `tip` as [`Slot::tip_text`] writes it.
    pub fn parse_tip(text: &str) -> Option<Self> {
        let (branch, number) = text.split_once('#')?;
        let slot = Self {
            branch: u16::from_str_radix(branch, 16).ok()?,
            number: number.parse().ok()?,
        };
        (slot.tip_text() == text).then_some(slot)
    }
}

pub fn slot_sort_key(slot: Slot) -> String {
    format!("{SLOT_PREFIX}{}", slot.tip_text())
}

/// The inclusive sort-key range of a branch's slots from `from` until before `until` (to the
/// branch's last without one).
pub fn slot_range(branch: u16, from: u64, until: Option<u64>) -> (String, String) {
    let low = slot_sort_key(Slot {
        branch,
        number: from,
    });
    let high = match until {
        Some(until) => slot_sort_key(Slot {
            branch,
            number: until.saturating_sub(1),
        }),
        // `~` sorts after every digit.
        None => format!("{SLOT_PREFIX}{branch:04x}#~"),
    };
    (low, high)
}

/// The inclusive sort-key range of a branch's messages: the trunk's time-keyed messages and
/// slots, or another branch's slots.
pub fn branch_range(branch: u16) -> (String, String) {
    let low = if branch == 0 {
        MESSAGE_PREFIX.to_owned()
    } else {
        format!("{SLOT_PREFIX}{branch:04x}#")
    };
    (low, format!("{SLOT_PREFIX}{branch:04x}#~"))
}

pub fn branch_sort_key(branch: u16) -> String {
    format!("{BRANCH_PREFIX}{branch:04x}")
}

/// The fork mark of `branch`, forked at the message under `parent` (`None`: the root).
pub fn fork_sort_key(parent: Option<&str>, branch: u16) -> String {
    format!("{FORK_PREFIX}{}#{branch:04x}", parent.unwrap_or(FORK_ROOT))
}

/// The inclusive range of the fork marks at the messages from `low` to `high` (sort keys of one
/// branch; `None`: the root only).
pub fn fork_range(low: Option<&str>, high: Option<&str>) -> (String, String) {
    let low = format!("{FORK_PREFIX}{}#", low.unwrap_or(FORK_ROOT));
    let high = format!("{FORK_PREFIX}{}#~", high.unwrap_or(FORK_ROOT));
    (low, high)
}

/// The parent's sort key (`None`: the root) and the branch of a fork mark's key.
pub fn parse_fork_sort_key(sort_key: &str) -> Option<(Option<&str>, u16)> {
    let (parent, branch) = sort_key.strip_prefix(FORK_PREFIX)?.rsplit_once('#')?;
    let branch = u16::from_str_radix(branch, 16).ok()?;
    let parent = (parent != FORK_ROOT).then_some(parent);
    Some((parent, branch))
}

/// Where a message's sort key puts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum MessagePlace {
    /// By its time, then its id: the key holds both (the item stores neither again).
    Timed {
        timestamp: DateTime<Utc>,
        message: MessageId,
    },
    /// By its slot: the item holds its id and time.
    Slot(Slot),
}

/// A message's sort key, with what it says of the message: its time and id
/// (`MESSAGE#<time>#<id>`), or its slot (`MESSAGE#~<branch>#<number>`). Written as the key's
/// text, and read only from a key that parses.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct MessageSortKey {
    key: String,
    place: MessagePlace,
}

impl MessageSortKey {
    pub fn new(timestamp: DateTime<Utc>, message: MessageId) -> Self {
        Self {
            key: message_sort_key(timestamp, &message),
            place: MessagePlace::Timed { timestamp, message },
        }
    }

    pub fn at_slot(slot: Slot) -> Self {
        Self {
            key: slot_sort_key(slot),
            place: MessagePlace::Slot(slot),
        }
    }

    pub fn parse(key: &str) -> Option<Self> {
        if let Some(tip) = key.strip_prefix(SLOT_PREFIX) {
            return Slot::parse_tip(tip).map(Self::at_slot);
        }
        let (time, message) = key.strip_prefix(MESSAGE_PREFIX)?.split_once('#')?;
        let timestamp = DateTime::parse_from_rfc3339(time).ok()?.with_timezone(&Utc);
        let message = MessageId::parse(message).ok()?;
        // Only the form `message_sort_key` writes: the key is the item's identity.
        (message_sort_key(timestamp, &message) == key).then(|| Self::new(timestamp, message))
    }

    pub fn as_str(&self) -> &str {
        &self.key
    }

    pub fn place(&self) -> MessagePlace {
        self.place
    }

    pub fn slot(&self) -> Option<Slot> {
        match self.place {
            MessagePlace::Slot(slot) => Some(slot),
            MessagePlace::Timed { .. } => None,
        }
    }
}

key_as_text!(MessageSortKey, "a message's sort key");

pub fn client_message_sort_key(client_id: &ClientMessageId) -> String {
    format!("{CLIENT_MESSAGE_PREFIX}{}", client_id.as_str())
}

/// The record of an edit made with a client message id: the key of the message it made.
pub fn client_edit_sort_key(client_id: &ClientMessageId) -> String {
    format!("{CLIENT_EDIT_PREFIX}{}", client_id.as_str())
}

/// The inclusive sort-key range that holds a conversation's item, its summary and all its
/// messages.
pub fn conversation_and_messages_range() -> (&'static str, &'static str) {
    (MESSAGE_PREFIX, SUMMARY_SK)
}

/// Where a conversation's objects live in the attachments bucket: under the user's and the
/// conversation's ids, so deleting the conversation deletes this prefix.
pub fn attachment_prefix(user: &UserId, conversation: &ConversationId) -> String {
    format!("users/{user}/conversations/{conversation}/")
}

pub fn attachment_key(user: &UserId, conversation: &ConversationId, id: &AttachmentId) -> String {
    format!("{}attachments/{id}", attachment_prefix(user, conversation))
}

/// Where the content of a message too large for its item is kept (gzip).
pub fn message_content_key(
    user: &UserId,
    conversation: &ConversationId,
    message: &MessageId,
) -> String {
    format!(
        "{}content/{message}.gz",
        attachment_prefix(user, conversation)
    )
}

/// The partition of a user's short-term memory (items that expire through TTL).
pub fn memory_partition(user: &UserId) -> String {
    format!("USER#{user}#MEMORY")
}

/// Sort keys of memory entries start with this; the marker's does not.
pub const MEMORY_ENTRY_PREFIX: &str = "MEMORY#";
/// The sort key of the marker that lists the user in `ByMemoryShard`.
pub const MEMORY_MARKER_SK: &str = "MARKER";

pub fn memory_sort_key(timestamp: DateTime<Utc>, entry: &MessageId) -> String {
    format!("{MEMORY_ENTRY_PREFIX}{}#{entry}", sortable_time(timestamp))
}

/// The user of a memory partition key.
pub fn parse_memory_partition(partition: &str) -> Option<UserId> {
    let user = partition.strip_prefix("USER#")?.strip_suffix("#MEMORY")?;
    UserId::parse(user).ok()
}

/// One of `shards` shards, by a stable hash of `text`.
fn shard_of(text: &str, shards: u32) -> u32 {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(text.as_bytes());
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]) % shards
}

/// The `ByMemoryShard` partition a user is listed in: a stable hash of the user id.
pub fn memory_shard(user: &UserId) -> String {
    memory_shard_key(shard_of(user.as_str(), MEMORY_SHARDS))
}

pub fn memory_shard_key(shard: u32) -> String {
    format!("MEMORY_SHARD#{shard}")
}

/// The partition of a user's migration state (how far their memory has been migrated).
pub fn migration_partition(user: &UserId) -> String {
    format!("USER#{user}#MIGRATION")
}

pub const MIGRATION_STATE_SK: &str = "STATE";

/// The partition of one scheduled migration run's summary.
pub fn migration_run_partition(run: &str) -> String {
    format!("MIGRATION_RUN#{run}")
}

pub const MIGRATION_RUN_SK: &str = "SUMMARY";

/// The item naming the latest migration run started (what the health check reports).
pub const MIGRATION_LATEST_PK: &str = "MIGRATION_RUNS";
pub const MIGRATION_LATEST_SK: &str = "LATEST";

/// The sort key of one user's outcome in a run's partition.
pub fn migration_run_user_sort_key(user: &str) -> String {
    format!("USER#{user}")
}

/// The partition of a user's completion records (idempotency of `/completion`, with TTL).
pub fn completion_partition(user: &UserId) -> String {
    format!("USER#{user}#COMPLETION")
}

/// Sort keys of completion records start with this.
pub const COMPLETION_PREFIX: &str = "REQUEST#";

pub fn completion_sort_key(request: &ClientMessageId) -> String {
    format!("{COMPLETION_PREFIX}{}", request.as_str())
}

/// Where a conversation stands in its owner's change log: the time of the change, then the id.
pub fn changed_at(time: DateTime<Utc>, conversation: &ConversationId) -> String {
    format!("{}#{conversation}", sortable_time(time))
}

/// The time part of a `changedAt` value (or of a bare sortable time).
pub fn changed_at_time(changed_at: &str) -> Option<DateTime<Utc>> {
    let time = changed_at.split('#').next()?;
    DateTime::parse_from_rfc3339(time)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// The partition of a user's tombstones: one item per deleted conversation, until its TTL.
pub fn tombstone_partition(user: &UserId) -> String {
    format!("USER#{user}#DELETED")
}

pub fn tombstone_sort_key(conversation: &ConversationId) -> String {
    format!("CONV#{conversation}")
}

/// The conversation a tombstone's sort key names.
pub fn parse_tombstone_sort_key(sort_key: &str) -> Option<ConversationId> {
    ConversationId::parse(sort_key.strip_prefix("CONV#")?).ok()
}

/// The owner of a tombstone partition.
pub fn parse_tombstone_partition(partition: &str) -> Option<UserId> {
    UserId::parse(partition.strip_prefix("USER#")?.strip_suffix("#DELETED")?).ok()
}

/// The `ByPendingPurge` partition a tombstone is listed in: a stable hash of its conversation.
pub fn purge_shard(conversation: &ConversationId) -> String {
    purge_shard_key(shard_of(&conversation.to_string(), PURGE_SHARDS))
}

pub fn purge_shard_key(shard: u32) -> String {
    format!("PURGE_SHARD#{shard}")
}

/// The partition of a user's batch operation records (exactly-once results, with TTL).
pub fn operation_partition(user: &UserId) -> String {
    format!("USER#{user}#BATCH")
}

/// Sort keys of batch operation records start with this.
pub const OPERATION_PREFIX: &str = "OP#";

pub fn operation_sort_key(operation: &str) -> String {
    format!("{OPERATION_PREFIX}{operation}")
}

/// The partition of a user's usage of the limited routes: one item per UTC day (with TTL).
pub fn usage_partition(user: &UserId) -> String {
    format!("USER#{user}#USAGE")
}

/// The sort key of a user's usage on `day` (`usage::day_of`).
pub fn usage_sort_key(day: &str) -> String {
    format!("DAY#{day}")
}

/// The partition of a user's account exports.
pub fn export_partition(user: &UserId) -> String {
    format!("USER#{user}#EXPORT")
}

pub const EXPORT_PREFIX: &str = "EXPORT#";

pub fn export_sort_key(export: &uuid::Uuid) -> String {
    format!("{EXPORT_PREFIX}{export}")
}

/// The user and export an account export's keys name.
pub fn parse_export_keys(partition: &str, sort_key: &str) -> Option<(UserId, uuid::Uuid)> {
    let user = partition.strip_prefix("USER#")?.strip_suffix("#EXPORT")?;
    let export = sort_key.strip_prefix(EXPORT_PREFIX)?;
    Some((
        UserId::parse(user).ok()?,
        uuid::Uuid::parse_str(export).ok()?,
    ))
}

/// The partition of a share link, named by its token alone (`share::ShareToken`): what a
/// reader without an account reads. It names no user: the link's item says whose it is.
pub fn share_partition(token: &ShareToken) -> String {
    format!("{SHARE_PARTITION_PREFIX}{token}")
}

const SHARE_PARTITION_PREFIX: &str = "SHARE#";

pub const SHARE_SK: &str = "LINK";

/// The link's token, from its partition key (a stream record of its item).
pub fn parse_share_partition(partition: &str) -> Option<ShareToken> {
    ShareToken::parse(partition.strip_prefix(SHARE_PARTITION_PREFIX)?).ok()
}

/// Where the copies of the files a link shows live in the attachments bucket: under the
/// link's token alone, so their download URLs name no user and no conversation. Deleting the
/// link's item deletes this prefix (the purge worker).
pub fn share_files_prefix(token: &ShareToken) -> String {
    format!("shares/{token}/")
}

pub fn share_file_key(token: &ShareToken, id: &AttachmentId) -> String {
    format!("{}{id}", share_files_prefix(token))
}

/// The partition of a user's own records of the links they made: what they list and revoke.
pub fn share_records_partition(user: &UserId) -> String {
    format!("USER#{user}#SHARES")
}

/// Sort keys of share records start with this, then the conversation's id.
pub const SHARE_RECORD_PREFIX: &str = "LINK#";

/// A share record's sort key: by conversation, so a conversation's links are one range.
pub fn share_record_sort_key(conversation: &ConversationId, token: &ShareToken) -> String {
    format!("{SHARE_RECORD_PREFIX}{conversation}#{token}")
}

/// The prefix of one conversation's share records.
pub fn share_records_prefix(conversation: &ConversationId) -> String {
    format!("{SHARE_RECORD_PREFIX}{conversation}#")
}

/// Sort keys of grants start with this: the owner's records of whom a conversation is shared
/// with (`GRANT#<grantee>`, in the conversation's partition, outside its messages' range),
/// and a grantee's of what was shared with them (`GRANT#<conversation>`).
pub const GRANT_PREFIX: &str = "GRANT#";

/// How many people a conversation is shared with: one item in its partition, beside their
/// grants (after them: `#` sorts before `S`), changed in each grant's transaction.
pub const GRANT_COUNT_SK: &str = "GRANTS";

/// How many conversations are shared with a person: one item in their grants' partition.
pub const GRANTEE_COUNT_SK: &str = "COUNT";

pub fn grant_sort_key(grantee: &UserId) -> String {
    format!("{GRANT_PREFIX}{grantee}")
}

/// The partition of what others shared with `grantee`: one item per conversation.
pub fn grantee_partition(grantee: &UserId) -> String {
    format!("USER#{grantee}#GRANTS")
}

pub fn grantee_sort_key(conversation: &ConversationId) -> String {
    format!("{GRANT_PREFIX}{conversation}")
}

/// The partition of a user's presets: one item per preset, and their count (`PRESET_COUNT_SK`).
pub fn presets_partition(user: &UserId) -> String {
    format!("USER#{user}#PRESETS")
}

pub const PRESET_PREFIX: &str = "PRESET#";
/// How many presets the user keeps: kept beside them, checked by each create.
pub const PRESET_COUNT_SK: &str = "COUNT";

pub fn preset_sort_key(preset: &crate::model::PresetId) -> String {
    format!("{PRESET_PREFIX}{preset}")
}

pub fn owner(user: &UserId) -> String {
    format!("USER#{user}")
}

pub fn owner_state(user: &UserId, archived: bool) -> String {
    let state = if archived { "ARCHIVED" } else { "ACTIVE" };
    format!("USER#{user}#{state}")
}

/// Timestamps as index keys: fixed width (microseconds, `Z`), so string order is time order.
pub fn sortable_time(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Serde adapter storing a timestamp in its sortable form.
pub mod sortable {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(
        time: &DateTime<Utc>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&super::sortable_time(*time))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<DateTime<Utc>, D::Error> {
        let raw = String::deserialize(deserializer)?;
        DateTime::parse_from_rfc3339(&raw)
            .map(|t| t.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn user() -> UserId {
        UserId::parse("alice").unwrap()
    }

    #[test]
    fn the_conversation_item_and_its_summary_sort_after_every_message_so_a_descending_query_reads_them_first(
    ) {
        let late = Utc.with_ymd_and_hms(2999, 12, 31, 23, 59, 59).unwrap();
        let message = message_sort_key(late, &MessageId::generate());
        let (low, high) = conversation_and_messages_range();
        assert!(message.as_str() > low);
        assert!(message.as_str() < CONVERSATION_SK);
        assert!(CONVERSATION_SK < SUMMARY_SK);
        assert_eq!(high, SUMMARY_SK);
    }

    #[test]
    fn client_message_records_fall_outside_the_message_range() {
        let id = ClientMessageId::parse("zzz").unwrap();
        let (low, _) = conversation_and_messages_range();
        for key in [client_message_sort_key(&id), client_edit_sort_key(&id)] {
            assert!(key.as_str() < low);
        }
        assert_ne!(client_message_sort_key(&id), client_edit_sort_key(&id));
    }

    #[test]
    fn sortable_times_order_like_the_times_they_encode() {
        let a = Utc.timestamp_opt(1_700_000_000, 0).unwrap();
        let b = Utc.timestamp_opt(1_700_000_000, 500_000_000).unwrap();
        let c = Utc.timestamp_opt(1_700_000_001, 0).unwrap();
        assert!(sortable_time(a) < sortable_time(b));
        assert!(sortable_time(b) < sortable_time(c));
        assert_eq!(sortable_time(a).len(), sortable_time(b).len());
    }

    #[test]
    fn typed_keys_read_back_what_they_write_and_refuse_other_text() {
        let conversation = ConversationId::generate();
        let partition = ConversationPartition::new(&user(), conversation);
        let read: ConversationPartition =
            serde_json::from_value(serde_json::to_value(&partition).unwrap()).unwrap();
        assert_eq!(read, partition);
        assert_eq!((read.user(), read.conversation()), (&user(), conversation));
        assert!(serde_json::from_str::<ConversationPartition>("\"USER#alice\"").is_err());

        let at = Utc.with_ymd_and_hms(2026, 12, 4, 9, 30, 0).unwrap();
        let message = MessageId::generate();
        let key = MessageSortKey::new(at, message);
        assert_eq!(key.as_str(), message_sort_key(at, &message));
        let read: MessageSortKey =
            serde_json::from_value(serde_json::to_value(&key).unwrap()).unwrap();
        assert_eq!(
            read.place(),
            MessagePlace::Timed {
                timestamp: at,
                message
            }
        );
        let slot = Slot {
            branch: 0x1f,
            number: 42,
        };
        let key = MessageSortKey::at_slot(slot);
        assert_eq!(key.as_str(), "MESSAGE#~001f#0000000042");
        let read: MessageSortKey =
            serde_json::from_value(serde_json::to_value(&key).unwrap()).unwrap();
        assert_eq!(read.slot(), Some(slot));
        assert_eq!(Slot::parse_tip(&slot.tip_text()), Some(slot));
        for other in [
            "META",
            "MESSAGE#2026-12-04T09:30:00Z#x",
            "MESSAGE#~0000#42",
            "MESSAGE#~00000#0000000042",
            "MESSAGE#~0000#00000000042",
            // Only the form the store writes: microseconds and `Z`.
            &format!("MESSAGE#2026-12-04T09:30:00+00:00#{message}"),
        ] {
            assert_eq!(MessageSortKey::parse(other), None, "{other}");
        }
    }

    #[test]
    fn a_conversation_partition_parses_back_into_its_owner_and_id() {
        let conversation = ConversationId::generate();
        let partition = conversation_partition(&user(), &conversation);
        assert_eq!(
            parse_conversation_partition(&partition),
            Some((user(), conversation))
        );
        assert_eq!(parse_conversation_partition("USER#alice"), None);
        assert_eq!(
            parse_conversation_partition("USER#a#b#CONV#not-a-uuid"),
            None
        );
    }

    #[test]
    fn change_log_positions_order_by_time_then_id_and_give_their_time_back() {
        let early = Utc.timestamp_opt(1_700_000_000, 0).unwrap();
        let late = Utc.timestamp_opt(1_700_000_000, 1_000).unwrap();
        let a = changed_at(early, &ConversationId::generate());
        let b = changed_at(late, &ConversationId::generate());
        assert!(a < b);
        // A bare time sorts before every change at that time.
        assert!(sortable_time(early) < a);
        assert_eq!(changed_at_time(&a), Some(early));
        assert_eq!(changed_at_time(&sortable_time(late)), Some(late));
        assert_eq!(changed_at_time("not a time"), None);
    }

    #[test]
    fn every_key_starts_with_its_owner() {
        let conversation = ConversationId::generate();
        assert!(conversation_partition(&user(), &conversation).starts_with("USER#alice#"));
        assert_eq!(owner(&user()), "USER#alice");
        assert_eq!(owner_state(&user(), true), "USER#alice#ARCHIVED");
    }

    #[test]
    fn search_blocks_sort_by_conversation_then_start_and_parse_back() {
        let conversation = ConversationId::parse("0193e4c2-7b1a-7c00-8000-000000000001").unwrap();
        let early = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let late = Utc.with_ymd_and_hms(2026, 1, 2, 0, 0, 0).unwrap();
        let (first, second) = (
            search_block_sort_key(&conversation, early),
            search_block_sort_key(&conversation, late),
        );
        assert!(first < second);
        assert!(first.starts_with(&search_block_prefix(&conversation)));
        assert_eq!(
            parse_search_block_sort_key(&second),
            Some((conversation, late))
        );
        assert_eq!(
            parse_search_partition(&search_partition(&user())),
            Some(user())
        );
        assert_eq!(
            parse_conversation_partition(&search_partition(&user())),
            None
        );
    }

    #[test]
    fn a_message_time_range_holds_every_message_of_those_times() {
        let id = MessageId::parse("0193e4c2-7b1a-7c00-8000-000000000002").unwrap();
        let at = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let next = at + chrono::Duration::microseconds(1);
        let (low, high) = message_time_range(at, Some(next));
        let key = message_sort_key(at, &id);
        assert!(low < key && key < high);
        assert!(message_sort_key(next, &id) > high);
        let (_, to_the_end) = message_time_range(at, None);
        assert!(message_sort_key(next, &id) < to_the_end);
        assert!(to_the_end.as_str() < CONVERSATION_SK);
        // Slots are outside every time range, and after every time-keyed message.
        let first_slot = slot_sort_key(Slot::trunk(1));
        assert!(to_the_end < first_slot);
        assert!(
            message_sort_key(Utc.with_ymd_and_hms(9999, 1, 1, 0, 0, 0).unwrap(), &id) < first_slot
        );
        assert!(is_message_sort_key(&first_slot) && first_slot.as_str() < CONVERSATION_SK);
    }

    #[test]
    fn a_slot_range_holds_its_slots_and_no_other_branchs() {
        let (low, high) = slot_range(0, 3, Some(5));
        let key = |number| slot_sort_key(Slot::trunk(number));
        assert!(low <= key(3) && key(4) <= high && key(5) > high && key(2) < low);
        let (low, high) = slot_range(0, 3, None);
        assert!(low <= key(Slot::MAX_NUMBER) && key(Slot::MAX_NUMBER) < high);
        let other = slot_sort_key(Slot {
            branch: 1,
            number: 1,
        });
        assert!(other > high);
        assert!(high.as_str() < CONVERSATION_SK);
    }
}
