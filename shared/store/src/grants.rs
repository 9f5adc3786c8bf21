//! Sharing a conversation with a person (docs/sharing.md, "With a person"): the owner grants
//! another user read access to one conversation. Two items per grant, written and deleted
//! together: the owner's (`GRANT#<grantee>` in the conversation's partition, so a delete of
//! the conversation finds them, and its purge removes them) and the grantee's
//! (`USER#<grantee>#GRANTS`, `GRANT#<conversation>`, naming the owner). A grantee's request
//! reaches the owner's conversation only through their own item: what was not granted to
//! them, no key they can build names.

use aws_sdk_dynamodb::types::{ConditionCheck, Put, TransactWriteItem};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use domain::error::Error;
use domain::keys;
use domain::model::{Conversation, ConversationId, UserId};

use super::{from_item, item_key, to_item, ConversationItem, Item, Store, BATCH_WRITE_MAX};

/// The most people one conversation can be shared with.
pub const MAX_GRANTS_PER_CONVERSATION: usize = 100;

/// The owner's record of a grant, in the conversation's partition.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct OwnerGrantItem {
    #[serde(rename = "PK")]
    pk: String,
    #[serde(rename = "SK")]
    sk: String,
    grantee: UserId,
    granted_at: DateTime<Utc>,
}

/// The grantee's item: which conversation of whose they may read.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GranteeItem {
    #[serde(rename = "PK")]
    pk: String,
    #[serde(rename = "SK")]
    sk: String,
    shared_by: UserId,
    conversation_id: ConversationId,
    granted_at: DateTime<Utc>,
}

/// A grant as its owner lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub grantee: UserId,
    pub granted_at: DateTime<Utc>,
}

/// A conversation shared with the caller, as it is now.
#[derive(Debug, Clone, PartialEq)]
pub struct SharedWithMe {
    pub shared_by: UserId,
    pub granted_at: DateTime<Utc>,
    pub conversation: Conversation,
}

impl Store {
    /// Grants `grantee` read access to the user's conversation. `Ok(false)` when they had it
    /// already (nothing changes). `NotFound` for a conversation the user does not have.
    pub async fn grant(
        &self,
        owner: &UserId,
        conversation: &ConversationId,
        grantee: &UserId,
        now: DateTime<Utc>,
    ) -> Result<Grant, Error> {
        let partition = keys::conversation_partition(owner, conversation);
        let granted = self.grants(owner, conversation).await?;
        if let Some(existing) = granted.iter().find(|g| &g.grantee == grantee) {
            return Ok(existing.clone());
        }
        if granted.len() >= MAX_GRANTS_PER_CONVERSATION {
            return Err(Error::invalid(format!(
                "a conversation can be shared with at most {MAX_GRANTS_PER_CONVERSATION} people"
            )));
        }
        let owners = OwnerGrantItem {
            pk: partition.clone(),
            sk: keys::grant_sort_key(grantee),
            grantee: grantee.clone(),
            granted_at: now,
        };
        let grantees = GranteeItem {
            pk: keys::grantee_partition(grantee),
            sk: keys::grantee_sort_key(conversation),
            shared_by: owner.clone(),
            conversation_id: *conversation,
            granted_at: now,
        };
        let put = |item: Item| {
            Put::builder()
                .table_name(&self.table)
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(PK)")
                .build()
                .map(|put| TransactWriteItem::builder().put(put).build())
                .map_err(|e| Error::internal("build a grant", e))
        };
        let writes = vec![
            TransactWriteItem::builder()
                .condition_check(
                    ConditionCheck::builder()
                        .table_name(&self.table)
                        .set_key(Some(super::conversation_key(owner, conversation)))
                        .condition_expression("attribute_exists(PK)")
                        .build()
                        .map_err(|e| Error::internal("build a grant", e))?,
                )
                .build(),
            put(to_item(&owners)?)?,
            put(to_item(&grantees)?)?,
        ];
        match self.transact(writes, "share with a person").await? {
            None => Ok(Grant {
                grantee: grantee.clone(),
                granted_at: now,
            }),
            Some(cancelled) if cancelled.condition_failed(0) => Err(Error::NotFound),
            // Granted meanwhile by another request.
            Some(cancelled) if cancelled.condition_failed(1) => self
                .grants(owner, conversation)
                .await?
                .into_iter()
                .find(|g| &g.grantee == grantee)
                .ok_or_else(|| Error::Conflict("the grant changed meanwhile: try again".into())),
            Some(cancelled) => Err(cancelled.into_error("share with a person")),
        }
    }

    /// The people the user's conversation is shared with, in the order of their ids.
    pub async fn grants(
        &self,
        owner: &UserId,
        conversation: &ConversationId,
    ) -> Result<Vec<Grant>, Error> {
        let partition = keys::conversation_partition(owner, conversation);
        let items = self
            .all_with_prefix(&partition, keys::GRANT_PREFIX, "read grants")
            .await?;
        items
            .into_iter()
            .map(|item| {
                from_item::<OwnerGrantItem>(item).map(|g| Grant {
                    grantee: g.grantee,
                    granted_at: g.granted_at,
                })
            })
            .collect()
    }

    /// Takes back `grantee`'s access to the user's conversation: both items at once. `false`
    /// if they had none.
    pub async fn revoke_grant(
        &self,
        owner: &UserId,
        conversation: &ConversationId,
        grantee: &UserId,
    ) -> Result<bool, Error> {
        self.delete_record_and_named(
            // The owner's record, in the owner's conversation, names the grant.
            item_key(
                &keys::conversation_partition(owner, conversation),
                &keys::grant_sort_key(grantee),
            ),
            item_key(
                &keys::grantee_partition(grantee),
                &keys::grantee_sort_key(conversation),
            ),
            "take back a grant",
        )
        .await
    }

    /// Who shared the conversation `id` with `grantee`, if anyone did (read consistently: a
    /// revoke is seen by the next request).
    pub async fn granted_by(
        &self,
        grantee: &UserId,
        id: &ConversationId,
    ) -> Result<Option<UserId>, Error> {
        let item = self
            .get(
                &keys::grantee_partition(grantee),
                &keys::grantee_sort_key(id),
            )
            .await?;
        item.map(|item| from_item::<GranteeItem>(item).map(|g| g.shared_by))
            .transpose()
    }

    /// Every conversation shared with `grantee` that still exists, as it is now (unordered).
    pub async fn shared_with(&self, grantee: &UserId) -> Result<Vec<SharedWithMe>, Error> {
        let items = self
            .all_with_prefix(
                &keys::grantee_partition(grantee),
                keys::GRANT_PREFIX,
                "read grants",
            )
            .await?;
        let grants = items
            .into_iter()
            .map(from_item::<GranteeItem>)
            .collect::<Result<Vec<_>, _>>()?;
        let keys = grants
            .iter()
            .map(|g| super::conversation_key(&g.shared_by, &g.conversation_id))
            .collect();
        let conversations = self.batch_get(keys, None).await?;
        let mut shared = Vec::with_capacity(conversations.len());
        for item in conversations {
            let mut conversation: Conversation = from_item::<ConversationItem>(item)?.into();
            // The owner's preset is theirs alone.
            conversation.preset = None;
            let Some(grant) = grants.iter().find(|g| {
                g.conversation_id == conversation.id && g.shared_by == conversation.user_id
            }) else {
                continue;
            };
            shared.push(SharedWithMe {
                shared_by: grant.shared_by.clone(),
                granted_at: grant.granted_at,
                conversation,
            });
        }
        Ok(shared)
    }

    /// Deletes the grantees' items of the user's conversation `id` (the owner's records go
    /// with its partition, after these): what deleting it takes back. Doing it again finds
    /// nothing more.
    pub(super) async fn forget_grants(
        &self,
        owner: &UserId,
        id: &ConversationId,
    ) -> Result<(), Error> {
        let keys: Vec<Item> = self
            .grants(owner, id)
            .await?
            .into_iter()
            .map(|g| {
                item_key(
                    &keys::grantee_partition(&g.grantee),
                    &keys::grantee_sort_key(id),
                )
            })
            .collect();
        for batch in keys.chunks(BATCH_WRITE_MAX) {
            self.delete_batch(batch.to_vec()).await?;
        }
        Ok(())
    }
}
