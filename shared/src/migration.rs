//! Migration of short-term memory into permanent conversations (the specification's
//! `migrateConversations` script, with the dry run it promised).
//!
//! Entries that name a conversation go into it (created when missing); the others are
//! grouped into sessions, a new one after a gap of inactivity, each a conversation titled
//! from its first user message. Every migrated message keeps its source's id (or an id
//! derived from the source's key) and its timestamp, so its item key is fixed; writes are
//! conditional, so a re-run after a crash at any point stores nothing twice and loses
//! nothing. A user's state records how far their memory is migrated and the sessions a run
//! is writing, so a re-run skips what is done and puts every entry where the first run did.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Duration, Utc};
use futures::{stream, StreamExt, TryStreamExt};
use uuid::Uuid;

use crate::cache::Cache;
use crate::error::Error;
use crate::keys;
use crate::model::{
    Attachment, ConversationId, Message, MessageId, Metadata, NewMessage, Role, Title, TokenCount,
    UserId,
};
use crate::store::{
    transaction_chunks, ConversationItem, Creation, HeldMemory, Store, TRANSACTION_MAX_ITEMS,
};
use domain::memory::MemoryEntry;
pub use domain::migration::{
    FailedUser, MigrationState, RunSummary, Session, SkippedItem, UserSummary,
};

/// The specification's session rule: a new conversation after 30 minutes of inactivity.
pub const DEFAULT_SESSION_GAP_MINUTES: i64 = 30;
/// How long after an entry's time the migration treats it as settled: entries newer than
/// this are read again by the next run, in case a writer with a late clock adds one
/// between them.
const SETTLE_MARGIN_MINUTES: i64 = 5;

/// Namespace of the ids the migration derives (UUID v5), fixed forever: changing it would
/// make a re-run write copies.
const ID_NAMESPACE: Uuid = Uuid::from_u128(0x6e756d69_6e61_4d69_6772_6174696f6e31);

/// How the migration batches its work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MigrationOptions {
    /// A new conversation after this much inactivity between entries without one.
    pub session_gap: Duration,
    /// Items per transaction, the conversation's count update included (2..=100).
    pub transaction_items: usize,
    /// Conversations written at once.
    pub concurrency: usize,
    /// Source entries read and planned at a time.
    pub source_batch: usize,
}

impl Default for MigrationOptions {
    fn default() -> Self {
        Self {
            session_gap: Duration::minutes(DEFAULT_SESSION_GAP_MINUTES),
            transaction_items: TRANSACTION_MAX_ITEMS,
            concurrency: 4,
            source_batch: 1000,
        }
    }
}

/// One message to migrate, already checked against the limits of a message.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceItem {
    /// Names the source item in reports (a memory sort key, or a dump's `_id`).
    pub key: String,
    pub message_id: MessageId,
    pub role: Role,
    pub content: String,
    pub timestamp: DateTime<Utc>,
    pub conversation: Option<ConversationId>,
    pub attachments: Vec<Attachment>,
    pub metadata: Metadata,
    /// The content's length in tokens, when the entry's writer counted it.
    pub token_count: Option<TokenCount>,
    /// Where its conversation keeps it, when a memory entry was also stored there by slot.
    pub slot: Option<keys::Slot>,
}

impl SourceItem {
    /// A source item from its parts, or why it cannot be migrated (the limits of a message).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        key: String,
        message_id: MessageId,
        role: Role,
        content: String,
        timestamp: DateTime<Utc>,
        conversation: Option<ConversationId>,
        attachments: Vec<Attachment>,
        metadata: Metadata,
    ) -> Result<Self, SkippedItem> {
        match NewMessage::parse(role, content, attachments, metadata, None) {
            Ok(message) => Ok(Self {
                key,
                message_id,
                role: message.role,
                content: message.content,
                timestamp,
                conversation,
                attachments: message.attachments,
                metadata: message.metadata,
                token_count: None,
                slot: None,
            }),
            Err(error) => Err(SkippedItem {
                key,
                reason: error.to_string(),
            }),
        }
    }

    /// A short-term memory entry keeps its own id: an entry that was also saved to its
    /// conversation is that very message, and is found there instead of copied.
    pub fn from_memory(key: String, entry: MemoryEntry) -> Result<Self, SkippedItem> {
        let item = Self::new(
            key,
            entry.id,
            entry.role,
            entry.content,
            entry.timestamp,
            entry.conversation_id,
            entry.attachments,
            entry.metadata,
        )?;
        Ok(Self {
            token_count: entry.token_count,
            slot: entry.slot,
            ..item
        })
    }
}

/// The id of a message migrated from an item of another system, derived from its key.
pub fn derived_message_id(user: &UserId, source_key: &str) -> MessageId {
    MessageId::from(Uuid::new_v5(
        &ID_NAMESPACE,
        format!("message/{user}/{source_key}").as_bytes(),
    ))
}

/// The id a conversation of another system gets here, derived from its id there.
pub fn derived_conversation_id(user: &UserId, legacy_id: &str) -> ConversationId {
    ConversationId::from(Uuid::new_v5(
        &ID_NAMESPACE,
        format!("conversation/{user}/{legacy_id}").as_bytes(),
    ))
}

fn session_id(user: &UserId, first_key: &str) -> ConversationId {
    ConversationId::from(Uuid::new_v5(
        &ID_NAMESPACE,
        format!("session/{user}/{first_key}").as_bytes(),
    ))
}

/// The messages going into one conversation, in time order.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub conversation: ConversationId,
    pub items: Vec<SourceItem>,
}

/// Assigns items to conversations: their own, or a session. Items within the span of a known
/// session join it; an item within `gap` after a session's last entry extends it; any other
/// starts a session whose id derives from its first item. Returns the groups and every
/// session, known and new, as they stand after the items.
pub fn group(
    user: &UserId,
    mut items: Vec<SourceItem>,
    known: &[Session],
    gap: Duration,
) -> (Vec<Group>, Vec<Session>) {
    items.sort_by(|a, b| {
        (a.timestamp, a.message_id, &a.key).cmp(&(b.timestamp, b.message_id, &b.key))
    });
    let mut sessions: Vec<Session> = known.to_vec();
    let mut groups: BTreeMap<ConversationId, Vec<SourceItem>> = BTreeMap::new();
    let mut order: Vec<ConversationId> = Vec::new();
    for item in items {
        let conversation = match item.conversation {
            Some(id) => id,
            None => {
                let ts = item.timestamp;
                let within = sessions.iter().position(|s| s.first <= ts && ts <= s.last);
                let extends = || {
                    sessions
                        .iter()
                        .enumerate()
                        .filter(|(_, s)| s.last < ts && ts - s.last <= gap)
                        .max_by_key(|(_, s)| s.last)
                        .map(|(i, _)| i)
                };
                match within.or_else(extends) {
                    Some(i) => {
                        let session = &mut sessions[i];
                        session.last = session.last.max(ts);
                        session.conversation_id
                    }
                    None => {
                        let id = session_id(user, &item.key);
                        sessions.push(Session {
                            conversation_id: id,
                            first: ts,
                            last: ts,
                        });
                        id
                    }
                }
            }
        };
        let entry = groups.entry(conversation).or_default();
        if entry.is_empty() {
            order.push(conversation);
        }
        entry.push(item);
    }
    let groups = order
        .into_iter()
        .map(|id| Group {
            conversation: id,
            items: groups.remove(&id).unwrap_or_default(),
        })
        .collect();
    (groups, sessions)
}

/// Runs migrations over the store.
#[derive(Clone)]
pub struct Migrator {
    store: Store,
    options: MigrationOptions,
    cache: Cache,
}

impl Migrator {
    pub fn new(store: Store, options: MigrationOptions) -> Self {
        Self {
            store,
            options,
            cache: Cache::disabled(),
        }
    }

    /// A migrator that invalidates the cached reads of each user it writes for.
    pub fn with_cache(self, cache: Cache) -> Self {
        Self { cache, ..self }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Migrates what the user's short-term memory holds past their recorded progress.
    #[tracing::instrument(skip_all, fields(user = %user.log_hash(), dry_run))]
    pub async fn migrate_memory(
        &self,
        user: &UserId,
        dry_run: bool,
        now: DateTime<Utc>,
    ) -> Result<UserSummary, Error> {
        let mut summary = UserSummary::new(user, dry_run);
        let mut state = self.store.migration_state(user).await?.unwrap_or_default();
        let mut read_after = state.migrated_through.clone();
        let mut created = HashSet::new();
        let settled_at = now - Duration::minutes(SETTLE_MARGIN_MINUTES);
        let settled = keys::memory_sort_key(settled_at, &MessageId::from(Uuid::nil()));
        loop {
            let (held, more) = self
                .store
                .held_memory(user, read_after.as_deref(), self.options.source_batch)
                .await?;
            let Some(last_key) = held.last().map(|h| h.key.clone()) else {
                break;
            };
            let mut items = Vec::with_capacity(held.len());
            for HeldMemory { key, entry } in held {
                let item = entry
                    .map_err(|reason| SkippedItem {
                        key: key.clone(),
                        reason,
                    })
                    .and_then(|entry| SourceItem::from_memory(key, entry));
                match item {
                    Ok(item) => items.push(item),
                    Err(skipped) => summary.skipped.push(skipped),
                }
            }
            let (groups, sessions) = group(user, items, &state.sessions, self.options.session_gap);
            state.sessions = sessions;
            if !dry_run {
                // Record the sessions before writing into them: a re-run puts every entry
                // where this one did, even if some entries have expired meanwhile.
                self.store.save_migration_state(user, &state).await?;
            }
            self.apply(user, groups, dry_run, &mut created, &mut summary)
                .await?;
            // Keep the sessions later entries can still join: the latest, and any that entries
            // read again (those after the settled point) belong to.
            let latest = state.sessions.iter().map(|s| s.last).max();
            let rejoinable = settled_at - self.options.session_gap;
            state
                .sessions
                .retain(|s| Some(s.last) == latest || s.last >= rejoinable);
            state.migrated_through = Some(last_key.clone().min(settled.clone()));
            if !dry_run {
                self.store.save_migration_state(user, &state).await?;
            }
            if !more {
                break;
            }
            read_after = Some(last_key);
        }
        Ok(summary)
    }

    /// Migrates items of another system (a dump of its short-term memory): the same grouping
    /// and conditional writes, without recorded progress (the ids make a re-run harmless).
    pub async fn migrate_items(
        &self,
        user: &UserId,
        items: Vec<Result<SourceItem, SkippedItem>>,
        dry_run: bool,
    ) -> Result<UserSummary, Error> {
        let mut summary = UserSummary::new(user, dry_run);
        let mut good = Vec::with_capacity(items.len());
        for item in items {
            match item {
                Ok(item) => good.push(item),
                Err(skipped) => summary.skipped.push(skipped),
            }
        }
        let (groups, _) = group(user, good, &[], self.options.session_gap);
        self.apply(user, groups, dry_run, &mut HashSet::new(), &mut summary)
            .await?;
        Ok(summary)
    }

    /// Writes the groups (or, in a dry run, counts what writing them would do).
    async fn apply(
        &self,
        user: &UserId,
        groups: Vec<Group>,
        dry_run: bool,
        created: &mut HashSet<ConversationId>,
        summary: &mut UserSummary,
    ) -> Result<(), Error> {
        let ids: Vec<ConversationId> = groups.iter().map(|g| g.conversation).collect();
        let mut existing = self.store.existing_conversations(user, &ids).await?;
        existing.extend(created.iter().copied());
        let all: Vec<Message> = groups
            .iter()
            // Where each would be if stored already: by slot, for an entry saved by slot.
            .flat_map(|g| {
                g.items.iter().map(|item| Message {
                    slot: item.slot,
                    ..message(g.conversation, item)
                })
            })
            .collect();
        let stored = self.store.existing_messages(user, &all).await?;

        let mut plans = Vec::with_capacity(groups.len());
        for group in groups {
            let plan = ConversationPlan::new(group, &existing, &stored);
            summary.messages_already_present += plan.already_present;
            if plan.create {
                created.insert(plan.id);
            }
            plans.push(plan);
        }
        if dry_run {
            summary.conversations_created += plans.iter().filter(|p| p.create).count() as u64;
            summary.messages_migrated += plans.iter().map(|p| p.messages.len() as u64).sum::<u64>();
            return Ok(());
        }
        let written: Result<Vec<Written>, Error> = stream::iter(plans)
            .map(|plan| self.write(user, plan))
            .buffer_unordered(self.options.concurrency.max(1))
            .try_collect()
            .await;
        self.cache.invalidate_user(user).await;
        let written = written?;
        for w in written {
            summary.conversations_created += u64::from(w.created);
            summary.messages_migrated += w.stored as u64;
            summary.messages_already_present += w.found_stored as u64;
            summary.messages_of_deleted_conversations += w.dropped as u64;
        }
        Ok(())
    }

    async fn write(&self, user: &UserId, plan: ConversationPlan) -> Result<Written, Error> {
        let mut written = Written::default();
        if plan.create {
            // Created with its first and last times: no activity to raise afterwards.
            let item = ConversationItem::migrated(
                user,
                plan.id,
                plan.auto_title.as_ref(),
                plan.first,
                plan.last,
            );
            match self.store.create_conversation_with_id(&item).await? {
                Creation::Created => written.created = true,
                Creation::AlreadyExists => {}
                // The user deleted it: what their memory still holds of it is not brought back.
                Creation::Deleted => {
                    written.dropped = plan.messages.len();
                    return Ok(written);
                }
            }
        }
        if !written.created
            && !plan.messages.is_empty()
            && self.store.holds_slots(user, &plan.id).await?
        {
            // A conversation that holds messages kept by slot: a time key would sort before
            // them, so these go after them, each by slot.
            let stored = self
                .store
                .append_migrated_by_slot(user, &plan.id, &plan.messages, plan.auto_title.as_ref())
                .await?;
            written.stored += stored;
            written.found_stored += plan.messages.len() - stored;
            return Ok(written);
        }
        for chunk in transaction_chunks(&plan.messages, self.options.transaction_items) {
            let stored = self
                .store
                .append_migrated(user, &plan.id, chunk, plan.auto_title.as_ref())
                .await?;
            written.stored += stored;
            written.found_stored += chunk.len() - stored;
        }
        if !plan.messages.is_empty() && !written.created {
            self.store
                .raise_last_activity(user, &plan.id, plan.last)
                .await?;
        }
        Ok(written)
    }
}

/// What migrating one group involves, after checking what is stored.
struct ConversationPlan {
    id: ConversationId,
    create: bool,
    auto_title: Option<Title>,
    first: DateTime<Utc>,
    last: DateTime<Utc>,
    /// The group's messages not stored yet, in time order.
    messages: Vec<Message>,
    already_present: u64,
}

impl ConversationPlan {
    fn new(group: Group, existing: &HashSet<ConversationId>, stored: &HashSet<MessageId>) -> Self {
        let first = group.items.first().map(|i| i.timestamp).unwrap_or_default();
        let last = group.items.last().map(|i| i.timestamp).unwrap_or_default();
        let auto_title = group
            .items
            .iter()
            .find(|i| i.role == Role::User)
            .map(|i| Title::derived_from(&i.content));
        let total = group.items.len();
        let messages: Vec<Message> = group
            .items
            .iter()
            .filter(|i| !stored.contains(&i.message_id))
            .map(|i| message(group.conversation, i))
            .collect();
        Self {
            id: group.conversation,
            create: !existing.contains(&group.conversation),
            auto_title,
            first,
            last,
            already_present: (total - messages.len()) as u64,
            messages,
        }
    }
}

#[derive(Default)]
struct Written {
    created: bool,
    stored: usize,
    /// Messages a concurrent or earlier writer stored after they were checked.
    found_stored: usize,
    /// Messages of a conversation the user deleted, left out.
    dropped: usize,
}

fn message(conversation: ConversationId, item: &SourceItem) -> Message {
    Message {
        id: item.message_id,
        conversation_id: conversation,
        role: item.role,
        content: item.content.clone(),
        timestamp: item.timestamp,
        attachments: item.attachments.clone(),
        metadata: item.metadata.clone(),
        client_message_id: None,
        client_timestamp: None,
        token_count: item.token_count.clone(),
        slot: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn user() -> UserId {
        UserId::parse("alice").unwrap()
    }

    fn at(minute: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 1, 9, 0, 0).unwrap() + Duration::minutes(minute)
    }

    fn item(key: &str, minute: i64, conversation: Option<ConversationId>) -> SourceItem {
        SourceItem::new(
            key.to_owned(),
            derived_message_id(&user(), key),
            if minute % 2 == 0 {
                Role::User
            } else {
                Role::Assistant
            },
            format!("said at {minute}"),
            at(minute),
            conversation,
            Vec::new(),
            Metadata::new(),
        )
        .unwrap()
    }

    fn gap() -> Duration {
        Duration::minutes(DEFAULT_SESSION_GAP_MINUTES)
    }

    fn keys_of(group: &Group) -> Vec<&str> {
        group.items.iter().map(|i| i.key.as_str()).collect()
    }

    #[test]
    fn entries_naming_a_conversation_go_into_it_whatever_their_times() {
        let named = ConversationId::generate();
        let items = vec![item("b", 500, Some(named)), item("a", 0, Some(named))];
        let (groups, sessions) = group(&user(), items, &[], gap());
        assert_eq!(groups.len(), 1);
        assert_eq!(groups[0].conversation, named);
        assert_eq!(keys_of(&groups[0]), ["a", "b"]);
        assert!(sessions.is_empty());
    }

    #[test]
    fn entries_without_one_split_into_sessions_at_each_gap_longer_than_the_limit() {
        let items = vec![
            item("c", 40, None),
            item("a", 0, None),
            item("b", 30, None),
            item("d", 71, None),
        ];
        let (groups, sessions) = group(&user(), items, &[], gap());
        let split: Vec<Vec<&str>> = groups.iter().map(keys_of).collect();
        // 0 → 30 is exactly the gap (same session); 40 → 71 is one minute more (a new one).
        assert_eq!(split, [vec!["a", "b", "c"], vec!["d"]]);
        assert_eq!(sessions.len(), 2);
        assert_eq!((sessions[0].first, sessions[0].last), (at(0), at(40)));
    }

    #[test]
    fn mixed_entries_keep_their_conversation_and_sessions_ignore_them() {
        let named = ConversationId::generate();
        let items = vec![
            item("a", 0, None),
            item("x", 20, Some(named)),
            item("b", 25, None),
            item("y", 90, Some(named)),
        ];
        let (groups, _) = group(&user(), items, &[], gap());
        let split: Vec<(ConversationId, Vec<&str>)> = groups
            .iter()
            .map(|g| (g.conversation, keys_of(g)))
            .collect();
        assert_eq!(split.len(), 2);
        assert_eq!(split[1], (named, vec!["x", "y"]));
        assert_eq!(split[0].1, ["a", "b"]);
    }

    #[test]
    fn the_same_entries_always_get_the_same_conversations_and_message_ids() {
        let items = || vec![item("a", 0, None), item("b", 100, None)];
        let (first, _) = group(&user(), items(), &[], gap());
        let (second, _) = group(&user(), items(), &[], gap());
        assert_eq!(first, second);
        assert_ne!(first[0].conversation, first[1].conversation);
        assert_eq!(
            derived_message_id(&user(), "a"),
            derived_message_id(&user(), "a")
        );
        let bob = UserId::parse("bob").unwrap();
        assert_ne!(
            derived_message_id(&user(), "a"),
            derived_message_id(&bob, "a")
        );
    }

    #[test]
    fn entries_within_a_known_session_join_it_even_when_its_first_entry_is_gone() {
        let (groups, sessions) = group(
            &user(),
            vec![item("a", 0, None), item("b", 10, None), item("c", 20, None)],
            &[],
            gap(),
        );
        // A re-run after "a" expired: "b" and "c" still go where they went the first time.
        let (again, _) = group(
            &user(),
            vec![item("b", 10, None), item("c", 20, None)],
            &sessions,
            gap(),
        );
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].conversation, groups[0].conversation);
    }

    #[test]
    fn a_later_entry_within_the_gap_continues_the_last_session() {
        let (groups, sessions) = group(&user(), vec![item("a", 0, None)], &[], gap());
        let (later, after) = group(&user(), vec![item("b", 29, None)], &sessions, gap());
        assert_eq!(later[0].conversation, groups[0].conversation);
        assert_eq!(after[0].last, at(29));
        let (much_later, _) = group(&user(), vec![item("c", 120, None)], &after, gap());
        assert_ne!(much_later[0].conversation, groups[0].conversation);
    }

    #[test]
    fn an_item_over_a_message_limit_is_skipped_with_its_key() {
        let skipped = SourceItem::new(
            "big".into(),
            derived_message_id(&user(), "big"),
            Role::User,
            "x".repeat(crate::model::MAX_CONTENT_BYTES + 1),
            at(0),
            None,
            Vec::new(),
            Metadata::new(),
        )
        .unwrap_err();
        assert_eq!(skipped.key, "big");
        assert!(skipped.reason.contains("bytes"), "{}", skipped.reason);
    }
}
