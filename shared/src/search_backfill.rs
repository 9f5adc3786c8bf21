//! The search index rebuilt from the table: for conversations written before search blocks
//! (`search`), and for whatever the indexer gave up on. A parallel scan of the whole table
//! adds every message's terms to its conversation's blocks through the indexer's own code
//! (`search::index_messages`) and deletes the entries of the earlier design (one item per
//! conversation and term, `keys::is_legacy_term_sort_key`).
//!
//! Resumable and idempotent: each segment of the scan saves where it stands after every page
//! (`SEARCH_BACKFILL` / `SEGMENT#k/n`), so a run that stops (killed, timed out, a failed
//! call) continues with the page it was on; adding a message's terms again writes nothing,
//! deleting an entry again finds nothing. `numina-migrate --reindex-search` runs it
//! (docs/search.md, "Backfill"); a finished run's checkpoints say so, and a new run over
//! them does nothing: delete them to run it again. The checkpoints hold the number of
//! segments the first run chose: later runs take it, and refuse another.

use std::collections::BTreeMap;

use futures::{stream, StreamExt, TryStreamExt};

use crate::error::Error;
use crate::model::{ConversationId, UserId};
use crate::search;
use crate::store::{BackfillCheckpoint, Store};

/// Conversations of a page indexed at once.
const INDEX_CONCURRENCY: usize = 4;

/// What a backfill did, over all its segments (this run and earlier ones).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BackfillReport {
    pub segments: u32,
    pub segments_done: u32,
    pub messages: u64,
    pub legacy_entries_removed: u64,
    pub blocks_written: u64,
}

impl BackfillReport {
    pub fn finished(&self) -> bool {
        self.segments_done == self.segments
    }
}

/// The segments of a first run that names none.
pub const DEFAULT_SEGMENTS: u32 = 16;

/// How a backfill runs.
#[derive(Debug, Clone, Copy)]
pub struct BackfillOptions {
    /// Segments of the table's scan. `None`: as many as the run whose checkpoints the table
    /// holds, else [`DEFAULT_SEGMENTS`]; a number other than theirs is refused.
    pub segments: Option<u32>,
    /// Segments scanned at once.
    pub parallel: usize,
    /// Items a page of the scan evaluates (a checkpoint after each).
    pub page_items: i32,
    /// Pages each segment goes on for in this run (`None`: to its end).
    pub pages: Option<usize>,
}

impl Default for BackfillOptions {
    fn default() -> Self {
        Self {
            segments: None,
            parallel: 8,
            page_items: 1000,
            pages: None,
        }
    }
}

/// Runs every segment of the scan from where it stands.
pub async fn backfill_search(
    store: &Store,
    options: BackfillOptions,
) -> Result<BackfillReport, Error> {
    let segments = segments_to_scan(store, options.segments).await?;
    if segments == 0 || options.page_items < 1 {
        return Err(Error::invalid("segments and page items must be at least 1"));
    }
    let checkpoints: Vec<BackfillCheckpoint> = stream::iter(0..segments)
        .map(|segment| backfill_segment(store, segment, segments, options))
        .buffer_unordered(options.parallel.max(1))
        .try_collect()
        .await?;
    let mut report = BackfillReport {
        segments,
        ..BackfillReport::default()
    };
    for checkpoint in checkpoints {
        report.segments_done += u32::from(checkpoint.done);
        report.messages += checkpoint.messages;
        report.legacy_entries_removed += checkpoint.legacy_entries_removed;
        report.blocks_written += checkpoint.blocks_written;
    }
    Ok(report)
}

/// The segments this run scans: those of the run whose checkpoints the table holds (a scan in
/// other segments would start over beside them), else those asked for, else the default.
async fn segments_to_scan(store: &Store, asked: Option<u32>) -> Result<u32, Error> {
    let earlier = store.backfill_segment_counts().await?;
    match (earlier.iter().next(), asked) {
        (None, asked) => Ok(asked.unwrap_or(DEFAULT_SEGMENTS)),
        (Some(_), _) if earlier.len() > 1 => Err(Error::invalid(format!(
            "the table holds checkpoints of runs in {earlier:?} segments: delete the \
             {} items of the runs to abandon",
            crate::keys::SEARCH_BACKFILL_PK
        ))),
        (Some(&earlier), None) => Ok(earlier),
        (Some(&earlier), Some(asked)) if asked == earlier => Ok(earlier),
        (Some(&earlier), Some(asked)) => Err(Error::invalid(format!(
            "an earlier run scanned the table in {earlier} segments, not {asked}: run with \
             --segments {earlier} (or without --segments) to continue it"
        ))),
    }
}

/// Runs segment `segment` of `segments` from where it stands, for at most `options.pages`
/// pages.
async fn backfill_segment(
    store: &Store,
    segment: u32,
    segments: u32,
    options: BackfillOptions,
) -> Result<BackfillCheckpoint, Error> {
    let pages = options.pages;
    let mut checkpoint = store
        .backfill_checkpoint(segment, segments)
        .await?
        .unwrap_or_default();
    let mut done_here = 0;
    while !checkpoint.done && pages.is_none_or(|pages| done_here < pages) {
        let page = store
            .backfill_page(
                segment,
                segments,
                checkpoint.next.clone(),
                options.page_items,
            )
            .await?;
        store.delete_keys(&page.legacy_entries).await?;
        let mut conversations: BTreeMap<(UserId, ConversationId), Vec<_>> = BTreeMap::new();
        let messages = page.messages.len() as u64;
        for (user, conversation, item) in page.messages {
            conversations
                .entry((user, conversation))
                .or_default()
                .push(item);
        }
        let written: Vec<usize> = stream::iter(conversations)
            .map(|((user, conversation), items)| async move {
                let items = store.with_content(items).await?;
                let messages: Vec<_> = items.into_iter().map(|i| i.into_message()).collect();
                search::index_messages(store, &user, &conversation, &messages).await
            })
            .buffer_unordered(INDEX_CONCURRENCY)
            .try_collect()
            .await?;
        checkpoint.messages += messages;
        checkpoint.legacy_entries_removed += page.legacy_entries.len() as u64;
        checkpoint.blocks_written += written.iter().sum::<usize>() as u64;
        checkpoint.done = page.next.is_none();
        checkpoint.next = page.next;
        store
            .save_backfill_checkpoint(segment, segments, &checkpoint)
            .await?;
        done_here += 1;
    }
    Ok(checkpoint)
}
