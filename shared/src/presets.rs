//! Presets (`domain::preset`, docs/presets.md): a user's own, checked against the models a
//! completion may use, and the operator's templates (`PRESET_TEMPLATES`), which every user
//! sees and copies to use. Their routes are in `http::presets`; the batch's preset operations
//! call the same methods.

use chrono::{DateTime, Utc};

use crate::cache::Cache;
use crate::error::Error;
use crate::model::{PresetId, UserId};
use crate::store::Store;
use domain::preset::{Preset, PresetFields, PresetTemplate};

#[derive(Clone)]
pub struct Presets {
    store: Store,
    cache: Cache,
    allowed_models: Vec<String>,
    templates: Vec<PresetTemplate>,
}

impl Presets {
    pub fn new(
        store: Store,
        cache: Cache,
        allowed_models: Vec<String>,
        templates: Vec<PresetTemplate>,
    ) -> Self {
        Self {
            store,
            cache,
            allowed_models,
            templates,
        }
    }

    /// The user's presets, in the order they were made, and the operator's templates.
    pub async fn list(&self, user: &UserId) -> Result<(Vec<Preset>, &[PresetTemplate]), Error> {
        Ok((self.store.presets(user).await?, &self.templates))
    }

    /// Keeps a new preset of `fields`, checked, under `id` (a new one's by default): made
    /// again under the same id (a batch's operation run again), it answers the preset kept.
    pub async fn create(
        &self,
        user: &UserId,
        id: Option<PresetId>,
        fields: PresetFields,
        now: DateTime<Utc>,
    ) -> Result<Preset, Error> {
        let preset = Preset {
            id: id.unwrap_or_else(PresetId::generate),
            fields: fields.checked(&self.allowed_models)?,
            created_at: now,
            updated_at: now,
        };
        let created = self.store.create_preset(user, &preset).await?;
        self.cache.invalidate_user(user).await;
        if created {
            return Ok(preset);
        }
        self.store.preset(user, &preset.id).await?.ok_or_else(|| {
            Error::Conflict("the preset made under this id was deleted since".into())
        })
    }

    /// The operator's template `slug`, to copy.
    pub fn template(&self, slug: &str) -> Result<&PresetTemplate, Error> {
        self.templates
            .iter()
            .find(|t| t.id == slug)
            .ok_or_else(|| Error::invalid(format!("{slug:?} is not one of the templates")))
    }

    /// Replaces the fields of the user's preset (conversations started with it keep their
    /// copy until the preset is applied to them again).
    pub async fn update(
        &self,
        user: &UserId,
        id: &PresetId,
        fields: PresetFields,
        now: DateTime<Utc>,
    ) -> Result<Preset, Error> {
        let fields = fields.checked(&self.allowed_models)?;
        let updated = self.store.update_preset(user, id, fields, now).await?;
        self.cache.invalidate_user(user).await;
        updated.ok_or(Error::NotFound)
    }

    pub async fn delete(&self, user: &UserId, id: &PresetId) -> Result<(), Error> {
        let deleted = self.store.delete_preset(user, id).await?;
        self.cache.invalidate_user(user).await;
        match deleted {
            true => Ok(()),
            false => Err(Error::NotFound),
        }
    }
}
