//! Attachments in S3. A client asks for an upload, gets a short-lived presigned `PUT` URL for
//! one object, and uploads the file straight to S3; the function never carries the bytes.
//!
//! Every object of a conversation lives under `users/<user>/conversations/<conversation>/`,
//! so the keys a request can reach are built from the caller's own id, and deleting a
//! conversation deletes its prefix. An upload is tagged `state=pending` (the tag is part of
//! the signed request); the bucket's lifecycle rule removes pending objects after a day, so an
//! upload no message ever references does not stay.

mod objects;

use std::time::Duration;

use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::types::{Delete, ObjectIdentifier};
use chrono::{DateTime, Utc};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use crate::error::{chain, Error};
use crate::keys;
use crate::model::{Attachment, AttachmentId, ConversationId, Message, StoredFile, UserId};
use crate::store::LazyS3;
use domain::share::ShareToken;
pub use domain::upload::{UploadCheckpoint, UploadedPart};
pub use objects::ObjectWriter;

/// What an upload may be: the types the app sends (images, audio notes, PDFs, text).
pub const ALLOWED_CONTENT_TYPES: &[&str] = &[
    "image/jpeg",
    "image/png",
    "image/gif",
    "image/webp",
    "image/heic",
    "application/pdf",
    "text/plain",
    "audio/mpeg",
    "audio/mp4",
    "audio/aac",
    "audio/wav",
];
pub const MAX_FILE_NAME_CHARS: usize = 255;
/// How long an upload URL can be used.
pub const UPLOAD_URL_LIFETIME: Duration = Duration::from_secs(15 * 60);
/// The tag an upload carries until a message references it.
pub const PENDING_TAG: &str = "state=pending";
/// The tag of a file a message references (the lifecycle rule keeps it).
const ATTACHED_TAG: &str = "state=attached";
/// How long a download URL in a response can be used.
pub const DOWNLOAD_URL_LIFETIME: Duration = Duration::from_secs(15 * 60);
/// The object metadata that keeps the declared file name (base64url: metadata is ASCII).
const FILE_NAME_METADATA: &str = "file-name";

/// Whether copying files finished, or stopped at its deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Copied {
    All,
    OutOfTime,
}

/// Where each uploaded file of a response can be downloaded: a presigned URL and its expiry.
pub type DownloadLinks = std::collections::HashMap<AttachmentId, (String, DateTime<Utc>)>;

/// Signing for `lifetime` from `now` (the request's time, so tests can fix it).
fn presigning(now: DateTime<Utc>, lifetime: Duration) -> Result<PresigningConfig, Error> {
    PresigningConfig::builder()
        .start_time(now.into())
        .expires_in(lifetime)
        .build()
        .map_err(|e| Error::internal("presigning config", e))
}

/// An attachment as a new message names it: a link kept as it is, or an upload by its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttachmentRef {
    Link(String),
    Upload(AttachmentId),
}
/// S3 deletes at most this many keys per call.
const DELETE_OBJECTS_MAX: usize = 1000;
/// Files copied at once (sharing, continuing a shared conversation).
const COPIES_AT_ONCE: usize = 8;

/// An upload as the client declares it, checked against the limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadRequest {
    pub file_name: String,
    pub content_type: String,
    pub size: u64,
}

impl UploadRequest {
    pub fn parse(
        file_name: &str,
        content_type: &str,
        size: u64,
        max_bytes: u64,
    ) -> Result<Self, Error> {
        let file_name = file_name.trim();
        if file_name.is_empty()
            || file_name.chars().count() > MAX_FILE_NAME_CHARS
            || file_name.contains(['/', '\\'])
            || file_name.chars().any(char::is_control)
        {
            return Err(Error::invalid(format!(
                "fileName must be 1 to {MAX_FILE_NAME_CHARS} characters, without slashes or control characters"
            )));
        }
        let content_type = content_type.trim().to_ascii_lowercase();
        if !ALLOWED_CONTENT_TYPES.contains(&content_type.as_str()) {
            return Err(Error::invalid(format!(
                "contentType must be one of {}",
                ALLOWED_CONTENT_TYPES.join(", ")
            )));
        }
        if size == 0 {
            return Err(Error::invalid("size must be at least 1 byte"));
        }
        if size > max_bytes {
            return Err(Error::TooLarge(format!(
                "the file is {size} bytes; the limit is {max_bytes} bytes"
            )));
        }
        Ok(Self {
            file_name: file_name.to_owned(),
            content_type,
            size,
        })
    }
}

/// A presigned upload: send the file with `method` to `url`, with exactly these headers.
#[derive(Debug, Clone, PartialEq)]
pub struct Upload {
    pub attachment_id: AttachmentId,
    pub url: String,
    pub method: String,
    pub headers: Vec<(String, String)>,
    pub expires_at: DateTime<Utc>,
}

/// The attachments bucket.
#[derive(Clone)]
pub struct Attachments {
    s3: LazyS3,
    bucket: String,
    max_bytes: u64,
}

impl Attachments {
    pub fn new(s3: impl Into<LazyS3>, bucket: impl Into<String>, max_bytes: u64) -> Self {
        Self {
            s3: s3.into(),
            bucket: bucket.into(),
            max_bytes,
        }
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Whether the bucket is there and ours to use (health checks), in a few words if not.
    pub async fn check_bucket(&self) -> Result<(), String> {
        self.s3
            .head_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| crate::aws::describe_sdk_error(&e))
    }

    /// A presigned URL for uploading one file of the user's into the conversation.
    pub async fn presign_upload(
        &self,
        user: &UserId,
        conversation: &ConversationId,
        request: &UploadRequest,
        now: DateTime<Utc>,
    ) -> Result<Upload, Error> {
        let id = AttachmentId::generate();
        let presigned = self
            .s3
            .put_object()
            .bucket(&self.bucket)
            .key(keys::attachment_key(user, conversation, &id))
            .content_type(&request.content_type)
            .content_length(i64::try_from(request.size).unwrap_or(i64::MAX))
            .tagging(PENDING_TAG)
            .metadata(
                FILE_NAME_METADATA,
                URL_SAFE_NO_PAD.encode(&request.file_name),
            )
            .presigned(presigning(now, UPLOAD_URL_LIFETIME)?)
            .await
            .map_err(|e| Error::internal("presign upload", e))?;
        Ok(Upload {
            attachment_id: id,
            url: presigned.uri().to_owned(),
            method: presigned.method().to_owned(),
            headers: presigned
                .headers()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            expires_at: now + chrono::Duration::from_std(UPLOAD_URL_LIFETIME).unwrap_or_default(),
        })
    }

    /// The attachments of a new message: each upload checked in S3 (it exists under this
    /// user's conversation, and its real size and type are within the limits). A bad
    /// reference is `Invalid`. Nothing is marked: [`Attachments::mark_attached`] does that once
    /// the message is stored.
    pub async fn resolve(
        &self,
        user: &UserId,
        conversation: &ConversationId,
        refs: Vec<AttachmentRef>,
    ) -> Result<Vec<Attachment>, Error> {
        let mut resolved = Vec::with_capacity(refs.len());
        for reference in refs {
            let id = match reference {
                AttachmentRef::Link(link) => {
                    resolved.push(Attachment::Link(link));
                    continue;
                }
                AttachmentRef::Upload(id) => id,
            };
            let key = keys::attachment_key(user, conversation, &id);
            let head = match self
                .s3
                .head_object()
                .bucket(&self.bucket)
                .key(&key)
                .send()
                .await
            {
                Ok(head) => head,
                Err(error) if error.as_service_error().is_some_and(|e| e.is_not_found()) => {
                    return Err(Error::invalid(format!(
                        "attachment {id} was not uploaded to this conversation"
                    )))
                }
                Err(error) => return Err(Error::internal("check attachment", error)),
            };
            let size = u64::try_from(head.content_length().unwrap_or(0)).unwrap_or(0);
            if size == 0 || size > self.max_bytes {
                return Err(Error::invalid(format!(
                    "attachment {id} is {size} bytes; the limit is {} bytes",
                    self.max_bytes
                )));
            }
            let content_type = head.content_type().unwrap_or_default().to_ascii_lowercase();
            if !ALLOWED_CONTENT_TYPES.contains(&content_type.as_str()) {
                return Err(Error::invalid(format!(
                    "attachment {id} has a type that is not allowed"
                )));
            }
            let file_name = head
                .metadata()
                .and_then(|m| m.get(FILE_NAME_METADATA))
                .and_then(|encoded| URL_SAFE_NO_PAD.decode(encoded).ok())
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .unwrap_or_else(|| id.to_string());
            resolved.push(Attachment::File(StoredFile {
                attachment_id: id,
                file_name,
                content_type,
                size,
            }));
        }
        Ok(resolved)
    }

    /// Marks the uploads of a stored message as referenced, so the lifecycle rule that
    /// removes unreferenced uploads after a day keeps them. Called only after the message is
    /// stored: an upload named by a message that was refused stays unreferenced and goes.
    pub async fn mark_attached(
        &self,
        user: &UserId,
        conversation: &ConversationId,
        attachments: &[Attachment],
    ) -> Result<(), Error> {
        for attachment in attachments {
            if let Attachment::File(file) = attachment {
                crate::metrics::attachment_attached(file.size);
                self.mark_referenced(user, conversation, &file.attachment_id)
                    .await?;
            }
        }
        Ok(())
    }

    async fn mark_referenced(
        &self,
        user: &UserId,
        conversation: &ConversationId,
        id: &AttachmentId,
    ) -> Result<(), Error> {
        let tagging = aws_sdk_s3::types::Tagging::builder()
            .tag_set(
                aws_sdk_s3::types::Tag::builder()
                    .key("state")
                    .value("attached")
                    .build()
                    .map_err(|e| Error::internal("build tag", e))?,
            )
            .build()
            .map_err(|e| Error::internal("build tagging", e))?;
        self.s3
            .put_object_tagging()
            .bucket(&self.bucket)
            .key(keys::attachment_key(user, conversation, id))
            .tagging(tagging)
            .send()
            .await
            .map_err(|e| Error::internal("mark attachment referenced", e))?;
        Ok(())
    }

    /// A presigned download URL for every uploaded file of these messages of the user's.
    pub async fn download_links<'m>(
        &self,
        user: &UserId,
        messages: impl IntoIterator<Item = &'m Message>,
        now: DateTime<Utc>,
    ) -> Result<DownloadLinks, Error> {
        self.presigned_downloads(messages, now, |message, id| {
            keys::attachment_key(user, &message.conversation_id, id)
        })
        .await
    }

    /// A presigned download URL for every uploaded file of these messages a link shows: of
    /// the link's own copy (`copy_files_for_link`), whose key names only the link.
    pub async fn shared_download_links<'m>(
        &self,
        token: &ShareToken,
        messages: impl IntoIterator<Item = &'m Message>,
        now: DateTime<Utc>,
    ) -> Result<DownloadLinks, Error> {
        self.presigned_downloads(messages, now, |_, id| keys::share_file_key(token, id))
            .await
    }

    async fn presigned_downloads<'m>(
        &self,
        messages: impl IntoIterator<Item = &'m Message>,
        now: DateTime<Utc>,
        key_of: impl Fn(&Message, &AttachmentId) -> String,
    ) -> Result<DownloadLinks, Error> {
        let mut links = DownloadLinks::new();
        let expires_at =
            now + chrono::Duration::from_std(DOWNLOAD_URL_LIFETIME).unwrap_or_default();
        for message in messages {
            for attachment in &message.attachments {
                let Attachment::File(file) = attachment else {
                    continue;
                };
                let presigned = self
                    .s3
                    .get_object()
                    .bucket(&self.bucket)
                    .key(key_of(message, &file.attachment_id))
                    .presigned(presigning(now, DOWNLOAD_URL_LIFETIME)?)
                    .await
                    .map_err(|e| Error::internal("presign download", e))?;
                links.insert(file.attachment_id, (presigned.uri().to_owned(), expires_at));
            }
        }
        Ok(links)
    }

    /// Copies the files a link shows of `messages` (its own copies) into `to`'s conversation
    /// `into`, under the same attachment ids: what a reader continuing a shared conversation
    /// makes their own. A file no longer there is left out; none is begun past `deadline`.
    pub async fn copy_shared_files(
        &self,
        token: &ShareToken,
        messages: &[Message],
        to: &UserId,
        into: &ConversationId,
        deadline: tokio::time::Instant,
    ) -> Result<Copied, Error> {
        self.copy_uploads(
            messages,
            deadline,
            |_, id| keys::share_file_key(token, id),
            |id| keys::attachment_key(to, into, id),
        )
        .await
    }

    /// Copies the uploaded files of `messages` (in `owner`'s conversations) under the link's
    /// own prefix, what its readers download: deleted with the link's item (the purge
    /// worker, `delete_link_files`). A file no longer there is left out; none is begun past
    /// `deadline`.
    pub async fn copy_files_for_link(
        &self,
        owner: &UserId,
        messages: &[Message],
        token: &ShareToken,
        deadline: tokio::time::Instant,
    ) -> Result<Copied, Error> {
        self.copy_uploads(
            messages,
            deadline,
            |message, id| keys::attachment_key(owner, &message.conversation_id, id),
            |id| keys::share_file_key(token, id),
        )
        .await
    }

    /// Deletes the copies of the files a link showed; returns how many there were.
    pub async fn delete_link_files(&self, token: &ShareToken) -> Result<usize, Error> {
        self.delete_objects_under(&keys::share_files_prefix(token))
            .await
    }

    /// Copies each uploaded file of `messages` from the key `source_of` names for it to the
    /// one `destination_of` does, with its metadata, tagged as attached (a copy is referenced
    /// by what it is made for, whatever the original's tag says), a few at a time; none is
    /// begun past `deadline`, nor after one failed (those under way finish before its error
    /// is returned).
    async fn copy_uploads(
        &self,
        messages: &[Message],
        deadline: tokio::time::Instant,
        source_of: impl Fn(&Message, &AttachmentId) -> String,
        destination_of: impl Fn(&AttachmentId) -> String,
    ) -> Result<Copied, Error> {
        use futures::StreamExt;
        use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
        // A copy source is URL-encoded; its slashes stay.
        const SOURCE: &AsciiSet = &NON_ALPHANUMERIC
            .remove(b'/')
            .remove(b'-')
            .remove(b'_')
            .remove(b'.');
        let mut copies = Vec::new();
        for message in messages {
            for attachment in &message.attachments {
                if let Attachment::File(file) = attachment {
                    copies.push((
                        source_of(message, &file.attachment_id),
                        destination_of(&file.attachment_id),
                    ));
                }
            }
        }
        // Set by the first copy that fails: none is begun after it.
        let failed = std::sync::atomic::AtomicBool::new(false);
        let failed = &failed;
        let made: Vec<bool> = futures::stream::iter(copies)
            .map(|(source, destination)| async move {
                if tokio::time::Instant::now() >= deadline
                    || failed.load(std::sync::atomic::Ordering::Relaxed)
                {
                    return Ok(false);
                }
                let copied = self
                    .s3
                    .copy_object()
                    .bucket(&self.bucket)
                    .copy_source(format!(
                        "{}/{}",
                        self.bucket,
                        utf8_percent_encode(&source, SOURCE)
                    ))
                    .key(destination)
                    .tagging_directive(aws_sdk_s3::types::TaggingDirective::Replace)
                    .tagging(ATTACHED_TAG)
                    .send()
                    .await;
                match copied {
                    Ok(_) => Ok(true),
                    Err(error)
                        if error
                            .as_service_error()
                            .and_then(aws_sdk_s3::error::ProvideErrorMetadata::code)
                            .is_some_and(|code| code == "NoSuchKey") =>
                    {
                        Ok(true)
                    }
                    Err(error) => {
                        failed.store(true, std::sync::atomic::Ordering::Relaxed);
                        Err(Error::internal("copy a shared file", error))
                    }
                }
            })
            .buffer_unordered(COPIES_AT_ONCE)
            .collect::<Vec<Result<bool, Error>>>()
            .await
            .into_iter()
            .collect::<Result<_, _>>()?;
        Ok(match made.iter().all(|made| *made) {
            true => Copied::All,
            false => Copied::OutOfTime,
        })
    }

    /// Deletes every object of the conversation: its files and the exports of it; returns
    /// how many there were.
    pub async fn delete_conversation_objects(
        &self,
        user: &UserId,
        conversation: &ConversationId,
    ) -> Result<usize, Error> {
        let files = self
            .delete_objects_under(&keys::attachment_prefix(user, conversation))
            .await?;
        let exports = self
            .delete_objects_under(&crate::export::conversation_exports_prefix(
                user,
                conversation,
            ))
            .await?;
        Ok(files + exports)
    }

    /// Deletes the files exported of the user's conversation (`crate::export`): what a delete
    /// of one of its messages leaves stale.
    pub async fn delete_conversation_exports(
        &self,
        user: &UserId,
        conversation: &ConversationId,
    ) -> Result<usize, Error> {
        self.delete_objects_under(&crate::export::conversation_exports_prefix(
            user,
            conversation,
        ))
        .await
    }

    /// Deletes every object whose key starts with `prefix`; returns how many there were.
    async fn delete_objects_under(&self, prefix: &str) -> Result<usize, Error> {
        let mut deleted = 0;
        loop {
            let listed = self
                .s3
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .max_keys(DELETE_OBJECTS_MAX as i32)
                .send()
                .await
                .map_err(|e| Error::internal("list attachments", e))?;
            let objects = listed
                .contents()
                .iter()
                .filter_map(|o| o.key())
                .map(|key| ObjectIdentifier::builder().key(key).build())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| Error::internal("build delete", e))?;
            if objects.is_empty() {
                return Ok(deleted);
            }
            deleted += objects.len();
            let output = self
                .s3
                .delete_objects()
                .bucket(&self.bucket)
                .delete(
                    Delete::builder()
                        .set_objects(Some(objects))
                        .quiet(true)
                        .build()
                        .map_err(|e| Error::internal("build delete", e))?,
                )
                .send()
                .await
                .map_err(|e| Error::internal("delete attachments", e))?;
            if let Some(error) = output.errors().first() {
                return Err(Error::internal(
                    "delete attachments",
                    format!(
                        "{}: {}",
                        error.key().unwrap_or("?"),
                        error.message().unwrap_or("failed")
                    ),
                ));
            }
            if !listed.is_truncated().unwrap_or(false) {
                return Ok(deleted);
            }
        }
    }
}

/// Logs and swallows a failed cascade: the stream's purge worker tries again.
pub fn log_cascade_failure(error: &Error) {
    tracing::warn!(error = %chain(error), "attachments not deleted yet; the purge worker retries");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_upload_must_name_a_file_of_an_allowed_type_within_the_size_limit() {
        assert!(UploadRequest::parse("photo.jpg", "IMAGE/JPEG", 10, 100).is_ok());
        assert!(UploadRequest::parse("", "image/jpeg", 10, 100).is_err());
        assert!(UploadRequest::parse("../etc/passwd", "image/jpeg", 10, 100).is_err());
        assert!(UploadRequest::parse("a.exe", "application/x-msdownload", 10, 100).is_err());
        assert!(UploadRequest::parse("a.jpg", "image/jpeg", 0, 100).is_err());
        assert!(matches!(
            UploadRequest::parse("a.jpg", "image/jpeg", 101, 100),
            Err(Error::TooLarge(_))
        ));
    }
}
