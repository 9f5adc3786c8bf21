//! Round trips and bytes per request: for every endpoint, the store calls (DynamoDB and S3,
//! by operation) and cache commands one request makes, and the bytes it reads from each, with
//! the cache cold (emptied just before) and warm (the same read again). Counted, not
//! estimated: the handlers' AWS calls go through an HTTP proxy that records each request's
//! operation and the size of its answer, the cache's connection through a TCP proxy that
//! counts the bytes the cache sends, and redis-server's own command statistics give the
//! commands. Writes its results to `docs/benchmarks/round-trips.json`.
//!
//! Run (against the local servers, see scripts/bench.sh):
//! `cargo bench -p tests --bench round_trips`. Search is measured on an index fed from the
//! table's stream by the local poller, as the indexer is fed in AWS.

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use local::{StreamConsumer, StreamPoller};
use serde::Serialize;
use serde_json::{json, Value};
use tests::recording::RecordingProxy;
use tests::{new_user, state_through, template, Client, LocalApi, Reply};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A TCP proxy in front of redis-server that counts the bytes the server sends; its URL.
async fn counting_cache_proxy(target: String, bytes_from_cache: Arc<AtomicU64>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("redis://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let counted = bytes_from_cache.clone();
            let target = target.clone();
            tokio::spawn(async move {
                let server = TcpStream::connect(&target).await.expect("redis-server");
                let (mut client_reads, mut client_writes) = client.into_split();
                let (mut server_reads, mut server_writes) = server.into_split();
                let up = tokio::io::copy(&mut client_reads, &mut server_writes);
                let down = async {
                    let mut buffer = vec![0u8; 64 * 1024];
                    loop {
                        let n = server_reads.read(&mut buffer).await?;
                        if n == 0 {
                            return Ok::<_, std::io::Error>(());
                        }
                        counted.fetch_add(n as u64, Ordering::Relaxed);
                        client_writes.write_all(&buffer[..n]).await?;
                    }
                };
                let _ = tokio::join!(up, down);
            });
        }
    });
    url
}

/// redis-server's own count of the commands it ran, by name (this tool's INFO left out).
fn cache_commands(redis_port: &str) -> BTreeMap<String, u64> {
    let info = Command::new("redis-cli")
        .args(["-p", redis_port, "INFO", "commandstats"])
        .output()
        .expect("redis-cli (installed with redis-server)");
    String::from_utf8_lossy(&info.stdout)
        .lines()
        .filter_map(|line| {
            let (name, stats) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = stats.split(',').find_map(|s| s.strip_prefix("calls="))?;
            Some((name.to_owned(), calls.parse().ok()?))
        })
        .filter(|(name, _)| name != "info")
        .collect()
}

fn flush_cache(redis_port: &str) {
    let flushed = Command::new("redis-cli")
        .args(["-p", redis_port, "FLUSHALL"])
        .output()
        .expect("redis-cli");
    assert!(flushed.status.success());
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Measured {
    endpoint: String,
    cache: &'static str,
    status: u16,
    store_calls: usize,
    store_operations: BTreeMap<String, u64>,
    store_bytes_read: u64,
    cache_commands: u64,
    cache_operations: BTreeMap<String, u64>,
    cache_bytes_read: u64,
}

struct Bench {
    store: RecordingProxy,
    cache_bytes: Arc<AtomicU64>,
    redis_port: String,
    results: Vec<Measured>,
}

impl Bench {
    /// Sends one request and records what it cost.
    async fn measure<F, Fut>(&mut self, endpoint: &str, cache: &'static str, send: F) -> Reply
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Reply>,
    {
        if cache == "cold" {
            flush_cache(&self.redis_port);
        }
        self.store.take_calls();
        let commands_before = cache_commands(&self.redis_port);
        let bytes_before = self.cache_bytes.load(Ordering::SeqCst);
        let reply = send().await;
        assert!(
            reply.status.is_success(),
            "{endpoint}: {} {:?}",
            reply.status,
            reply.body
        );
        let calls = self.store.take_calls();
        let mut store_operations = BTreeMap::new();
        for call in &calls {
            *store_operations.entry(call.operation.clone()).or_default() += 1;
        }
        let mut cache_operations = cache_commands(&self.redis_port);
        for (name, count) in cache_operations.iter_mut() {
            *count -= commands_before.get(name).copied().unwrap_or(0);
        }
        cache_operations.retain(|_, count| *count > 0);
        self.results.push(Measured {
            endpoint: endpoint.to_owned(),
            cache,
            status: reply.status.as_u16(),
            store_calls: calls.len(),
            store_operations,
            store_bytes_read: calls.iter().map(|call| call.answer_bytes).sum(),
            cache_commands: cache_operations.values().sum(),
            cache_operations,
            cache_bytes_read: self.cache_bytes.load(Ordering::SeqCst) - bytes_before,
        });
        reply
    }

    /// A read measured with the cache emptied, then again (from the cache).
    async fn read_cold_and_warm(&mut self, endpoint: &str, user: &Client, path: &str) {
        self.measure(endpoint, "cold", || user.get(path)).await;
        self.measure(endpoint, "warm", || user.get(path)).await;
    }
}

/// A user with 20 conversations; the first one holds 50 messages.
async fn seeded_user(api: &LocalApi) -> (Client, String, Vec<String>) {
    let user = api.as_user(&new_user());
    let mut ids = Vec::new();
    for n in 0..20 {
        ids.push(user.create_conversation(Some(&format!("Trip {n}"))).await);
    }
    let talked = ids.last().unwrap().clone();
    for n in 0..50 {
        user.say(
            &talked,
            &format!("Message {n} about the Lisbon itinerary and the trams"),
        )
        .await;
    }
    (user, talked, ids)
}

#[tokio::main]
async fn main() {
    ai::provider::install_tls_provider();
    let aws = std::env::var("AWS_ENDPOINT_URL").expect("run after `source scripts/env.sh`");
    let redis_url = std::env::var("REDIS_URL").expect("REDIS_URL");
    let redis_address = redis_url.trim_start_matches("redis://").to_owned();
    let redis_port = redis_address.rsplit(':').next().unwrap().to_owned();
    let cache_bytes = Arc::new(AtomicU64::new(0));
    let store = RecordingProxy::start(&aws).await;
    let aws_proxy = store.endpoint().to_owned();
    let cache_proxy = counting_cache_proxy(redis_address, cache_bytes.clone()).await;
    let state = state_through(&aws_proxy, &[("CACHE_URL", cache_proxy.as_str())]).await;
    let api = LocalApi::serving(state).await;
    // The search index follows the table's stream, as the indexer does in AWS: the poller
    // starts before the user's writes and indexes them before anything is measured.
    let mut indexer = StreamPoller::from_latest(
        api.state.clone(),
        &template(),
        Some(&[StreamConsumer::IndexForSearch]),
    )
    .await
    .expect("the table has a stream");
    let (user, talked, ids) = seeded_user(&api).await;
    indexer.poll_once().await.expect("the stream is readable");
    let mut bench = Bench {
        store,
        cache_bytes,
        redis_port,
        results: Vec::new(),
    };

    let b = &mut bench;
    b.read_cold_and_warm("GET /conversations", &user, "/conversations")
        .await;
    let conversation = format!("/conversations/{talked}");
    b.read_cold_and_warm(
        "GET /conversations/{id} (50 messages)",
        &user,
        &conversation,
    )
    .await;
    let context = format!("/conversations/context/{talked}");
    b.read_cold_and_warm("GET /conversations/context/{id}", &user, &context)
        .await;
    b.read_cold_and_warm(
        "GET /conversations/context",
        &user,
        "/conversations/context",
    )
    .await;
    b.read_cold_and_warm("GET /mobile/sync", &user, "/mobile/sync")
        .await;
    b.measure(
        "GET /search?q=lisbon (20 conversations indexed from the stream, 1 matching)",
        "-",
        || user.get("/search?q=lisbon"),
    )
    .await;
    let export = format!("/conversations/{talked}/export");
    b.measure("GET /conversations/{id}/export", "-", || user.get(&export))
        .await;
    b.measure("POST /conversations", "-", || {
        user.post("/conversations", json!({"title": "Measured"}))
    })
    .await;
    let messages = format!("/conversations/{talked}/messages");
    b.measure("POST /conversations/{id}/messages", "-", || {
        user.post(
            &messages,
            json!({"role": "user", "content": "And the museums?", "clientMessageId": "m-1"}),
        )
    })
    .await;
    let other = &ids[0];
    let (title, archive, tags) = (
        format!("/conversations/{other}/title"),
        format!("/conversations/{other}/archive"),
        format!("/conversations/{other}/tags"),
    );
    let attachments = format!("/conversations/{talked}/attachments");
    b.measure("PUT /conversations/{id}/title", "-", || {
        user.put(&title, json!({"title": "Renamed"}))
    })
    .await;
    b.measure("PUT /conversations/{id}/archive", "-", || {
        user.put(&archive, json!({"archived": true}))
    })
    .await;
    b.measure("PUT /conversations/{id}/tags", "-", || {
        user.put(&tags, json!({"tags": ["travel"]}))
    })
    .await;
    b.measure("POST /conversations/{id}/attachments", "-", || {
        user.post(
            &attachments,
            json!({"fileName": "tram.jpg", "contentType": "image/jpeg", "size": 120000}),
        )
    })
    .await;
    b.measure("POST /completion", "-", || {
        user.post(
            "/completion",
            json!({"prompt": "Which tram goes to Belém?", "conversationId": talked}),
        )
    })
    .await;
    b.measure("POST /conversations/migrate", "-", || {
        user.post("/conversations/migrate", json!({}))
    })
    .await;
    b.measure("POST /mobile/batch (3 operations)", "-", || {
        user.post(
            "/mobile/batch",
            json!({"operations": [
                {"opId": "b-1", "type": "createConversation", "clientConversationId": "local-1", "title": "On the train"},
                {"opId": "b-2", "type": "addMessage", "clientConversationId": "local-1", "role": "user", "content": "Is there wifi?"},
                {"opId": "b-3", "type": "rename", "clientConversationId": "local-1", "title": "Train wifi"},
            ]}),
        )
    })
    .await;
    let started = b
        .measure("POST /exports", "-", || {
            user.post("/exports", json!({"formats": ["json"]}))
        })
        .await;
    let export_id = started.body["id"]
        .as_str()
        .expect("an export id")
        .to_owned();
    let export_job = format!("/exports/{export_id}");
    b.measure("GET /exports/{id}", "-", || user.get(&export_job))
        .await;
    let deleted = format!("/conversations/{}", ids[1]);
    b.measure("DELETE /conversations/{id}", "-", || user.delete(&deleted))
        .await;
    let anonymous = api.anonymous();
    b.measure("GET /health", "-", || anonymous.get("/health"))
        .await;

    println!(
        "{:<42} {:>5} {:>6} {:>11} {:>7} {:>11}",
        "endpoint", "cache", "store", "store bytes", "cache", "cache bytes"
    );
    for r in &bench.results {
        println!(
            "{:<42} {:>5} {:>6} {:>11} {:>7} {:>11}",
            r.endpoint,
            r.cache,
            r.store_calls,
            r.store_bytes_read,
            r.cache_commands,
            r.cache_bytes_read
        );
    }
    let out = tests::workspace_root().join("docs/benchmarks/round-trips.json");
    let document: Value = json!({
        "conversations": ids.len(),
        "messagesInConversation": 50,
        "results": bench.results,
    });
    std::fs::write(
        &out,
        serde_json::to_string_pretty(&document).unwrap() + "\n",
    )
    .unwrap();
    println!("round trips: written to {}", out.display());
}
