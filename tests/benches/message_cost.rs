//! What a message costs to keep, in what DynamoDB bills: write and read request units,
//! metered (`tests::meter`) from the items by DynamoDB's documented rules, for every call the
//! real handlers (through the local API) and the real stream functions (fed by the local
//! poller, as in AWS) make against the local server. Each part has a meter of its own: the
//! requests, the search indexer, the summarizer, and the other background functions.
//!
//! 1. One conversation, messages 1 to 1,000 of about 200 bytes alternating user and assistant
//!    (the append-cost workload the peer runs): each append's units, and those of the
//!    background work it caused, at messages 1, 10, 100 and 1,000.
//! 2. A mixed workload: many users; conversation lengths long-tailed (median 12, a few in the
//!    hundreds, one of 1,500); user messages of 20 bytes to 1 KB and replies of 100 bytes to
//!    4 KB, words drawn from a Zipf vocabulary; user messages with client message ids, as
//!    the app sends them; renames, tags, archives, deletes, lists, syncs and searches in
//!    realistic shares. Units per message by part, and the dearest message.
//! 3. Read units of a list page, a 50-message get, sync pages (the first, and one of changes)
//!    and a search page.
//!
//! `scripts/bench.sh` runs it; results in docs/benchmarks/message-cost.json.

use std::collections::BTreeMap;

use local::{StreamConsumer, StreamPoller};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tests::corpus::Zipf;
use tests::meter::{Meter, Units};
use tests::{new_user, Client, LocalApi};

const CHECKPOINTS: [usize; 4] = [1, 10, 100, 1_000];
/// Characters of a summary as a real model writes it: the instruction asks for at most 200
/// words (`assistant::summaries::SUMMARY_INSTRUCTION`), some 1,200 characters of English.
const REAL_SUMMARY_CHARS: usize = 1_200;

/// The model the summarizer is given here: summaries as long as a real model's, in the
/// conversation's own words (so they deflate as its text does), behind the same interface as
/// the real providers. The local model's one sentence would leave out what a real summary
/// weighs in the items that hold it.
struct RealLengthSummaries;

impl RealLengthSummaries {
    fn summary_of(request: &ai::provider::ModelRequest) -> String {
        let transcript = request
            .messages
            .last()
            .map(|m| m.content.as_str())
            .unwrap_or_default();
        let words: Vec<&str> = transcript
            .split_whitespace()
            .filter(|word| word.chars().all(char::is_alphabetic))
            .collect();
        let mut summary = String::with_capacity(REAL_SUMMARY_CHARS + 16);
        for word in words.iter().cycle().take(10_000) {
            if summary.len() >= REAL_SUMMARY_CHARS {
                break;
            }
            if !summary.is_empty() {
                summary.push(' ');
            }
            summary.push_str(word);
        }
        summary
    }
}

impl ai::provider::ModelProvider for RealLengthSummaries {
    fn name(&self) -> &'static str {
        "real-length-summaries"
    }

    fn stream<'a>(
        &'a self,
        request: &'a ai::provider::ModelRequest,
    ) -> futures::stream::BoxStream<'a, Result<ai::provider::ModelDelta, ai::provider::ProviderError>>
    {
        let text = Self::summary_of(request);
        Box::pin(futures::stream::iter([Ok(ai::provider::ModelDelta::Text(
            text,
        ))]))
    }

    fn complete<'a>(
        &'a self,
        request: &'a ai::provider::ModelRequest,
    ) -> futures::future::BoxFuture<'a, Result<ai::provider::ModelReply, ai::provider::ProviderError>>
    {
        let text = Self::summary_of(request);
        Box::pin(async move {
            Ok(ai::provider::ModelReply {
                text,
                input_tokens: 0,
                output_tokens: 400,
            })
        })
    }
}
const VOCABULARY: usize = 5_000;
/// Messages a checkpoint's mean is taken over (the summaries' period).
const WINDOW: usize = 20;

/// The meters of each part of the service.
struct Meters {
    requests: Meter,
    search: Meter,
    summaries: Meter,
    others: Meter,
}

/// The units one append (or any request) and the background work it caused cost.
#[derive(Default, Clone)]
struct Cost {
    request: Units,
    search: Units,
    summaries: Units,
    others: Units,
}

impl Cost {
    fn writes(&self) -> u64 {
        self.request.writes()
            + self.search.writes()
            + self.summaries.writes()
            + self.others.writes()
    }

    fn add(&mut self, other: &Cost) {
        self.request.add(&other.request);
        self.search.add(&other.search);
        self.summaries.add(&other.summaries);
        self.others.add(&other.others);
    }

    fn json(&self, per: f64) -> Value {
        let per = |n: f64| (n / per * 100.0).round() / 100.0;
        let indexes: BTreeMap<&String, f64> = self
            .request
            .index_writes
            .iter()
            .map(|(index, units)| (index, per(*units as f64)))
            .collect();
        json!({
            "allIn": per(self.writes() as f64),
            "request": {
                "table": per(self.request.table_writes as f64),
                "indexes": indexes,
                "total": per(self.request.writes() as f64),
                "reads": per(self.request.reads),
            },
            "search": per(self.search.writes() as f64),
            "searchReads": per(self.search.reads),
            "summaries": per(self.summaries.writes() as f64),
            "summaryReads": per(self.summaries.reads),
            "others": per(self.others.writes() as f64),
        })
    }
}

struct Bench {
    api: LocalApi,
    poller: StreamPoller,
    meters: Meters,
}

impl Bench {
    async fn start() -> Self {
        let target = std::env::var("AWS_ENDPOINT_URL").unwrap();
        let meters = Meters {
            requests: Meter::start(&target).await,
            search: Meter::start(&target).await,
            summaries: Meter::start(&target).await,
            others: Meter::start(&target).await,
        };
        // Without the cache: every read reaches the table, as a cold cache's would.
        // A sync round starts again a second before the last one began (not a minute), so a
        // page of changes holds what the part measuring reads changed, not also what it wrote
        // before.
        // Items written lean (docs/operations.md, "Lean items"): the shape this release writes
        // once `LeanItems` is on.
        let overrides = [
            ("CACHE_URL", ""),
            ("LIMIT_SEARCHES_PER_MINUTE", "100000"),
            ("SYNC_SETTLE_SECONDS", "1"),
            ("LEAN_ITEMS", "true"),
            ("COMPRESS_TEXT", "true"),
            ("SLOT_KEYS", "true"),
        ];
        let state = tests::state_through(meters.requests.endpoint(), &overrides).await;
        let search = tests::same_tables_through(&state, meters.search.endpoint()).await;
        let mut summaries = tests::same_tables_through(&state, meters.summaries.endpoint()).await;
        summaries.summaries = assistant::summaries::Summaries::new(
            summaries.conversations.store().clone(),
            std::sync::Arc::new(RealLengthSummaries),
            *summaries.assistant.tokenizer(),
            summaries.summaries.settings().clone(),
        );
        let others = tests::same_tables_through(&state, meters.others.endpoint()).await;
        let poller = StreamPoller::from_latest(others, &tests::template(), None)
            .await
            .expect("the table has a stream")
            .with_state_for(StreamConsumer::IndexForSearch, search)
            .with_state_for(StreamConsumer::SummarizeConversations, summaries);
        let api = LocalApi::serving(state).await;
        Self {
            api,
            poller,
            meters,
        }
    }

    /// Lets the background functions act on every change so far.
    async fn settle(&mut self) {
        for _ in 0..50 {
            if self
                .poller
                .poll_once()
                .await
                .expect("the stream is readable")
                == 0
            {
                return;
            }
        }
        panic!("the stream did not settle");
    }

    fn take(&self) -> Cost {
        Cost {
            request: self.meters.requests.take(),
            search: self.meters.search.take(),
            summaries: self.meters.summaries.take(),
            others: self.meters.others.take(),
        }
    }

    /// Runs `request` and the background work it causes; what they cost.
    async fn metered<F: std::future::Future<Output = Value>>(
        &mut self,
        request: F,
    ) -> (Value, Cost) {
        self.take();
        let answer = request.await;
        self.settle().await;
        (answer, self.take())
    }
}

async fn expect(reply: tests::Reply, status: StatusCode) -> Value {
    assert_eq!(reply.status, status, "{:?}", reply.body);
    reply.body
}

async fn append(client: &Client, conversation: &str, role: &str, content: &str) -> Value {
    append_with(
        client,
        conversation,
        json!({ "role": role, "content": content }),
    )
    .await
}

/// A user message as the app sends it: with the client message id its offline queue retries
/// it with (docs/mobile-sync.md).
async fn append_from_app(client: &Client, conversation: &str, content: &str, id: &str) -> Value {
    append_with(
        client,
        conversation,
        json!({ "role": "user", "content": content, "clientMessageId": id }),
    )
    .await
}

async fn append_with(client: &Client, conversation: &str, message: Value) -> Value {
    expect(
        client
            .post(&format!("/conversations/{conversation}/messages"), message)
            .await,
        StatusCode::CREATED,
    )
    .await
}

async fn create(client: &Client, title: &str) -> String {
    let created = expect(
        client
            .post("/conversations", json!({ "title": title }))
            .await,
        StatusCode::CREATED,
    )
    .await;
    created["id"].as_str().unwrap().to_owned()
}

/// Part 1: one conversation of 1,000 messages of about 200 bytes.
async fn one_conversation(bench: &mut Bench, zipf: &Zipf, rng: &mut StdRng, last: usize) -> Value {
    let client = bench.api.as_user(&new_user());
    let conversation = create(&client, "Message cost").await;
    bench.settle().await;
    let mut points = Vec::new();
    // Summaries are written every 20 messages: a checkpoint reports the mean of the 20
    // messages ending at it (fewer at the start), so one that falls on a summary is not
    // billed the whole summary alone.
    let mut recent: std::collections::VecDeque<Cost> = std::collections::VecDeque::new();
    for n in 1..=last {
        let role = if n % 2 == 1 { "user" } else { "assistant" };
        let mut text = zipf.text(rng, 200);
        text.truncate(200);
        let (_, cost) = bench
            .metered(append(&client, &conversation, role, &text))
            .await;
        let this_message = cost.writes();
        recent.push_back(cost);
        if recent.len() > WINDOW {
            recent.pop_front();
        }
        if CHECKPOINTS.contains(&n) {
            let mut window = Cost::default();
            for cost in &recent {
                window.add(cost);
            }
            let mut point = window.json(recent.len() as f64);
            point["message"] = json!(n);
            point["window"] = json!(recent.len());
            point["thisMessage"] = json!(this_message);
            points.push(point);
        }
    }
    json!({ "messageBytes": 200, "points": points })
}

/// A conversation's length: log-normal around a median of 12 (a few in the hundreds).
fn length(rng: &mut StdRng) -> usize {
    let normal: f64 = {
        // Box–Muller from two uniform draws.
        let (u, v): (f64, f64) = (rng.random::<f64>().max(1e-12), rng.random());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    };
    ((12f64.ln() + 1.1 * normal).exp().round() as usize).clamp(1, 600)
}

/// A message's size in bytes: log-normal around `median`, within `range`.
fn size(rng: &mut StdRng, median: f64, range: (usize, usize)) -> usize {
    let (u, v): (f64, f64) = (rng.random::<f64>().max(1e-12), rng.random());
    let normal = (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos();
    ((median.ln() + 0.9 * normal).exp().round() as usize).clamp(range.0, range.1)
}

/// How much of a text the store keeps with `COMPRESS_TEXT` on (the store's own rule: texts
/// of at least 128 bytes, deflated when that makes them smaller), summed over texts.
#[derive(Default)]
struct Deflation {
    bytes: usize,
    kept: usize,
}

impl Deflation {
    fn add(&mut self, text: &str) {
        self.bytes += text.len();
        self.kept += match shared::store::deflated::text_attribute(text, true) {
            aws_sdk_dynamodb::types::AttributeValue::B(bytes) => bytes.as_ref().len(),
            _ => text.len(),
        };
    }

    fn share(&self) -> f64 {
        (self.kept as f64 / self.bytes.max(1) as f64 * 100.0).round() / 100.0
    }
}

/// The same share for English prose in pieces of a reply's size (2 KB of this project's
/// docs), against which the generated words' share is read.
fn english_deflates_to() -> f64 {
    let mut share = Deflation::default();
    for doc in ["README.md", "docs/operations.md", "docs/data-model.md"] {
        let text = std::fs::read_to_string(tests::workspace_root().join(doc)).unwrap();
        let bytes = text.as_bytes();
        let mut at = 0;
        while at + 2_048 <= bytes.len() {
            let mut end = at + 2_048;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            share.add(&text[at..end]);
            at = end;
        }
    }
    share.share()
}

/// Part 2: the mixed workload.
async fn mixed(
    bench: &mut Bench,
    zipf: &Zipf,
    rng: &mut StdRng,
    users: usize,
    longest: usize,
) -> Value {
    let mut appends = Cost::default();
    let mut everything_else: BTreeMap<&'static str, (usize, Cost)> = BTreeMap::new();
    let mut messages = 0usize;
    let mut dearest = (0u64, Value::Null);
    let mut lengths = Vec::new();
    let mut text_bytes = Deflation::default();
    for u in 0..users {
        let client = bench.api.as_user(&new_user());
        let conversations = 1 + (rng.random::<f64>() * 6.0) as usize;
        let mut ids = Vec::new();
        for c in 0..conversations {
            // One conversation in the whole run runs to `longest` messages.
            let wanted = if u == 0 && c == 0 {
                longest
            } else {
                length(rng)
            };
            lengths.push(wanted);
            let (id, cost) = bench
                .metered(async { json!(create(&client, &zipf.text(rng, 20)).await) })
                .await;
            let id = id.as_str().unwrap().to_owned();
            let entry = everything_else.entry("create").or_default();
            entry.0 += 1;
            entry.1.add(&cost);
            for n in 1..=wanted {
                let (role, bytes) = if n % 2 == 1 {
                    ("user", size(rng, 80.0, (20, 1_024)))
                } else {
                    ("assistant", size(rng, 600.0, (100, 4_096)))
                };
                let text = zipf.text(rng, bytes);
                text_bytes.add(&text);
                // User messages come from the app, with their client message ids; replies
                // without (the service writes them).
                let sent = async {
                    match role {
                        "user" => append_from_app(&client, &id, &text, &format!("m-{n}")).await,
                        _ => append(&client, &id, role, &text).await,
                    }
                };
                let (_, cost) = bench.metered(sent).await;
                messages += 1;
                if cost.writes() > dearest.0 {
                    let mut detail = cost.json(1.0);
                    detail["bytes"] = json!(text.len());
                    detail["message"] = json!(n);
                    dearest = (cost.writes(), detail);
                }
                appends.add(&cost);
            }
            ids.push(id);
        }
        // What people do besides writing, in rough shares.
        for id in &ids {
            let actions: [(&'static str, f64); 4] = [
                ("rename", 0.3),
                ("tags", 0.2),
                ("archive", 0.15),
                ("delete", 0.05),
            ];
            for (action, share) in actions {
                if rng.random::<f64>() >= share {
                    continue;
                }
                let title = zipf.text(rng, 24);
                let (_, cost) = bench
                    .metered(async {
                        let change = |field: &'static str, body: Value| {
                            let path = format!("/conversations/{id}/{field}");
                            let client = &client;
                            async move { client.put(&path, body).await }
                        };
                        let reply = match action {
                            "rename" => change("title", json!({ "title": title })).await,
                            "tags" => change("tags", json!({ "tags": ["work", "travel"] })).await,
                            "archive" => change("archive", json!({ "archived": true })).await,
                            _ => client.delete(&format!("/conversations/{id}")).await,
                        };
                        assert!(reply.status.is_success(), "{action}: {:?}", reply.body);
                        reply.body
                    })
                    .await;
                let entry = everything_else.entry(action).or_default();
                entry.0 += 1;
                entry.1.add(&cost);
            }
        }
        let query = tests::corpus::word(zipf.draw(rng));
        for (action, path) in [
            ("list", "/conversations?limit=20".to_owned()),
            ("sync", "/mobile/sync".to_owned()),
            ("search", format!("/search?q={query}")),
        ] {
            let (_, cost) = bench
                .metered(async {
                    let reply = client.get(&path).await;
                    assert_eq!(reply.status, StatusCode::OK, "{path}: {:?}", reply.body);
                    reply.body
                })
                .await;
            let entry = everything_else.entry(action).or_default();
            entry.0 += 1;
            entry.1.add(&cost);
        }
    }
    // A delete is checked again by the hourly sweep: its cost is the delete's too.
    let later = shared::clock::ManualClock::at(
        chrono::Utc::now() + shared::purge::SWEEP_GRACE + chrono::Duration::minutes(5),
    );
    let sdk = aws_config::from_env()
        .endpoint_url(bench.meters.others.endpoint())
        .load()
        .await;
    let sweeper = assistant::State::with_clock(
        bench.api.state.config.clone(),
        bench.api.state.model_config.clone(),
        &sdk,
        std::sync::Arc::new(later),
    );
    let (_, swept) = bench
        .metered(async {
            let report = shared::purge::sweep_deleted_conversations(
                &sweeper,
                std::time::Instant::now() + std::time::Duration::from_secs(600),
            )
            .await
            .expect("the sweep runs");
            assert!(report.complete && report.unfinished == 0, "{report:?}");
            json!(report.finished)
        })
        .await;
    if let Some(deletes) = everything_else.get_mut("delete") {
        deletes.1.add(&swept);
    }
    lengths.sort_unstable();
    let others: BTreeMap<&str, Value> = everything_else
        .iter()
        .map(|(action, (count, cost))| {
            let mut each = cost.json(*count as f64);
            each["count"] = json!(count);
            (*action, each)
        })
        .collect();
    let mut rest = Cost::default();
    for (_, cost) in everything_else.values() {
        rest.add(cost);
    }
    json!({
        "users": users,
        "conversations": lengths.len(),
        "messages": messages,
        "lengthMedian": lengths[lengths.len() / 2],
        "lengthMax": lengths.last(),
        "perMessage": appends.json(messages as f64),
        "everythingElsePerMessage": (rest.writes() as f64 / messages as f64 * 100.0).round() / 100.0,
        "allInPerMessage": ((appends.writes() + rest.writes()) as f64 / messages as f64 * 100.0).round() / 100.0,
        "dearestMessage": dearest.1,
        "userMessagesWithClientIds": true,
        "textDeflatesTo": text_bytes.share(),
        "englishDeflatesTo": english_deflates_to(),
        "otherOperations": others,
    })
}

/// Part 3: the read units of a list page, a 50-message get, sync pages (the first, and one of
/// 20 changes) and a search page.
async fn reads(bench: &mut Bench, zipf: &Zipf, rng: &mut StdRng) -> Value {
    let client = bench.api.as_user(&new_user());
    let mut long = String::new();
    let mut ids = Vec::new();
    for c in 0..50 {
        let id = create(&client, &format!("reading {c}")).await;
        ids.push(id.clone());
        let messages = if c == 0 { 200 } else { 4 };
        for n in 0..messages {
            let role = if n % 2 == 0 { "user" } else { "assistant" };
            append(&client, &id, role, &zipf.text(rng, 200)).await;
        }
        if c == 0 {
            long = id;
        }
    }
    bench.settle().await;
    let mut units = BTreeMap::new();
    let common = tests::corpus::word(1);
    let pages: [(&str, String); 5] = [
        ("listPage", "/conversations?limit=20".to_owned()),
        ("get50Messages", format!("/conversations/{long}?limit=50")),
        ("syncFirstPage", "/mobile/sync".to_owned()),
        ("searchPage", format!("/search?q={common}&limit=20")),
        (
            "archivedListPage",
            "/conversations?limit=20&archived=only".to_owned(),
        ),
    ];
    for (name, path) in pages {
        bench.take();
        let reply = client.get(&path).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}: {:?}", reply.body);
        let cost = bench.take();
        units.insert(
            name,
            json!({ "reads": cost.request.reads, "calls": cost.request.calls }),
        );
    }
    // What an app that synced before gets next: 15 conversations have a new message and 5
    // were renamed since (a page of 20 changes). The writes above are out of the first
    // sync's settle window.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let mut path = "/mobile/sync?limit=100".to_owned();
    let cursor = loop {
        let page = client.get(&path).await;
        assert_eq!(page.status, StatusCode::OK, "{:?}", page.body);
        let cursor = page.body["cursor"].as_str().unwrap().to_owned();
        path = format!("/mobile/sync?limit=100&since={cursor}");
        if page.body["hasMore"] != true {
            break cursor;
        }
    };
    for (n, id) in ids.iter().skip(1).take(20).enumerate() {
        if n < 15 {
            append(&client, id, "user", &zipf.text(rng, 200)).await;
        } else {
            let renamed = client
                .put(
                    &format!("/conversations/{id}/title"),
                    json!({"title": "renamed"}),
                )
                .await;
            assert_eq!(renamed.status, StatusCode::OK, "{:?}", renamed.body);
        }
    }
    bench.settle().await;
    bench.take();
    let reply = client
        .get(&format!("/mobile/sync?limit=20&since={cursor}"))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    let cost = bench.take();
    assert_eq!(
        reply.body["conversations"].as_array().map(Vec::len),
        Some(20)
    );
    units.insert(
        "syncChangesPage",
        json!({ "reads": cost.request.reads, "calls": cost.request.calls }),
    );
    json!(units)
}

#[tokio::main]
async fn main() {
    if std::env::var("AWS_ENDPOINT_URL").is_err() {
        eprintln!("run this through scripts/bench.sh, which starts the local servers");
        std::process::exit(2);
    }
    // Knobs for a quick look (the defaults are what docs/benchmarks.md reports).
    let knob = |name: &str, default: usize| -> usize {
        std::env::var(name)
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(default)
    };
    let users = knob("MESSAGE_COST_USERS", 30);
    let longest = knob("MESSAGE_COST_LONGEST", 1_500);
    let last = knob("MESSAGE_COST_ONE", CHECKPOINTS[CHECKPOINTS.len() - 1]);
    let zipf = Zipf::new(VOCABULARY);
    let mut rng = StdRng::seed_from_u64(18);
    let mut bench = Bench::start().await;
    let started = std::time::Instant::now();
    let one = one_conversation(&mut bench, &zipf, &mut rng, last).await;
    eprintln!(
        "message cost: one conversation done in {:?}",
        started.elapsed()
    );
    let mixed = mixed(&mut bench, &zipf, &mut rng, users, longest).await;
    eprintln!(
        "message cost: mixed workload done in {:?}",
        started.elapsed()
    );
    let reads = reads(&mut bench, &zipf, &mut rng).await;
    let results = json!({
        "benchmark": "what a message costs to keep, in DynamoDB request units (metered from the items by DynamoDB's rules)",
        "server": "moto_server on 127.0.0.1; every call metered through tests::meter",
        "oneConversation": one,
        "mixedWorkload": mixed,
        "readUnits": reads,
        "itemShape": "lean",
        "compressedText": true,
        "slotKeys": true,
        "summaryChars": REAL_SUMMARY_CHARS,
        "note": "write units are whole units per item write (1 KB each, the larger of the item before and after; transactions twice), index writes by index from the entries' sizes; reads in 4 KB units, eventually consistent half; a query's units from every item it evaluated, filters ignored. Without the cache, so every read reaches the table.",
    });
    let path = tests::workspace_root().join("docs/benchmarks/message-cost.json");
    std::fs::write(
        &path,
        serde_json::to_string_pretty(&results).unwrap() + "\n",
    )
    .unwrap();
    println!("{}", serde_json::to_string_pretty(&results).unwrap());
}
