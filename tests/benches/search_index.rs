//! The search index at the size issue 8 names: one user with 10,000 conversations and
//! 1,000,000 messages (generated: chat-length messages, words drawn from a Zipf-distributed
//! vocabulary of 20,000). `scripts/bench.sh` runs it; results in docs/benchmarks/search.json.
//!
//! 1. Build: every message through the indexer's own code (`search::message_term_hashes`
//!    and `search::BlockPlan`), in stream batches of one message per conversation (as in
//!    AWS, where a conversation's messages come seconds apart) and of ten: blocks written
//!    per message (each at most 1 KB: one write unit), the index's blocks and bytes.
//! 2. Store throughput: a sample of messages written to the local DynamoDB server and indexed
//!    from its stream by the indexer, end to end.
//! 3. Queries: the whole index of the 1,000,000 messages (every block, as the indexer would
//!    hold them) and the 10,000 conversations written to the local server, and searches run
//!    against them through a meter: store calls, read units and latency per page. A search
//!    reads the user's whole index, so this user is the dearest case; other users' blocks
//!    are in other partitions and never enter its cost.

use std::sync::atomic::Ordering;
use std::time::Instant;

use chrono::{DateTime, Duration, Utc};
use futures::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use shared::model::{ConversationId, Message, MessageId, Role, Tags, Title, UserId};
use shared::search::{self, BlockPlan, Search, SearchBlock, SearchQuery};
use shared::store::{search_block_capacity, ConversationItem, Store, SEARCH_BLOCK_BYTES};
use tests::corpus::{word, Zipf};
use tests::meter::Meter;

const CONVERSATIONS: usize = 10_000;
const MESSAGES_PER_CONVERSATION: usize = 100;
const VOCABULARY: usize = 20_000;
const SAMPLE_CONVERSATIONS: usize = 40;
/// Each search reads the whole index: a few rounds say enough.
const QUERY_ROUNDS: usize = 3;
const DEEP_PAGES: usize = 3;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    (sorted[index] * 100.0).round() / 100.0
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
                    client_timestamp: None,
                    token_count: None,
                    slot: None,
                },
            );
        }
    }
}

/// What DynamoDB counts of a block's item: `search_block_capacity` leaves room for the keys
/// and attributes, each term's hash is four bytes.
fn block_bytes(terms: usize) -> usize {
    SEARCH_BLOCK_BYTES - 4 * search_block_capacity_of_bench() + 4 * terms
}

fn search_block_capacity_of_bench() -> usize {
    search_block_capacity(
        &bench_user(),
        &ConversationId::from(uuid::Uuid::from_u128(1)),
    )
}

fn bench_user() -> UserId {
    UserId::parse("search-bench-user-0000-0000-0000-000000000000").unwrap()
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Replays the corpus through the indexer's block plans in stream batches of `batch`
/// messages of one conversation: blocks written, and the plans at the end.
fn build(batch: usize) -> (serde_json::Value, Vec<BlockPlan>) {
    let capacity = search_block_capacity_of_bench();
    let mut plans: Vec<BlockPlan> = Vec::new();
    let (mut messages, mut terms, mut max_terms, mut written) = (0usize, 0usize, 0usize, 0usize);
    let mut cpu = std::time::Duration::ZERO;
    let (mut pending, mut current, mut in_conversation) = (0, 0, 0);
    corpus(|c, message| {
        let started = Instant::now();
        if plans.len() == c {
            plans.push(BlockPlan::new(
                message.conversation_id,
                Vec::new(),
                capacity,
            ));
        }
        let hashes = search::message_term_hashes(&message.content);
        plans[c].add(message.timestamp, &hashes);
        pending += 1;
        in_conversation = if c == current { in_conversation + 1 } else { 1 };
        current = c;
        // A batch ends when full or with the conversation's last message.
        if pending == batch || in_conversation == MESSAGES_PER_CONVERSATION {
            written += plans[c].changed().count();
            plans[c].written();
            pending = 0;
        }
        cpu += started.elapsed();
        messages += 1;
        terms += hashes.len();
        max_terms = max_terms.max(hashes.len());
    });
    let blocks: usize = plans.iter().map(|p| p.blocks().count()).sum();
    let bytes: usize = plans
        .iter()
        .flat_map(|p| p.blocks().map(|b| block_bytes(b.terms.len())))
        .sum();
    let result = json!({
        "streamBatch": format!("{batch} message(s) of one conversation"),
        "messages": messages,
        "cpuSeconds": round2(cpu.as_secs_f64()),
        "messagesPerCpuSecond": (messages as f64 / cpu.as_secs_f64()).round(),
        "termsPerMessage": {"mean": round2(terms as f64 / messages as f64), "max": max_terms, "cap": search::MAX_TERMS_PER_MESSAGE},
        "blockWritesPerMessage": round2(written as f64 / messages as f64),
        "writeUnitsPerMessage": round2(written as f64 / messages as f64),
        "blocks": blocks,
        "termsPerBlock": {"mean": round2(plans.iter().flat_map(|p| p.blocks().map(|b| b.terms.len())).sum::<usize>() as f64 / blocks as f64), "capacity": capacity},
        "indexBytes": bytes,
        "indexBytesPerMessage": round2(bytes as f64 / messages as f64),
    });
    (result, plans)
}

#[tokio::main]
async fn main() {
    if std::env::var("CACHE_URL").is_err() {
        eprintln!("run this through scripts/bench.sh, which starts the local servers");
        std::process::exit(2);
    }
    let user = bench_user();
    let queried = [word(3), word(400), word(12_000)];

    // 1. Build cost, on the whole corpus.
    let (one_at_a_time, _) = build(1);
    eprintln!("build: {one_at_a_time}");
    let (ten_at_a_time, plans) = build(10);
    eprintln!("build: {ten_at_a_time}");
    let conversations_with = |term: &str| {
        let hash = search::term_hash(term);
        plans
            .iter()
            .filter(|p| p.blocks().any(|b| b.has(hash)))
            .count()
    };

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

    // 3. Queries at full size: the 10,000 conversations and the user's whole index.
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
    let blocks: Vec<SearchBlock> = plans
        .iter()
        .flat_map(|p| p.blocks().cloned())
        .map(|b| SearchBlock { version: 0, ..b })
        .collect();
    let written = futures::stream::iter(&blocks)
        .map(|block| store.write_search_block(&user, block))
        .buffer_unordered(8)
        .filter(|written| futures::future::ready(matches!(written, Ok(true))))
        .count()
        .await;
    assert_eq!(written, blocks.len(), "every block written");
    drop(blocks);

    let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap();
    let meter = Meter::start(&endpoint).await;
    let (client, calls) = tests::CallCounter::client_through(meter.endpoint()).await;
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
        meter.take();
        for _ in 0..QUERY_ROUNDS {
            let started = Instant::now();
            let page = searcher.search(&user, &query, 20, None).await.unwrap();
            times.push(started.elapsed().as_secs_f64() * 1000.0);
            found = page.hits.len();
        }
        let units = meter.take();
        let calls_per_page = (calls.load(Ordering::Relaxed) - before) as f64 / QUERY_ROUNDS as f64;
        times.sort_by(f64::total_cmp);
        let result = json!({
            "query": label,
            "conversationsWithEachWord": query.terms().iter().map(|t| conversations_with(t)).collect::<Vec<_>>(),
            "firstPageResults": found,
            "storeCallsPerPage": calls_per_page,
            "readUnitsPerPage": round2(units.reads / QUERY_ROUNDS as f64),
            "msP50": percentile(&times, 0.5),
            "msP95": percentile(&times, 0.95),
        });
        eprintln!("query: {result}");
        queries.push(result);
    }
    // The first pages of the common word: every page reads the whole index again.
    let query = SearchQuery::parse(&queried[0]).unwrap();
    let before = calls.load(Ordering::Relaxed);
    meter.take();
    let started = Instant::now();
    let (mut pages, mut total, mut cursor) = (0, 0, None::<String>);
    while pages < DEEP_PAGES {
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
    let units = meter.take();
    let every_page = json!({
        "query": format!("common word, the first {DEEP_PAGES} pages of 50"),
        "pages": pages,
        "results": total,
        "storeCallsPerPage": round2((calls.load(Ordering::Relaxed) - before) as f64 / pages as f64),
        "readUnitsPerPage": round2(units.reads / pages as f64),
        "msPerPage": round2(started.elapsed().as_secs_f64() * 1000.0 / pages as f64),
    });
    eprintln!("{every_page}");

    let results = json!({
        "benchmark": "search index: build cost on 1,000,000 messages, queries for one user with 10,000 conversations",
        "machine": "2 cores, local moto server (one request at a time) on 127.0.0.1",
        "build": [one_at_a_time, ten_at_a_time],
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
