//! A user's presets (`domain::preset`), one item each in their presets partition with a count
//! beside them (at most `MAX_PRESETS`, kept by each create's and delete's transaction), and
//! the settings a conversation keeps of one: the whole of them in an item beside the
//! conversation's (`META#~SETTINGS`, outside the range an append reads, so a long
//! instruction costs appends nothing), and the preset's id and name in the conversation's
//! item, for lists.

use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, TransactWriteItem, Update};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use domain::error::Error;
use domain::keys;
use domain::model::{ConversationId, PresetId, UserId};
use domain::preset::{ConversationSettings, Preset, PresetFields, PresetRef, MAX_PRESETS};

use super::{from_item, item_key, n, s, to_item, ConversationItem, Item, Store};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PresetItem {
    #[serde(rename = "PK")]
    pk: String,
    #[serde(rename = "SK")]
    sk: String,
    #[serde(flatten)]
    preset: Preset,
}

/// A conversation's settings, beside its item.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SettingsItem {
    #[serde(rename = "PK")]
    pk: String,
    #[serde(rename = "SK")]
    sk: String,
    #[serde(flatten)]
    settings: ConversationSettings,
}

impl Store {
    /// Keeps a new preset of the user's; `Invalid` when they have `MAX_PRESETS` already.
    /// `false` when a preset with its id was kept before (a request made again: nothing is
    /// written or counted).
    pub async fn create_preset(&self, user: &UserId, preset: &Preset) -> Result<bool, Error> {
        let partition = keys::presets_partition(user);
        let item = PresetItem {
            pk: partition.clone(),
            sk: keys::preset_sort_key(&preset.id),
            preset: preset.clone(),
        };
        let writes = vec![
            self.presets_changed(user, 1)?,
            TransactWriteItem::builder()
                .put(self.put_if(to_item(&item)?, "attribute_not_exists(PK)")?)
                .build(),
        ];
        match self.transact(writes, "keep a preset").await? {
            None => Ok(true),
            Some(cancelled) if cancelled.condition_failed(1) => Ok(false),
            Some(cancelled) if cancelled.condition_failed(0) => Err(Error::invalid(format!(
                "a user keeps at most {MAX_PRESETS} presets: delete one first"
            ))),
            Some(cancelled) => Err(cancelled.into_error("keep a preset")),
        }
    }

    /// The user's presets, in the order they were made.
    pub async fn presets(&self, user: &UserId) -> Result<Vec<Preset>, Error> {
        let items = self
            .all_with_prefix(
                &keys::presets_partition(user),
                keys::PRESET_PREFIX,
                "read presets",
            )
            .await?;
        let mut presets = items
            .into_iter()
            .map(|item| from_item::<PresetItem>(item).map(|p| p.preset))
            .collect::<Result<Vec<_>, _>>()?;
        // Ids are not always time-ordered (a batch's are derived from its operation's).
        presets.sort_by_key(|p| (p.created_at, p.id));
        Ok(presets)
    }

    pub async fn preset(&self, user: &UserId, id: &PresetId) -> Result<Option<Preset>, Error> {
        self.get(&keys::presets_partition(user), &keys::preset_sort_key(id))
            .await?
            .map(|item| from_item::<PresetItem>(item).map(|p| p.preset))
            .transpose()
    }

    /// Replaces a preset's fields; `None` when the user has no such preset.
    pub async fn update_preset(
        &self,
        user: &UserId,
        id: &PresetId,
        fields: PresetFields,
        now: DateTime<Utc>,
    ) -> Result<Option<Preset>, Error> {
        let Some(existing) = self.preset(user, id).await? else {
            return Ok(None);
        };
        let preset = Preset {
            fields,
            updated_at: now,
            ..existing
        };
        let item = PresetItem {
            pk: keys::presets_partition(user),
            sk: keys::preset_sort_key(id),
            preset: preset.clone(),
        };
        let writes = vec![
            TransactWriteItem::builder()
                .put(self.put_if(to_item(&item)?, "attribute_exists(PK)")?)
                .build(),
            self.presets_changed(user, 0)?,
        ];
        match self.transact(writes, "update a preset").await? {
            None => Ok(Some(preset)),
            Some(cancelled) if cancelled.condition_failed(0) => Ok(None),
            Some(cancelled) => Err(cancelled.into_error("update a preset")),
        }
    }

    /// A transaction's stamp of when the user's presets last changed (what a sync compares),
    /// with their count changed `by` (a create: up to `MAX_PRESETS`).
    fn presets_changed(&self, user: &UserId, by: i64) -> Result<TransactWriteItem, Error> {
        let update = Update::builder()
            .table_name(&self.table)
            .key(keys::PK, s(&keys::presets_partition(user)))
            .key(keys::SK, s(keys::PRESET_COUNT_SK))
            .expression_attribute_values(":at", s(&keys::sortable_time(self.clock.now())));
        let update = match by {
            0 => update.update_expression("SET presetsChangedAt = :at"),
            _ => update
                .update_expression("ADD presets :by SET presetsChangedAt = :at")
                .expression_attribute_values(":by", n(by)),
        };
        let update = match by > 0 {
            true => update
                .condition_expression("attribute_not_exists(presets) OR presets < :max")
                .expression_attribute_values(":max", n(MAX_PRESETS as i64)),
            false => update,
        };
        Ok(TransactWriteItem::builder()
            .update(
                update
                    .build()
                    .map_err(|e| Error::internal("build a preset's count", e))?,
            )
            .build())
    }

    /// When the user's presets last changed (a create, an update or a delete), if ever.
    pub async fn presets_changed_at(&self, user: &UserId) -> Result<Option<DateTime<Utc>>, Error> {
        let item = self
            .get(&keys::presets_partition(user), keys::PRESET_COUNT_SK)
            .await?;
        Ok(
            match item.as_ref().and_then(|i| i.get("presetsChangedAt")) {
                Some(AttributeValue::S(at)) => keys::changed_at_time(at),
                _ => None,
            },
        )
    }

    /// Deletes a preset of the user's (the conversations started with it keep their copies);
    /// `false` when there was none.
    pub async fn delete_preset(&self, user: &UserId, id: &PresetId) -> Result<bool, Error> {
        let partition = keys::presets_partition(user);
        let writes = vec![
            TransactWriteItem::builder()
                .delete(
                    Delete::builder()
                        .table_name(&self.table)
                        .set_key(Some(item_key(&partition, &keys::preset_sort_key(id))))
                        .condition_expression("attribute_exists(PK)")
                        .build()
                        .map_err(|e| Error::internal("build a preset's delete", e))?,
                )
                .build(),
            self.presets_changed(user, -1)?,
        ];
        match self.transact(writes, "delete a preset").await? {
            None => Ok(true),
            Some(cancelled) if cancelled.condition_failed(0) => Ok(false),
            Some(cancelled) => Err(cancelled.into_error("delete a preset")),
        }
    }

    fn put_if(&self, item: Item, condition: &str) -> Result<Put, Error> {
        Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(condition)
            .build()
            .map_err(|e| Error::internal("build a put", e))
    }

    /// Creates a conversation with a preset's settings: its item (naming the preset) and its
    /// settings' item in one transaction.
    pub async fn put_new_conversation_with_settings(
        &self,
        conversation: &ConversationItem,
        settings: &ConversationSettings,
    ) -> Result<(), Error> {
        let item = self.stamped(&ConversationItem {
            preset: Some(PresetRef::from(settings)),
            ..conversation.clone()
        });
        let writes = vec![
            TransactWriteItem::builder()
                .put(self.put_if(
                    self.conversation_to_item(&item)?,
                    "attribute_not_exists(PK)",
                )?)
                .build(),
            TransactWriteItem::builder()
                .put(self.put_if(
                    self.settings_item(
                        conversation.user_id(),
                        &conversation.conversation_id(),
                        settings,
                    )?,
                    "attribute_not_exists(PK)",
                )?)
                .build(),
        ];
        match self.transact(writes, "create a conversation").await? {
            None => Ok(()),
            Some(cancelled) => Err(cancelled.into_error("create a conversation")),
        }
    }

    /// Applies a preset's settings to the user's conversation again (replacing what it kept);
    /// `false` when the conversation is not theirs.
    pub async fn apply_settings(
        &self,
        user: &UserId,
        conversation: &ConversationId,
        settings: &ConversationSettings,
        now: DateTime<Utc>,
    ) -> Result<bool, Error> {
        let reference = to_item(&PresetRef::from(settings))?;
        let writes = vec![
            TransactWriteItem::builder()
                .update(
                    Update::builder()
                        .table_name(&self.table)
                        .set_key(Some(super::conversation_key(user, conversation)))
                        .update_expression(format!(
                            "SET preset = :preset, updatedAt = :now, changedAt = :changed {}",
                            self.shed_stored_twice()
                        ))
                        .expression_attribute_values(":now", s(&keys::sortable_time(now)))
                        .condition_expression("attribute_exists(PK)")
                        .expression_attribute_values(":preset", AttributeValue::M(reference))
                        .expression_attribute_values(
                            ":changed",
                            s(&self.change_stamp(conversation)),
                        )
                        .build()
                        .map_err(|e| Error::internal("build a preset's apply", e))?,
                )
                .build(),
            TransactWriteItem::builder()
                .put(
                    Put::builder()
                        .table_name(&self.table)
                        .set_item(Some(self.settings_item(user, conversation, settings)?))
                        .build()
                        .map_err(|e| Error::internal("build a preset's apply", e))?,
                )
                .build(),
        ];
        match self.transact(writes, "apply a preset").await? {
            None => Ok(true),
            Some(cancelled) if cancelled.condition_failed(0) => Ok(false),
            Some(cancelled) => Err(cancelled.into_error("apply a preset")),
        }
    }

    /// The settings the user's conversation keeps, if it was started with a preset.
    pub async fn conversation_settings(
        &self,
        user: &UserId,
        conversation: &ConversationId,
    ) -> Result<Option<ConversationSettings>, Error> {
        self.get(
            &keys::conversation_partition(user, conversation),
            keys::SETTINGS_SK,
        )
        .await?
        .map(|item| from_item::<SettingsItem>(item).map(|s| s.settings))
        .transpose()
    }

    fn settings_item(
        &self,
        user: &UserId,
        conversation: &ConversationId,
        settings: &ConversationSettings,
    ) -> Result<Item, Error> {
        to_item(&SettingsItem {
            pk: keys::conversation_partition(user, conversation),
            sk: keys::SETTINGS_SK.to_owned(),
            settings: settings.clone(),
        })
    }
}
