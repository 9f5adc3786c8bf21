//! Appending a message. Two ways, by the store's switch (`Store::with_slot_keys`):
//!
//! - **In a transaction** (the way before slots): the message under its time key, its
//!   conversation's count and activity, and its client message id's record, in one
//!   `TransactWriteItems` that a retry with the same id finds done. 12 write units at least:
//!   a transaction bills every item twice.
//! - **By slot** (`keys::Slot`): the message is put at the slot after the conversation's `tip`,
//!   on the condition that the slot is free, then counted on the conversation by moving the tip
//!   onto it, on the condition that the tip is the slot before. Only one writer can take a slot,
//!   so an occupied slot proves its message was stored, and counting it is idempotent: whoever
//!   finds a slot stored and not counted counts it (the next append, a retry, the indexer that
//!   the table's stream feeds: `Store::count_through`). 4 write units: the message, the
//!   conversation item and its `ByStateActivity` entry (a delete and a put); 5 with a client
//!   message id, whose record names the one slot every attempt of that append puts at.

use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeValue, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use domain::error::Error;
use domain::keys::{self, Slot};
use domain::model::{ClientMessageId, ConversationId, Message, Role, Title, UserId};

use super::summaries::PreviewDue;
use super::{from_item, put_new, s, store_error, to_item, Item, MessageItem, Store};

/// Records that a client message id was used, and for which message: the key of the message
/// stored with it (an append in a transaction), or the slot every attempt of that append puts
/// at (an append by slot; moved on only past a slot another message holds).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ClientMessageItem {
    #[serde(rename = "PK")]
    pk: String,
    #[serde(rename = "SK")]
    sk: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    entity: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    message_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    target: Option<String>,
}

/// What an append found.
pub enum AppendOutcome {
    /// Stored now: the message as kept (its slot, and its time, which an append by slot keeps
    /// after the time of the message before it).
    Stored(Message),
    /// The client message id was used before: this is the message stored then.
    AlreadyStored(Message),
    ConversationMissing,
}

/// Where the next append to a conversation goes: its tip, and its last activity (a message
/// kept by slot is never older than the one before it).
struct AppendPlace {
    tip: Option<Slot>,
    last_activity: DateTime<Utc>,
    /// The preview of a summary newer than the one the conversation's item holds, which the
    /// append brings in (`crate::summaries`).
    preview: Option<PreviewDue>,
}

impl AppendPlace {
    fn next(&self) -> Slot {
        self.tip.map_or(Slot::trunk(1), Slot::next)
    }
}

/// What an append in a transaction came to.
#[expect(
    clippy::large_enum_variant,
    reason = "returned once per append and matched at once, as `AppendOutcome` is"
)]
enum Transacted {
    Done(AppendOutcome),
    /// The conversation, or this client id's record, is kept by slot: the append goes on by
    /// slot.
    BySlot,
}

/// What a count writes on the conversation besides the tip, the count and the activity.
#[derive(Debug, Clone, Copy, Default)]
struct Counting<'a> {
    /// A first user message's title (kept only if the conversation has none).
    auto_title: Option<&'a Title>,
    preview: Option<&'a PreviewDue>,
}

impl<'a> Counting<'a> {
    fn titled(auto_title: Option<&'a Title>) -> Self {
        Self {
            auto_title,
            preview: None,
        }
    }
}

/// What counting a slot found.
#[derive(Debug, PartialEq, Eq)]
enum Counted {
    Now,
    Before,
    ConversationMissing,
}

/// How many slots an append tries while other appends to the same conversation take them
/// first (each try takes a slot, or counts one another append took).
const SLOT_ATTEMPTS: u32 = 25;

impl Store {
    /// Stores a message and counts it on its conversation, atomically: the message, the
    /// conversation's count and activity, and the client id record (when given) are one
    /// transaction, so the count cannot drift and a retried append cannot store twice.
    pub async fn append_message(
        &self,
        user: &UserId,
        message: &Message,
        client_id: Option<&ClientMessageId>,
        auto_title: Option<&Title>,
    ) -> Result<AppendOutcome, Error> {
        let message_item = self.message_item(user, message).await?;
        let content_object = message_item.content_object.clone();
        let outcome = if self.slot_keys {
            self.append_at_slot(user, message, message_item, client_id, auto_title)
                .await
        } else {
            match self
                .append_item(user, message, message_item.clone(), client_id, auto_title)
                .await
            {
                Ok(Transacted::Done(outcome)) => Ok(outcome),
                Ok(Transacted::BySlot) => {
                    self.append_at_slot(user, message, message_item, client_id, auto_title)
                        .await
                }
                Err(error) => Err(error),
            }
        };
        // This attempt's content object (its key is the message id's) belongs to no message
        // when the conversation is gone, or when a retry found the message an earlier attempt
        // stored under another id: stored under this id, it is this very object. After a
        // failure, the write may have landed with its answer lost: the object stays (it goes
        // with its conversation).
        let belongs_to_none = match &outcome {
            Ok(AppendOutcome::AlreadyStored(found)) => found.id != message.id,
            Ok(AppendOutcome::ConversationMissing) => true,
            Ok(AppendOutcome::Stored(_)) | Err(_) => false,
        };
        if belongs_to_none {
            if let Some(key) = content_object {
                self.delete_content(&key).await;
            }
        }
        outcome
    }

    async fn append_item(
        &self,
        user: &UserId,
        message: &Message,
        message_item: MessageItem,
        client_id: Option<&ClientMessageId>,
        auto_title: Option<&Title>,
    ) -> Result<Transacted, Error> {
        let partition = keys::conversation_partition(user, &message.conversation_id);
        let message_key = message_item.sk.as_str().to_owned();
        let now = keys::sortable_time(message.timestamp);

        // No `changedAt`: the change log places an append by its last activity
        // (`Store::changes_after`), so `ByChange` does not move.
        let shed = self.shed_stored_twice();
        let mut update_expression =
            format!("SET lastActivity = :now, updatedAt = :now ADD messageCount :one {shed}");
        let mut update = Update::builder()
            .table_name(&self.table)
            .key(keys::PK, s(&partition))
            .key(keys::SK, s(keys::CONVERSATION_SK))
            // Not into a conversation that holds slots: `append_message` appends by slot there.
            .condition_expression("attribute_exists(PK) AND attribute_not_exists(tip)")
            .expression_attribute_values(":now", s(&now))
            .expression_attribute_values(":one", AttributeValue::N("1".to_owned()));
        if let Some(title) = auto_title {
            update_expression = format!(
                "SET lastActivity = :now, updatedAt = :now, \
                 autoTitle = if_not_exists(autoTitle, :auto), \
                 autoTitleLower = if_not_exists(autoTitleLower, :autoLower) \
                 ADD messageCount :one {shed}"
            );
            update = update
                .expression_attribute_values(":auto", s(title.as_str()))
                .expression_attribute_values(":autoLower", s(&title.as_str().to_lowercase()));
        }
        let update = update
            .update_expression(update_expression)
            .build()
            .map_err(|e| Error::internal("build append update", e))?;

        let mut writes = vec![
            TransactWriteItem::builder().update(update).build(),
            TransactWriteItem::builder()
                .put(put_new(&self.table, self.message_to_item(&message_item)?)?)
                .build(),
        ];
        if let Some(client_id) = client_id {
            let record = ClientMessageItem {
                pk: partition.clone(),
                sk: keys::client_message_sort_key(client_id),
                entity: Some("ClientMessage".to_owned()),
                message_key: Some(message_key.clone()),
                target: None,
            };
            writes.push(
                TransactWriteItem::builder()
                    .put(put_new(&self.table, to_item(&record)?)?)
                    .build(),
            );
        }

        match self.transact(writes, "append message").await? {
            None => Ok(Transacted::Done(AppendOutcome::Stored(message.clone()))),
            // The conversation holds messages kept by slot (the switch was on, and is off
            // again): a time key would sort before them, so this one goes by slot too.
            Some(cancelled) if cancelled.condition_failed(0) => {
                if self.holds_slots(user, &message.conversation_id).await? {
                    Ok(Transacted::BySlot)
                } else {
                    Ok(Transacted::Done(AppendOutcome::ConversationMissing))
                }
            }
            Some(cancelled) => match client_id {
                // Only a client id record sits at index 2.
                Some(client_id) if cancelled.condition_failed(2) => {
                    match claimed(self.client_record(&partition, client_id).await?)? {
                        Claimed::ByTransaction => {
                            match self.replayed_message(&partition, client_id).await? {
                                Some(outcome) => Ok(Transacted::Done(outcome)),
                                // Its message was deleted: this append is a new one.
                                None => {
                                    Box::pin(self.append_item(
                                        user,
                                        message,
                                        message_item,
                                        Some(client_id),
                                        auto_title,
                                    ))
                                    .await
                                }
                            }
                        }
                        // Claimed by an append by slot (the switch was on, and is off again),
                        // perhaps stopped before it put its message: it goes on by slot, at the
                        // record's target.
                        Claimed::Target(_) => Ok(Transacted::BySlot),
                    }
                }
                _ => Err(cancelled.into_error("append message")),
            },
        }
    }

    async fn client_record(
        &self,
        partition: &str,
        client_id: &ClientMessageId,
    ) -> Result<ClientMessageItem, Error> {
        let record = self
            .get(partition, &keys::client_message_sort_key(client_id))
            .await?
            .ok_or_else(|| Error::internal("replay append", "client message record vanished"))?;
        from_item(record)
    }

    /// The message a client message id's record, written by an append in a transaction, names
    /// (it was used before); `None` when that message was deleted since (`crate::prune`): the
    /// record is removed, and the append goes on as a new one, as an append by slot does.
    pub(super) async fn replayed_message(
        &self,
        partition: &str,
        client_id: &ClientMessageId,
    ) -> Result<Option<AppendOutcome>, Error> {
        let key = self
            .client_record(partition, client_id)
            .await?
            .message_key
            .ok_or_else(|| Error::internal("replay append", "a client record names no message"))?;
        let Some(message) = self.get(partition, &key).await? else {
            let removed = self
                .client
                .delete_item()
                .table_name(&self.table)
                .set_key(Some(super::item_key(
                    partition,
                    &keys::client_message_sort_key(client_id),
                )))
                .condition_expression("messageKey = :key")
                .expression_attribute_values(":key", s(&key))
                .send()
                .await;
            match removed {
                Ok(_) => {}
                // Another retry removed it first.
                Err(error) if super::is_conditional_check_failure(&error) => {}
                Err(error) => return Err(store_error("replay append", error)),
            }
            return Ok(None);
        };
        self.already_stored(MessageItem::from_attributes(message)?)
            .await
            .map(Some)
    }

    pub(super) async fn already_stored(&self, item: MessageItem) -> Result<AppendOutcome, Error> {
        let message = self.load_content(item).await?;
        Ok(AppendOutcome::AlreadyStored(message.into_message()))
    }

    /// Appends by slot (see the module's documentation): puts the message at the slot after
    /// the tip (or, with a client id, at its record's target), counts it, and when another
    /// message holds that slot, counts that one and tries the next.
    async fn append_at_slot(
        &self,
        user: &UserId,
        message: &Message,
        item: MessageItem,
        client_id: Option<&ClientMessageId>,
        auto_title: Option<&Title>,
    ) -> Result<AppendOutcome, Error> {
        let partition = keys::conversation_partition(user, &message.conversation_id);
        let mut target: Option<Slot> = None;
        for attempt in 1..=SLOT_ATTEMPTS {
            let Some(place) = self.append_place(&partition).await? else {
                return Ok(AppendOutcome::ConversationMissing);
            };
            let next = place.next();
            let slot = match client_id {
                None => next,
                Some(client_id) => match target {
                    Some(target) => target,
                    None => match self
                        .claim_client_record(&partition, client_id, next)
                        .await?
                    {
                        Claimed::Target(slot) => {
                            target = Some(slot);
                            slot
                        }
                        Claimed::ByTransaction => {
                            match self.replayed_message(&partition, client_id).await? {
                                Some(outcome) => return Ok(outcome),
                                // Its message was deleted: claimed again at the next attempt.
                                None => continue,
                            }
                        }
                    },
                },
            };
            // A slot the tip has passed on its branch, or on a branch the conversation has
            // left (sealed past its tip), is taken.
            let placed = place
                .tip
                .is_some_and(|tip| slot.branch != tip.branch || slot.number <= tip.number);
            let timestamp = message
                .timestamp
                .max(place.last_activity + chrono::Duration::microseconds(1));
            let stored = Message {
                slot: Some(slot),
                timestamp,
                ..message.clone()
            };
            // A slot the tip has passed is taken: only its occupant is read.
            let occupant = if placed {
                Some(self.get(&partition, &keys::slot_sort_key(slot)).await?)
            } else {
                self.put_at_slot(&item, slot, timestamp).await?.map(Some)
            };
            if let Some(Some(held)) = &occupant {
                if super::tree::is_seal(held) {
                    // The conversation left this branch (an edit or a switch): the append goes
                    // on the active one, and a client id's target moves there.
                    if let Some(client_id) = client_id {
                        let Some(now) = self.append_place(&partition).await? else {
                            return Ok(AppendOutcome::ConversationMissing);
                        };
                        target = Some(
                            self.move_target(&partition, client_id, slot, now.next())
                                .await?,
                        );
                    }
                    continue;
                }
            }
            let occupant = occupant
                .map(|held| held.map(MessageItem::from_attributes).transpose())
                .transpose()?;
            // The summary's preview rides on this count when the slot is the one after the tip
            // this attempt read (no count, and so no other preview, since).
            let counting = Counting {
                auto_title,
                preview: place.preview.as_ref().filter(|_| slot == next),
            };
            let occupant = match occupant {
                None => {
                    return Ok(self
                        .counted_after_put(&partition, slot, timestamp, counting, stored)
                        .await)
                }
                Some(None) => {
                    // A client id's target that holds nothing though the tip passed it, or on a
                    // branch left: the message there was deleted (`crate::prune`: slots are never
                    // reused), or its branch was. Whose message it was the record cannot say: the
                    // append goes on after the tip (a message never stored is not lost).
                    if let Some(client_id) = client_id {
                        target = Some(self.move_target(&partition, client_id, slot, next).await?);
                    }
                    continue;
                }
                Some(Some(occupant)) => occupant,
            };
            if occupant.id() == message.id && !placed {
                // This put was stored before its answer was lost, and sent again (a slot the
                // tip had passed when this call read it was stored by an earlier call: a replay
                // of a message whose id its writer keeps, as the migration's).
                let stored = Message {
                    timestamp: occupant.timestamp(),
                    ..stored
                };
                return Ok(self
                    .counted_after_put(&partition, slot, stored.timestamp, counting, stored)
                    .await);
            }
            let title = self.title_of(&occupant).await;
            if !placed
                && self
                    .count_slot(
                        &partition,
                        slot,
                        occupant.timestamp(),
                        Counting::titled(title.as_ref()),
                    )
                    .await?
                    == Counted::ConversationMissing
            {
                return Ok(AppendOutcome::ConversationMissing);
            }
            if let Some(client_id) = client_id {
                if occupant.client_message_id.as_deref() == Some(client_id.as_str()) {
                    return self.already_stored(occupant).await;
                }
                // Another message holds the target: move it on, past the tip (this append's
                // message is at no slot: it only ever puts at its target).
                let onward = if slot.branch == next.branch {
                    slot.next().max(next)
                } else {
                    next
                };
                target = Some(
                    self.move_target(&partition, client_id, slot, onward)
                        .await?,
                );
            }
            // Another append took the slot: let the busy conversation settle a little.
            super::backoff(attempt.min(3)).await;
        }
        Err(Error::Unavailable(
            "too many appends to this conversation at once: try again".into(),
        ))
    }

    /// What an append whose message is at `slot` answers, once it has counted it. A failure to
    /// count is no failure of the append: the message is stored, and the next append or the
    /// indexer counts it (so a retry finds it, and nothing it refers to is removed). A
    /// conversation deleted meanwhile takes the message with it.
    async fn counted_after_put(
        &self,
        partition: &str,
        slot: Slot,
        timestamp: DateTime<Utc>,
        counting: Counting<'_>,
        stored: Message,
    ) -> AppendOutcome {
        match self.count_slot(partition, slot, timestamp, counting).await {
            Ok(Counted::Now | Counted::Before) => AppendOutcome::Stored(stored),
            Ok(Counted::ConversationMissing) => {
                let removed = self
                    .client
                    .delete_item()
                    .table_name(&self.table)
                    .set_key(Some(super::item_key(partition, &keys::slot_sort_key(slot))))
                    .send()
                    .await;
                if let Err(error) = removed {
                    // The hourly sweep finds what a deleted conversation left.
                    tracing::warn!(error = %store_error("append message", error), "left a message of a deleted conversation to the sweep");
                }
                AppendOutcome::ConversationMissing
            }
            Err(error) => {
                tracing::warn!(%error, slot = slot.number, "stored a message and left counting it to the next append or the indexer");
                AppendOutcome::Stored(stored)
            }
        }
    }

    /// Whether the conversation exists and holds messages kept by slot (a time key would sort
    /// before them).
    pub async fn holds_slots(
        &self,
        user: &UserId,
        conversation: &ConversationId,
    ) -> Result<bool, Error> {
        let partition = keys::conversation_partition(user, conversation);
        Ok(self
            .append_place(&partition)
            .await?
            .is_some_and(|place| place.tip.is_some()))
    }

    /// The conversation's tip and last activity, read consistently (never from a cache: a tip
    /// read too low costs a failed put, too high would leave a gap); `None` when it is gone.
    /// With it, the conversation's summary item (they sort side by side: one query), whose
    /// preview the append brings into the conversation's item when that holds an older one.
    async fn append_place(&self, partition: &str) -> Result<Option<AppendPlace>, Error> {
        let read = self
            .conversation_and_summary(
                partition,
                Some(
                    "PK, SK, tip, lastActivity, summarizedThrough, summarizedUntil, summary, \
                     preview",
                ),
            )
            .await?;
        let Some(item) = read.conversation else {
            return Ok(None);
        };
        let (tip, last_activity) = tip_and_activity(&item)?;
        Ok(Some(AppendPlace {
            tip,
            last_activity,
            preview: Store::summary_preview_due(&item, read.summary.as_ref()),
        }))
    }

    /// Puts `item` at `slot` if the slot is free; else returns what holds it (a message, or a
    /// seal).
    async fn put_at_slot(
        &self,
        item: &MessageItem,
        slot: Slot,
        timestamp: DateTime<Utc>,
    ) -> Result<Option<Item>, Error> {
        let at_slot = MessageItem {
            sk: keys::MessageSortKey::at_slot(slot),
            message_id: Some(item.id()),
            timestamp: Some(timestamp),
            ..item.clone()
        };
        match self
            .put_unless_taken(self.message_to_item(&at_slot)?)
            .await?
        {
            Taken::No => Ok(None),
            Taken::By(occupant) => Ok(Some(occupant)),
        }
    }

    /// Puts `item` unless an item has its key; else returns that item (the refusal brings it:
    /// no read).
    async fn put_unless_taken(&self, item: Item) -> Result<Taken, Error> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(PK)")
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(Taken::No),
            Err(error) => match error.as_service_error() {
                Some(PutItemError::ConditionalCheckFailedException(failed)) => {
                    let holder = failed.item().cloned().ok_or_else(|| {
                        Error::internal("append message", "a taken key came back without its item")
                    })?;
                    Ok(Taken::By(holder))
                }
                _ => Err(store_error("append message", error)),
            },
        }
    }

    /// Sends a conditional update; refused, returns the item as it was (`None`: there was none).
    async fn update_unless_refused(
        &self,
        update: aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder,
        context: &'static str,
    ) -> Result<Refused, Error> {
        let result = update
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(Refused::No),
            Err(error) => match error.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(failed)) => {
                    Ok(Refused::Was(failed.item().cloned()))
                }
                _ => Err(store_error(context, error)),
            },
        }
    }

    /// Counts the message at `slot` (stored at `timestamp`) on its conversation: moves the tip
    /// onto it, if the tip is the slot before (a slot before that not counted yet is counted
    /// first). Any number of writers may count the same slot: one moves the tip.
    async fn count_slot(
        &self,
        partition: &str,
        slot: Slot,
        timestamp: DateTime<Utc>,
        counting: Counting<'_>,
    ) -> Result<Counted, Error> {
        for _ in 0..SLOT_ATTEMPTS {
            match self.move_tip(partition, slot, timestamp, counting).await? {
                TipMoved::Yes => return Ok(Counted::Now),
                TipMoved::ConversationMissing => return Ok(Counted::ConversationMissing),
                // The tip is at or past the slot, or on another branch: the conversation left
                // the slot's branch, which it does only with every slot on it counted.
                TipMoved::No(tip)
                    if tip.is_some_and(|tip| tip.branch != slot.branch || tip >= slot) =>
                {
                    return Ok(Counted::Before)
                }
                TipMoved::No(tip) => {
                    // A slot between the tip and this one is stored and not counted (its writer
                    // stopped between its two writes): it comes first.
                    let before = tip.map_or(Slot::trunk(1), Slot::next);
                    let Some(item) = self.get(partition, &keys::slot_sort_key(before)).await?
                    else {
                        return Err(Error::internal(
                            "count message",
                            "a slot before the one counted holds no message",
                        ));
                    };
                    let before_item = MessageItem::from_attributes(item)?;
                    let title = self.title_of(&before_item).await;
                    if let TipMoved::ConversationMissing = self
                        .move_tip(
                            partition,
                            before,
                            before_item.timestamp(),
                            Counting::titled(title.as_ref()),
                        )
                        .await?
                    {
                        return Ok(Counted::ConversationMissing);
                    }
                }
            }
        }
        Err(Error::Unavailable(
            "too many appends to this conversation at once: try again".into(),
        ))
    }

    /// One conditional update of the conversation: its tip from the slot before `slot` onto
    /// `slot`, with the count, the activity, (a first user message) the automatic title and
    /// (a summary newer than the item's) the summary's preview.
    async fn move_tip(
        &self,
        partition: &str,
        slot: Slot,
        timestamp: DateTime<Utc>,
        counting: Counting<'_>,
    ) -> Result<TipMoved, Error> {
        let Counting {
            auto_title,
            preview,
        } = counting;
        let shed = self.shed_stored_twice();
        let now = keys::sortable_time(timestamp);
        let mut title = if auto_title.is_some() {
            ", autoTitle = if_not_exists(autoTitle, :auto), \
             autoTitleLower = if_not_exists(autoTitleLower, :autoLower)"
                .to_owned()
        } else {
            String::new()
        };
        if let Some(due) = preview {
            title.push_str(", summary = :preview, summarizedThrough = :through");
            if due.until.is_some() {
                title.push_str(", summarizedUntil = :until");
            }
        }
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(keys::PK, s(partition))
            .key(keys::SK, s(keys::CONVERSATION_SK))
            .update_expression(format!(
                "SET tip = :tip, lastActivity = :now, updatedAt = :now{title} \
                 ADD messageCount :one {shed}"
            ))
            .expression_attribute_values(":tip", s(&slot.tip_text()))
            .expression_attribute_values(":now", s(&now))
            .expression_attribute_values(":one", AttributeValue::N("1".to_owned()));
        update = if slot == Slot::trunk(1) {
            update.condition_expression("attribute_exists(PK) AND attribute_not_exists(tip)")
        } else {
            let before = Slot {
                number: slot.number - 1,
                ..slot
            };
            update
                .condition_expression("attribute_exists(PK) AND tip = :before")
                .expression_attribute_values(":before", s(&before.tip_text()))
        };
        if let Some(title) = auto_title {
            update = update
                .expression_attribute_values(":auto", s(title.as_str()))
                .expression_attribute_values(":autoLower", s(&title.as_str().to_lowercase()));
        }
        if let Some(due) = preview {
            update = update
                .expression_attribute_values(
                    ":preview",
                    super::deflated::text_attribute(&due.preview, self.compress_text),
                )
                .expression_attribute_values(
                    ":through",
                    AttributeValue::N(due.through.to_string()),
                );
            if let Some(until) = &due.until {
                update = update.expression_attribute_values(":until", s(until));
            }
        }
        Ok(
            match self.update_unless_refused(update, "count message").await? {
                Refused::No => TipMoved::Yes,
                Refused::Was(None) => TipMoved::ConversationMissing,
                Refused::Was(Some(item)) => TipMoved::No(tip_and_activity(&item)?.0),
            },
        )
    }

    /// Counts every slot of the conversation up to `slot` not counted yet: what the indexer
    /// does for each new message the table's stream brings, so an append whose writer stopped
    /// between its two writes is counted within seconds, with no append after it.
    pub async fn count_through(&self, partition: &str, slot: Slot) -> Result<(), Error> {
        let Some(place) = self.append_place(partition).await? else {
            return Ok(());
        };
        if place
            .tip
            .is_some_and(|tip| tip.branch != slot.branch || tip >= slot)
        {
            return Ok(());
        }
        let Some(item) = self.get(partition, &keys::slot_sort_key(slot)).await? else {
            // Gone with its conversation (or never stored): nothing to count.
            return Ok(());
        };
        if super::tree::is_seal(&item) {
            return Ok(());
        }
        let item = MessageItem::from_attributes(item)?;
        let title = self.title_of(&item).await;
        // Counted late, its conversation's activity is now, not the message's older time:
        // a sync round since (its cursor past that time) still finds the conversation changed.
        let activity = item.timestamp().max(Utc::now());
        let counted = self
            .count_slot(partition, slot, activity, Counting::titled(title.as_ref()))
            .await?;
        if counted == Counted::Now {
            tracing::warn!(%partition, slot = slot.number, "counted a message its append left uncounted");
        }
        Ok(())
    }

    /// The automatic title a counted message gives its conversation if it has none: a user
    /// message's (as `Conversations::add_message` derives it), its content read back from S3
    /// when it is there; none if that read fails (the next user message titles it).
    async fn title_of(&self, item: &MessageItem) -> Option<Title> {
        if item.role != Role::User {
            return None;
        }
        if item.content_object.is_none() {
            return (!item.content.is_empty()).then(|| Title::derived_from(&item.content));
        }
        match self.load_content(item.clone()).await {
            Ok(whole) => Some(Title::derived_from(&whole.content)),
            Err(error) => {
                tracing::warn!(%error, "counted a message without the title its content gives");
                None
            }
        }
    }

    /// The client message id's record: claimed now with `next` as its target, or as another
    /// attempt of the same append left it.
    async fn claim_client_record(
        &self,
        partition: &str,
        client_id: &ClientMessageId,
        next: Slot,
    ) -> Result<Claimed, Error> {
        let record = ClientMessageItem {
            pk: partition.to_owned(),
            sk: keys::client_message_sort_key(client_id),
            entity: None,
            message_key: None,
            target: Some(next.tip_text()),
        };
        match self.put_unless_taken(to_item(&record)?).await? {
            Taken::No => Ok(Claimed::Target(next)),
            Taken::By(found) => claimed(from_item(found)?),
        }
    }

    /// Moves a client record's target from `from` (held by another message) to `to`; returns
    /// the target as it is after (another attempt of the same append may have moved it first).
    async fn move_target(
        &self,
        partition: &str,
        client_id: &ClientMessageId,
        from: Slot,
        to: Slot,
    ) -> Result<Slot, Error> {
        let update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(keys::PK, s(partition))
            .key(keys::SK, s(&keys::client_message_sort_key(client_id)))
            .update_expression("SET target = :to")
            .condition_expression("target = :from")
            .expression_attribute_values(":from", s(&from.tip_text()))
            .expression_attribute_values(":to", s(&to.tip_text()));
        match self.update_unless_refused(update, "append message").await? {
            Refused::No => Ok(to),
            Refused::Was(None) => Err(Error::internal(
                "append message",
                "a client record vanished",
            )),
            Refused::Was(Some(found)) => match claimed(from_item(found)?)? {
                Claimed::Target(slot) => Ok(slot),
                Claimed::ByTransaction => Err(Error::internal(
                    "append message",
                    "a client record changed its kind",
                )),
            },
        }
    }
}

/// What a put unless taken found.
enum Taken {
    No,
    /// The item that has the key.
    By(Item),
}

/// What a conditional update found.
enum Refused {
    No,
    /// Refused: the item as it was, if there was one.
    Was(Option<Item>),
}

/// A client record as an append by slot found it.
enum Claimed {
    /// The slot every attempt of this append puts at.
    Target(Slot),
    /// Written by an append in a transaction: it names its stored message.
    ByTransaction,
}

fn claimed(record: ClientMessageItem) -> Result<Claimed, Error> {
    match (record.message_key, record.target) {
        (Some(_), _) => Ok(Claimed::ByTransaction),
        (None, Some(target)) => Slot::parse_tip(&target)
            .map(Claimed::Target)
            .ok_or_else(|| {
                Error::internal("append message", "a client record's target is not a slot")
            }),
        (None, None) => Err(Error::internal(
            "append message",
            "a client record names no message",
        )),
    }
}

/// What one conditional update of the tip found.
enum TipMoved {
    Yes,
    /// The tip was elsewhere: here.
    No(Option<Slot>),
    ConversationMissing,
}

/// A conversation item's tip (`None`: nothing kept by slot yet) and last activity.
pub(super) fn tip_and_activity(item: &Item) -> Result<(Option<Slot>, DateTime<Utc>), Error> {
    let bad = |what: &str| Error::internal("read the conversation's tip", what.to_owned());
    let tip = match item.get("tip") {
        None => None,
        Some(AttributeValue::S(text)) => {
            Some(Slot::parse_tip(text).ok_or_else(|| bad("a tip that is not a slot"))?)
        }
        Some(_) => return Err(bad("a tip that is not text")),
    };
    let last_activity = match item.get(keys::LAST_ACTIVITY) {
        Some(AttributeValue::S(text)) => DateTime::parse_from_rfc3339(text)
            .map_err(|_| bad("a last activity that is not a time"))?
            .with_timezone(&Utc),
        _ => return Err(bad("no last activity")),
    };
    Ok((tip, last_activity))
}
