//! Presets (docs/presets.md): a user's named settings for starting conversations (standing
//! instructions, a model, its output limit and temperature, default tags, starter prompts),
//! and the operator's templates every user sees and can copy. A conversation started with a
//! preset keeps a copy of its settings (`ConversationSettings`): a later edit of the preset
//! changes no past conversation unless the user applies it again.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::model::{PresetId, Tags};

/// The most presets one user keeps.
pub const MAX_PRESETS: usize = 50;
pub const MAX_PRESET_NAME_CHARS: usize = 100;
/// Standing instructions, in UTF-8 bytes.
/// With the limits below, 50 presets stay far inside what one response may carry beside a
/// page (a sync's: `store::RESPONSE_BUDGET` of Lambda's 6 MB), even every byte escaped.
pub const MAX_INSTRUCTIONS_BYTES: usize = 4 * 1024;
pub const MAX_STARTER_PROMPTS: usize = 5;
pub const MAX_STARTER_PROMPT_CHARS: usize = 200;
/// The largest `maxTokens` a preset may ask for (a completion's own limit).
pub const MAX_PRESET_TOKENS: u32 = 8_192;
pub const MAX_TEMPERATURE: f64 = 2.0;

/// What a preset holds, checked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PresetFields {
    pub name: String,
    /// The user's standing instructions: sent inside the operator's system prompt.
    #[serde(default)]
    pub instructions: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(default)]
    pub default_tags: Vec<String>,
    #[serde(default)]
    pub starter_prompts: Vec<String>,
}

impl PresetFields {
    /// Checks every field; `model`, when given, must be one of `allowed_models`. Tags are
    /// trimmed and their duplicates dropped, as a conversation's are.
    pub fn checked(self, allowed_models: &[String]) -> Result<Self, Error> {
        let name = self.name.trim().to_owned();
        if name.is_empty() || name.chars().count() > MAX_PRESET_NAME_CHARS {
            return Err(Error::invalid(format!(
                "name must be 1 to {MAX_PRESET_NAME_CHARS} characters"
            )));
        }
        if name.chars().any(char::is_control) {
            return Err(Error::invalid("name must not contain control characters"));
        }
        if self
            .instructions
            .chars()
            .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
        {
            return Err(Error::invalid(
                "instructions must not contain control characters but line ends and tabs",
            ));
        }
        if self.instructions.len() > MAX_INSTRUCTIONS_BYTES {
            return Err(Error::TooLarge(format!(
                "instructions must be at most {MAX_INSTRUCTIONS_BYTES} bytes"
            )));
        }
        if let Some(model) = &self.model {
            if !allowed_models.contains(model) {
                return Err(Error::invalid(format!(
                    "model must be one of: {}",
                    allowed_models.join(", ")
                )));
            }
        }
        if self
            .max_tokens
            .is_some_and(|tokens| tokens == 0 || tokens > MAX_PRESET_TOKENS)
        {
            return Err(Error::invalid(format!(
                "maxTokens must be 1 to {MAX_PRESET_TOKENS}"
            )));
        }
        if self
            .temperature
            .is_some_and(|t| !t.is_finite() || !(0.0..=MAX_TEMPERATURE).contains(&t))
        {
            return Err(Error::invalid(format!(
                "temperature must be 0 to {MAX_TEMPERATURE}"
            )));
        }
        let default_tags = Tags::parse(&self.default_tags)?.into_vec();
        if self.starter_prompts.len() > MAX_STARTER_PROMPTS {
            return Err(Error::invalid(format!(
                "at most {MAX_STARTER_PROMPTS} starter prompts are allowed"
            )));
        }
        if self.starter_prompts.iter().any(|p| {
            p.trim().is_empty()
                || p.chars().count() > MAX_STARTER_PROMPT_CHARS
                || p.chars().any(char::is_control)
        }) {
            return Err(Error::invalid(format!(
                "each starter prompt must be 1 to {MAX_STARTER_PROMPT_CHARS} characters, none \
                 a control character"
            )));
        }
        Ok(Self {
            name,
            default_tags,
            ..self
        })
    }
}

/// A user's preset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Preset {
    pub id: PresetId,
    #[serde(flatten)]
    pub fields: PresetFields,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One of the operator's templates (`PRESET_TEMPLATES`): a preset every user sees, named by
/// a slug, which a user copies to use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PresetTemplate {
    pub id: String,
    #[serde(flatten)]
    pub fields: PresetFields,
}

impl PresetTemplate {
    /// The operator's templates as configured (a JSON array), each checked as a user's
    /// preset is, with unique slugs.
    pub fn parse_all(json: &str, allowed_models: &[String]) -> Result<Vec<Self>, Error> {
        let templates: Vec<Self> = serde_json::from_str(json).map_err(|e| {
            Error::Config(format!("PRESET_TEMPLATES is not a list of presets: {e}"))
        })?;
        let mut checked = Vec::with_capacity(templates.len());
        for template in templates {
            let slug_ok = !template.id.is_empty()
                && template.id.len() <= 64
                && template
                    .id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !slug_ok || checked.iter().any(|t: &Self| t.id == template.id) {
                return Err(Error::Config(format!(
                    "PRESET_TEMPLATES: {:?} is not a unique slug (letters, digits, - and _)",
                    template.id
                )));
            }
            let fields = template
                .fields
                .checked(allowed_models)
                .map_err(|e| Error::Config(format!("PRESET_TEMPLATES {:?}: {e}", template.id)))?;
            checked.push(Self {
                id: template.id,
                fields,
            });
        }
        Ok(checked)
    }
}

/// The settings a conversation keeps from the preset it was started with (or last applied):
/// a copy, not a reference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConversationSettings {
    pub preset_id: PresetId,
    pub preset_name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub instructions: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
}

/// What a conversation's item keeps of its preset: enough for a list to name it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PresetRef {
    pub id: PresetId,
    pub name: String,
}

impl From<&ConversationSettings> for PresetRef {
    fn from(settings: &ConversationSettings) -> Self {
        Self {
            id: settings.preset_id,
            name: settings.preset_name.clone(),
        }
    }
}

impl From<&Preset> for ConversationSettings {
    fn from(preset: &Preset) -> Self {
        Self {
            preset_id: preset.id,
            preset_name: preset.fields.name.clone(),
            instructions: preset.fields.instructions.clone(),
            model: preset.fields.model.clone(),
            max_tokens: preset.fields.max_tokens,
            temperature: preset.fields.temperature,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields() -> PresetFields {
        PresetFields {
            name: "Travel".into(),
            instructions: "Answer briefly.".into(),
            model: None,
            max_tokens: Some(500),
            temperature: Some(0.3),
            default_tags: vec!["travel".into(), " travel ".into()],
            starter_prompts: vec!["Plan a weekend".into()],
        }
    }

    #[test]
    fn a_preset_is_checked_as_a_whole() {
        let allowed = vec!["m".to_owned()];
        let checked = fields().checked(&allowed).unwrap();
        assert_eq!(checked.default_tags, ["travel"]);
        let bad = [
            PresetFields {
                name: " ".into(),
                ..fields()
            },
            PresetFields {
                model: Some("other".into()),
                ..fields()
            },
            PresetFields {
                max_tokens: Some(0),
                ..fields()
            },
            PresetFields {
                temperature: Some(2.5),
                ..fields()
            },
            PresetFields {
                temperature: Some(f64::NAN),
                ..fields()
            },
            PresetFields {
                starter_prompts: vec![String::new()],
                ..fields()
            },
            PresetFields {
                instructions: "x".repeat(MAX_INSTRUCTIONS_BYTES + 1),
                ..fields()
            },
        ];
        for preset in bad {
            assert!(preset.clone().checked(&allowed).is_err(), "{preset:?}");
        }
    }

    #[test]
    fn templates_need_unique_slugs_and_valid_settings() {
        let allowed = vec!["m".to_owned()];
        let one = r#"[{"id": "travel", "name": "Travel", "instructions": "Be brief."}]"#;
        assert_eq!(PresetTemplate::parse_all(one, &allowed).unwrap().len(), 1);
        for bad in [
            r#"[{"id": "a", "name": "A"}, {"id": "a", "name": "B"}]"#,
            r#"[{"id": "has space", "name": "A"}]"#,
            r#"[{"id": "a", "name": "A", "model": "nope"}]"#,
            r#"{"id": "a"}"#,
        ] {
            assert!(PresetTemplate::parse_all(bad, &allowed).is_err(), "{bad}");
        }
    }
}
