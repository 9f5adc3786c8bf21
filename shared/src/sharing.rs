//! Sharing a conversation (docs/sharing.md). As a read-only link: the owner makes, lists and
//! revokes links; anyone holding one reads the snapshot it shows; a signed-in reader copies it
//! into a conversation of their own ("continue"). With a person: the owner grants another
//! user read access to the conversation as it is now, and takes it back.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::attachments::{Attachments, Copied, DownloadLinks};
use crate::cache::Cache;
use crate::cursor::Position;
use crate::cursor_keys::Cursors;
use crate::error::Error;
use crate::model::ConversationWithMessages;
use crate::model::{Conversation, ConversationId, Message, MessageId, Title, UserId, UNTITLED};
use crate::service::Conversations;
use crate::store::{
    transaction_chunks, ConversationItem, Creation, Grant, ShareLinkPage, Shared, SharedWithMe,
    Store, TRANSACTION_MAX_ITEMS,
};
use domain::share::{ShareLink, ShareOptions, ShareToken};

/// Links listed per page, by default and at most.
pub const DEFAULT_SHARE_PAGE: usize = 50;
pub const MAX_SHARE_PAGE: usize = 100;
/// Messages a continue reads and copies at a time.
const COPY_PAGE: usize = 200;
/// How long a continue copies before it answers 503 to be sent again (within the function's
/// 29 seconds; the same request goes on where it stopped).
const COPY_BUDGET: std::time::Duration = std::time::Duration::from_secs(20);
/// How long making a link copies its files before it gives up (within the function's 29
/// seconds, with time for the copies under way and for taking the link back).
const SHARE_COPY_BUDGET: std::time::Duration = std::time::Duration::from_secs(15);
/// How much longer copies begun before that budget ran out may take.
const COPIES_UNDER_WAY: std::time::Duration = std::time::Duration::from_secs(5);

/// Names the copies continuing makes: one per reader, link and request id.
const CONTINUED_NAMESPACE: Uuid = Uuid::from_u128(0x6e756d69_6e61_5368_6172_65436f6e7469);

/// A page of a shared conversation as its readers see it.
#[derive(Debug, Clone)]
pub struct SharedPage {
    pub link: ShareLink,
    /// Oldest first; without metadata or attachments unless the owner chose to show them.
    pub messages: Vec<Message>,
    /// Download URLs of the files shown (only when the link shows attachments).
    pub downloads: DownloadLinks,
    pub older_messages: Option<String>,
}

/// What continuing made: the reader's copy, and whether this request made it.
#[derive(Debug, Clone)]
pub struct Continued {
    pub conversation: Conversation,
    pub created: bool,
}

/// Conversations shared with a person listed per page, by default and at most.
pub const DEFAULT_SHARED_WITH_ME_PAGE: usize = 20;
pub const MAX_SHARED_WITH_ME_PAGE: usize = 100;

#[derive(Clone)]
pub struct Sharing {
    store: Store,
    conversations: Conversations,
    cursors: Cursors,
    cache: Cache,
    attachments: Option<Attachments>,
}

impl Sharing {
    /// Over the conversations' operations (a grantee reads a conversation as its owner does).
    pub fn new(conversations: Conversations, attachments: Option<Attachments>) -> Self {
        Self {
            store: conversations.store().clone(),
            cursors: conversations.cursors().clone(),
            cache: conversations.cache().clone(),
            conversations,
            attachments,
        }
    }

    /// Shares the user's conversation up to a message of the branch it shows (its newest by
    /// default).
    #[tracing::instrument(skip_all, fields(conversation = %id))]
    pub async fn share(
        &self,
        user: &UserId,
        id: &ConversationId,
        options: ShareOptions,
        now: DateTime<Utc>,
    ) -> Result<ShareLink, Error> {
        let options = options.checked(now)?;
        let link = self.store.create_share(user, id, &options, now).await?;
        let Some(attachments) = self
            .attachments
            .as_ref()
            .filter(|_| link.include_attachments)
        else {
            return Ok(link);
        };
        // Readers download the link's own copies: their keys name no user and no
        // conversation.
        let deadline = tokio::time::Instant::now() + SHARE_COPY_BUDGET;
        // Copies under way at the deadline get a few seconds more, then are given up: the
        // function must live to take the link back.
        let copied = tokio::time::timeout_at(
            deadline + COPIES_UNDER_WAY,
            self.copy_files_for_link(attachments, &link.token, now, deadline),
        )
        .await
        .unwrap_or(Ok(Copied::OutOfTime));
        // Kept only if every file was copied and the link is still there: a delete while they
        // were copied removed it, and the purge worker may have deleted its copies before the
        // last were made.
        let kept = match &copied {
            Ok(Copied::All) => self.store.shared(&link.token, now).await?.is_some(),
            _ => false,
        };
        if kept {
            return Ok(link);
        }
        if let Err(error) = &copied {
            tracing::warn!(error = %crate::error::chain(error), "a link's files not copied; the link is taken back");
        }
        let was_there = self.store.revoke_share(user, id, &link.token).await;
        // Its item is gone: no reader is sent to its copies, and they go here (the purge
        // worker deletes them too, but may have run before the last were made).
        if was_there.is_ok() {
            if let Err(error) = attachments.delete_link_files(&link.token).await {
                tracing::warn!(error = %crate::error::chain(&error), "a link's copies not deleted; the purge worker deletes them");
            }
        }
        match (copied, was_there) {
            (Ok(Copied::OutOfTime), Ok(true)) => Err(Error::TooLarge(
                "the conversation has too many files to share at once: share it up to an \
                 earlier message, or without its files"
                    .into(),
            )),
            (Err(error), Ok(true)) => Err(error),
            (_, Err(error)) => Err(error),
            // Deleted, or its conversation or last message, while its files were copied.
            (_, Ok(false)) | (Ok(Copied::All), _) => Err(Error::NotFound),
        }
    }

    /// Copies the files of every message the link shows under its own prefix, a page at a
    /// time, none begun past `deadline`.
    async fn copy_files_for_link(
        &self,
        attachments: &Attachments,
        token: &ShareToken,
        now: DateTime<Utc>,
        deadline: tokio::time::Instant,
    ) -> Result<Copied, Error> {
        let shared = self.live(token, now).await?;
        let mut after = None;
        loop {
            if tokio::time::Instant::now() >= deadline {
                return Ok(Copied::OutOfTime);
            }
            let page = self
                .store
                .shared_attachments_oldest_first(&shared, after.as_ref(), COPY_PAGE)
                .await?;
            if attachments
                .copy_files_for_link(&shared.owner, &page, token, deadline)
                .await?
                == Copied::OutOfTime
            {
                return Ok(Copied::OutOfTime);
            }
            match page.last() {
                Some(last) if page.len() == COPY_PAGE => {
                    after = crate::keys::MessageSortKey::parse(&last.sort_key());
                }
                _ => return Ok(Copied::All),
            }
        }
    }

    /// The user's live links (of one conversation, or all), a page at a time.
    pub async fn links(
        &self,
        user: &UserId,
        conversation: Option<&ConversationId>,
        limit: usize,
        cursor: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(Vec<ShareLink>, Option<String>), Error> {
        let scope = format!("shares|{user}|{conversation:?}");
        let start = match cursor {
            Some(cursor) => Some(self.cursors.decode(&scope, cursor).await?),
            None => None,
        };
        let ShareLinkPage { links, next } = self
            .store
            .share_links(user, conversation, limit, start, now)
            .await?;
        let next = match next {
            Some(position) => Some(self.cursors.encode(&scope, position).await?),
            None => None,
        };
        Ok((links, next))
    }

    /// Revokes the user's link: its readers get 404 from the next request on.
    #[tracing::instrument(skip_all, fields(conversation = %id))]
    pub async fn revoke(
        &self,
        user: &UserId,
        id: &ConversationId,
        token: &ShareToken,
    ) -> Result<(), Error> {
        match self.store.revoke_share(user, id, token).await? {
            true => Ok(()),
            false => Err(Error::ShareNotFound),
        }
    }

    /// A page of what the link shows, newest `limit` messages first (returned oldest first),
    /// or the next older ones after `before`.
    pub async fn read(
        &self,
        token: &ShareToken,
        limit: usize,
        before: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<SharedPage, Error> {
        let shared = self.live(token, now).await?;
        // A reader's cursor names the message to go on before by its sort key alone: it is
        // signed, not secret, and the owner's partition would name them.
        let scope = format!("shared|{token}");
        let start = match before {
            Some(cursor) => Some(
                self.cursors
                    .decode(&scope, cursor)
                    .await?
                    .remove(crate::keys::SK)
                    .ok_or_else(|| Error::invalid("cursor is not valid for this request"))?,
            ),
            None => None,
        };
        let (newest_first, older) = self
            .store
            .shared_window(&shared, limit, start.as_deref())
            .await?;
        let older_messages = match older {
            Some(sk) => Some(
                self.cursors
                    .encode(&scope, Position::from([(crate::keys::SK.to_owned(), sk)]))
                    .await?,
            ),
            None => None,
        };
        let mut messages: Vec<Message> = newest_first
            .into_iter()
            .rev()
            .map(|message| shown_to_readers(&shared.link, message))
            .collect();
        let downloads = match (&self.attachments, shared.link.include_attachments) {
            (Some(attachments), true) => {
                attachments
                    .shared_download_links(&shared.link.token, messages.iter(), now)
                    .await?
            }
            _ => DownloadLinks::new(),
        };
        // Readers learn nothing of where it is kept.
        for message in &mut messages {
            message.conversation_id = ConversationId::from(Uuid::nil());
        }
        Ok(SharedPage {
            link: shared.link,
            messages,
            downloads,
            older_messages,
        })
    }

    /// Copies what the link shows into a new conversation of `reader`'s, theirs alone from
    /// then on. With a `request_id`, exactly once: the same request again finds the copy
    /// (and finishes it, if the first attempt stopped part way).
    #[tracing::instrument(skip_all)]
    pub async fn continue_shared(
        &self,
        reader: &UserId,
        token: &ShareToken,
        request_id: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Continued, Error> {
        let shared = self.live(token, now).await?;
        let id = match request_id {
            Some(request) => ConversationId::from(Uuid::new_v5(
                &CONTINUED_NAMESPACE,
                format!("{reader}\n{token}\n{request}").as_bytes(),
            )),
            None => ConversationId::generate(),
        };
        let title = (shared.link.title != UNTITLED)
            .then(|| Title::parse(&shared.link.title))
            .transpose()?;
        let item = ConversationItem::new(reader, id, title.as_ref(), Vec::new(), now);
        let created = match self.store.create_conversation_with_id(&item).await? {
            Creation::Created => true,
            Creation::AlreadyExists => false,
            Creation::Deleted => {
                return Err(Error::Superseded(
                    "the copy this requestId made was deleted: continue with another requestId"
                        .into(),
                ))
            }
        };
        let deadline = tokio::time::Instant::now() + COPY_BUDGET;
        let copied = Box::pin(self.copy_messages(&shared, reader, &id, deadline)).await;
        self.cache.invalidate_user(reader).await;
        let last_copied = copied?;
        // The copy holds the link's messages only if the last one copied is the link's last:
        // else the owner deleted some of them while it was made (which ends the link).
        if last_copied != Some(shared.link.up_to) {
            return Err(Error::ShareNotFound);
        }
        // Files are copied from the link's own copies, which go with it: a link ended while
        // this ran may have had them deleted under it. The same request again answers 404.
        if self.store.shared(token, now).await?.is_none() {
            return Err(Error::ShareNotFound);
        }
        let conversation = self
            .store
            .conversation(reader, &id)
            .await?
            .ok_or(Error::NotFound)?;
        Ok(Continued {
            conversation: conversation.into(),
            created,
        })
    }

    /// Writes the link's messages into the reader's conversation `into`, oldest first, each
    /// under an id of its own derived from the original's (so a retry writes none twice), with
    /// their files copied when the link shows them; returns the id of the last original. A
    /// page whose last message an earlier attempt copied is passed over (its messages and
    /// files are there: transactions go in order). Past `deadline`, 503: the same request
    /// again goes on.
    async fn copy_messages(
        &self,
        shared: &Shared,
        reader: &UserId,
        into: &ConversationId,
        deadline: tokio::time::Instant,
    ) -> Result<Option<MessageId>, Error> {
        let mut after = None;
        let mut last_copied = None;
        loop {
            if tokio::time::Instant::now() >= deadline {
                return Err(still_copying());
            }
            let page = self
                .store
                .shared_messages_oldest_first(shared, after.as_ref(), COPY_PAGE)
                .await?;
            let Some(last) = page.last() else {
                return Ok(last_copied);
            };
            after = crate::keys::MessageSortKey::parse(&last.sort_key());
            last_copied = Some(last.id);
            let full = page.len() == COPY_PAGE;
            let last_copy = copy_of(last.clone(), into);
            if self
                .store
                .holds_message(reader, into, &last_copy.sort_key())
                .await?
            {
                if !full {
                    return Ok(last_copied);
                }
                continue;
            }
            let shown: Vec<Message> = page
                .into_iter()
                .map(|message| shown_to_readers(&shared.link, message))
                .collect();
            if let (Some(attachments), true) = (&self.attachments, shared.link.include_attachments)
            {
                if attachments
                    .copy_shared_files(&shared.link.token, &shown, reader, into, deadline)
                    .await?
                    == Copied::OutOfTime
                {
                    return Err(still_copying());
                }
            }
            let copies: Vec<Message> = shown
                .into_iter()
                .map(|message| copy_of(message, into))
                .collect();
            for chunk in transaction_chunks(&copies, TRANSACTION_MAX_ITEMS) {
                self.store
                    .append_migrated(reader, into, chunk, None)
                    .await?;
            }
            if !full {
                return Ok(last_copied);
            }
        }
    }

    /// Shares the owner's conversation with `grantee`: they read it as it is now, from then
    /// on, until the owner takes it back. Sharing it again changes nothing.
    #[tracing::instrument(skip_all, fields(conversation = %id))]
    pub async fn share_with(
        &self,
        owner: &UserId,
        id: &ConversationId,
        grantee: &UserId,
        now: DateTime<Utc>,
    ) -> Result<Grant, Error> {
        if owner == grantee {
            return Err(Error::invalid("a conversation is its owner's already"));
        }
        self.store.grant(owner, id, grantee, now).await
    }

    /// The people the owner's conversation is shared with.
    pub async fn people(&self, owner: &UserId, id: &ConversationId) -> Result<Vec<Grant>, Error> {
        if self.store.conversation(owner, id).await?.is_none() {
            return Err(Error::NotFound);
        }
        self.store.grants(owner, id).await
    }

    /// Takes back `grantee`'s access: their next request gets 404.
    #[tracing::instrument(skip_all, fields(conversation = %id))]
    pub async fn unshare(
        &self,
        owner: &UserId,
        id: &ConversationId,
        grantee: &UserId,
    ) -> Result<(), Error> {
        match self.store.revoke_grant(owner, id, grantee).await? {
            true => Ok(()),
            false => Err(Error::NotFound),
        }
    }

    /// `grantee` declines the conversation `id` shared with them: it leaves their list, and
    /// the owner's, as if the owner had taken it back.
    #[tracing::instrument(skip_all, fields(conversation = %id))]
    pub async fn decline(&self, grantee: &UserId, id: &ConversationId) -> Result<(), Error> {
        match self.store.decline_grant(grantee, id).await? {
            true => Ok(()),
            false => Err(Error::NotFound),
        }
    }

    /// The conversations shared with `grantee`, as they are now, newest activity first, a
    /// page at a time. Each page reads every grant of theirs and its conversation (what keeps
    /// the order current without a write per append): docs/sharing.md says what that costs.
    pub async fn shared_with_me(
        &self,
        grantee: &UserId,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<(Vec<SharedWithMe>, Option<String>), Error> {
        let scope = format!("shared-with-me|{grantee}");
        let after = match cursor {
            Some(cursor) => Some(place_in_list(&self.cursors.decode(&scope, cursor).await?)?),
            None => None,
        };
        let mut shared = self.store.shared_with(grantee).await?;
        shared.sort_by_key(|s| std::cmp::Reverse(place_of(s)));
        let mut page: Vec<SharedWithMe> = shared
            .into_iter()
            .filter(|s| after.as_ref().is_none_or(|after| place_of(s) < *after))
            .take(limit + 1)
            .collect();
        let more = page.len() > limit;
        page.truncate(limit);
        let next = match page.last().filter(|_| more) {
            Some(last) => {
                let (at, id) = place_of(last);
                let position = Position::from([
                    ("at".to_owned(), at.to_string()),
                    ("id".to_owned(), id.to_string()),
                ]);
                Some(self.cursors.encode(&scope, position).await?)
            }
            None => None,
        };
        Ok((page, next))
    }

    /// A conversation shared with `grantee`, read as its owner reads it (the branch it shows,
    /// as it is now), and who shared it; `NotFound` when it was not shared with them.
    pub async fn read_shared_with_me(
        &self,
        grantee: &UserId,
        id: &ConversationId,
        limit: usize,
        before: Option<&str>,
    ) -> Result<(UserId, ConversationWithMessages), Error> {
        let owner = self
            .store
            .granted_by(grantee, id)
            .await?
            .ok_or(Error::NotFound)?;
        let mut found = self.conversations.get(&owner, id, limit, before).await?;
        // The owner's preset and its instructions are theirs alone.
        found.settings = None;
        found.conversation.preset = None;
        Ok((owner, found))
    }

    async fn live(&self, token: &ShareToken, now: DateTime<Utc>) -> Result<Shared, Error> {
        self.store
            .shared(token, now)
            .await?
            .ok_or(Error::ShareNotFound)
    }
}

/// A continue out of time: the same request again goes on where it stopped.
fn still_copying() -> Error {
    Error::Unavailable("the conversation is still being copied: send the request again".into())
}

/// A message as a link's readers get it: without what the owner chose not to show, nor
/// anything of their own devices.
fn shown_to_readers(link: &ShareLink, mut message: Message) -> Message {
    if !link.include_metadata {
        message.metadata.clear();
    }
    if !link.include_attachments {
        message.attachments.clear();
    }
    message.client_message_id = None;
    message.client_timestamp = None;
    message
}

/// A reader's copy of a shared message in their conversation `into`.
fn copy_of(message: Message, into: &ConversationId) -> Message {
    let id = MessageId::from(Uuid::new_v5(
        &CONTINUED_NAMESPACE,
        format!("{into}\n{}", message.id).as_bytes(),
    ));
    Message {
        id,
        conversation_id: *into,
        slot: None,
        ..message
    }
}

/// Where a conversation stands in a list of those shared with someone: its last activity (in
/// microseconds), then its id.
fn place_of(shared: &SharedWithMe) -> (i64, ConversationId) {
    (
        shared.conversation.last_activity.timestamp_micros(),
        shared.conversation.id,
    )
}

fn place_in_list(position: &Position) -> Result<(i64, ConversationId), Error> {
    let invalid = || Error::invalid("cursor is not valid for this request");
    let at = position
        .get("at")
        .and_then(|at| at.parse().ok())
        .ok_or_else(invalid)?;
    let id = position
        .get("id")
        .and_then(|id| ConversationId::parse(id).ok())
        .ok_or_else(invalid)?;
    Ok((at, id))
}
