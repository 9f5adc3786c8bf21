//! `numina-migrate`: the specification's `node scripts/migrateConversations.js`.
//!
//! ```text
//! numina-migrate                      # every user who holds short-term memory
//! numina-migrate --user=USER_ID       # one user
//! numina-migrate --dry-run            # report what would be done, write nothing
//! numina-migrate --from-file dump.jsonl   # a mongoexport dump of the old system
//! numina-migrate --user=USER_ID --import conversation.json   # a JSON export, put back
//! numina-migrate --user=USER_ID --import account.jsonl        # an account export, put back
//! numina-migrate --reindex-search     # rebuild the search index from the whole table
//! ```
//!
//! Progress goes to stderr (a bar on a terminal, one line per user otherwise); the summary
//! to stdout. Exits 1 when a user could not be migrated (a re-run continues where it stopped).

mod legacy;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use chrono::{Duration, Utc};
use clap::Parser;
use futures::{stream, StreamExt};
use indicatif::{ProgressBar, ProgressStyle};
use shared::keys::MEMORY_SHARDS;
use shared::migration::{
    MigrationOptions, Migrator, RunSummary, SkippedItem, SourceItem, UserSummary,
};
use shared::model::UserId;
use shared::store::Store;

#[derive(Parser)]
#[command(
    name = "numina-migrate",
    version,
    about = "Migrate short-term memory into permanent conversations"
)]
struct Args {
    /// Migrate only this user.
    #[arg(long, value_name = "ID")]
    user: Option<String>,
    /// Report what a run would do (conversations to create, messages to move) and write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Import a mongoexport JSON-lines dump of the old system's short-term memory collection
    /// instead of reading the table's short-term memory.
    #[arg(long, value_name = "PATH")]
    from_file: Option<PathBuf>,
    /// The table (as the functions' TABLE_NAME).
    #[arg(long, env = "TABLE_NAME")]
    table: String,
    /// Write conversation and message items lean, as the functions do with LEAN_ITEMS=true
    /// (docs/operations.md, "Lean items"): only once every function reads them.
    #[arg(long, env = "LEAN_ITEMS", action = clap::ArgAction::SetTrue, value_parser = switch_value)]
    lean_items: bool,
    /// Write message content and summaries deflated when that makes them smaller, as the
    /// functions do with COMPRESS_TEXT=true (docs/operations.md, "Deflated text"): only once
    /// every function reads them.
    #[arg(long, env = "COMPRESS_TEXT", action = clap::ArgAction::SetTrue, value_parser = switch_value)]
    compress_text: bool,
    /// Users migrated at once.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=64))]
    concurrency: u16,
    /// Inactivity, in minutes, after which entries without a conversation start a new one.
    #[arg(long, env = "MIGRATION_SESSION_GAP_MINUTES", default_value_t = 30, value_parser = clap::value_parser!(i64).range(1..=1440))]
    session_gap_minutes: i64,
    /// Put back conversations from their JSON export (`GET /conversations/{id}/export`, or an
    /// account export's JSON lines from `POST /exports`), for `--user`, with the same ids,
    /// times and messages; importing again stores nothing twice.
    /// Content over 32 KiB goes to `ATTACHMENTS_BUCKET`, as the functions put it.
    #[arg(long, value_name = "PATH", requires = "user", conflicts_with_all = ["from_file", "dry_run"])]
    import: Option<PathBuf>,
    /// Also write the summary as JSON to this file.
    #[arg(long, value_name = "PATH")]
    summary_json: Option<PathBuf>,
    /// Rebuild the search index from the table instead (docs/search.md, "Backfill"): every
    /// message's terms into its conversation's blocks, the earlier design's entries deleted.
    /// Resumable: a run continues where the last one stopped; once finished, it does nothing.
    #[arg(long, conflicts_with_all = ["user", "import", "from_file", "dry_run"])]
    reindex_search: bool,
    /// Segments of the table's scan for --reindex-search, `--concurrency` of them at once
    /// (default: those of the run whose checkpoints the table holds, else 16; another number
    /// than theirs is refused).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1024), requires = "reindex_search")]
    segments: Option<u32>,
}

/// Where each user's items come from.
enum Source {
    Memory(Vec<UserId>),
    Dump(legacy::Dump),
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let args = Args::parse();
    if args.reindex_search {
        return match reindex_search(&args).await {
            Ok(report) if report.finished() => ExitCode::SUCCESS,
            Ok(_) => ExitCode::FAILURE,
            Err(error) => {
                eprintln!("numina-migrate: {error}");
                ExitCode::from(2)
            }
        };
    }
    if let Some(path) = &args.import {
        return match import(&args, path).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("numina-migrate: {error}");
                ExitCode::from(2)
            }
        };
    }
    match run(args).await {
        Ok(summary) if summary.users_failed == 0 => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("numina-migrate: {error}");
            ExitCode::from(2)
        }
    }
}

/// `--reindex-search`: the search index rebuilt from the table; the report to stdout (and to
/// `--summary-json`).
async fn reindex_search(
    args: &Args,
) -> Result<shared::search_backfill::BackfillReport, Box<dyn std::error::Error>> {
    let sdk = aws_config::load_from_env().await;
    let mut store = store_for(args, &sdk);
    // Messages over 32 KiB keep their content in the attachments bucket.
    match shared::store::ContentObjects::from_env(&sdk) {
        Some(objects) => store = store.with_content_objects(objects),
        None => {
            return Err("ATTACHMENTS_BUCKET is not set: messages over 32 KiB cannot be read".into())
        }
    }
    eprintln!("numina-migrate: reindexing search");
    let options = shared::search_backfill::BackfillOptions {
        segments: args.segments,
        parallel: usize::from(args.concurrency),
        ..Default::default()
    };
    let report = shared::search_backfill::backfill_search(&store, options).await?;
    let json = serde_json::to_string_pretty(&report)?;
    println!("{json}");
    if let Some(path) = &args.summary_json {
        std::fs::write(path, format!("{json}\n"))?;
    }
    Ok(report)
}

/// `--import`: conversations from their JSON exports: one conversation's file, or an account
/// export's (one conversation per line), read one conversation at a time.
async fn import(args: &Args, path: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
    let user = UserId::parse(args.user.as_deref().unwrap_or_default())?;
    let file =
        std::fs::File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let sdk = aws_config::load_from_env().await;
    let mut store = store_for(args, &sdk);
    // Messages over 32 KiB keep their content in the attachments bucket.
    match shared::store::ContentObjects::from_env(&sdk) {
        Some(objects) => store = store.with_content_objects(objects),
        None => eprintln!("ATTACHMENTS_BUCKET is not set: messages over 32 KiB cannot be imported"),
    }
    let exports = shared::export::Exports::new(store);
    let conversations = serde_json::Deserializer::from_reader(std::io::BufReader::new(file))
        .into_iter::<shared::export::ConversationExport>();
    let mut count = 0;
    for (n, export) in conversations.enumerate() {
        let export = export.map_err(|e| {
            format!(
                "{}: conversation {} is not a conversation export: {e}",
                path.display(),
                n + 1
            )
        })?;
        let imported = exports.import_conversation(&user, &export).await?;
        println!(
            "conversation {}: {}, {} messages stored, {} already present",
            imported.conversation,
            if imported.created {
                "created"
            } else {
                "already there"
            },
            imported.messages_stored,
            imported.messages_already_present
        );
        count += 1;
    }
    if count == 0 {
        return Err(format!("{} holds no conversation export", path.display()).into());
    }
    Ok(())
}

/// The table as `args` name it, written in the item shape they ask for.
fn store_for(args: &Args, sdk: &aws_config::SdkConfig) -> Store {
    let shape = match args.lean_items {
        true => shared::store::ItemShape::Lean,
        false => shared::store::ItemShape::Full,
    };
    Store::new(aws_sdk_dynamodb::Client::new(sdk), &args.table)
        .with_item_shape(shape)
        .with_compressed_text(args.compress_text)
}

/// A switch as the functions read it (`true`, or `false` also when empty).
fn switch_value(value: &str) -> Result<bool, String> {
    shared::config::switch("the switch", Some(value)).map_err(|e| e.to_string())
}

async fn run(args: Args) -> Result<RunSummary, Box<dyn std::error::Error>> {
    let only_user = args.user.as_deref().map(UserId::parse).transpose()?;
    let sdk = aws_config::load_from_env().await;
    let store = store_for(&args, &sdk);
    let migrator = Migrator::new(
        store.clone(),
        MigrationOptions {
            session_gap: Duration::minutes(args.session_gap_minutes),
            ..MigrationOptions::default()
        },
    );

    let source = match &args.from_file {
        Some(path) => {
            let file = std::fs::File::open(path)
                .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
            let mut dump = legacy::Dump::read(std::io::BufReader::new(file))?;
            if let Some(user) = &only_user {
                dump.users.retain(|u, _| u == user);
                dump.unattributed.clear();
            }
            eprintln!(
                "read {} items of {} users from {}",
                dump.items(),
                dump.users.len(),
                path.display()
            );
            Source::Dump(dump)
        }
        None => match only_user {
            Some(user) => Source::Memory(vec![user]),
            None => {
                let users = users_with_memory(&store).await?;
                eprintln!("{} users hold short-term memory", users.len());
                Source::Memory(users)
            }
        },
    };

    let run_id = format!("cli-{}", Utc::now().format("%Y%m%dT%H%M%SZ"));
    let mut summary = RunSummary::started(run_id, args.dry_run, Utc::now());
    let mut skipped_by_user: Vec<(String, Vec<SkippedItem>)> = Vec::new();
    let (jobs, unattributed) = match source {
        Source::Memory(users) => (
            users.into_iter().map(|u| (u, None)).collect::<Vec<_>>(),
            Vec::new(),
        ),
        Source::Dump(dump) => (
            dump.users
                .into_iter()
                .map(|(u, items)| (u, Some(items)))
                .collect(),
            dump.unattributed,
        ),
    };
    if !unattributed.is_empty() {
        summary.messages_skipped += unattributed.len() as u64;
        skipped_by_user.push(("(no user)".into(), unattributed));
    }

    let progress = Progress::new(jobs.len() as u64);
    let migrator = Arc::new(migrator);
    let dry_run = args.dry_run;
    let mut outcomes = stream::iter(jobs)
        .map(|(user, items)| {
            let migrator = Arc::clone(&migrator);
            async move {
                let outcome = migrate_one(&migrator, &user, items, dry_run).await;
                (user, outcome)
            }
        })
        .buffer_unordered(usize::from(args.concurrency));
    while let Some((user, outcome)) = outcomes.next().await {
        match outcome {
            Ok(done) => {
                progress.user_done(&done);
                summary.add_user(&done);
                if !done.skipped.is_empty() {
                    skipped_by_user.push((done.user_id.clone(), done.skipped));
                }
            }
            Err(error) => {
                progress.user_failed(&user, &error);
                summary.add_failure(user.as_str(), &error);
            }
        }
    }
    progress.finish();
    summary.status = "finished".into();
    summary.finished_at = Some(shared::keys::sortable_time(Utc::now()));

    print_summary(&summary, &skipped_by_user);
    if let Some(path) = &args.summary_json {
        std::fs::write(path, serde_json::to_vec_pretty(&summary)?)?;
    }
    Ok(summary)
}

async fn migrate_one(
    migrator: &Migrator,
    user: &UserId,
    items: Option<Vec<Result<SourceItem, SkippedItem>>>,
    dry_run: bool,
) -> Result<UserSummary, shared::Error> {
    match items {
        Some(items) => migrator.migrate_items(user, items, dry_run).await,
        None => migrator.migrate_memory(user, dry_run, Utc::now()).await,
    }
}

/// Every user listed in the memory index, reading its shards in parallel.
async fn users_with_memory(store: &Store) -> Result<Vec<UserId>, shared::Error> {
    let shards = stream::iter(0..MEMORY_SHARDS)
        .map(|shard| async move {
            let mut users = Vec::new();
            let mut after = None;
            loop {
                let (page, next) = store
                    .users_with_memory(shard, 1000, after.as_deref())
                    .await?;
                users.extend(page);
                match next {
                    Some(next) => after = Some(next),
                    None => return Ok::<_, shared::Error>(users),
                }
            }
        })
        .buffer_unordered(4)
        .collect::<Vec<_>>()
        .await;
    let mut users = Vec::new();
    for shard in shards {
        users.extend(shard?);
    }
    users.sort();
    Ok(users)
}

/// A bar on a terminal; plain lines (one per user) when stderr is a file or a pipe.
struct Progress {
    bar: Option<ProgressBar>,
    total: u64,
    done: std::sync::atomic::AtomicU64,
}

impl Progress {
    fn new(total: u64) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(total);
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} users {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar
        });
        Self {
            bar,
            total,
            done: Default::default(),
        }
    }

    fn user_done(&self, user: &UserSummary) {
        let n = self.done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        let line = format!(
            "{}: {} conversations, {} messages{}, {} already there, {} skipped",
            user.user_id,
            user.conversations_created,
            user.messages_migrated,
            if user.dry_run { " (dry run)" } else { "" },
            user.messages_already_present,
            user.skipped.len()
        );
        match &self.bar {
            Some(bar) => {
                bar.inc(1);
                bar.set_message(line);
            }
            None => eprintln!("[{n}/{}] {line}", self.total),
        }
    }

    fn user_failed(&self, user: &UserId, error: &shared::Error) {
        let n = self.done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        let line = format!("{user}: FAILED: {}", shared::error::chain(error));
        match &self.bar {
            Some(bar) => {
                bar.inc(1);
                bar.println(line);
            }
            None => eprintln!("[{n}/{}] {line}", self.total),
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

fn print_summary(summary: &RunSummary, skipped: &[(String, Vec<SkippedItem>)]) {
    let mode = if summary.dry_run {
        " (dry run: nothing written)"
    } else {
        ""
    };
    println!("Migration summary{mode}");
    println!(
        "  users:                   {}",
        summary.users + summary.users_failed
    );
    println!(
        "  conversations created:   {}",
        summary.conversations_created
    );
    println!("  messages migrated:       {}", summary.messages_migrated);
    println!(
        "  messages already there:  {}",
        summary.messages_already_present
    );
    println!("  skipped:                 {}", summary.messages_skipped);
    println!("  failed users:            {}", summary.users_failed);
    for (user, items) in skipped {
        for item in items {
            println!("  skipped {user} {}: {}", item.key, item.reason);
        }
    }
    for failed in &summary.failed_users {
        println!("  failed {}: {}", failed.user_id, failed.error);
    }
}
