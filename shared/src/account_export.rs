//! Account exports: every conversation of a user, to files in the bucket, asynchronously.
//!
//! `POST /exports` records an export job (in the user's own export partition) and answers at
//! once. The job item is on the table's stream: `run-account-exports` takes each change of a
//! running job and does one *run*: it continues the files where the last run left them (an
//! S3 multipart upload per format, the bytes short of a part kept as their own object),
//! writes the next conversations in creation order until its time budget or
//! `EXPORT_CONVERSATIONS_PER_RUN` is reached, and records the checkpoint on the job, on the condition
//! that the job is still at the run it read. That write is itself a change of a running job,
//! so the next run follows it: an export of any size is a chain of bounded runs, none near
//! Lambda's time limit, and a run that stopped half way is simply done again from the last
//! checkpoint (parts are numbered, so a part written again replaces itself).
//!
//! The JSON file holds one conversation per line, each line exactly a single conversation's
//! JSON export (`crate::export::ConversationExport`), so an import reads either. Markdown, if
//! asked, is a second file with every conversation one after the other.
//!
//! Every attempt at a run is counted on the job before it starts (a change too, so when an
//! attempt fails, crashes or times out, the next one follows, after a growing wait); after
//! `MAX_FAILED_RUNS` attempts at one run the export is `failed`. A user has one export
//! running at a time.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use tokio::time::Instant;

use crate::attachments::{Attachments, ObjectWriter};
use crate::error::Error;
use crate::export::{ExportFormat, Exports, EXPORT_PREFIX};
use crate::model::UserId;
use crate::store::{ExportFile, ExportJob, ExportStatus, Store};

/// How long export files (and their jobs) are kept, as the bucket's lifecycle rule does.
pub const EXPORT_RETENTION_DAYS: i64 = 7;
/// Conversations one run exports at most (`EXPORT_CONVERSATIONS_PER_RUN`).
pub const CONVERSATIONS_PER_RUN: usize = 500;
/// Conversations read per page of the creation-order listing.
const LISTING_PAGE: usize = 25;
/// Attempts at one run after which the export is given up.
pub const MAX_FAILED_RUNS: u32 = 5;
/// The wait before the first attempt after a failed one (`EXPORT_RETRY_BASE_MS`).
pub const DEFAULT_RETRY_BASE: Duration = Duration::from_secs(2);
/// What a withdrawn export says (`withdraw_begun_before`).
pub const WITHDRAWN: &str =
    "withdrawn: a conversation was deleted after this export began; start a new export";
/// Reads of the user's exports a withdrawal makes at most while runs move them on.
const WITHDRAW_ATTEMPTS: usize = 5;
/// Characters of a client's export id at most.
const MAX_CLIENT_EXPORT_ID_CHARS: usize = 128;
/// Ids derived from a client's export id live in a namespace of their own.
const CLIENT_EXPORT_NAMESPACE: uuid::Uuid = uuid::uuid!("5b0c3c52-7a3e-4f0e-9a43-6a3d2f0e8c11");

/// What `POST /exports` asks for.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExportRequestBody {
    #[serde(default)]
    pub formats: Option<Vec<String>>,
    /// The app's own id for this export: a retried start finds the first one.
    #[serde(default)]
    pub client_export_id: Option<String>,
}

/// A checked export request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportRequest {
    pub formats: Vec<ExportFormat>,
    pub client_export_id: Option<String>,
}

impl ExportRequest {
    pub fn parse(body: ExportRequestBody) -> Result<Self, Error> {
        let mut formats = Vec::new();
        for name in body.formats.unwrap_or_else(|| vec!["json".to_owned()]) {
            let format = ExportFormat::parse(Some(&name))
                .map_err(|_| Error::invalid("formats may hold json and markdown"))?;
            if formats.contains(&format) {
                return Err(Error::invalid("formats must not repeat a format"));
            }
            formats.push(format);
        }
        if formats.is_empty() {
            return Err(Error::invalid("formats must name at least one format"));
        }
        // JSON first: it is the import format, and the order files are listed in.
        formats.sort_by_key(|f| *f != ExportFormat::Json);
        if let Some(id) = &body.client_export_id {
            let valid = !id.is_empty()
                && id.chars().count() <= MAX_CLIENT_EXPORT_ID_CHARS
                && id.chars().all(|c| !c.is_control());
            if !valid {
                return Err(Error::invalid(format!(
                    "clientExportId must be 1 to {MAX_CLIENT_EXPORT_ID_CHARS} characters"
                )));
            }
        }
        Ok(Self {
            formats,
            client_export_id: body.client_export_id,
        })
    }
}

/// A finished file with its download link.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportDownload {
    pub format: ExportFormat,
    pub download_url: String,
    pub expires_at: DateTime<Utc>,
    pub bytes: u64,
}

/// What one run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunOutcome {
    /// The job is not running (done, failed, gone), or another run moved it on first.
    Nothing,
    /// A checkpoint was recorded; the next run continues.
    Continued { conversations: u64 },
    /// Too many attempts at one run failed: the export is failed.
    GaveUp,
    /// The files are made.
    Finished { conversations: u64 },
}

/// Starts, runs and reports account exports.
#[derive(Clone)]
pub struct AccountExports {
    store: Store,
    exports: Exports,
    conversations_per_run: usize,
    retry_base: Duration,
}

impl AccountExports {
    pub fn new(store: Store, exports: Exports, conversations_per_run: usize) -> Self {
        Self {
            store,
            exports,
            conversations_per_run,
            retry_base: DEFAULT_RETRY_BASE,
        }
    }

    /// How long the first attempt after a failed one waits (each later one twice as long).
    pub fn with_retry_base(self, retry_base: Duration) -> Self {
        Self { retry_base, ..self }
    }

    /// Records a new export (it starts within seconds, from the table's stream). With a
    /// client export id, a start sent again answers the export the first one made; while an
    /// export of the user's runs, a start answers that one. Returns the job and whether this
    /// call created it.
    pub async fn start(
        &self,
        user: &UserId,
        request: ExportRequest,
        now: DateTime<Utc>,
    ) -> Result<(ExportJob, bool), Error> {
        let id = match &request.client_export_id {
            Some(client) => uuid::Uuid::new_v5(
                &CLIENT_EXPORT_NAMESPACE,
                format!("{user}#{client}").as_bytes(),
            ),
            None => uuid::Uuid::now_v7(),
        };
        let job = ExportJob::new(
            user,
            id,
            request.formats,
            now,
            now + chrono::Duration::days(EXPORT_RETENTION_DAYS),
        );
        // One export at a time: a start while one runs answers the running one.
        if let Some(running) = self.store.running_export(user).await? {
            return Ok((running, false));
        }
        if self.store.put_new_export(&job).await? {
            crate::metrics::account_export("Started");
            return Ok((job, true));
        }
        let existing = self
            .store
            .export_job(user, &id)
            .await?
            .ok_or_else(|| Error::internal("start export", "the export vanished"))?;
        Ok((existing, false))
    }

    /// The user's export `id`; `ExportNotFound` for one they do not have.
    pub async fn status(&self, user: &UserId, id: &uuid::Uuid) -> Result<ExportJob, Error> {
        self.store
            .export_job(user, id)
            .await?
            .ok_or(Error::ExportNotFound)
    }

    /// Fresh download links for a finished export's files.
    pub async fn downloads(
        &self,
        bucket: &Attachments,
        job: &ExportJob,
        now: DateTime<Utc>,
    ) -> Result<Vec<ExportDownload>, Error> {
        let mut downloads = Vec::with_capacity(job.files.len());
        for file in &job.files {
            let (download_url, expires_at) = bucket.presign_get(&file.key, now).await?;
            downloads.push(ExportDownload {
                format: file.format,
                download_url,
                expires_at,
                bytes: file.bytes,
            });
        }
        Ok(downloads)
    }

    /// Withdraws every export of the user begun before `deleted_at`, as deleting one of their
    /// conversations then does (each may hold it): a finished export's files are deleted, a
    /// running one stops and its unfinished files are given up, and each ends `failed`, saying
    /// why, so the app offers a new export. An export begun after the delete is left alone (a
    /// delete's purge may come again later). The files go first, so a withdrawal that fails
    /// half way is finished by the next attempt; withdrawing again changes nothing.
    pub async fn withdraw_begun_before(
        &self,
        bucket: &Attachments,
        user: &UserId,
        deleted_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<(), Error> {
        // A run that moves a job on between the read and the write is read again.
        for _ in 0..WITHDRAW_ATTEMPTS {
            let mut moved_on = false;
            for job in self.store.export_jobs(user).await? {
                if job.error.as_deref() == Some(WITHDRAWN) || job.created_at > deleted_at {
                    continue;
                }
                for file in &job.files {
                    bucket.delete_object(&file.key).await?;
                }
                for upload in &job.uploads {
                    bucket.abandon_upload(upload).await?;
                }
                let mut withdrawn = job.clone();
                withdrawn.status = ExportStatus::Failed;
                withdrawn.error = Some(WITHDRAWN.to_owned());
                withdrawn.files.clear();
                withdrawn.uploads.clear();
                withdrawn.cursor = None;
                withdrawn.chunk = job.chunk + 1;
                withdrawn.finished_at = Some(crate::keys::sortable_time(now));
                withdrawn.updated_at = now;
                if !self.store.save_export(&withdrawn, job.chunk).await? {
                    moved_on = true;
                }
            }
            if !moved_on {
                return Ok(());
            }
        }
        Err(Error::internal(
            "withdraw exports",
            "the user's exports kept changing",
        ))
    }

    /// Does the next run of export `id` if it is running and still at `chunk` (a record of
    /// an earlier run, delivered again, does nothing): exports conversations for at most
    /// `budget`, then records where it stopped, or finishes the files.
    pub async fn run(
        &self,
        bucket: &Attachments,
        user: &UserId,
        id: &uuid::Uuid,
        chunk: u32,
        budget: Duration,
        now: DateTime<Utc>,
    ) -> Result<RunOutcome, Error> {
        let started = Instant::now();
        let Some(mut job) = self.store.export_job(user, id).await? else {
            return Ok(RunOutcome::Nothing);
        };
        if job.status != ExportStatus::Running || job.chunk != chunk {
            return Ok(RunOutcome::Nothing);
        }
        if job.failures >= MAX_FAILED_RUNS {
            job.status = ExportStatus::Failed;
            job.error = Some(format!(
                "the export could not be written after {MAX_FAILED_RUNS} attempts; start a new one"
            ));
            job.finished_at = Some(crate::keys::sortable_time(now));
            job.updated_at = now;
            if self.store.save_export(&job, chunk).await? {
                crate::metrics::account_export("Failed");
            }
            return Ok(RunOutcome::GaveUp);
        }
        if job.failures > 0 {
            // Attempts after a failure wait longer and longer (a throttled table recovers).
            let wait = self
                .retry_base
                .saturating_mul(1 << (job.failures - 1).min(6));
            tokio::time::sleep(wait.min(budget / 2)).await;
        }
        // Every attempt is counted before it starts, so one that never ends (a crash, a
        // timeout) counts too; the count is a change of the job, which brings the next
        // attempt if this one does not record its checkpoint.
        job.failures += 1;
        job.updated_at = now;
        if !self.store.save_export(&job, chunk).await? {
            return Ok(RunOutcome::Nothing);
        }
        let mut writers = self.writers(bucket, &job).await?;
        let mut next = job.clone();
        let mut exported = 0;
        let finished = 'runs: loop {
            let (page, more) = self
                .store
                .conversations_by_creation(user, next.cursor.clone(), LISTING_PAGE)
                .await?;
            let last = page.len();
            for (n, (conversation, position)) in page.into_iter().enumerate() {
                // Deleted since it was listed: nothing to export.
                if let Some(item) = self.store.conversation(user, &conversation).await? {
                    for (format, writer) in &mut writers {
                        let messages = self
                            .exports
                            .write_conversation(writer, item.clone(), *format, job.created_at)
                            .await?;
                        writer.write(separator(*format)).await?;
                        if *format == job.formats[0] {
                            next.messages += messages;
                        }
                    }
                    next.conversations += 1;
                }
                next.cursor = Some(position);
                exported += 1;
                if started.elapsed() >= budget || exported >= self.conversations_per_run {
                    // Done if that was the last one there is.
                    break 'runs n + 1 == last && !more;
                }
            }
            if !more {
                break true;
            }
        };
        next.chunk = chunk + 1;
        next.failures = 0;
        next.error = None;
        next.updated_at = now;
        let carried: Vec<String> = job.uploads.iter().filter_map(|u| u.carry.clone()).collect();
        next.uploads.clear();
        if finished {
            for (format, writer) in writers {
                let key = writer.key().to_owned();
                // An attempt that made a file but could not record it left it made.
                let bytes = writer.finish_or_found().await?;
                next.files.push(ExportFile { format, key, bytes });
            }
            next.status = ExportStatus::Done;
            next.finished_at = Some(crate::keys::sortable_time(now));
            // A finished export names no conversation: the position is of no more use.
            next.cursor = None;
        } else {
            for (_, writer) in writers {
                let carry = format!("{}.carry-{}", writer.key(), next.chunk);
                next.uploads.push(writer.checkpoint(&carry).await?);
            }
        }
        if !self.store.save_export(&next, chunk).await? {
            // Withdrawn meanwhile: what this run made must not outlive it. (When another run
            // of the same chunk won instead, the files and upload are that run's too.)
            let withdrawn = self
                .store
                .export_job(user, id)
                .await?
                .is_some_and(|job| job.error.as_deref() == Some(WITHDRAWN));
            if withdrawn {
                for file in &next.files {
                    bucket.delete_object(&file.key).await?;
                }
                for upload in &next.uploads {
                    bucket.abandon_upload(upload).await?;
                }
            }
            return Ok(RunOutcome::Nothing);
        }
        // The previous run's leftovers are in this run's parts or carry objects now.
        for carry in carried {
            bucket.remove_object(&carry).await;
        }
        if finished {
            crate::metrics::account_export("Finished");
            Ok(RunOutcome::Finished {
                conversations: next.conversations,
            })
        } else {
            Ok(RunOutcome::Continued {
                conversations: next.conversations,
            })
        }
    }

    /// The files' writers: started by the first run, continued by every later one.
    async fn writers(
        &self,
        bucket: &Attachments,
        job: &ExportJob,
    ) -> Result<Vec<(ExportFormat, ObjectWriter)>, Error> {
        if !job.uploads.is_empty() {
            let mut writers = Vec::with_capacity(job.uploads.len());
            for (format, checkpoint) in job.formats.iter().zip(&job.uploads) {
                writers.push((*format, bucket.resume_writer(checkpoint).await?));
            }
            return Ok(writers);
        }
        let mut writers = Vec::with_capacity(job.formats.len());
        for format in &job.formats {
            let stamp = job.created_at.format("%Y%m%dT%H%M%SZ");
            let (extension, content_type) = file_kind(*format);
            let key = format!(
                "{EXPORT_PREFIX}users/{}/account/{}.{extension}",
                job.user_id, job.export_id
            );
            let file_name = format!("numina-conversations-{stamp}.{extension}");
            writers.push((
                *format,
                bucket.object_writer(&key, content_type, &file_name).await?,
            ));
        }
        Ok(writers)
    }
}

/// The extension and content type of an account export's file.
fn file_kind(format: ExportFormat) -> (&'static str, &'static str) {
    match format {
        ExportFormat::Json => ("jsonl", "application/x-ndjson"),
        ExportFormat::Markdown => ("md", "text/markdown; charset=utf-8"),
    }
}

/// What follows each conversation in a file.
fn separator(format: ExportFormat) -> &'static [u8] {
    match format {
        ExportFormat::Json => b"\n",
        ExportFormat::Markdown => b"\n\n",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(formats: Option<&[&str]>, client: Option<&str>) -> ExportRequestBody {
        ExportRequestBody {
            formats: formats.map(|f| f.iter().map(|s| s.to_string()).collect()),
            client_export_id: client.map(str::to_owned),
        }
    }

    #[test]
    fn an_export_request_names_json_or_markdown_once_each_json_first() {
        assert_eq!(
            ExportRequest::parse(body(None, None)).unwrap().formats,
            vec![ExportFormat::Json]
        );
        assert_eq!(
            ExportRequest::parse(body(Some(&["markdown", "json"]), None))
                .unwrap()
                .formats,
            vec![ExportFormat::Json, ExportFormat::Markdown]
        );
        assert_eq!(
            ExportRequest::parse(body(Some(&["markdown"]), None))
                .unwrap()
                .formats,
            vec![ExportFormat::Markdown]
        );
        for bad in [&["csv"][..], &[], &["json", "json"]] {
            assert!(
                ExportRequest::parse(body(Some(bad), None)).is_err(),
                "{bad:?}"
            );
        }
        assert!(ExportRequest::parse(body(None, Some(""))).is_err());
        assert!(ExportRequest::parse(body(None, Some(&"x".repeat(129)))).is_err());
        assert!(ExportRequest::parse(body(None, Some("export-1"))).is_ok());
    }
}
