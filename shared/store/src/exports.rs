//! Account exports: each export's job item (in the user's own export partition), and the
//! user's conversations in creation order, which is how an export walks them (creation times
//! never change, so a walk over many invocations meets every conversation once).

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{
    from_item, is_conditional_check_failure, page_limit, s, start_key, store_error, to_item, Store,
};
use domain::cursor::Position;
use domain::error::Error;
use domain::export::ExportFormat;
use domain::keys::{self, Index};
use domain::model::{ConversationId, UserId};
use domain::upload::UploadCheckpoint;

/// Where an account export stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExportStatus {
    Running,
    Done,
    Failed,
}

/// A file an account export made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportFile {
    pub format: ExportFormat,
    pub key: String,
    pub bytes: u64,
}

/// An account export as stored: what was asked, how far it got, and what it made. Each run
/// of the exporter continues from `chunk`'s checkpoint and records the next one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportJob {
    #[serde(rename = "PK")]
    pk: String,
    #[serde(rename = "SK")]
    sk: String,
    entity: String,
    pub user_id: UserId,
    pub export_id: uuid::Uuid,
    pub status: ExportStatus,
    pub formats: Vec<ExportFormat>,
    #[serde(with = "keys::sortable")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "keys::sortable")]
    pub updated_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// The runs done so far; the next run is number `chunk`.
    pub chunk: u32,
    /// The last conversation exported (its `ByCreated` key); the next run starts after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<Position>,
    pub conversations: u64,
    pub messages: u64,
    /// One unfinished file per format while running.
    #[serde(default)]
    pub uploads: Vec<UploadCheckpoint>,
    /// The finished files, once done.
    #[serde(default)]
    pub files: Vec<ExportFile>,
    /// Runs in a row that failed at the current chunk.
    #[serde(default)]
    pub failures: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// TTL (epoch seconds): the job goes with its files.
    pub expires_at: i64,
}

impl ExportJob {
    pub fn new(
        user: &UserId,
        id: uuid::Uuid,
        formats: Vec<ExportFormat>,
        now: DateTime<Utc>,
        expires: DateTime<Utc>,
    ) -> Self {
        Self {
            pk: keys::export_partition(user),
            sk: keys::export_sort_key(&id),
            entity: "AccountExport".to_owned(),
            user_id: user.clone(),
            export_id: id,
            status: ExportStatus::Running,
            formats,
            created_at: now,
            updated_at: now,
            finished_at: None,
            chunk: 0,
            cursor: None,
            conversations: 0,
            messages: 0,
            uploads: Vec::new(),
            files: Vec::new(),
            failures: 0,
            error: None,
            expires_at: expires.timestamp(),
        }
    }
}

impl Store {
    /// Puts a new export job; false if one with this id exists (a retried start).
    pub async fn put_new_export(&self, job: &ExportJob) -> Result<bool, Error> {
        self.put_job_if(job, "attribute_not_exists(PK)", None).await
    }

    pub async fn export_job(
        &self,
        user: &UserId,
        id: &uuid::Uuid,
    ) -> Result<Option<ExportJob>, Error> {
        self.get(&keys::export_partition(user), &keys::export_sort_key(id))
            .await?
            .map(from_item)
            .transpose()
    }

    /// Every export job of the user (the few of the last days: jobs expire with their files).
    pub async fn export_jobs(&self, user: &UserId) -> Result<Vec<ExportJob>, Error> {
        let partition = keys::export_partition(user);
        let (items, _) = self
            .read_up_to(
                usize::MAX,
                None,
                "read the user's exports",
                |start, limit| {
                    self.client
                        .query()
                        .table_name(&self.table)
                        .key_condition_expression("PK = :pk")
                        .expression_attribute_values(":pk", s(&partition))
                        .consistent_read(true)
                        .limit(limit)
                        .set_exclusive_start_key(start)
                },
            )
            .await?;
        items.into_iter().map(from_item).collect()
    }

    /// The user's running export, if any (the user's exports are the few of the last days).
    pub async fn running_export(&self, user: &UserId) -> Result<Option<ExportJob>, Error> {
        let output = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("PK = :pk")
            .filter_expression("#status = :running")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":pk", s(&keys::export_partition(user)))
            .expression_attribute_values(":running", s("running"))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| store_error("find a running export", e))?;
        output
            .items
            .unwrap_or_default()
            .into_iter()
            .next()
            .map(from_item)
            .transpose()
    }

    /// Replaces the job with `job` if it is still at `chunk` (the run that read it is the
    /// only one to move it on). Returns false, changing nothing, when another run did.
    pub async fn save_export(&self, job: &ExportJob, chunk: u32) -> Result<bool, Error> {
        self.put_job_if(job, "attribute_exists(PK) AND chunk = :chunk", Some(chunk))
            .await
    }

    /// Puts `job` on `condition`; false, changing nothing, when the condition fails.
    async fn put_job_if(
        &self,
        job: &ExportJob,
        condition: &str,
        chunk: Option<u32>,
    ) -> Result<bool, Error> {
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(to_item(job)?))
            .condition_expression(condition);
        if let Some(chunk) = chunk {
            put = put.expression_attribute_values(":chunk", AttributeValue::N(chunk.to_string()));
        }
        match put.send().await {
            Ok(_) => Ok(true),
            Err(e) if is_conditional_check_failure(&e) => Ok(false),
            Err(e) => Err(store_error("save export", e)),
        }
    }

    /// Up to `limit` of the user's conversations by creation time, oldest first, after
    /// `after`: each with its position (to continue after it), and whether more follow.
    pub async fn conversations_by_creation(
        &self,
        user: &UserId,
        after: Option<Position>,
        limit: usize,
    ) -> Result<(Vec<(ConversationId, Position)>, bool), Error> {
        let output = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(Index::ByCreated.name())
            .key_condition_expression("#owner = :owner")
            .expression_attribute_names("#owner", keys::OWNER)
            .expression_attribute_values(":owner", s(&keys::owner(user)))
            .projection_expression("PK, SK, #owner, createdAt")
            .limit(page_limit(limit))
            .set_exclusive_start_key(after.map(start_key))
            .send()
            .await
            .map_err(|e| store_error("list conversations by creation", e))?;
        let found = output
            .items
            .unwrap_or_default()
            .into_iter()
            .filter_map(|item| {
                let AttributeValue::S(partition) = item.get(keys::PK)? else {
                    return None;
                };
                let (_, id) = keys::parse_conversation_partition(partition)?;
                Some((id, super::position_of(&item)))
            })
            .collect();
        Ok((found, output.last_evaluated_key.is_some()))
    }
}
