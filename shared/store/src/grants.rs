//! Sharing a conversation with a person (docs/sharing.md, "With a person"): the owner grants
//! another user read access to one conversation. Two items per grant, written and deleted
//! together: the owner's (`GRANT#<grantee>` in the conversation's partition, so a delete of
//! the conversation finds them, and its purge removes them) and the grantee's
//! (`USER#<grantee>#GRANTS`, `GRANT#<conversation>`, naming the owner). A grantee's request
//! reaches the owner's conversation only through their own item: what was not granted to
//! them, no key they can build names.

use aws_sdk_dynamodb::types::{ConditionCheck, Delete, Put, TransactWriteItem, Update};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use domain::error::Error;
use domain::keys;
use domain::model::{Conversation, ConversationId, UserId};

use super::{from_item, item_key, n, to_item, ConversationItem, Item, Store};

/// The most people one conversation can be shared with.
pub const MAX_GRANTS_PER_CONVERSATION: usize = 100;
/// The most conversations that can be shared with one person at a time: each page of their
/// `/shared-with-me` reads every one (docs/sharing.md).
pub const MAX_GRANTS_PER_GRANTEE: usize = 200;

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
    /// Grants `grantee` read access to the user's conversation; sharing it again with them
    /// changes nothing. The grant's items and both counts are written in one transaction,
    /// whose conditions hold the limits whatever runs beside it. `NotFound` for a conversation
    /// the user does not have; `Invalid` past the people a conversation can be shared with;
    /// `Conflict` past the conversations a person can have shared with them.
    pub async fn grant(
        &self,
        owner: &UserId,
        conversation: &ConversationId,
        grantee: &UserId,
        now: DateTime<Utc>,
    ) -> Result<Grant, Error> {
        if let Some(existing) = self.grant_of(owner, conversation, grantee).await? {
            return Ok(existing);
        }
        let owners = OwnerGrantItem {
            pk: keys::conversation_partition(owner, conversation),
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
            self.count_change(
                owner_count_key(owner, conversation),
                1,
                Some(MAX_GRANTS_PER_CONVERSATION),
            )?,
            self.count_change(grantee_count_key(grantee), 1, Some(MAX_GRANTS_PER_GRANTEE))?,
        ];
        match self.transact(writes, "share with a person").await? {
            None => Ok(Grant {
                grantee: grantee.clone(),
                granted_at: now,
            }),
            Some(cancelled) if cancelled.condition_failed(0) => Err(Error::NotFound),
            // Granted meanwhile by another request.
            Some(cancelled) if cancelled.condition_failed(1) || cancelled.condition_failed(2) => {
                self.grant_of(owner, conversation, grantee)
                    .await?
                    .ok_or_else(|| {
                        Error::Conflict("the grant changed meanwhile: try again".into())
                    })
            }
            Some(cancelled) if cancelled.condition_failed(3) => Err(Error::invalid(format!(
                "a conversation can be shared with at most {MAX_GRANTS_PER_CONVERSATION} people"
            ))),
            Some(cancelled) if cancelled.condition_failed(4) => Err(Error::Conflict(format!(
                "that person has {MAX_GRANTS_PER_GRANTEE} conversations shared with them, the most they can have"
            ))),
            Some(cancelled) => Err(cancelled.into_error("share with a person")),
        }
    }

    /// The user's grant of their conversation to `grantee`, if there is one.
    async fn grant_of(
        &self,
        owner: &UserId,
        conversation: &ConversationId,
        grantee: &UserId,
    ) -> Result<Option<Grant>, Error> {
        let item = self
            .get(
                &keys::conversation_partition(owner, conversation),
                &keys::grant_sort_key(grantee),
            )
            .await?;
        item.map(|item| {
            from_item::<OwnerGrantItem>(item).map(|g| Grant {
                grantee: g.grantee,
                granted_at: g.granted_at,
            })
        })
        .transpose()
    }

    /// Adds `by` to a count item's `count`: up to `at_most` when given; down only where the
    /// count is (a purged conversation gets none back; a grant older than the counts has
    /// none). Written only beside the grant item it counts, on that item's condition.
    fn count_change(
        &self,
        key: Item,
        by: i64,
        at_most: Option<usize>,
    ) -> Result<TransactWriteItem, Error> {
        let update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key))
            .update_expression("ADD #count :by")
            .expression_attribute_names("#count", "count")
            .expression_attribute_values(":by", n(by));
        let update = match at_most {
            Some(at_most) => update
                .condition_expression("attribute_not_exists(#count) OR #count < :most")
                .expression_attribute_values(":most", n(at_most as i64)),
            None if by < 0 => update.condition_expression("attribute_exists(#count)"),
            None => update,
        };
        update
            .build()
            .map(|update| TransactWriteItem::builder().update(update).build())
            .map_err(|e| Error::internal("build a grant count", e))
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

    /// Takes back `grantee`'s access to the user's conversation: both items, and both counts,
    /// at once. `false` if they had none.
    pub async fn revoke_grant(
        &self,
        owner: &UserId,
        conversation: &ConversationId,
        grantee: &UserId,
    ) -> Result<bool, Error> {
        self.end_grant(owner, conversation, grantee, Ending::ByOwner)
            .await
    }

    /// The grantee declines the conversation `id` shared with them: as a revoke, found
    /// through their own item. `false` if it was not shared with them.
    pub async fn decline_grant(
        &self,
        grantee: &UserId,
        conversation: &ConversationId,
    ) -> Result<bool, Error> {
        let Some(owner) = self.granted_by(grantee, conversation).await? else {
            return Ok(false);
        };
        self.end_grant(&owner, conversation, grantee, Ending::ByGrantee)
            .await
    }

    /// Deletes a grant's two items, each with one less in its side's count, on the condition
    /// that each is there: the one of whoever ends it must be (else `false`); the other may be
    /// gone already (the grantee's, taken by the conversation's delete; the owner's, with its
    /// purged partition), and is then left out with its count, so no count goes down twice.
    /// A count item that is not there (a grant older than the counts) is left alone.
    async fn end_grant(
        &self,
        owner: &UserId,
        conversation: &ConversationId,
        grantee: &UserId,
        ending: Ending,
    ) -> Result<bool, Error> {
        let owners = GrantSide {
            item: item_key(
                &keys::conversation_partition(owner, conversation),
                &keys::grant_sort_key(grantee),
            ),
            count: Some(owner_count_key(owner, conversation)),
        };
        let grantees = GrantSide {
            item: item_key(
                &keys::grantee_partition(grantee),
                &keys::grantee_sort_key(conversation),
            ),
            count: Some(grantee_count_key(grantee)),
        };
        let mut sides = match ending {
            Ending::ByOwner => vec![owners, grantees],
            Ending::ByGrantee => vec![grantees, owners],
        };
        loop {
            // Which side, and whether its item (or else its count), each write is.
            let mut writes = Vec::with_capacity(4);
            let mut written = Vec::with_capacity(4);
            for (index, side) in sides.iter().enumerate() {
                writes.push(self.delete_item(side.item.clone(), true)?);
                written.push((index, true));
                if let Some(count) = &side.count {
                    writes.push(self.count_change(count.clone(), -1, None)?);
                    written.push((index, false));
                }
            }
            let cancelled = match self.transact(writes, "end a grant").await? {
                None => return Ok(true),
                Some(cancelled) => cancelled,
            };
            let failed = (0..written.len())
                .find(|at| cancelled.condition_failed(*at))
                .map(|at| written[at]);
            match failed {
                Some((0, true)) => return Ok(false),
                Some((side, true)) => {
                    sides.truncate(side);
                }
                Some((side, false)) => sides[side].count = None,
                None => return Err(cancelled.into_error("end a grant")),
            }
        }
    }

    fn delete_item(&self, key: Item, if_there: bool) -> Result<TransactWriteItem, Error> {
        Delete::builder()
            .table_name(&self.table)
            .set_key(Some(key))
            .set_condition_expression(if_there.then(|| "attribute_exists(PK)".to_owned()))
            .build()
            .map(|delete| TransactWriteItem::builder().delete(delete).build())
            .map_err(|e| Error::internal("build a grant's delete", e))
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

    /// Deletes the grantees' items of the user's conversation `id`, each with one less in its
    /// grantee's count (the owner's records and count go with its partition, after these):
    /// what deleting it takes back. Doing it again finds nothing more.
    pub(super) async fn forget_grants(
        &self,
        owner: &UserId,
        id: &ConversationId,
    ) -> Result<(), Error> {
        use futures::{StreamExt, TryStreamExt};
        let grants = self.grants(owner, id).await?;
        futures::stream::iter(grants)
            .map(|grant| async move {
                let mut writes = vec![
                    self.delete_item(
                        item_key(
                            &keys::grantee_partition(&grant.grantee),
                            &keys::grantee_sort_key(id),
                        ),
                        true,
                    )?,
                    self.count_change(grantee_count_key(&grant.grantee), -1, None)?,
                ];
                loop {
                    match self.transact(writes.clone(), "forget a grant").await? {
                        None => return Ok(()),
                        // Gone already (declined, or an earlier run of this).
                        Some(cancelled) if cancelled.condition_failed(0) => return Ok(()),
                        // No count (a grant older than the counts): the item alone.
                        Some(cancelled) if writes.len() == 2 && cancelled.condition_failed(1) => {
                            writes.truncate(1);
                        }
                        Some(cancelled) => return Err(cancelled.into_error("forget a grant")),
                    }
                }
            })
            .buffer_unordered(GRANTS_FORGOTTEN_AT_ONCE)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(())
    }
}

/// Grants taken back at once when their conversation is deleted (each its own transaction,
/// on items of different people).
const GRANTS_FORGOTTEN_AT_ONCE: usize = 8;

/// One side of a grant: its item, and the count it is in (when there is one to change).
struct GrantSide {
    item: Item,
    count: Option<Item>,
}

/// Who ends a grant: the owner (through their record) or the grantee (through theirs).
#[derive(Debug, Clone, Copy)]
enum Ending {
    ByOwner,
    ByGrantee,
}

fn owner_count_key(owner: &UserId, conversation: &ConversationId) -> Item {
    item_key(
        &keys::conversation_partition(owner, conversation),
        keys::GRANT_COUNT_SK,
    )
}

fn grantee_count_key(grantee: &UserId) -> Item {
    item_key(&keys::grantee_partition(grantee), keys::GRANTEE_COUNT_SK)
}
