//! The operations the product offers on conversations (the specification's
//! ConversationService). Every operation is scoped to the calling user by the keys it uses.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;

use crate::attachments::{log_cascade_failure, Attachments};
use crate::cache::{Cache, Cached};
use crate::cursor::Position;
use crate::cursor_keys::Cursors;
use crate::error::Error;
use crate::keys::{self, Index};
use crate::model::{
    kept_client_timestamp, Appended, ArchiveFilter, Conversation, ConversationId,
    ConversationWithMessages, Edited, Message, MessageId, NewMessage, Page, Role, SortOrder, Tags,
    Title, UserId,
};
use crate::store::{AppendOutcome, ConversationChange, ConversationItem, Creation, Store};

pub const DEFAULT_PAGE_SIZE: usize = 20;
pub const MAX_PAGE_SIZE: usize = 100;
pub const DEFAULT_MESSAGE_WINDOW: usize = 50;
pub const MAX_MESSAGE_WINDOW: usize = 200;
/// The furthest page the legacy `page` parameter may ask for (each page before it is read).
pub const MAX_LEGACY_PAGE: usize = 50;
/// The most conversations a legacy `page` may pass over (each is read on the way): past it,
/// `nextCursor` pages on at the cost of one page.
pub const MAX_LEGACY_OFFSET: usize = 1_000;
/// The same with a title search, whose pages each read up to several times their size.
pub const MAX_LEGACY_SEARCH_OFFSET: usize = 200;
pub const MAX_SEARCH_CHARS: usize = 100;

/// What a listing asks for, already within bounds.
#[derive(Debug, Clone, PartialEq)]
pub struct ListRequest {
    pub filter: ArchiveFilter,
    pub sort: SortOrder,
    pub limit: usize,
    pub cursor: Option<String>,
    /// Case-insensitive substring of the title.
    pub search: Option<String>,
    /// Legacy page number (1-based) for clients that predate cursors.
    pub page: Option<usize>,
}

impl Default for ListRequest {
    fn default() -> Self {
        Self {
            filter: ArchiveFilter::ActiveOnly,
            sort: SortOrder::LastActivity,
            limit: DEFAULT_PAGE_SIZE,
            cursor: None,
            search: None,
            page: None,
        }
    }
}

/// How long a deleted conversation's tombstone is kept, by default: a sync cursor older than
/// this must sync from scratch.
pub const DEFAULT_TOMBSTONE_RETENTION_DAYS: i64 = 30;

/// What a delete did: the conversation is gone at once; its messages may still be being
/// removed by the purge worker when the request's time budget ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deleted {
    pub messages_purged: bool,
}

/// The conversation operations, over the store.
#[derive(Clone)]
pub struct Conversations {
    store: Store,
    cursors: Cursors,
    cache: Cache,
    attachments: Option<Attachments>,
    tombstone_retention: chrono::Duration,
}

impl Conversations {
    pub fn new(store: Store, cursors: Cursors, cache: Cache) -> Self {
        Self {
            store,
            cursors,
            cache,
            attachments: None,
            tombstone_retention: chrono::Duration::days(DEFAULT_TOMBSTONE_RETENTION_DAYS),
        }
    }

    /// Conversations whose deletions stay in their owner's change log for `retention`.
    pub fn with_tombstone_retention(self, retention: chrono::Duration) -> Self {
        Self {
            tombstone_retention: retention,
            ..self
        }
    }

    pub fn tombstone_retention(&self) -> chrono::Duration {
        self.tombstone_retention
    }

    pub fn cursors(&self) -> &Cursors {
        &self.cursors
    }

    /// Conversations whose attachments are deleted with them.
    pub fn with_attachments(self, attachments: Option<Attachments>) -> Self {
        Self {
            attachments,
            ..self
        }
    }

    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    #[tracing::instrument(skip_all)]
    pub async fn create(
        &self,
        user: &UserId,
        title: Option<Title>,
        tags: Tags,
        now: DateTime<Utc>,
    ) -> Result<Conversation, Error> {
        let item = ConversationItem::new(
            user,
            ConversationId::generate(),
            title.as_ref(),
            tags.into_vec(),
            now,
        );
        let created = self.store.put_new_conversation(&item).await;
        self.cache.invalidate_user(user).await;
        created?;
        crate::metrics::conversation_created();
        Ok(item.into())
    }

    /// Creates a conversation that keeps the settings of the user's preset `preset`: its
    /// instructions, model, output limit and temperature, and (without `tags`) its default
    /// tags. `Invalid` when the user has no such preset.
    #[tracing::instrument(skip_all)]
    pub async fn create_with_preset(
        &self,
        user: &UserId,
        title: Option<Title>,
        tags: Option<Tags>,
        preset: &crate::model::PresetId,
        now: DateTime<Utc>,
    ) -> Result<Conversation, Error> {
        let preset = self
            .store
            .preset(user, preset)
            .await?
            .ok_or_else(|| Error::invalid("presetId names no preset of yours"))?;
        let tags = match tags {
            Some(tags) => tags,
            None => Tags::parse(&preset.fields.default_tags)?,
        };
        let settings = domain::preset::ConversationSettings::from(&preset);
        let item = ConversationItem::new(
            user,
            ConversationId::generate(),
            title.as_ref(),
            tags.into_vec(),
            now,
        );
        let created = self
            .store
            .put_new_conversation_with_settings(&item, &settings)
            .await;
        self.cache.invalidate_user(user).await;
        created?;
        crate::metrics::conversation_created();
        let mut conversation: Conversation = item.into();
        conversation.preset = Some(domain::preset::PresetRef::from(&settings));
        Ok(conversation)
    }

    /// Applies the user's preset `preset` to their conversation again: it keeps that preset's
    /// settings as they are now, from the next completion on.
    #[tracing::instrument(skip_all, fields(conversation = %id))]
    pub async fn apply_preset(
        &self,
        user: &UserId,
        id: &ConversationId,
        preset: &crate::model::PresetId,
        now: DateTime<Utc>,
    ) -> Result<Conversation, Error> {
        // Whose conversation first: a preset's error says nothing of another's.
        if self.store.conversation(user, id).await?.is_none() {
            return Err(Error::NotFound);
        }
        let preset = self
            .store
            .preset(user, preset)
            .await?
            .ok_or_else(|| Error::invalid("presetId names no preset of yours"))?;
        let settings = domain::preset::ConversationSettings::from(&preset);
        let applied = self.store.apply_settings(user, id, &settings, now).await;
        self.cache.invalidate_user(user).await;
        if !applied? {
            return Err(Error::NotFound);
        }
        self.store
            .conversation(user, id)
            .await?
            .map(Conversation::from)
            .ok_or(Error::NotFound)
    }

    /// Creates a conversation under an id the caller derived (from an app's own id for a
    /// conversation made offline), so that creating it again returns the same conversation.
    /// A conversation deleted since is not made again.
    #[tracing::instrument(skip_all, fields(conversation = %id))]
    pub async fn create_with_id(
        &self,
        user: &UserId,
        id: ConversationId,
        title: Option<Title>,
        tags: Tags,
        now: DateTime<Utc>,
    ) -> Result<Conversation, Error> {
        let item = ConversationItem::new(user, id, title.as_ref(), tags.into_vec(), now);
        let created = self.store.create_conversation_with_id(&item).await;
        self.cache.invalidate_user(user).await;
        match created? {
            Creation::Created => {
                crate::metrics::conversation_created();
                Ok(item.into())
            }
            Creation::AlreadyExists => self
                .store
                .conversation(user, &id)
                .await?
                .map(Conversation::from)
                .ok_or(Error::NotFound),
            Creation::Deleted => Err(Error::Superseded(
                "this conversation was deleted; it is not created again".to_owned(),
            )),
        }
    }

    /// Adds a message. With a client message id, a repeat of the same append returns the
    /// message stored the first time and stores nothing.
    #[tracing::instrument(skip_all, fields(conversation = %id))]
    pub async fn add_message(
        &self,
        user: &UserId,
        id: &ConversationId,
        new: NewMessage,
        now: DateTime<Utc>,
    ) -> Result<Appended, Error> {
        self.append(user, id, new, None, now).await
    }

    /// Adds `new`, the answer to the message `prompt`: as [`Conversations::add_message`] does
    /// while the conversation shows the prompt's branch, else beside it on a branch of its own
    /// at the prompt (`store::Store::append_reply`), so an answer stays with its question
    /// whatever edits and switches came while it was written.
    #[tracing::instrument(skip_all, fields(conversation = %id))]
    pub async fn add_reply(
        &self,
        user: &UserId,
        id: &ConversationId,
        prompt: &Message,
        new: NewMessage,
        now: DateTime<Utc>,
    ) -> Result<Appended, Error> {
        self.append(user, id, new, Some(prompt), now).await
    }

    async fn append(
        &self,
        user: &UserId,
        id: &ConversationId,
        new: NewMessage,
        prompt: Option<&Message>,
        now: DateTime<Utc>,
    ) -> Result<Appended, Error> {
        let auto_title = (new.role == Role::User).then(|| Title::derived_from(&new.content));
        let message = Message {
            id: MessageId::generate(),
            conversation_id: *id,
            role: new.role,
            content: new.content,
            timestamp: now,
            attachments: new.attachments,
            metadata: new.metadata,
            client_message_id: new
                .client_message_id
                .as_ref()
                .map(|c| c.as_str().to_owned()),
            client_timestamp: kept_client_timestamp(new.client_timestamp, now),
            token_count: new.token_count,
            slot: None,
        };
        let outcome = match prompt {
            Some(prompt) => {
                self.store
                    .append_reply(user, prompt, &message, new.client_message_id.as_ref())
                    .await
            }
            None => {
                self.store
                    .append_message(
                        user,
                        &message,
                        new.client_message_id.as_ref(),
                        auto_title.as_ref(),
                    )
                    .await
            }
        };
        self.cache.invalidate_user(user).await;
        match outcome? {
            AppendOutcome::Stored(stored) => {
                crate::metrics::message_added(stored.content.len());
                Ok(Appended {
                    message: stored,
                    replayed: false,
                })
            }
            AppendOutcome::AlreadyStored(original) => Ok(Appended {
                message: original,
                replayed: true,
            }),
            AppendOutcome::ConversationMissing => Err(Error::NotFound),
        }
    }

    /// Edits the user's message `target` (`domain::tree`): `edited`'s content becomes a new
    /// message beside it, under the same parent, on a branch of its own that becomes the
    /// active one. The edited message and its branch stay. An assistant's `edited` regenerates
    /// the reply `target` the same way.
    #[tracing::instrument(skip_all, fields(conversation = %id))]
    pub async fn edit_message(
        &self,
        user: &UserId,
        id: &ConversationId,
        target: &MessageId,
        edited: NewMessage,
        now: DateTime<Utc>,
    ) -> Result<Edited, Error> {
        let message = Message {
            id: MessageId::generate(),
            conversation_id: *id,
            role: edited.role,
            content: edited.content,
            timestamp: now,
            attachments: edited.attachments,
            metadata: edited.metadata,
            client_message_id: edited
                .client_message_id
                .as_ref()
                .map(|c| c.as_str().to_owned()),
            client_timestamp: kept_client_timestamp(edited.client_timestamp, now),
            token_count: edited.token_count,
            slot: None,
        };
        let outcome = self
            .store
            .edit_message(
                user,
                id,
                target,
                &message,
                edited.client_message_id.as_ref(),
            )
            .await;
        self.cache.invalidate_user(user).await;
        let (outcome, siblings) = outcome?;
        match outcome {
            AppendOutcome::Stored(message) => {
                crate::metrics::message_added(message.content.len());
                Ok(Edited {
                    message,
                    siblings,
                    replayed: false,
                })
            }
            AppendOutcome::AlreadyStored(message) => Ok(Edited {
                message,
                siblings,
                replayed: true,
            }),
            AppendOutcome::ConversationMissing => Err(Error::NotFound),
        }
    }

    /// Makes the newest leaf under the message `target` (or under its sibling at `position`)
    /// the conversation's active one (`domain::tree`), and returns the conversation as it now
    /// reads.
    #[tracing::instrument(skip_all, fields(conversation = %id))]
    pub async fn switch_branch(
        &self,
        user: &UserId,
        id: &ConversationId,
        target: &MessageId,
        position: Option<u32>,
        made_at: DateTime<Utc>,
    ) -> Result<ConversationWithMessages, Error> {
        let switched = self
            .store
            .switch_branch(user, id, target, position, made_at)
            .await;
        if matches!(switched, Ok(true)) {
            self.cache.invalidate_user(user).await;
            // An export shows the branch shown: one written before would be handed out again
            // (its version does not change with the branch).
            if let Some(attachments) = &self.attachments {
                if let Err(error) = attachments.delete_conversation_exports(user, id).await {
                    log_cascade_failure(&error);
                }
            }
        }
        switched?;
        self.get_from_store(user, id, DEFAULT_MESSAGE_WINDOW, None)
            .await
    }

    /// Deletes the user's message `target` and every message that grew from it
    /// (`store::prune`), with what was derived from them: the conversation's summary, their
    /// short-term memory and completion records, their content in S3, and the conversation's
    /// exported files. `budget` bounds the deletes (a request sent again goes on).
    #[tracing::instrument(skip_all, fields(conversation = %id))]
    pub async fn delete_message(
        &self,
        user: &UserId,
        id: &ConversationId,
        target: &MessageId,
        budget: Duration,
    ) -> Result<u64, Error> {
        let deleted = self.store.delete_message(user, id, target, budget).await;
        self.cache.invalidate_user(user).await;
        let deleted = deleted?;
        if let Some(attachments) = &self.attachments {
            // The files expire within days in any case; a failure here is logged for them.
            if let Err(error) = attachments.delete_conversation_exports(user, id).await {
                log_cascade_failure(&error);
            }
        }
        Ok(deleted.messages)
    }

    /// A page of the user's conversations: from the cache when it holds this page for the
    /// user's current generation, else from the store (and then cached).
    #[tracing::instrument(skip_all)]
    pub async fn list(
        &self,
        user: &UserId,
        request: ListRequest,
    ) -> Result<Page<Conversation>, Error> {
        if let Some(page) = request.page {
            let passed_over = page.saturating_sub(1) * request.limit;
            let most = match request.search {
                Some(_) => MAX_LEGACY_SEARCH_OFFSET,
                None => MAX_LEGACY_OFFSET,
            };
            if passed_over > most {
                return Err(Error::invalid(format!(
                    "page {page} of {} passes over {passed_over} conversations; a page number \
                     may pass over at most {most}{}: page on with nextCursor",
                    request.limit,
                    if request.search.is_some() {
                        " with search"
                    } else {
                        ""
                    },
                )));
            }
        }
        let key = format!(
            "{:?}|{:?}|{}|{:?}|{:?}|{:?}",
            request.filter,
            request.sort,
            request.limit,
            request.cursor,
            request.search,
            request.page
        );
        self.cache_aside(user, Cached::ConversationList, &key, || {
            self.list_from_store(user, request)
        })
        .await
    }

    async fn list_from_store(
        &self,
        user: &UserId,
        request: ListRequest,
    ) -> Result<Page<Conversation>, Error> {
        let search = request.search.as_deref().map(str::to_lowercase);
        let search = search.as_deref();
        let limit = request.limit;
        let (index, partition) = match (request.sort, request.filter) {
            (SortOrder::LastActivity, ArchiveFilter::All) => {
                // Both archive states' partitions of `ByStateActivity`, merged
                // (`Store::all_by_activity`), in the scope of the single index this replaced:
                // its cursors still decode (and start from the top), rather than fail.
                let scope = format!(
                    "list|{user}|ByActivity|{}|{}",
                    keys::owner(user),
                    search.unwrap_or_default()
                );
                return self
                    .page_of(&scope, &request, |start| async move {
                        let (found, next) = self
                            .store
                            .all_by_activity(user, limit, start, search)
                            .await?;
                        Ok((found.into_iter().map(|(_, item)| item).collect(), next))
                    })
                    .await;
            }
            (SortOrder::LastActivity, ArchiveFilter::ActiveOnly) => {
                (Index::ByStateActivity, keys::owner_state(user, false))
            }
            (SortOrder::LastActivity, ArchiveFilter::ArchivedOnly) => {
                (Index::ByStateActivity, keys::owner_state(user, true))
            }
            (SortOrder::CreatedAt, ArchiveFilter::All) => (Index::ByCreated, keys::owner(user)),
            (SortOrder::CreatedAt, ArchiveFilter::ActiveOnly) => {
                (Index::ByStateCreated, keys::owner_state(user, false))
            }
            (SortOrder::CreatedAt, ArchiveFilter::ArchivedOnly) => {
                (Index::ByStateCreated, keys::owner_state(user, true))
            }
        };
        let scope = format!(
            "list|{user}|{}|{partition}|{}",
            index.name(),
            search.unwrap_or_default()
        );
        let partition = partition.as_str();
        self.page_of(&scope, &request, |start| async move {
            self.store
                .list_conversations(index, partition, limit, start, search)
                .await
        })
        .await
    }

    /// The page `request` asks for, read by `read` (a page after a position, and where the
    /// listing continues), its cursors bound to `scope`.
    async fn page_of<F, R>(
        &self,
        scope: &str,
        request: &ListRequest,
        read: R,
    ) -> Result<Page<Conversation>, Error>
    where
        R: Fn(Option<Position>) -> F,
        F: std::future::Future<Output = Result<(Vec<ConversationItem>, Option<Position>), Error>>,
    {
        let mut start = match request.cursor.as_deref() {
            Some(cursor) => Some(self.cursors.decode(scope, cursor).await?),
            None => None,
        };
        // Legacy page numbers walk the pages before the one asked for.
        for _ in 1..request.page.unwrap_or(1) {
            match read(start).await?.1 {
                Some(next) => start = Some(next),
                None => {
                    return Ok(Page {
                        items: Vec::new(),
                        next_cursor: None,
                    })
                }
            }
        }
        let (items, next) = read(start).await?;
        let next_cursor = match next {
            Some(position) => Some(self.cursors.encode(scope, position).await?),
            None => None,
        };
        Ok(Page {
            items: items.into_iter().map(Conversation::from).collect(),
            next_cursor,
        })
    }

    /// The user's most recently active conversation that is not archived, if any.
    pub async fn latest_active(&self, user: &UserId) -> Result<Option<Conversation>, Error> {
        let (latest, _) = self
            .store
            .list_conversations(
                Index::ByStateActivity,
                &keys::owner_state(user, false),
                1,
                None,
                None,
            )
            .await?;
        Ok(latest.into_iter().next().map(Conversation::from))
    }

    /// The conversation with its newest `limit` messages (oldest first), or with the next
    /// older ones when `older_than` continues an earlier call.
    #[tracing::instrument(skip_all, fields(conversation = %id))]
    pub async fn get(
        &self,
        user: &UserId,
        id: &ConversationId,
        limit: usize,
        older_than: Option<&str>,
    ) -> Result<ConversationWithMessages, Error> {
        let key = format!("{id}|{limit}|{older_than:?}");
        self.cache_aside(user, Cached::Conversation, &key, || {
            self.get_from_store(user, id, limit, older_than)
        })
        .await
    }

    /// The value under the user's current cache generation, or else `load`'s (then cached).
    pub(crate) async fn cache_aside<T, F, Fut>(
        &self,
        user: &UserId,
        kind: Cached,
        key: &str,
        load: F,
    ) -> Result<T, Error>
    where
        T: serde::Serialize + serde::de::DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<T, Error>>,
    {
        let generation = self.cache.generation(user).await;
        if let Some(generation) = generation {
            if let Some(hit) = self.cache.get(user, generation, kind, key).await {
                return Ok(hit);
            }
        }
        let value = load().await?;
        if let Some(generation) = generation {
            self.cache.put(user, generation, kind, key, &value).await;
        }
        Ok(value)
    }

    async fn get_from_store(
        &self,
        user: &UserId,
        id: &ConversationId,
        limit: usize,
        older_than: Option<&str>,
    ) -> Result<ConversationWithMessages, Error> {
        let scope = format!("messages|{user}|{id}");
        let start = match older_than {
            Some(cursor) => Some(self.cursors.decode(&scope, cursor).await?),
            None => None,
        };
        let window = self
            .store
            .conversation_window(user, id, limit, start)
            .await?;
        let conversation = window.conversation.ok_or(Error::NotFound)?;
        // Its preset's settings, only for a conversation started with one.
        let settings = match conversation.preset() {
            Some(_) => self.store.conversation_settings(user, id).await?,
            None => None,
        };
        let mut messages = window.messages_newest_first;
        messages.reverse();
        let older_messages = match window.older {
            Some(position) => Some(self.cursors.encode(&scope, position).await?),
            None => None,
        };
        Ok(ConversationWithMessages {
            conversation: conversation.into(),
            messages,
            older_messages,
            siblings: window.siblings,
            settings,
        })
    }

    #[tracing::instrument(skip_all, fields(conversation = %id))]
    pub async fn rename(
        &self,
        user: &UserId,
        id: &ConversationId,
        title: Title,
        now: DateTime<Utc>,
    ) -> Result<Conversation, Error> {
        self.change(user, id, ConversationChange::Rename(&title), now)
            .await
    }

    #[tracing::instrument(skip_all, fields(conversation = %id))]
    pub async fn set_archived(
        &self,
        user: &UserId,
        id: &ConversationId,
        archived: bool,
        now: DateTime<Utc>,
    ) -> Result<Conversation, Error> {
        self.change(user, id, ConversationChange::Archive(archived), now)
            .await
    }

    #[tracing::instrument(skip_all, fields(conversation = %id))]
    pub async fn set_tags(
        &self,
        user: &UserId,
        id: &ConversationId,
        tags: Tags,
        now: DateTime<Utc>,
    ) -> Result<Conversation, Error> {
        let tags = tags.into_vec();
        self.change(user, id, ConversationChange::Tags(&tags), now)
            .await
    }

    async fn change(
        &self,
        user: &UserId,
        id: &ConversationId,
        change: ConversationChange<'_>,
        now: DateTime<Utc>,
    ) -> Result<Conversation, Error> {
        self.edit(user, id, change, now, now).await
    }

    /// Applies a change made at `made_at` (on a device, perhaps offline): of two changes to
    /// the same attribute the later made wins, whatever order they arrive in; the earlier one
    /// is refused with `Superseded` and changes nothing.
    #[tracing::instrument(skip_all, fields(conversation = %id))]
    pub async fn edit(
        &self,
        user: &UserId,
        id: &ConversationId,
        change: ConversationChange<'_>,
        made_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Conversation, Error> {
        let changed = self
            .store
            .change_conversation(user, id, change, made_at.min(now), now)
            .await;
        self.cache.invalidate_user(user).await;
        changed?.map(Conversation::from).ok_or(Error::NotFound)
    }

    /// Deletes the conversation (gone from every listing at once), then removes its messages
    /// for up to `purge_budget`; whatever is left, the purge worker removes.
    #[tracing::instrument(skip_all, fields(conversation = %id))]
    pub async fn delete(
        &self,
        user: &UserId,
        id: &ConversationId,
        now: DateTime<Utc>,
        purge_budget: Duration,
    ) -> Result<Deleted, Error> {
        let deleted = self
            .store
            .delete_conversation_item(user, id, now, now + self.tombstone_retention)
            .await;
        self.cache.invalidate_user(user).await;
        if !deleted? {
            return Err(Error::NotFound);
        }
        // The conversation is deleted: a failure to remove its messages now is the purge
        // worker's to finish (it runs on the delete's stream record), not the caller's error.
        let messages_purged = match self.purge(user, id, purge_budget).await {
            Ok(purged) => purged,
            Err(error) => {
                tracing::warn!(error = %crate::error::chain(&error), "purge failed; the worker goes on");
                false
            }
        };
        if !messages_purged {
            tracing::info!("purge continues in the background");
        }
        Ok(Deleted { messages_purged })
    }

    /// Whether the user deleted this conversation (within the tombstones' retention).
    pub async fn was_deleted(&self, user: &UserId, id: &ConversationId) -> Result<bool, Error> {
        self.store.was_deleted(user, id).await
    }

    /// Removes what is left of a deleted conversation; true once nothing is. First the
    /// copies of its exchanges outside its partition (short-term memory, completion records),
    /// which a context or a retried completion would otherwise still read.
    pub async fn purge(
        &self,
        user: &UserId,
        id: &ConversationId,
        budget: Duration,
    ) -> Result<bool, Error> {
        self.store.forget_conversation(user, id).await?;
        let purged = self
            .store
            .purge_conversation(user, id, Instant::now() + budget)
            .await?;
        if !purged {
            return Ok(false);
        }
        // Then its files; if that fails, the purge worker (on the table stream) tries again.
        match &self.attachments {
            Some(attachments) => match attachments.delete_conversation_objects(user, id).await {
                Ok(_) => Ok(true),
                Err(error) => {
                    log_cascade_failure(&error);
                    Ok(false)
                }
            },
            None => Ok(true),
        }
    }
}
