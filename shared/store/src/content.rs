//! Message content too large to keep in its item: stored gzip-compressed in the attachments
//! bucket, under the conversation's prefix (so it is deleted with the conversation), and
//! read back transparently. The item keeps the object's key instead of the text, so no
//! message can reach DynamoDB's 400 KB item limit.

use std::io::{Read, Write};

use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;
use futures::{stream, StreamExt, TryStreamExt};

use super::{LazyS3, MessageItem, Store};
use domain::error::Error;
use domain::keys;
use domain::model::{Message, UserId};

/// Content up to this many bytes stays in the message's item; above it goes to S3.
pub const INLINE_CONTENT_BYTES: usize = 32 * 1024;
/// Content objects read at once for one page of messages.
const READ_CONCURRENCY: usize = 8;

/// Where large message content goes.
#[derive(Clone)]
pub struct ContentObjects {
    pub(crate) s3: LazyS3,
    pub(crate) bucket: String,
}

impl ContentObjects {
    pub fn new(s3: impl Into<LazyS3>, bucket: impl Into<String>) -> Self {
        Self {
            s3: s3.into(),
            bucket: bucket.into(),
        }
    }

    /// The bucket `ATTACHMENTS_BUCKET` names (path-style URLs with `S3_FORCE_PATH_STYLE=true`),
    /// as the functions have it: what command-line tools writing messages use. None without it.
    pub fn from_env(sdk: &aws_types::SdkConfig) -> Option<Self> {
        let bucket = std::env::var("ATTACHMENTS_BUCKET")
            .ok()
            .filter(|b| !b.trim().is_empty())?;
        let s3 = LazyS3::new(
            aws_sdk_s3::config::Builder::from(sdk)
                .force_path_style(std::env::var("S3_FORCE_PATH_STYLE").as_deref() == Ok("true"))
                .build(),
        );
        Some(Self::new(s3, bucket))
    }
}

impl Store {
    /// The item of a message; content over the inline limit is written to S3 first (the same
    /// key for the same message, so a retried write writes the same object).
    pub(crate) async fn message_item(
        &self,
        user: &UserId,
        message: &Message,
    ) -> Result<MessageItem, Error> {
        let mut item = MessageItem::new(user, message);
        if message.content.len() <= INLINE_CONTENT_BYTES {
            return Ok(item);
        }
        let objects = self.content.as_ref().ok_or_else(|| {
            Error::TooLarge(format!(
                "content over {INLINE_CONTENT_BYTES} bytes needs the attachments bucket, which is not configured"
            ))
        })?;
        let key = keys::message_content_key(user, &message.conversation_id, &message.id);
        let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
        let compressed = encoder
            .write_all(message.content.as_bytes())
            .and_then(|()| encoder.finish())
            .map_err(|e| Error::internal("compress content", e))?;
        objects
            .s3
            .put_object()
            .bucket(&objects.bucket)
            .key(&key)
            .content_type("text/plain; charset=utf-8")
            .content_encoding("gzip")
            .body(compressed.into())
            .send()
            .await
            .map_err(|e| Error::internal("store content", e))?;
        item.content_object = Some(key);
        item.content_bytes = Some(message.content.len() as u64);
        item.content = String::new();
        Ok(item)
    }

    /// Removes a content object no message refers to (best effort: it lies under its
    /// conversation's prefix and goes when the conversation does).
    pub(crate) async fn delete_content(&self, key: &str) {
        let Some(objects) = self.content.as_ref() else {
            return;
        };
        if let Err(error) = objects
            .s3
            .delete_object()
            .bucket(&objects.bucket)
            .key(key)
            .send()
            .await
        {
            tracing::warn!(error = %domain::error::chain(&error), "unused content object left until its conversation is deleted");
        }
    }

    /// Puts back the content of items whose content is in S3.
    pub async fn with_content(&self, items: Vec<MessageItem>) -> Result<Vec<MessageItem>, Error> {
        if items.iter().all(|i| i.content_object.is_none()) {
            return Ok(items);
        }
        stream::iter(items)
            .map(|item| self.load_content(item))
            .buffered(READ_CONCURRENCY)
            .try_collect()
            .await
    }

    /// Puts back the content of one item, if it is in the bucket.
    pub async fn load_content(&self, mut item: MessageItem) -> Result<MessageItem, Error> {
        let Some(key) = item.content_object.take() else {
            return Ok(item);
        };
        // Never an empty message in its place: a function built without the bucket must not
        // read a message whose content is there.
        let objects = self.content.as_ref().ok_or_else(|| {
            Error::internal(
                "read content",
                "the content is in the bucket; no bucket here",
            )
        })?;
        let object = objects
            .s3
            .get_object()
            .bucket(&objects.bucket)
            .key(&key)
            .send()
            .await
            .map_err(|e| Error::internal("read content", e))?;
        let compressed = object
            .body
            .collect()
            .await
            .map_err(|e| Error::internal("read content", e))?
            .into_bytes();
        let mut content = String::new();
        GzDecoder::new(compressed.as_ref())
            .read_to_string(&mut content)
            .map_err(|e| Error::internal("decompress content", e))?;
        item.content = content;
        Ok(item)
    }
}
