//! Sharing a conversation as a read-only link (docs/sharing.md): the owner makes, lists and
//! revokes links; anyone holding one reads the snapshot it shows; a signed-in reader copies it
//! into a conversation of their own ("continue").

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::attachments::{Attachments, DownloadLinks};
use crate::cache::Cache;
use crate::cursor_keys::Cursors;
use crate::error::Error;
use crate::model::{Conversation, ConversationId, Message, MessageId, Title, UserId, UNTITLED};
use crate::store::{
    transaction_chunks, ConversationItem, Creation, ShareLinkPage, Shared, Store,
    TRANSACTION_MAX_ITEMS,
};
use domain::share::{ShareLink, ShareOptions, ShareToken};

/// Links listed per page, by default and at most.
pub const DEFAULT_SHARE_PAGE: usize = 50;
pub const MAX_SHARE_PAGE: usize = 100;
/// Messages a continue reads and copies at a time.
const COPY_PAGE: usize = 200;

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

#[derive(Clone)]
pub struct Sharing {
    store: Store,
    cursors: Cursors,
    cache: Cache,
    attachments: Option<Attachments>,
}

impl Sharing {
    pub fn new(
        store: Store,
        cursors: Cursors,
        cache: Cache,
        attachments: Option<Attachments>,
    ) -> Self {
        Self {
            store,
            cursors,
            cache,
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
        self.store.create_share(user, id, &options, now).await
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
        let scope = format!("shared|{token}");
        let start = match before {
            Some(cursor) => Some(self.cursors.decode(&scope, cursor).await?),
            None => None,
        };
        let window = self.store.shared_window(&shared, limit, start).await?;
        let older_messages = match window.older {
            Some(position) => Some(self.cursors.encode(&scope, position).await?),
            None => None,
        };
        let mut messages: Vec<Message> = window
            .messages_newest_first
            .into_iter()
            .rev()
            .map(|message| shown_to_readers(&shared.link, message))
            .collect();
        let downloads = match (&self.attachments, shared.link.include_attachments) {
            (Some(attachments), true) => {
                attachments
                    .download_links(&shared.owner, messages.iter(), now)
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
        let copied = self.copy_messages(&shared, reader, &id).await;
        self.cache.invalidate_user(reader).await;
        copied?;
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
    /// their files copied when the link shows them.
    async fn copy_messages(
        &self,
        shared: &Shared,
        reader: &UserId,
        into: &ConversationId,
    ) -> Result<(), Error> {
        let mut after = None;
        loop {
            let page = self
                .store
                .shared_messages_oldest_first(shared, after.as_ref(), COPY_PAGE)
                .await?;
            let Some(last) = page.last() else {
                return Ok(());
            };
            after = crate::keys::MessageSortKey::parse(&last.sort_key());
            let full = page.len() == COPY_PAGE;
            let copies: Vec<Message> = page
                .into_iter()
                .map(|message| shown_to_readers(&shared.link, message))
                .collect();
            if let (Some(attachments), true) = (&self.attachments, shared.link.include_attachments)
            {
                attachments
                    .copy_files(&shared.owner, &copies, reader, into)
                    .await?;
            }
            let copies: Vec<Message> = copies
                .into_iter()
                .map(|message| copy_of(message, into))
                .collect();
            for chunk in transaction_chunks(&copies, TRANSACTION_MAX_ITEMS) {
                self.store
                    .append_migrated(reader, into, chunk, None)
                    .await?;
            }
            if !full {
                return Ok(());
            }
        }
    }

    async fn live(&self, token: &ShareToken, now: DateTime<Utc>) -> Result<Shared, Error> {
        self.store
            .shared(token, now)
            .await?
            .ok_or(Error::ShareNotFound)
    }
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
