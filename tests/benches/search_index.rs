//! The search index at the size issue 8 names: one user with 10,000 conversations and
//! 1,000,000 messages (generated: chat-length messages, words drawn from a Zipf-distributed
//! vocabulary of 20,000). `scripts/bench.sh` runs it; results in docs/benchmarks/search.json.
//!
//! 1. Build: every message through the indexer's own code (`search::message_entries`):
//!    messages per second of CPU, entries per message, and the bytes and write units those
//!    entries cost, before and after the indexer's collapse of a stream batch.
//! 2. Store throughput: a sample of messages written to the local DynamoDB server and indexed
//!    from its stream by the indexer, end to end.
//! 3. Queries: for a common, a middling and a rare word, and a two-word query, the entries
//!    the indexer would hold for this user (computed from the whole corpus with the same
//!    code) are written to the local server with the 10,000 conversations, and searches run
//!    against them: latency, store calls and entries read per page. A query reads only the
//!    partitions of its own words (`<user>#<term>`): other users and other words never enter
//!    its cost, so the rest of the index is not needed to measure it.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Instant;

use chrono::{DateTime, Duration, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use shared::model::{ConversationId, Message, MessageId, Role, Tags, Title, UserId};
use shared::search::{self, Search, SearchQuery, TermEntry};
use shared::store::{entry_item_bytes, ConversationItem, IndexChange, Store};
use tests::corpus::{word, Zipf};

const CONVERSATIONS: usize = 10_000;
const MESSAGES_PER_CONVERSATION: usize = 100;
const VOCABULARY: usize = 20_000;
const STREAM_BATCH: usize = 100;
const SAMPLE_CONVERSATIONS: usize = 40;
const QUERY_ROUNDS: usize = 20;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    (sorted[index] * 100.0).round() / 100.0
}

fn write_units(bytes: usize) -> usize {
    bytes.div_ceil(1024)
}

/// The whole corpus, message by message, in time order within each conversation.
fn corpus(mut each: impl FnMut(usize, Message)) {
    let mut rng = StdRng::seed_from_u64(8);
    let zipf = Zipf::new(VOCABULARY);
    let vocabulary: Vec<String> = (0..VOCABULARY).map(word).collect();
    let start: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
    for c in 0..CONVERSATIONS {
        let conversation = ConversationId::from(uuid::Uuid::from_u128(c as u128 + 1));
        for m in 0..MESSAGES_PER_CONVERSATION {
            let words = rng.random_range(5..40);
            let content = (0..words)
                .map(|_| vocabulary[zipf.draw(&mut rng)].as_str())
                .collect::<Vec<_>>()
                .join(" ");
            each(
                c,
                Message {
                    id: MessageId::generate(),
                    conversation_id: conversation,
                    role: if m % 2 == 0 {
                        Role::User
                    } else {
                        Role::Assistant
                    },
                    content,
                    timestamp: start
                        + Duration::minutes((c * MESSAGES_PER_CONVERSATION + m) as i64),
                    attachments: vec![],
                    metadata: Default::default(),
                    client_message_id: None,
                    token_count: None,
                },
            );
        }
    }
}

#[tokio::main]
async fn main() {
    if std::env::var("CACHE_URL").is_err() {
        eprintln!("run this through scripts/bench.sh, which starts the local servers");
        std::process::exit(2);
    }
    let user = UserId::parse(&tests::new_user()).unwrap();
    let queried = [word(3), word(400), word(12_000)];

    // 1. Build cost, on the whole corpus.
    let mut messages = 0usize;
    let mut entries = 0usize;
    let mut max_entries = 0usize;
    let mut entry_bytes = 0usize;
    let mut entry_units = 0usize;
    let mut collapsed = 0usize;
    let mut batch: HashMap<String, ()> = HashMap::new();
    let mut batch_messages = 0;
    let mut latest: HashMap<(usize, String), TermEntry> = HashMap::new();
    let mut cpu = std::time::Duration::ZERO;
    corpus(|c, message| {
        let started = Instant::now();
        let found = search::message_entries(&user, &message);
        cpu += started.elapsed();
        messages += 1;
        entries += found.len();
        max_entries = max_entries.max(found.len());
        batch_messages += 1;
        for entry in found {
            let bytes = entry_item_bytes(&entry).unwrap();
            entry_bytes += bytes;
            entry_units += write_units(bytes);
            batch.insert(entry.term.clone(), ());
            if queried.contains(&entry.term) {
                latest.insert((c, entry.term.clone()), entry);
            }
        }
        if batch_messages == STREAM_BATCH {
            collapsed += batch.len();
            batch.clear();
            batch_messages = 0;
        }
    });
    collapsed += batch.len();
    let build = json!({
        "messages": messages,
        "conversations": CONVERSATIONS,
        "cpuSeconds": (cpu.as_secs_f64() * 100.0).round() / 100.0,
        "messagesPerCpuSecond": (messages as f64 / cpu.as_secs_f64()).round(),
        "entriesPerMessage": {"mean": (entries as f64 / messages as f64 * 100.0).round() / 100.0, "max": max_entries, "cap": search::MAX_TERMS_PER_MESSAGE},
        "bytesPerEntry": entry_bytes / entries.max(1),
        "writeUnitsPerMessage": {
            "everyEntryWritten": (entry_units as f64 / messages as f64 * 100.0).round() / 100.0,
            "afterCollapsingStreamBatchesOf100MessagesOfOneConversation": (collapsed as f64 / messages as f64 * 100.0).round() / 100.0,
            "note": "each entry write counts once in the table and once in ByTerm (x2 in write units billed); a stream batch mixing many conversations collapses less"
        },
    });
    eprintln!("build: {build}");

    // 2. Store throughput, end to end through the stream, on a sample.
    let state = tests::state().await;
    let mut poller = local::StreamPoller::from_latest(
        state.clone(),
        &tests::template(),
        Some(&[local::StreamConsumer::IndexForSearch]),
    )
    .await
    .unwrap();
    let sample_user = UserId::parse(&tests::new_user()).unwrap();
    let mut sample = Vec::new();
    corpus(|c, message| {
        if c < SAMPLE_CONVERSATIONS {
            sample.push((c, message));
        }
    });
    let mut sample_ids = Vec::new();
    for _ in 0..SAMPLE_CONVERSATIONS {
        let created = state
            .conversations
            .create(
                &sample_user,
                Some(Title::parse("Sample").unwrap()),
                Tags::default(),
                state.now(),
            )
            .await
            .unwrap();
        sample_ids.push(created.id);
    }
    let store = state.conversations.store();
    for (c, chunk) in sample.chunks(MESSAGES_PER_CONVERSATION / 2).enumerate() {
        let conversation = sample_ids[c / 2];
        let messages: Vec<Message> = chunk
            .iter()
            .map(|(_, m)| Message {
                conversation_id: conversation,
                ..m.clone()
            })
            .collect();
        store
            .append_migrated(&sample_user, &conversation, &messages, None)
            .await
            .unwrap();
    }
    let started = Instant::now();
    poller.poll_once().await.unwrap();
    let indexing = started.elapsed().as_secs_f64();
    let throughput = json!({
        "messages": sample.len(),
        "seconds": (indexing * 100.0).round() / 100.0,
        "messagesPerSecond": (sample.len() as f64 / indexing).round(),
        "note": "against moto, which handles one request at a time; DynamoDB takes batch writes in parallel",
    });
    eprintln!("store throughput: {throughput}");

    // 3. Queries at full size: the 10,000 conversations and the queried words' entries.
    // Plain conditional puts (as the migration creates conversations): moto copies the
    // whole table for every transaction, which 10,000 creates would spend minutes on.
    for c in 0..CONVERSATIONS {
        let item = ConversationItem::new(
            &user,
            ConversationId::from(uuid::Uuid::from_u128(c as u128 + 1)),
            Some(&Title::parse(&format!("Conversation {c}")).unwrap()),
            Vec::new(),
            state.now(),
        );
        store.put_new_conversation(&item).await.unwrap();
    }
    let changes: Vec<IndexChange> = latest.into_values().map(IndexChange::Put).collect();
    let mut per_term: HashMap<String, usize> = HashMap::new();
    for change in &changes {
        if let IndexChange::Put(entry) = change {
            *per_term.entry(entry.term.clone()).or_default() += 1;
        }
    }
    for chunk in changes.chunks(500) {
        store.apply_index_changes(chunk).await.unwrap();
    }

    let (client, calls) = tests::CallCounter::client().await;
    let searcher = Search::new(
        Store::new(client, &state.config.table_name),
        state.conversations.cursors().clone(),
    );
    let mut queries = Vec::new();
    for (label, text) in [
        ("common word", queried[0].clone()),
        ("middling word", queried[1].clone()),
        ("rare word", queried[2].clone()),
        (
            "common and middling words",
            format!("{} {}", queried[0], queried[1]),
        ),
    ] {
        let query = SearchQuery::parse(&text).unwrap();
        let mut times = Vec::new();
        let mut found = 0;
        let before = calls.load(Ordering::Relaxed);
        for _ in 0..QUERY_ROUNDS {
            let started = Instant::now();
            let page = searcher.search(&user, &query, 20, None).await.unwrap();
            times.push(started.elapsed().as_secs_f64() * 1000.0);
            found = page.hits.len();
        }
        let calls_per_page = (calls.load(Ordering::Relaxed) - before) as f64 / QUERY_ROUNDS as f64;
        times.sort_by(f64::total_cmp);
        let conversations_with: Vec<usize> = query
            .terms()
            .iter()
            .map(|t| per_term.get(t).copied().unwrap_or(0))
            .collect();
        let result = json!({
            "query": label,
            "conversationsWithEachWord": conversations_with,
            "firstPageResults": found,
            "storeCallsPerPage": calls_per_page,
            "msP50": percentile(&times, 0.5),
            "msP95": percentile(&times, 0.95),
        });
        eprintln!("query: {result}");
        queries.push(result);
    }
    // Every page of the common word: the cost of a page stays the same however deep.
    let query = SearchQuery::parse(&queried[0]).unwrap();
    let before = calls.load(Ordering::Relaxed);
    let started = Instant::now();
    let (mut pages, mut total, mut cursor) = (0, 0, None::<String>);
    loop {
        let page = searcher
            .search(&user, &query, 50, cursor.as_deref())
            .await
            .unwrap();
        pages += 1;
        total += page.hits.len();
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    let every_page = json!({
        "query": "common word, every page of 50",
        "pages": pages,
        "results": total,
        "storeCallsPerPage": ((calls.load(Ordering::Relaxed) - before) as f64 / pages as f64 * 100.0).round() / 100.0,
        "msPerPage": (started.elapsed().as_secs_f64() * 1000.0 / pages as f64 * 100.0).round() / 100.0,
    });
    eprintln!("{every_page}");

    let results = json!({
        "benchmark": "search index: build cost on 1,000,000 messages, queries for one user with 10,000 conversations",
        "machine": "2 cores, local moto server (one request at a time) on 127.0.0.1",
        "build": build,
        "storeThroughput": throughput,
        "queries": queries,
        "everyPage": every_page,
    });
    let path = tests::workspace_root().join("docs/benchmarks/search.json");
    std::fs::write(
        &path,
        serde_json::to_string_pretty(&results).unwrap() + "\n",
    )
    .unwrap();
    eprintln!("wrote {}", path.display());
}
