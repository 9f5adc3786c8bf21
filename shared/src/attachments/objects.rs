//! Objects the exports write to the bucket: written in parts (a multipart upload, so a file
//! of any size takes bounded memory), resumed in a later invocation from a checkpoint,
//! removed, and handed out through short-lived download links.

use chrono::{DateTime, Utc};

use crate::error::{chain, Error};
use crate::store::LazyS3;

use super::{presigning, Attachments, UploadCheckpoint, UploadedPart, DOWNLOAD_URL_LIFETIME};

/// S3's smallest part of a multipart upload but the last.
const PART_BYTES: usize = 8 * 1024 * 1024;

impl Attachments {
    /// Starts writing an object of the bucket in parts (a multipart upload), so a file of
    /// any size is written with bounded memory. Downloads name it `file_name`.
    pub async fn object_writer(
        &self,
        key: &str,
        content_type: &str,
        file_name: &str,
    ) -> Result<ObjectWriter, Error> {
        let started = self
            .s3
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .content_disposition(format!(
                "attachment; filename=\"{}\"",
                file_name.replace(['"', '\\'], "_")
            ))
            .send()
            .await
            .map_err(|e| Error::internal("start writing an object", e))?;
        Ok(ObjectWriter {
            s3: self.s3.clone(),
            bucket: self.bucket.clone(),
            key: key.to_owned(),
            upload_id: started.upload_id.unwrap_or_default(),
            parts: Vec::new(),
            buffer: Vec::with_capacity(PART_BYTES),
            written: 0,
        })
    }

    /// Continues writing an object where a [`ObjectWriter::checkpoint`] left it (in another
    /// invocation): its parts so far, and the bytes written since the last part.
    pub async fn resume_writer(
        &self,
        checkpoint: &UploadCheckpoint,
    ) -> Result<ObjectWriter, Error> {
        let mut buffer = Vec::with_capacity(PART_BYTES);
        if let Some(carry) = &checkpoint.carry {
            let object = self
                .s3
                .get_object()
                .bucket(&self.bucket)
                .key(carry)
                .send()
                .await
                .map_err(|e| Error::internal("read the rest of an unfinished object", e))?;
            let bytes = object
                .body
                .collect()
                .await
                .map_err(|e| Error::internal("read the rest of an unfinished object", e))?;
            buffer.extend_from_slice(&bytes.into_bytes());
        }
        Ok(ObjectWriter {
            s3: self.s3.clone(),
            bucket: self.bucket.clone(),
            key: checkpoint.key.clone(),
            upload_id: checkpoint.upload_id.clone(),
            parts: checkpoint
                .parts
                .iter()
                .map(|part| {
                    aws_sdk_s3::types::CompletedPart::builder()
                        .part_number(part.number)
                        .e_tag(&part.etag)
                        .build()
                })
                .collect(),
            buffer,
            written: checkpoint.written,
        })
    }

    /// Removes an object of the bucket (best effort: `exports/` objects expire anyway).
    pub async fn remove_object(&self, key: &str) {
        if let Err(error) = self
            .s3
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            tracing::warn!(error = %chain(&error), "an object is left to the lifecycle rule");
        }
    }

    /// Deletes an object of the bucket (an object already gone is deleted too).
    pub async fn delete_object(&self, key: &str) -> Result<(), Error> {
        self.s3
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| Error::internal("delete an object", e))?;
        Ok(())
    }

    /// Gives up an unfinished object a checkpoint describes: its upload and the bytes it
    /// carried (an upload already given up or finished counts as given up).
    pub async fn abandon_upload(&self, checkpoint: &UploadCheckpoint) -> Result<(), Error> {
        let aborted = self
            .s3
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(&checkpoint.key)
            .upload_id(&checkpoint.upload_id)
            .send()
            .await;
        match aborted {
            Ok(_) => {}
            Err(e) if e.as_service_error().is_some_and(|e| e.is_no_such_upload()) => {}
            Err(e) => return Err(Error::internal("give up an unfinished object", e)),
        }
        if let Some(carry) = &checkpoint.carry {
            self.delete_object(carry).await?;
        }
        Ok(())
    }

    /// The size of the object at `key` if it exists and was written within `max_age` of
    /// `now`; `None` if it does not (or is older).
    pub async fn recent_object_bytes(
        &self,
        key: &str,
        now: DateTime<Utc>,
        max_age: chrono::Duration,
    ) -> Result<Option<u64>, Error> {
        let head = match self
            .s3
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(head) => head,
            Err(e) if e.as_service_error().is_some_and(|e| e.is_not_found()) => return Ok(None),
            Err(e) => return Err(Error::internal("look for an object", e)),
        };
        let written = head
            .last_modified()
            .and_then(|t| DateTime::<Utc>::from_timestamp(t.secs(), 0));
        Ok(match written {
            Some(written) if now - written < max_age => {
                Some(head.content_length().unwrap_or(0).max(0) as u64)
            }
            _ => None,
        })
    }

    /// A presigned URL to download an object of the bucket, and when it expires.
    pub async fn presign_get(
        &self,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<(String, DateTime<Utc>), Error> {
        let presigned = self
            .s3
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .presigned(presigning(now, DOWNLOAD_URL_LIFETIME)?)
            .await
            .map_err(|e| Error::internal("presign download", e))?;
        let expires_at =
            now + chrono::Duration::from_std(DOWNLOAD_URL_LIFETIME).unwrap_or_default();
        Ok((presigned.uri().to_owned(), expires_at))
    }
}

/// An object being written in parts: [`ObjectWriter::finish`] makes it, and dropping it
/// unfinished leaves an incomplete upload that the bucket's lifecycle rule removes (or
/// [`ObjectWriter::abort`] removes it at once).
pub struct ObjectWriter {
    s3: LazyS3,
    bucket: String,
    key: String,
    upload_id: String,
    parts: Vec<aws_sdk_s3::types::CompletedPart>,
    buffer: Vec<u8>,
    written: u64,
}

impl ObjectWriter {
    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.buffer.extend_from_slice(bytes);
        self.written += bytes.len() as u64;
        if self.buffer.len() >= PART_BYTES {
            self.upload_part().await?;
        }
        Ok(())
    }

    async fn upload_part(&mut self) -> Result<(), Error> {
        let number = i32::try_from(self.parts.len() + 1).unwrap_or(i32::MAX);
        let body = std::mem::replace(&mut self.buffer, Vec::with_capacity(PART_BYTES));
        let uploaded = self
            .s3
            .upload_part()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(&self.upload_id)
            .part_number(number)
            .body(body.into())
            .send()
            .await
            .map_err(|e| Error::internal("write part of an object", e))?;
        self.parts.push(
            aws_sdk_s3::types::CompletedPart::builder()
                .part_number(number)
                .set_e_tag(uploaded.e_tag)
                .build(),
        );
        Ok(())
    }

    /// The object's key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Stops writing for now: the bytes since the last part (less than a part, which S3 only
    /// allows as the last one) are kept as the object `carry_key`, and where the upload stands
    /// is returned. A checkpoint names its own carry object, so one taken later (and perhaps
    /// never recorded) never changes what an earlier one refers to.
    pub async fn checkpoint(self, carry_key: &str) -> Result<UploadCheckpoint, Error> {
        let carry = if self.buffer.is_empty() {
            None
        } else {
            self.s3
                .put_object()
                .bucket(&self.bucket)
                .key(carry_key)
                .body(self.buffer.into())
                .send()
                .await
                .map_err(|e| Error::internal("keep the rest of an unfinished object", e))?;
            Some(carry_key.to_owned())
        };
        Ok(UploadCheckpoint {
            key: self.key,
            upload_id: self.upload_id,
            parts: self
                .parts
                .iter()
                .map(|part| UploadedPart {
                    number: part.part_number.unwrap_or_default(),
                    etag: part.e_tag.clone().unwrap_or_default(),
                })
                .collect(),
            written: self.written,
            carry,
        })
    }

    /// Writes what is left and makes the object; returns its size in bytes. On failure the
    /// upload is given up.
    pub async fn finish(mut self) -> Result<u64, Error> {
        match self.complete().await {
            Ok(()) => Ok(self.written),
            Err(error) => {
                self.abort().await;
                Err(error)
            }
        }
    }

    /// Like [`finish`](Self::finish), but the upload is never given up, and an object an
    /// earlier attempt already made (its record of it lost) counts as made when its size is
    /// the size written.
    pub async fn finish_or_found(mut self) -> Result<u64, Error> {
        let Err(error) = self.complete().await else {
            return Ok(self.written);
        };
        let found = self
            .s3
            .head_object()
            .bucket(&self.bucket)
            .key(&self.key)
            .send()
            .await;
        match found {
            Ok(head) if head.content_length() == i64::try_from(self.written).ok() => {
                Ok(self.written)
            }
            _ => Err(error),
        }
    }

    async fn complete(&mut self) -> Result<(), Error> {
        if !self.buffer.is_empty() || self.parts.is_empty() {
            self.upload_part().await?;
        }
        self.s3
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(&self.upload_id)
            .multipart_upload(
                aws_sdk_s3::types::CompletedMultipartUpload::builder()
                    .set_parts(Some(std::mem::take(&mut self.parts)))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| Error::internal("finish writing an object", e))?;
        Ok(())
    }

    /// Gives the object up (best effort: the lifecycle rule removes what this leaves).
    pub async fn abort(&self) {
        if let Err(error) = self
            .s3
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(&self.upload_id)
            .send()
            .await
        {
            tracing::warn!(error = %chain(&error), "an unfinished export is left to the lifecycle rule");
        }
    }
}
