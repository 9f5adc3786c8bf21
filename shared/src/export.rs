//! Exporting one conversation as a file: JSON (the format an import reads back) or Markdown
//! (to read). The file is written to the attachments bucket page by page as the messages
//! are read, oldest first (S3 multipart upload: bounded memory at any length, nothing held
//! to Lambda's 6 MB response), under `exports/`, where a lifecycle rule removes it after
//! `EXPORT_RETENTION_DAYS` in `template.yaml`; the caller gets a 15-minute download link.
//!
//! Uploaded files are referenced by their `attachmentId` with name, type and size (a
//! download link in a file kept for days would have expired); links stay as they were.

use chrono::{DateTime, SecondsFormat, Utc};

use crate::attachments::{Attachments, ObjectWriter};
use crate::error::Error;
use crate::model::{
    kept_client_timestamp, Attachment, Conversation, ConversationId, Message, Role, Tags, Title,
    UserId,
};
use crate::store::{transaction_chunks, ConversationItem, Creation, Store, TRANSACTION_MAX_ITEMS};
pub use domain::export::{
    ConversationExport, ExportFormat, ExportedConversation, ExportedMessage, EXPORT_FORMAT_VERSION,
};

/// Where exports are written in the bucket (a lifecycle rule expires them).
pub const EXPORT_PREFIX: &str = "exports/";
/// Where the exports of one conversation are written: deleting it deletes them.
pub fn conversation_exports_prefix(user: &UserId, id: &ConversationId) -> String {
    format!("{EXPORT_PREFIX}users/{user}/{id}/")
}

/// How long an export of an unchanged conversation is handed out again instead of written
/// anew (well inside the week the bucket keeps exports).
pub const EXPORT_REUSED_FOR: chrono::Duration = chrono::Duration::days(1);

/// A conversation's version as its export would hold it: its metadata (message count, last
/// activity, title, tags, summary and times) and the export format's version, hashed.
fn version_of(exported: &ExportedConversation) -> Result<String, Error> {
    use sha2::{Digest, Sha256};
    let metadata =
        serde_json::to_vec(exported).map_err(|e| Error::internal("fingerprint an export", e))?;
    let digest = Sha256::new()
        .chain_update(EXPORT_FORMAT_VERSION.to_string())
        .chain_update(metadata)
        .finalize();
    Ok(digest[..16].iter().map(|b| format!("{b:02x}")).collect())
}

/// Messages read per page while exporting.
const EXPORT_PAGE: usize = 200;

/// A finished export: where to download it, until when, and what it holds.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportedFile {
    pub download_url: String,
    pub expires_at: DateTime<Utc>,
    pub format: ExportFormat,
    pub messages: u64,
    pub bytes: u64,
}

/// What an import did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    pub conversation: ConversationId,
    /// Whether this import created the conversation (else an earlier one had).
    pub created: bool,
    pub messages_stored: usize,
    pub messages_already_present: usize,
}

/// Writes exports of a user's conversations, and reads them back.
#[derive(Clone)]
pub struct Exports {
    store: Store,
}

impl Exports {
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    /// Writes the whole conversation, oldest message first, to a new file and returns a
    /// link to it. `NotFound` for a conversation the user does not have.
    pub async fn export_conversation(
        &self,
        bucket: &Attachments,
        user: &UserId,
        id: &ConversationId,
        format: ExportFormat,
        now: DateTime<Utc>,
    ) -> Result<ExportedFile, Error> {
        let stored = self
            .store
            .conversation(user, id)
            .await?
            .ok_or(Error::NotFound)?;
        let exported = ExportedConversation::from(&stored);
        let conversation: Conversation = stored.into();
        // Named by what it holds: the same conversation unchanged exports to the same file,
        // which is handed out again while it is recent rather than written anew.
        let key = format!(
            "{}{}.{}",
            conversation_exports_prefix(user, id),
            version_of(&exported)?,
            format.extension()
        );
        if let Some(bytes) = bucket
            .recent_object_bytes(&key, now, EXPORT_REUSED_FOR)
            .await?
        {
            let (download_url, expires_at) = bucket.presign_get(&key, now).await?;
            return Ok(ExportedFile {
                download_url,
                expires_at,
                format,
                messages: exported.message_count,
                bytes,
            });
        }
        let file_name = format!("conversation-{id}.{}", format.extension());
        let mut writer = bucket
            .object_writer(&key, format.content_type(), &file_name)
            .await?;
        let written = self
            .write_export(&mut writer, user, &conversation, &exported, format, now)
            .await;
        let messages = match written {
            Ok(messages) => messages,
            Err(error) => {
                writer.abort().await;
                return Err(error);
            }
        };
        // A failed finish gives the upload up itself.
        let bytes = writer.finish().await?;
        // Deleted while it was written: its purge may have run before this file existed.
        if !self.store.conversation_exists(user, id).await? {
            bucket.delete_object(&key).await?;
            return Err(Error::NotFound);
        }
        let (download_url, expires_at) = bucket.presign_get(&key, now).await?;
        Ok(ExportedFile {
            download_url,
            expires_at,
            format,
            messages,
            bytes,
        })
    }

    /// Puts a conversation back from its JSON export, for `user`, with the same ids, times
    /// and messages (each written only if absent, as the migration writes: importing again
    /// stores nothing twice, and an interrupted import continues). A conversation the user
    /// deleted is not brought back under its id.
    pub async fn import_conversation(
        &self,
        user: &UserId,
        export: &ConversationExport,
    ) -> Result<Imported, Error> {
        if export.format_version != EXPORT_FORMAT_VERSION {
            return Err(Error::invalid(format!(
                "formatVersion {} is not one this version reads ({EXPORT_FORMAT_VERSION})",
                export.format_version
            )));
        }
        let c = &export.conversation;
        for title in [&c.user_title, &c.auto_title].into_iter().flatten() {
            Title::parse(title)?;
        }
        Tags::parse(&c.tags)?;
        let mut item = ConversationItem::imported(user, c);
        // The exported summary already covers the exported messages: it is not made again.
        if item.summary.is_some() {
            if let Some(newest) = export.messages.iter().max_by_key(|m| (m.timestamp, m.id)) {
                item.summarized_through = c.message_count;
                item.summarized_until =
                    Some(crate::keys::message_sort_key(newest.timestamp, &newest.id));
            }
        }
        let created = match self.store.create_conversation_with_id(&item).await? {
            Creation::Created => true,
            Creation::AlreadyExists => false,
            Creation::Deleted => {
                return Err(Error::invalid(
                    "this conversation was deleted: it is not imported again under its id",
                ))
            }
        };
        // A message listed twice is one message (a transaction refuses an item twice).
        let mut seen = std::collections::HashSet::new();
        let messages: Vec<Message> = export
            .messages
            .iter()
            .filter(|m| seen.insert(m.id))
            .map(|m| imported_message(c.id, m))
            .collect();
        let mut stored = 0;
        for chunk in transaction_chunks(&messages, TRANSACTION_MAX_ITEMS) {
            stored += self.store.append_migrated(user, &c.id, chunk, None).await?;
        }
        // The rest of the tree: each run as a branch at the message it grew from.
        let mut listed = messages.len();
        for run in &export.branches {
            let run_messages: Vec<Message> = run
                .messages
                .iter()
                .filter(|m| seen.insert(m.id))
                .map(|m| imported_message(c.id, m))
                .collect();
            listed += run_messages.len();
            stored += self
                .store
                .import_run(user, &c.id, run.parent_id.as_ref(), &run_messages)
                .await?;
        }
        Ok(Imported {
            conversation: c.id,
            created,
            messages_stored: stored,
            messages_already_present: listed - stored,
        })
    }

    /// Writes one conversation into `writer` as its export file holds it (JSON on one line,
    /// without a line end); returns the messages written.
    pub(crate) async fn write_conversation(
        &self,
        writer: &mut ObjectWriter,
        stored: ConversationItem,
        format: ExportFormat,
        exported_at: DateTime<Utc>,
    ) -> Result<u64, Error> {
        let exported = ExportedConversation::from(&stored);
        let user = stored.user_id().clone();
        let conversation: Conversation = stored.into();
        self.write_export(writer, &user, &conversation, &exported, format, exported_at)
            .await
    }

    async fn write_export(
        &self,
        writer: &mut ObjectWriter,
        user: &UserId,
        conversation: &Conversation,
        exported: &ExportedConversation,
        format: ExportFormat,
        now: DateTime<Utc>,
    ) -> Result<u64, Error> {
        let encode = |e: serde_json::Error| Error::internal("encode export", e);
        match format {
            ExportFormat::Json => {
                let head = format!(
                    "{{\"formatVersion\":{EXPORT_FORMAT_VERSION},\"exportedAt\":{},\"conversation\":{},\"messages\":[",
                    serde_json::to_string(&now).map_err(encode)?,
                    serde_json::to_string(exported).map_err(encode)?,
                );
                writer.write(head.as_bytes()).await?;
            }
            ExportFormat::Markdown => {
                writer
                    .write(markdown_head(conversation, now).as_bytes())
                    .await?;
            }
        }
        let mut after = None;
        let mut count: u64 = 0;
        loop {
            // A page of items, and each message's content (up to 2 MiB, in the bucket) read
            // only when it is written: the memory an export takes does not grow with the
            // page's content.
            let (page, next) = self
                .store
                .shown_message_items_oldest_first(user, &conversation.id, after, EXPORT_PAGE)
                .await?;
            for item in page {
                let message = Box::pin(self.store.load_content(item))
                    .await?
                    .into_message();
                let message = &message;
                let text = match format {
                    ExportFormat::Json => {
                        let json = serde_json::to_string(&ExportedMessage::from(message))
                            .map_err(encode)?;
                        if count == 0 {
                            json
                        } else {
                            format!(",{json}")
                        }
                    }
                    ExportFormat::Markdown => markdown_message(message),
                };
                writer.write(text.as_bytes()).await?;
                count += 1;
            }
            match next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        if format == ExportFormat::Json {
            writer.write(b"]").await?;
            let runs = self.store.runs_off_path(user, &conversation.id).await?;
            if !runs.is_empty() {
                writer.write(b",\"branches\":[").await?;
                for (index, run) in runs.iter().enumerate() {
                    let parent = serde_json::to_string(&run.parent).map_err(encode)?;
                    let head = format!(
                        "{}{{\"parentId\":{parent},\"messages\":[",
                        if index == 0 { "" } else { "," }
                    );
                    writer.write(head.as_bytes()).await?;
                    let items = self.store.run_items(user, &conversation.id, run).await?;
                    for (at, item) in items.into_iter().enumerate() {
                        let message = Box::pin(self.store.load_content(item))
                            .await?
                            .into_message();
                        let json = serde_json::to_string(&ExportedMessage::from(&message))
                            .map_err(encode)?;
                        let text = if at == 0 { json } else { format!(",{json}") };
                        writer.write(text.as_bytes()).await?;
                    }
                    writer.write(b"]}").await?;
                }
                writer.write(b"]").await?;
            }
            writer.write(b"}").await?;
        }
        Ok(count)
    }
}

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn markdown_head(conversation: &Conversation, now: DateTime<Utc>) -> String {
    let mut head = format!("# {}\n\n", conversation.title.replace('\n', " "));
    head.push_str(&format!(
        "Created {} · {} messages · exported {}",
        time(conversation.created_at),
        conversation.message_count,
        time(now)
    ));
    if !conversation.tags.is_empty() {
        head.push_str(&format!(" · tags: {}", conversation.tags.join(", ")));
    }
    head.push_str("\n\n");
    if let Some(summary) = &conversation.summary {
        head.push_str(&format!("> {}\n\n", summary.replace('\n', "\n> ")));
    }
    head
}

fn markdown_message(message: &Message) -> String {
    let who = match message.role {
        Role::User => "User",
        Role::Assistant => "Assistant",
        Role::System => "System",
    };
    let mut text = format!(
        "---\n\n**{who}** · {}\n\n{}\n\n",
        time(message.timestamp),
        message.content
    );
    for attachment in &message.attachments {
        match attachment {
            Attachment::Link(link) => text.push_str(&format!("- Attachment: <{link}>\n")),
            Attachment::File(file) => text.push_str(&format!(
                "- Attachment: {} ({}, {} bytes, id {})\n",
                file.file_name, file.content_type, file.size, file.attachment_id
            )),
        }
    }
    if !message.attachments.is_empty() {
        text.push('\n');
    }
    text
}

/// A message of an export file as an import stores it.
fn imported_message(conversation: ConversationId, m: &ExportedMessage) -> Message {
    Message {
        id: m.id,
        conversation_id: conversation,
        role: m.role,
        content: m.content.clone(),
        timestamp: m.timestamp,
        attachments: m.attachments.clone(),
        metadata: m.metadata.clone(),
        client_message_id: m.client_message_id.clone(),
        client_timestamp: kept_client_timestamp(m.client_timestamp, m.timestamp),
        token_count: None,
        slot: None,
    }
}
