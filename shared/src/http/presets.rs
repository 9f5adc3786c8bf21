//! The presets' routes (`crate::presets`): `GET/POST /presets`, `PUT/DELETE /presets/{id}`.

use chrono::{DateTime, Utc};
use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, RequestExt, Response};
use serde::{Deserialize, Serialize};

use super::{caller, json, json_body, respond, HandlerResult};
use crate::error::Error;
use crate::model::PresetId;
use crate::state::State;
use domain::preset::{Preset, PresetFields, PresetTemplate};

/// A preset as its owner sees it, or an operator's template (`template: true`, its `id` a
/// slug).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PresetView<'a> {
    id: String,
    template: bool,
    #[serde(flatten)]
    fields: &'a PresetFields,
    #[serde(skip_serializing_if = "Option::is_none")]
    created_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    updated_at: Option<DateTime<Utc>>,
}

impl<'a> From<&'a Preset> for PresetView<'a> {
    fn from(preset: &'a Preset) -> Self {
        Self {
            id: preset.id.to_string(),
            template: false,
            fields: &preset.fields,
            created_at: Some(preset.created_at),
            updated_at: Some(preset.updated_at),
        }
    }
}

impl<'a> From<&'a PresetTemplate> for PresetView<'a> {
    fn from(template: &'a PresetTemplate) -> Self {
        Self {
            id: template.id.clone(),
            template: true,
            fields: &template.fields,
            created_at: None,
            updated_at: None,
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct PresetListView<'a> {
    presets: Vec<PresetView<'a>>,
    templates: Vec<PresetView<'a>>,
}

/// A preset's fields as a client sends them.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct PresetBody {
    name: String,
    #[serde(default)]
    instructions: String,
    model: Option<String>,
    max_tokens: Option<u32>,
    temperature: Option<f64>,
    #[serde(default)]
    default_tags: Vec<String>,
    #[serde(default)]
    starter_prompts: Vec<String>,
}

impl From<PresetBody> for PresetFields {
    fn from(body: PresetBody) -> Self {
        Self {
            name: body.name,
            instructions: body.instructions,
            model: body.model,
            max_tokens: body.max_tokens,
            temperature: body.temperature,
            default_tags: body.default_tags,
            starter_prompts: body.starter_prompts,
        }
    }
}

/// `POST /presets`: a new preset's fields, or `{"fromTemplate": <slug>}` alone.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct CreateBody {
    from_template: Option<String>,
    name: Option<String>,
    #[serde(default)]
    instructions: String,
    model: Option<String>,
    max_tokens: Option<u32>,
    temperature: Option<f64>,
    #[serde(default)]
    default_tags: Vec<String>,
    #[serde(default)]
    starter_prompts: Vec<String>,
}

impl CreateBody {
    /// The template's slug, or the new preset's fields.
    fn into_request(self) -> Result<Result<String, PresetFields>, Error> {
        let fields_given = self.name.is_some()
            || !self.instructions.is_empty()
            || self.model.is_some()
            || self.max_tokens.is_some()
            || self.temperature.is_some()
            || !self.default_tags.is_empty()
            || !self.starter_prompts.is_empty();
        match (self.from_template, fields_given) {
            (Some(_), true) => Err(Error::invalid(
                "give either fromTemplate or a preset's fields, not both",
            )),
            (Some(slug), false) => Ok(Ok(slug)),
            (None, _) => Ok(Err(PresetFields {
                name: self
                    .name
                    .ok_or_else(|| Error::invalid("name is required"))?,
                instructions: self.instructions,
                model: self.model,
                max_tokens: self.max_tokens,
                temperature: self.temperature,
                default_tags: self.default_tags,
                starter_prompts: self.starter_prompts,
            })),
        }
    }
}

/// The `{id}` path parameter of a preset's route.
fn preset_id(request: &Request) -> Result<PresetId, Error> {
    request
        .path_parameters()
        .first("id")
        .and_then(|raw| PresetId::parse(raw).ok())
        .ok_or(Error::NotFound)
}

/// `GET /presets`: the caller's presets and the operator's templates.
pub async fn list_presets(state: &State, request: Request) -> HandlerResult {
    respond(async {
        let user = caller(&request)?;
        let (presets, templates) = state.presets.list(&user).await?;
        Ok(json(
            StatusCode::OK,
            &PresetListView {
                presets: presets.iter().map(PresetView::from).collect(),
                templates: templates.iter().map(PresetView::from).collect(),
            },
        ))
    })
    .await
}

/// `POST /presets`: keeps a new preset (at most 50 per user), or copies a template.
pub async fn create_preset(state: &State, request: Request) -> HandlerResult {
    respond(async {
        let user = caller(&request)?;
        let preset = create_in(state, &user, None, json_body(&request)?).await?;
        Ok(json(StatusCode::CREATED, &PresetView::from(&preset)))
    })
    .await
}

/// Keeps the preset `body` asks for: the one path of `POST /presets` and of the batch's
/// `createPreset`.
pub(super) async fn create_in(
    state: &State,
    user: &crate::model::UserId,
    id: Option<PresetId>,
    body: CreateBody,
) -> Result<Preset, Error> {
    let fields = match body.into_request()? {
        Ok(slug) => state.presets.template(&slug)?.fields.clone(),
        Err(fields) => fields,
    };
    state.presets.create(user, id, fields, state.now()).await
}

/// `PUT /presets/{id}`: replaces the preset's fields.
pub async fn update_preset(state: &State, request: Request) -> HandlerResult {
    respond(async {
        let user = caller(&request)?;
        let id = preset_id(&request)?;
        let body: PresetBody = json_body(&request)?;
        let preset = state
            .presets
            .update(&user, &id, body.into(), state.now())
            .await?;
        Ok(json(StatusCode::OK, &PresetView::from(&preset)))
    })
    .await
}

/// `DELETE /presets/{id}`: the conversations started with it keep their settings.
pub async fn delete_preset(state: &State, request: Request) -> HandlerResult {
    respond(async {
        let user = caller(&request)?;
        let id = preset_id(&request)?;
        state.presets.delete(&user, &id).await?;
        Ok(Response::builder()
            .status(StatusCode::NO_CONTENT)
            .body(Body::Empty)
            .expect("a status makes a valid response"))
    })
    .await
}
