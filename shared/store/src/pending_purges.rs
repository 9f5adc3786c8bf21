//! Deletes the sweeper has still to check: every tombstone is written listed in the sparse
//! `ByPendingPurge` index (spread over `PURGE_SHARDS` partitions, oldest delete first) and
//! leaves it once a sweep found nothing of its conversation left, so a sweep reads only the
//! deletes it has work for.

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};

use super::{is_conditional_check_failure, item_key, position_in, s, start_key, Item, Store};
use domain::cursor::Position;
use domain::error::Error;
use domain::keys::{self, Index};
use domain::model::{ConversationId, UserId};

/// A deleted conversation whose copies the sweeper has still to check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingPurge {
    pub user: UserId,
    pub conversation: ConversationId,
    pub deleted_at: DateTime<Utc>,
}

/// A page of pending purges and where the next one starts (`None`: the shard holds no more).
pub struct PendingPurgePage {
    pub purges: Vec<PendingPurge>,
    pub next: Option<Position>,
}

impl Store {
    /// Up to `limit` deletes of shard `shard` made before `before`, oldest first, after `start`.
    pub async fn pending_purges(
        &self,
        shard: u32,
        before: DateTime<Utc>,
        limit: usize,
        start: Option<Position>,
    ) -> Result<PendingPurgePage, Error> {
        let (found, more) = self
            .read_up_to(
                limit,
                start.map(start_key),
                "read pending purges",
                |start, page| {
                    self.client
                        .query()
                        .table_name(&self.table)
                        .index_name(Index::ByPendingPurge.name())
                        .key_condition_expression("#shard = :shard AND #deleted < :before")
                        .expression_attribute_names("#shard", keys::PURGE_SHARD)
                        .expression_attribute_names("#deleted", keys::DELETED_AT)
                        .expression_attribute_values(":shard", s(&keys::purge_shard_key(shard)))
                        .expression_attribute_values(":before", s(&keys::sortable_time(before)))
                        .limit(page)
                        .set_exclusive_start_key(start)
                },
            )
            .await?;
        let next = more
            .then(|| {
                found
                    .last()
                    .map(|item| position_in(Index::ByPendingPurge, item))
            })
            .flatten();
        let purges = found.iter().filter_map(pending_purge).collect();
        Ok(PendingPurgePage { purges, next })
    }

    /// Takes the tombstone out of `ByPendingPurge`: nothing of its conversation is left. A
    /// tombstone already gone (its retention ended) stays gone.
    pub async fn purge_checked(
        &self,
        user: &UserId,
        conversation: &ConversationId,
    ) -> Result<(), Error> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(item_key(
                &keys::tombstone_partition(user),
                &keys::tombstone_sort_key(conversation),
            )))
            .update_expression("REMOVE #shard")
            .condition_expression("attribute_exists(PK)")
            .expression_attribute_names("#shard", keys::PURGE_SHARD)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if is_conditional_check_failure(&e) => Ok(()),
            Err(e) => Err(super::store_error("mark purge checked", e)),
        }
    }
}

/// The delete an index entry stands for; an entry of another shape is not one of ours.
fn pending_purge(item: &Item) -> Option<PendingPurge> {
    let text = |name: &str| match item.get(name) {
        Some(AttributeValue::S(value)) => Some(value.as_str()),
        _ => None,
    };
    let deleted_at = DateTime::parse_from_rfc3339(text(keys::DELETED_AT)?).ok()?;
    Some(PendingPurge {
        user: keys::parse_tombstone_partition(text(keys::PK)?)?,
        conversation: keys::parse_tombstone_sort_key(text(keys::SK)?)?,
        deleted_at: deleted_at.with_timezone(&Utc),
    })
}
