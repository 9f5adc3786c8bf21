//! Share links (`domain::share`): two items per link. The link's own (`SHARE#<token>`), which
//! a reader without an account reads by the token alone, and its owner's record of it
//! (`USER#<owner>#SHARES`, `LINK#<conversation>#<token>`), which only the owner's requests
//! can name: listing and revoking go through it, so no one reaches another's links.
//!
//! A link is the path from the root to its last message, fixed when it is made: messages are
//! never rewritten, so it shows the same messages whatever the owner adds, edits or switches
//! later. A reader's read checks the conversation and the link's last message are still there
//! (their delete revokes it), and the deletes remove the links they revoke (`forget_shares`).

use aws_sdk_dynamodb::types::{ConditionCheck, Put, TransactWriteItem};
use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use domain::cursor::Position;
use domain::error::Error;
use domain::keys::{self, MessageSortKey};
use domain::model::{Conversation, ConversationId, Message, MessageId, UserId};
use domain::share::{ShareLink, ShareOptions, ShareToken};
use domain::tree::Path;

use super::{from_item, item_key, s, to_item, Item, MessageItem, Store, BATCH_WRITE_MAX};

/// A link's own item: what a reader's request finds by its token.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LinkItem {
    #[serde(rename = "PK")]
    pk: String,
    #[serde(rename = "SK")]
    sk: String,
    /// Whose conversation it shows (never shown to a reader).
    shared_by: UserId,
    #[serde(flatten)]
    record: RecordFields,
    /// The sort key of its last message.
    up_to_key: String,
    /// From the root to its last message.
    path: Path,
}

/// What the owner's record and the link's item both hold: the link as its owner lists it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RecordFields {
    token: ShareToken,
    conversation_id: ConversationId,
    up_to: MessageId,
    title: String,
    created_at: DateTime<Utc>,
    /// The table's TTL attribute (epoch seconds): an expired link goes by itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires_at: Option<i64>,
    #[serde(default)]
    include_metadata: bool,
    #[serde(default)]
    include_attachments: bool,
}

/// The owner's record of a link.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct RecordItem {
    #[serde(rename = "PK")]
    pk: String,
    #[serde(rename = "SK")]
    sk: String,
    #[serde(flatten)]
    record: RecordFields,
}

impl RecordFields {
    fn link(&self) -> ShareLink {
        ShareLink {
            token: self.token.clone(),
            conversation_id: self.conversation_id,
            up_to: self.up_to,
            title: self.title.clone(),
            created_at: self.created_at,
            expires_at: self
                .expires_at
                .and_then(|at| Utc.timestamp_opt(at, 0).single()),
            include_metadata: self.include_metadata,
            include_attachments: self.include_attachments,
        }
    }
}

/// A live link as a reader's request found it: what it shows, and where.
#[derive(Debug, Clone)]
pub struct Shared {
    pub link: ShareLink,
    /// The owner: whose conversation, bucket prefix and content it reads (never shown).
    pub owner: UserId,
    up_to_key: MessageSortKey,
    path: Path,
}

/// A page of a user's links.
#[derive(Debug, Clone)]
pub struct ShareLinkPage {
    pub links: Vec<ShareLink>,
    pub next: Option<Position>,
}

impl Store {
    /// Makes a link to the user's conversation, ending at `options.up_to` (a message on the
    /// branch it shows) or at the newest message there. `NotFound` for a conversation or
    /// message the user does not have; `Conflict` for a message on another branch.
    pub async fn create_share(
        &self,
        user: &UserId,
        conversation: &ConversationId,
        options: &ShareOptions,
        now: DateTime<Utc>,
    ) -> Result<ShareLink, Error> {
        let partition = keys::conversation_partition(user, conversation);
        let item = self
            .conversation(user, conversation)
            .await?
            .ok_or(Error::NotFound)?;
        let path = item.path.clone().unwrap_or_else(Path::trunk);
        let last = match &options.up_to {
            None => self
                .path_messages_newest_first(&partition, &path, None, 1)
                .await?
                .into_iter()
                .next()
                .ok_or_else(|| Error::invalid("the conversation has no messages to share"))?,
            Some(id) => {
                let found = self
                    .find_message(&partition, &path, id)
                    .await?
                    .ok_or(Error::NotFound)?;
                found.item
            }
        };
        let shown = path.ending_at(&last.sk).ok_or_else(|| {
            Error::Conflict(
                "the message is not on the branch the conversation shows: switch to it first"
                    .into(),
            )
        })?;
        let record = RecordFields {
            token: ShareToken::generate(),
            conversation_id: *conversation,
            up_to: last.id(),
            title: Conversation::from(item).title,
            created_at: now,
            expires_at: options.expires_at.map(|at| at.timestamp()),
            include_metadata: options.include_metadata,
            include_attachments: options.include_attachments,
        };
        let link = LinkItem {
            pk: keys::share_partition(&record.token),
            sk: keys::SHARE_SK.to_owned(),
            shared_by: user.clone(),
            record: record.clone(),
            up_to_key: last.sk.as_str().to_owned(),
            path: shown,
        };
        let owners = RecordItem {
            pk: keys::share_records_partition(user),
            sk: keys::share_record_sort_key(conversation, &record.token),
            record,
        };
        let writes = vec![
            TransactWriteItem::builder()
                .condition_check(
                    ConditionCheck::builder()
                        .table_name(&self.table)
                        .set_key(Some(super::conversation_key(user, conversation)))
                        .condition_expression("attribute_exists(PK)")
                        .build()
                        .map_err(|e| Error::internal("build share check", e))?,
                )
                .build(),
            TransactWriteItem::builder()
                .put(self.put_absent(to_item(&link)?)?)
                .build(),
            TransactWriteItem::builder()
                .put(self.put_absent(to_item(&owners)?)?)
                .build(),
        ];
        match self.transact(writes, "share a conversation").await? {
            None => Ok(owners.record.link()),
            // Deleted meanwhile (a token never repeats).
            Some(cancelled) if cancelled.condition_failed(0) => Err(Error::NotFound),
            Some(cancelled) => Err(cancelled.into_error("share a conversation")),
        }
    }

    fn put_absent(&self, item: Item) -> Result<Put, Error> {
        Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(PK)")
            .build()
            .map_err(|e| Error::internal("build share put", e))
    }

    /// The user's links, of one conversation or of all, `limit` at a time (by conversation,
    /// then token), live ones only.
    pub async fn share_links(
        &self,
        user: &UserId,
        conversation: Option<&ConversationId>,
        limit: usize,
        start: Option<Position>,
        now: DateTime<Utc>,
    ) -> Result<ShareLinkPage, Error> {
        let partition = keys::share_records_partition(user);
        if let Some(position) = &start {
            if position.get(keys::PK) != Some(&partition) {
                return Err(Error::invalid("cursor is not valid for this request"));
            }
        }
        let prefix = match conversation {
            Some(id) => keys::share_records_prefix(id),
            None => keys::SHARE_RECORD_PREFIX.to_owned(),
        };
        let output = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("PK = :pk AND begins_with(SK, :prefix)")
            .expression_attribute_values(":pk", s(&partition))
            .expression_attribute_values(":prefix", s(&prefix))
            .limit(super::page_limit(limit))
            .set_exclusive_start_key(start.map(super::start_key))
            .send()
            .await
            .map_err(|e| super::store_error("list share links", e))?;
        let links = output
            .items
            .unwrap_or_default()
            .into_iter()
            .map(|item| from_item::<RecordItem>(item).map(|r| r.record.link()))
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .filter(|link| link.is_live(now))
            .collect();
        Ok(ShareLinkPage {
            links,
            next: output
                .last_evaluated_key
                .map(|key| super::position_of(&key)),
        })
    }

    /// Revokes the user's link to their conversation: both its items go at once. `false` if
    /// the user has no such link.
    pub async fn revoke_share(
        &self,
        user: &UserId,
        conversation: &ConversationId,
        token: &ShareToken,
    ) -> Result<bool, Error> {
        self.delete_record_and_named(
            // The owner's record names the link: only with it is the link deleted.
            item_key(
                &keys::share_records_partition(user),
                &keys::share_record_sort_key(conversation, token),
            ),
            item_key(&keys::share_partition(token), keys::SHARE_SK),
            "revoke a share link",
        )
        .await
    }

    /// The live link `token` names, read consistently (a revoke is seen by the next read):
    /// `None` when it was never made, is revoked or expired, or its conversation or the
    /// message it ends at is deleted.
    pub async fn shared(
        &self,
        token: &ShareToken,
        now: DateTime<Utc>,
    ) -> Result<Option<Shared>, Error> {
        let Some(item) = self
            .get(&keys::share_partition(token), keys::SHARE_SK)
            .await?
        else {
            return Ok(None);
        };
        let item: LinkItem = from_item(item)?;
        let link = item.record.link();
        if !link.is_live(now) {
            return Ok(None);
        }
        let up_to_key = MessageSortKey::parse(&item.up_to_key)
            .ok_or_else(|| Error::internal("read a share link", "its last message's key"))?;
        let shared = Shared {
            owner: item.shared_by,
            up_to_key,
            path: item.path,
            link,
        };
        let partition = keys::conversation_partition(&shared.owner, &shared.link.conversation_id);
        // Deleting the conversation, or the message the link ends at, revokes it at once,
        // whatever the deletes' cleanup has done.
        let (conversation, last) = futures::try_join!(
            self.get(&partition, keys::CONVERSATION_SK),
            self.get(&partition, shared.up_to_key.as_str()),
        )?;
        let last_is_there = last.is_some_and(|item| {
            MessageItem::from_attributes(item).is_ok_and(|m| m.id() == shared.link.up_to)
        });
        if conversation.is_none() || !last_is_there {
            return Ok(None);
        }
        Ok(Some(shared))
    }

    /// Up to `limit` messages of a link, newest first, from before the message under the sort
    /// key `before` (from its last message without), within a response's budget; and the
    /// sort key of the oldest returned when older ones remain (a reader's cursor holds only
    /// that: never the owner's partition). `ShareNotFound` once its last message is deleted
    /// (which revokes it).
    pub async fn shared_window(
        &self,
        shared: &Shared,
        limit: usize,
        before: Option<&str>,
    ) -> Result<(Vec<Message>, Option<String>), Error> {
        let partition = keys::conversation_partition(&shared.owner, &shared.link.conversation_id);
        let before = match before {
            None => None,
            Some(sk) => Some(
                MessageSortKey::parse(sk)
                    .filter(|key| shared.path.segment_of(key).is_some())
                    .ok_or_else(|| Error::invalid("cursor is not valid for this request"))?,
            ),
        };
        let messages = self
            .path_messages_newest_first(&partition, &shared.path, before.as_ref(), limit + 1)
            .await?;
        if before.is_none() && messages.first().map(MessageItem::id) != Some(shared.link.up_to) {
            return Err(Error::ShareNotFound);
        }
        let more = messages.len() > limit;
        let window = self.budgeted_window(None, messages, limit, more).await?;
        let older = window
            .older
            .and_then(|position| position.get(keys::SK).cloned());
        Ok((window.messages_newest_first, older))
    }

    /// Whether the user's conversation holds a message under `sort_key` (a continue's copy,
    /// written by an earlier attempt).
    pub async fn holds_message(
        &self,
        user: &UserId,
        conversation: &ConversationId,
        sort_key: &str,
    ) -> Result<bool, Error> {
        let partition = keys::conversation_partition(user, conversation);
        Ok(self.get(&partition, sort_key).await?.is_some())
    }

    /// Every message a link shows, oldest first, `page` at a time after `after`, with their
    /// content: what continuing it copies.
    pub async fn shared_messages_oldest_first(
        &self,
        shared: &Shared,
        after: Option<&MessageSortKey>,
        page: usize,
    ) -> Result<Vec<Message>, Error> {
        let items = self.shared_items_oldest_first(shared, after, page).await?;
        Ok(self
            .with_content(items)
            .await?
            .into_iter()
            .map(MessageItem::into_message)
            .collect())
    }

    /// The messages a link shows, oldest first, `page` at a time after `after`, for their
    /// attachments: content kept in the bucket (over 32 KiB) is not read, so theirs is empty.
    pub async fn shared_attachments_oldest_first(
        &self,
        shared: &Shared,
        after: Option<&MessageSortKey>,
        page: usize,
    ) -> Result<Vec<Message>, Error> {
        let items = self.shared_items_oldest_first(shared, after, page).await?;
        Ok(items.into_iter().map(MessageItem::into_message).collect())
    }

    async fn shared_items_oldest_first(
        &self,
        shared: &Shared,
        after: Option<&MessageSortKey>,
        page: usize,
    ) -> Result<Vec<MessageItem>, Error> {
        let partition = keys::conversation_partition(&shared.owner, &shared.link.conversation_id);
        self.path_messages_oldest_first(&partition, &shared.path, after, page)
            .await
    }

    /// Deletes the user's links to conversation `id` (those ending at one of `ending_at`
    /// only, when given): what deleting the conversation, or those messages, revokes.
    /// Deleting them again finds nothing.
    pub(super) async fn forget_shares(
        &self,
        user: &UserId,
        id: &ConversationId,
        ending_at: Option<&[MessageId]>,
    ) -> Result<(), Error> {
        let records = self
            .all_with_prefix(
                &keys::share_records_partition(user),
                &keys::share_records_prefix(id),
                "find a conversation's links",
            )
            .await?;
        let mut keys = Vec::new();
        for record in records {
            let record: RecordItem = from_item(record)?;
            if ending_at.is_some_and(|ids| !ids.contains(&record.record.up_to)) {
                continue;
            }
            keys.push(item_key(
                &keys::share_partition(&record.record.token),
                keys::SHARE_SK,
            ));
            keys.push(item_key(&record.pk, &record.sk));
        }
        for batch in keys.chunks(BATCH_WRITE_MAX) {
            self.delete_batch(batch.to_vec()).await?;
        }
        Ok(())
    }
}
