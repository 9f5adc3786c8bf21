//! Where an object written in parts stands, so another invocation can go on with it: the
//! store keeps it in an export job's record, the attachments crate resumes from it.

/// Where an object being written in parts stands, to go on with it in another invocation
/// (`Attachments::resume_writer`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UploadCheckpoint {
    pub key: String,
    pub upload_id: String,
    pub parts: Vec<UploadedPart>,
    /// Bytes written in all.
    pub written: u64,
    /// The object holding the bytes written since the last part (less than a part).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub carry: Option<String>,
}

/// A part of a multipart upload, as S3 acknowledged it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UploadedPart {
    pub number: i32,
    pub etag: String,
}
