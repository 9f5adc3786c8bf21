//! A conversation as an export file holds it: the JSON format an import reads back, and
//! the formats a user can ask for.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::model::{Attachment, ConversationId, Message, MessageId, Metadata, Role};

/// The version of the JSON export's shape, written into every file.
pub const EXPORT_FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExportFormat {
    Json,
    Markdown,
}

impl ExportFormat {
    pub fn parse(raw: Option<&str>) -> Result<Self, Error> {
        match raw {
            None | Some("json") => Ok(Self::Json),
            Some("markdown") => Ok(Self::Markdown),
            Some(_) => Err(Error::invalid("format must be json or markdown")),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Markdown => "markdown",
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Markdown => "md",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::Json => "application/json",
            Self::Markdown => "text/markdown; charset=utf-8",
        }
    }
}

/// A conversation as its JSON export holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportedConversation {
    pub id: ConversationId,
    /// The title shown: the user's, else the one derived from the first message.
    pub title: String,
    /// The title the user set, if any.
    pub user_title: Option<String>,
    /// The title derived from the first user message, if any.
    pub auto_title: Option<String>,
    pub created_at: DateTime<Utc>,
    pub last_activity: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub is_archived: bool,
    pub tags: Vec<String>,
    pub summary: Option<String>,
    pub message_count: u64,
}

/// A message as its JSON export holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportedMessage {
    pub id: MessageId,
    pub role: Role,
    pub content: String,
    pub timestamp: DateTime<Utc>,
    pub attachments: Vec<Attachment>,
    pub metadata: Metadata,
    pub client_message_id: Option<String>,
    /// When the user wrote it on their device, if the app said (absent in files written
    /// before it was kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_timestamp: Option<DateTime<Utc>>,
}

/// A whole JSON export file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConversationExport {
    pub format_version: u32,
    pub exported_at: DateTime<Utc>,
    pub conversation: ExportedConversation,
    /// The messages the conversation shows (its active branch), oldest first.
    pub messages: Vec<ExportedMessage>,
    /// The rest of a branched conversation's tree (`tree`): each run of messages not shown,
    /// with the message it grew from; absent for a conversation that never branched.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub branches: Vec<ExportedBranch>,
}

/// A run of messages off the branch a conversation shows, as its JSON export holds it: the
/// message the run grew from (`None`: the root) and its messages, oldest first, each the
/// parent of the next. An import puts it back as a branch forked at that message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportedBranch {
    pub parent_id: Option<MessageId>,
    pub messages: Vec<ExportedMessage>,
}

impl From<&Message> for ExportedMessage {
    fn from(m: &Message) -> Self {
        Self {
            id: m.id,
            role: m.role,
            content: m.content.clone(),
            timestamp: m.timestamp,
            attachments: m.attachments.clone(),
            metadata: m.metadata.clone(),
            client_message_id: m.client_message_id.clone(),
            client_timestamp: m.client_timestamp,
        }
    }
}
