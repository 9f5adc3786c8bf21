//! The JSON shapes the mobile app sends and receives (camelCase). Request bodies refuse
//! unknown fields, so a typo is a 400 rather than a silently ignored field.

use chrono::{DateTime, SecondsFormat, Utc};
use domain::preset::{ConversationSettings, PresetRef};
use serde::{Deserialize, Serialize, Serializer};
use uuid::fmt::Hyphenated;

use crate::account_export::ExportDownload;
use crate::attachments::{DownloadLinks, Upload, UploadRequest};
use crate::export::ExportedFile;
use crate::migration::{SkippedItem, UserSummary};
use crate::model::{
    Attachment, Conversation, ConversationWithMessages, DeletedConversation, Message, Metadata,
    Role,
};
use crate::search::{MatchedIn, SearchPage};
use crate::store::{ExportJob, ExportStatus};
use crate::sync::{SyncPage, Synced};
use crate::usage::UsageReport;
use domain::error::Error;
use domain::tree::Siblings;
use domain::usage::Metered;

/// The skipped items a migration response lists at most (it counts them all).
const MAX_SKIPPED_LISTED: usize = 50;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreateConversationBody {
    pub title: Option<String>,
    /// Absent: the preset's default tags, when started with one.
    pub tags: Option<Vec<String>>,
    /// A preset of the caller's, whose settings the conversation keeps.
    pub preset_id: Option<String>,
}

/// `PUT /conversations/{id}/preset`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ApplyPresetBody {
    pub preset_id: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AddMessageBody {
    pub role: Role,
    pub content: String,
    #[serde(default)]
    pub attachments: Vec<AttachmentBody>,
    #[serde(default)]
    pub metadata: Metadata,
    pub client_message_id: Option<String>,
    /// When the user wrote it on their device (RFC 3339), for a message sent later.
    pub client_timestamp: Option<String>,
}

/// `POST /conversations/{id}/messages/{messageId}/edit`: the new words of a user's message.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EditMessageBody {
    pub content: String,
    #[serde(default)]
    pub metadata: Metadata,
    pub client_message_id: Option<String>,
    /// When the user made the edit on their device (RFC 3339).
    pub client_timestamp: Option<String>,
}

/// `PUT /conversations/{id}/branch`: the message whose newest leaf becomes the active one, or
/// its sibling at `position`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SwitchBranchBody {
    pub message_id: String,
    pub position: Option<u32>,
}

/// A `clientTimestamp` as the app sends it: an RFC 3339 date-time, with its `T` (chrono's parser
/// also takes a space there, which the contract's `date-time` does not).
pub fn client_timestamp(raw: Option<&str>) -> Result<Option<DateTime<Utc>>, Error> {
    rfc3339_time("clientTimestamp", raw)
}

/// A time a client sent as RFC 3339 (a date, `T`, a time and an offset), as UTC.
pub fn rfc3339_time(field: &str, raw: Option<&str>) -> Result<Option<DateTime<Utc>>, Error> {
    raw.map(|raw| {
        let dated = raw
            .as_bytes()
            .get(10)
            .is_some_and(|b| b.eq_ignore_ascii_case(&b'T'));
        dated
            .then(|| DateTime::parse_from_rfc3339(raw).ok())
            .flatten()
            .map(|t| t.with_timezone(&Utc))
            .ok_or_else(|| Error::invalid(format!("{field} must be an RFC 3339 time")))
    })
    .transpose()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UploadBody {
    pub file_name: String,
    pub content_type: String,
    pub size: u64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MigrateBody {
    #[serde(default)]
    pub dry_run: bool,
}

/// An attachment as a message names it: a link (any string, as the old model kept them), or
/// a file uploaded through `POST /conversations/{id}/attachments`, by its id.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum AttachmentBody {
    Link(String),
    Upload(UploadReference),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UploadReference {
    pub attachment_id: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenameBody {
    pub title: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchiveBody {
    pub archived: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TagsBody {
    pub tags: Vec<String>,
}

/// Times as JavaScript's `toISOString()` writes them: UTC, milliseconds, `Z`.
pub(super) fn iso_millis<S: Serializer>(
    time: &DateTime<Utc>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&time.to_rfc3339_opts(SecondsFormat::Millis, true))
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConversationView<'a> {
    pub id: String,
    pub user_id: &'a str,
    pub title: &'a str,
    #[serde(serialize_with = "iso_millis")]
    pub last_activity: DateTime<Utc>,
    pub is_archived: bool,
    pub tags: &'a [String],
    pub summary: Option<&'a str>,
    pub message_count: u64,
    #[serde(serialize_with = "iso_millis")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "iso_millis")]
    pub updated_at: DateTime<Utc>,
    /// The preset it was started with or last applied (`{id, name}`), when any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preset: Option<&'a PresetRef>,
}

impl<'a> From<&'a Conversation> for ConversationView<'a> {
    fn from(c: &'a Conversation) -> Self {
        Self {
            id: c.id.to_string(),
            user_id: c.user_id.as_str(),
            title: &c.title,
            last_activity: c.last_activity,
            is_archived: c.is_archived,
            tags: &c.tags,
            summary: c.summary.as_deref(),
            message_count: c.message_count,
            created_at: c.created_at,
            updated_at: c.updated_at,
            preset: c.preset.as_ref(),
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageView<'a> {
    /// Ids as their hyphenated text, written straight into the response (no string each).
    pub id: Hyphenated,
    pub conversation_id: Hyphenated,
    pub role: Role,
    pub content: &'a str,
    #[serde(serialize_with = "iso_millis")]
    pub timestamp: DateTime<Utc>,
    pub attachments: Vec<AttachmentView<'a>>,
    pub metadata: &'a Metadata,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_message_id: Option<&'a str>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "optional_iso_millis"
    )]
    pub client_timestamp: Option<DateTime<Utc>>,
    /// Where it stands among the messages with its parent ("2 / 3"), when it has any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub siblings: Option<Siblings>,
}

/// A link as it was given, or an uploaded file with a short-lived download URL.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum AttachmentView<'a> {
    Link(&'a str),
    File(FileView<'a>),
}

impl<'a> AttachmentView<'a> {
    /// A message's attachments as a response shows them, files with their download links.
    pub fn all(attachments: &'a [Attachment], links: &'a DownloadLinks) -> Vec<Self> {
        attachments
            .iter()
            .map(|a| match a {
                Attachment::Link(link) => AttachmentView::Link(link),
                Attachment::File(file) => {
                    let link = links.get(&file.attachment_id);
                    AttachmentView::File(FileView {
                        attachment_id: file.attachment_id.to_string(),
                        file_name: &file.file_name,
                        content_type: &file.content_type,
                        size: file.size,
                        download_url: link.map(|(url, _)| url.as_str()),
                        download_expires_at: link.map(|(_, at)| *at),
                    })
                }
            })
            .collect()
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FileView<'a> {
    pub attachment_id: String,
    pub file_name: &'a str,
    pub content_type: &'a str,
    pub size: u64,
    pub download_url: Option<&'a str>,
    #[serde(serialize_with = "optional_iso_millis")]
    pub download_expires_at: Option<DateTime<Utc>>,
}

pub(super) fn optional_iso_millis<S: Serializer>(
    time: &Option<DateTime<Utc>>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match time {
        Some(time) => iso_millis(time, serializer),
        None => serializer.serialize_none(),
    }
}

impl<'a> MessageView<'a> {
    pub fn new(m: &'a Message, links: &'a DownloadLinks) -> Self {
        Self {
            id: m.id.as_uuid().hyphenated(),
            conversation_id: m.conversation_id.as_uuid().hyphenated(),
            role: m.role,
            content: &m.content,
            timestamp: m.timestamp,
            attachments: AttachmentView::all(&m.attachments, links),
            metadata: &m.metadata,
            client_message_id: m.client_message_id.as_deref(),
            client_timestamp: m.client_timestamp,
            siblings: None,
        }
    }

    /// With its place among its siblings, when it has any.
    pub fn with_siblings(self, siblings: Siblings) -> Self {
        Self {
            siblings: (siblings != Siblings::ONLY).then_some(siblings),
            ..self
        }
    }
}

/// `GET /conversations/{id}`: the conversation's fields, its messages oldest first, and a
/// cursor for older messages.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConversationWithMessagesView<'a> {
    #[serde(flatten)]
    pub conversation: ConversationView<'a>,
    /// The settings it keeps of its preset, when it was started with one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub settings: Option<&'a ConversationSettings>,
    pub messages: Vec<MessageView<'a>>,
    pub older_messages_cursor: Option<&'a str>,
    pub has_older_messages: bool,
}

impl<'a> ConversationWithMessagesView<'a> {
    pub fn new(c: &'a ConversationWithMessages, links: &'a DownloadLinks) -> Self {
        Self {
            conversation: (&c.conversation).into(),
            settings: c.settings.as_ref(),
            messages: c
                .messages
                .iter()
                .map(|m| MessageView::new(m, links).with_siblings(c.siblings_of(&m.id)))
                .collect(),
            older_messages_cursor: c.older_messages.as_deref(),
            has_older_messages: c.older_messages.is_some(),
        }
    }
}

/// `GET /conversations`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConversationListView<'a> {
    pub conversations: Vec<ConversationView<'a>>,
    pub next_cursor: Option<&'a str>,
    pub has_more: bool,
    pub limit: usize,
    /// Echoed for clients that page by number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page: Option<usize>,
}

/// `GET /conversations/{id}/export`: where to download the file (also the `Location`).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportView<'a> {
    pub download_url: &'a str,
    #[serde(serialize_with = "iso_millis")]
    pub expires_at: DateTime<Utc>,
    pub format: &'static str,
    pub message_count: u64,
    pub bytes: u64,
}

impl<'a> From<&'a ExportedFile> for ExportView<'a> {
    fn from(file: &'a ExportedFile) -> Self {
        Self {
            download_url: &file.download_url,
            expires_at: file.expires_at,
            format: file.format.name(),
            message_count: file.messages,
            bytes: file.bytes,
        }
    }
}

/// `POST /exports` and `GET /exports/{id}`: an account export, with its files' download
/// links once it is done.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountExportView<'a> {
    pub id: String,
    pub status: ExportStatus,
    pub formats: Vec<&'static str>,
    #[serde(serialize_with = "iso_millis")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "iso_millis")]
    pub updated_at: DateTime<Utc>,
    /// When the files (and this record) are removed.
    #[serde(serialize_with = "iso_millis")]
    pub available_until: DateTime<Utc>,
    pub conversations_exported: u64,
    pub messages_exported: u64,
    pub files: Vec<AccountExportFileView<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'a str>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountExportFileView<'a> {
    pub format: &'static str,
    pub download_url: &'a str,
    #[serde(serialize_with = "iso_millis")]
    pub expires_at: DateTime<Utc>,
    pub bytes: u64,
}

impl<'a> AccountExportView<'a> {
    pub fn new(job: &'a ExportJob, downloads: &'a [ExportDownload]) -> Self {
        Self {
            id: job.export_id.to_string(),
            status: job.status,
            formats: job.formats.iter().map(|f| f.name()).collect(),
            created_at: job.created_at,
            updated_at: job.updated_at,
            available_until: DateTime::from_timestamp(job.expires_at, 0).unwrap_or(job.created_at),
            conversations_exported: job.conversations,
            messages_exported: job.messages,
            files: downloads
                .iter()
                .map(|d| AccountExportFileView {
                    format: d.format.name(),
                    download_url: &d.download_url,
                    expires_at: d.expires_at,
                    bytes: d.bytes,
                })
                .collect(),
            error: job.error.as_deref(),
        }
    }
}

/// `GET /search`: the caller's conversations that have every word searched for, title hits
/// first, then by their newest matching message.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SearchView<'a> {
    pub results: Vec<SearchHitView<'a>>,
    /// The words searched for, as the index keeps them (lower case, common words left out).
    pub terms: &'a [String],
    pub next_cursor: Option<&'a str>,
    pub has_more: bool,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SearchHitView<'a> {
    pub conversation: ConversationView<'a>,
    /// `title` or `message`: where the search's leading word was found.
    pub matched_in: &'static str,
    /// The newest message with that word (for `message`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    pub snippet: &'a str,
    #[serde(serialize_with = "iso_millis")]
    pub matched_at: DateTime<Utc>,
}

impl<'a> SearchView<'a> {
    pub fn new(page: &'a SearchPage, terms: &'a [String]) -> Self {
        Self {
            results: page
                .hits
                .iter()
                .map(|hit| SearchHitView {
                    conversation: ConversationView::from(&hit.conversation),
                    matched_in: match hit.matched_in {
                        MatchedIn::Title => "title",
                        MatchedIn::Message => "message",
                    },
                    message_id: hit.message.map(|m| m.to_string()),
                    snippet: &hit.snippet,
                    matched_at: hit.matched_at,
                })
                .collect(),
            terms,
            next_cursor: page.next_cursor.as_deref(),
            has_more: page.next_cursor.is_some(),
        }
    }
}

/// `GET /mobile/sync`: replace each conversation listed, remove each one deleted, keep the
/// cursor for the next sync; ask again at once while `hasMore`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncView<'a> {
    pub conversations: Vec<SyncedView<'a>>,
    pub deleted: Vec<DeletedView>,
    pub cursor: &'a str,
    pub has_more: bool,
    /// This round lists every conversation (a first sync): what it does not list, the app
    /// no longer holds.
    pub full_sync: bool,
    /// The user's presets, all of them, when they changed since the cursor: replace the
    /// presets held with these (absent: unchanged).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub presets: Option<&'a [domain::preset::Preset]>,
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum SyncedView<'a> {
    Conversation(ConversationView<'a>),
    WithMessages(ConversationWithMessagesView<'a>),
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeletedView {
    pub id: String,
    #[serde(serialize_with = "iso_millis")]
    pub deleted_at: DateTime<Utc>,
}

impl<'a> SyncView<'a> {
    pub fn new(page: &'a SyncPage, links: &'a DownloadLinks) -> Self {
        Self {
            conversations: page
                .conversations
                .iter()
                .map(|synced| match synced {
                    Synced::Conversation(c) => SyncedView::Conversation(c.into()),
                    Synced::WithMessages(c) => {
                        SyncedView::WithMessages(ConversationWithMessagesView::new(c, links))
                    }
                })
                .collect(),
            deleted: page.deleted.iter().map(DeletedView::from).collect(),
            cursor: &page.cursor,
            has_more: page.has_more,
            full_sync: page.full,
            presets: page.presets.as_deref(),
        }
    }
}

impl From<&DeletedConversation> for DeletedView {
    fn from(d: &DeletedConversation) -> Self {
        Self {
            id: d.id.to_string(),
            deleted_at: d.deleted_at,
        }
    }
}

/// The one error shape of the API.
#[derive(Debug, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MigrationView<'a> {
    pub dry_run: bool,
    pub conversations_created: u64,
    pub messages_migrated: u64,
    pub messages_already_present: u64,
    pub skipped_count: usize,
    /// The first skipped items, each with its key and why.
    pub skipped: &'a [SkippedItem],
}

impl<'a> From<&'a UserSummary> for MigrationView<'a> {
    fn from(s: &'a UserSummary) -> Self {
        Self {
            dry_run: s.dry_run,
            conversations_created: s.conversations_created,
            messages_migrated: s.messages_migrated,
            messages_already_present: s.messages_already_present,
            skipped_count: s.skipped.len(),
            skipped: &s.skipped[..s.skipped.len().min(MAX_SKIPPED_LISTED)],
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UploadView<'a> {
    pub attachment_id: String,
    pub file_name: &'a str,
    pub content_type: &'a str,
    pub size: u64,
    pub upload: UploadTarget<'a>,
}

/// How to send the file: this method to this URL with exactly these headers, before
/// `expiresAt`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UploadTarget<'a> {
    pub method: &'a str,
    pub url: &'a str,
    pub headers: std::collections::BTreeMap<&'a str, &'a str>,
    #[serde(serialize_with = "iso_millis")]
    pub expires_at: DateTime<Utc>,
}

impl<'a> UploadView<'a> {
    pub fn new(upload: &'a Upload, request: &'a UploadRequest) -> Self {
        Self {
            attachment_id: upload.attachment_id.to_string(),
            file_name: &request.file_name,
            content_type: &request.content_type,
            size: request.size,
            upload: UploadTarget {
                method: &upload.method,
                url: &upload.url,
                headers: upload
                    .headers
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect(),
                expires_at: upload.expires_at,
            },
        }
    }
}

/// `GET /usage`: what the caller used today of each limited route and of the model, beside
/// their limits.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageView {
    /// The UTC day counted (`2026-12-03`).
    pub day: String,
    /// When the day's counts and the token budget start over (midnight UTC).
    #[serde(serialize_with = "iso_millis")]
    pub resets_at: DateTime<Utc>,
    pub model_tokens: TokenUsageView,
    /// By kind of route (`completion`, `search`, `export`, `batch`, `migration`).
    pub requests: std::collections::BTreeMap<&'static str, RequestUsageView>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenUsageView {
    pub used: u64,
    pub limit: u64,
    pub remaining: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestUsageView {
    /// Requests of this kind admitted today.
    pub today: u64,
    /// How many of them a minute may hold.
    pub per_minute: u32,
}

impl UsageView {
    pub fn new(report: &UsageReport, now: DateTime<Utc>) -> Self {
        let limit = report.limits.daily_tokens;
        Self {
            day: domain::usage::day_of(now),
            resets_at: report.resets_at,
            model_tokens: TokenUsageView {
                used: report.today.tokens,
                limit,
                remaining: limit.saturating_sub(report.today.tokens),
            },
            requests: Metered::ALL
                .iter()
                .map(|kind| {
                    let today = report.today.requests.get(kind.name()).copied().unwrap_or(0);
                    let per_minute = report.limits.per_minute(*kind);
                    (kind.name(), RequestUsageView { today, per_minute })
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::model::{ConversationId, MessageId};

    /// What a message view takes in Lambda's response: its JSON as a string inside the
    /// envelope's JSON.
    fn bytes_in_envelope(view: &MessageView) -> usize {
        let body = serde_json::to_string(view).unwrap();
        serde_json::to_string(&body).unwrap().len()
    }

    #[test]
    fn a_message_takes_no_more_than_its_measure_in_a_response_even_with_every_field_at_its_longest()
    {
        let message = Message {
            id: MessageId::generate(),
            conversation_id: ConversationId::generate(),
            role: Role::Assistant,
            // Quotes and backslashes: the characters escaping makes longest.
            content: "\"\\".repeat(10),
            timestamp: Utc.with_ymd_and_hms(2026, 12, 4, 23, 59, 59).unwrap(),
            attachments: Vec::new(),
            metadata: Metadata::new(),
            client_message_id: Some("\"\\".repeat(64)),
            client_timestamp: Some(Utc.with_ymd_and_hms(2026, 12, 4, 23, 0, 0).unwrap()),
            token_count: None,
            slot: None,
        };
        let links = DownloadLinks::default();
        // With the longest client message id (and its escapes), and without one.
        for client_message_id in [Some("\"\\".repeat(64)), None] {
            let message = Message {
                client_message_id,
                ..message.clone()
            };
            let view = MessageView::new(&message, &links);
            let measured = bytes_in_envelope(&view);
            assert!(
                measured <= message.response_bytes(),
                "{measured} bytes measured as {}",
                message.response_bytes()
            );
        }
    }
}

#[cfg(test)]
mod client_timestamps {
    use super::client_timestamp;

    #[test]
    fn a_client_timestamp_is_an_rfc_3339_date_time_and_nothing_else() {
        for good in [
            "2026-11-30T09:15:30.250Z",
            "2026-11-30t09:15:30z",
            "2026-11-30T10:15:30.123456+01:00",
        ] {
            assert!(client_timestamp(Some(good)).unwrap().is_some(), "{good}");
        }
        for bad in [
            "2026-11-30 09:15:30Z",
            "2026-11-30",
            "yesterday",
            "",
            "2026-11-30T09:15:30",
            "2026-13-30T09:15:30Z",
        ] {
            assert!(client_timestamp(Some(bad)).is_err(), "{bad}");
        }
        assert_eq!(client_timestamp(None).unwrap(), None);
    }
}
