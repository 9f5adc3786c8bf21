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
/// `deadline`. Each hour starts at another shard, so a sweep that runs out of time leaves a
/// different part for the next; a shard that cannot be read is left for the next sweep.
pub async fn sweep_deleted_conversations(
    state: &State,
    deadline: Instant,
) -> Result<SweepReport, Error> {
    let now = state.now();
    let before = now - SWEEP_GRACE;
    let shards = crate::keys::PURGE_SHARDS;
    let first = u32::try_from(now.timestamp().div_euclid(3600) % i64::from(shards)).unwrap_or(0);
    let mut report = SweepReport {
        complete: true,
        ..SweepReport::default()
    };
    for shard in (0..shards).map(|n| (first + n) % shards) {
        if !sweep_shard(state, shard, before, deadline, &mut report).await {
            report.complete = false;
        }
        if Instant::now() >= deadline {
            report.complete = false;
            break;
        }
    }
    record(&report);
    Ok(report)
}

/// Sweeps one shard's deletes made before `before`; false if it could not reach them all.
async fn sweep_shard(
    state: &State,
    shard: u32,
    before: DateTime<Utc>,
    deadline: Instant,
    report: &mut SweepReport,
) -> bool {
    let store = state.conversations.store();
    let mut start = None;
    loop {
        let page = match store.pending_purges(shard, before, SWEEP_PAGE, start).await {
            Ok(page) => page,
            Err(error) => {
                tracing::error!(shard, error = %chain(&error), "could not read the deletes to sweep");
                return false;
            }
        };
        for pending in page.purges {
            let budget = deadline.saturating_duration_since(Instant::now());
            if budget.is_zero() {
                return false;
            }
            // Rounded up as the worker's stream time is: an export begun in the same second
            // counts as begun before.
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
                && match store
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
            None => return true,
        }
    }
}

fn record(report: &SweepReport) {
    tracing::info!(
        finished = report.finished,
        unfinished = report.unfinished,
        complete = report.complete,
        "sweep of deleted conversations"
    );
    crate::metrics::deletes_swept(report.finished, report.unfinished, report.complete);
}
