//! What deleting a conversation leaves to do after the request, and the sweep that makes
//! sure it was done.
//!
//! `purge_everything_of` removes every copy of a deleted conversation: its partition, the
//! copies of its exchanges elsewhere (short-term memory, completion records, batch answers),
//! its files and exports, and the user's account exports begun before the delete. The purge
//! worker runs it on each delete as the table's stream reports it.
//!
//! `sweep_deleted_conversations` runs on a schedule. Each tombstone is written listed in
//! `ByPendingPurge`; once the delete is older than `SWEEP_GRACE` (longer than any request, batch
//! or upload URL that could still write to the conversation), the sweep runs the purge again
//! and, when it finds nothing left, takes the tombstone off the list. So a purge the worker gave
//! up on (its queue's attempts spent) or a copy written after it ran (an in-flight batch
//! answer, a late upload) is removed within a sweep of the grace, and each delete is swept once.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::error::{chain, Error};
use crate::model::{ConversationId, UserId};
use crate::state::State;

/// How long after a delete the sweep checks it: beyond the upload URLs' lifetime
/// (`attachments::UPLOAD_URL_LIFETIME`) and any request's or batch's time.
pub const SWEEP_GRACE: chrono::Duration = chrono::Duration::hours(1);

/// Pending deletes read at a time.
const SWEEP_PAGE: usize = 50;

/// Removes what is left of the deleted `conversation`, within `budget`: true once nothing is.
/// The user's account exports begun before `deleted_at` may hold it: they are withdrawn.
pub async fn purge_everything_of(
    state: &State,
    user: &UserId,
    conversation: &ConversationId,
    deleted_at: DateTime<Utc>,
    budget: Duration,
) -> bool {
    let purged = match state.conversations.purge(user, conversation, budget).await {
        Ok(purged) => purged,
        Err(error) => {
            tracing::error!(error = %chain(&error), "purge failed");
            false
        }
    };
    if !purged {
        return false;
    }
    let Some(bucket) = &state.attachments else {
        return true;
    };
    match state
        .account_exports
        .withdraw_begun_before(bucket, user, deleted_at, Utc::now())
        .await
    {
        Ok(()) => true,
        Err(error) => {
            tracing::error!(error = %chain(&error), "withdrawing exports failed");
            false
        }
    }
}

/// What one sweep did (the function's answer).
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SweepReport {
    /// Deletes found with nothing left (now off the list).
    pub finished: usize,
    /// Deletes whose purge did not finish (the next sweep tries again).
    pub unfinished: usize,
    /// Whether the sweep reached every pending delete before its deadline.
    pub complete: bool,
}

/// Purges again every delete older than `SWEEP_GRACE` the sweep has not yet checked, until
/// `deadline`.
pub async fn sweep_deleted_conversations(
    state: &State,
    deadline: Instant,
) -> Result<SweepReport, Error> {
    let before = state.now() - SWEEP_GRACE;
    let mut report = SweepReport::default();
    for shard in 0..crate::keys::PURGE_SHARDS {
        let mut start = None;
        loop {
            if Instant::now() >= deadline {
                record(&report);
                return Ok(report);
            }
            let page = state
                .conversations
                .store()
                .pending_purges(shard, before, SWEEP_PAGE, start)
                .await?;
            for pending in page.purges {
                let budget = deadline.saturating_duration_since(Instant::now());
                if budget.is_zero() {
                    record(&report);
                    return Ok(report);
                }
                // Rounded up as the worker's stream time is: an export begun in the same
                // second counts as begun before.
                let deleted_at = pending.deleted_at + chrono::Duration::seconds(1);
                let finished = purge_everything_of(
                    state,
                    &pending.user,
                    &pending.conversation,
                    deleted_at,
                    budget,
                )
                .await;
                let checked = finished
                    && match state
                        .conversations
                        .store()
                        .purge_checked(&pending.user, &pending.conversation)
                        .await
                    {
                        Ok(()) => true,
                        Err(error) => {
                            tracing::error!(error = %chain(&error), "marking a purge checked failed");
                            false
                        }
                    };
                if checked {
                    report.finished += 1;
                } else {
                    report.unfinished += 1;
                }
            }
            match page.next {
                Some(next) => start = Some(next),
                None => break,
            }
        }
    }
    report.complete = true;
    record(&report);
    Ok(report)
}

fn record(report: &SweepReport) {
    tracing::info!(
        finished = report.finished,
        unfinished = report.unfinished,
        complete = report.complete,
        "sweep of deleted conversations"
    );
    crate::metrics::deletes_swept(report.finished, report.unfinished);
}
