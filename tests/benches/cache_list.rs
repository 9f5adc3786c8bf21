//! A conversation list request with a cold cache, a warm cache, and no cache: its latency and
//! the store calls it makes, through the service the list handler calls, against the local
//! DynamoDB server and redis-server. `scripts/bench.sh` runs it; results in
//! docs/benchmarks/cache-list.json.

use std::sync::atomic::Ordering;
use std::time::Instant;

use serde_json::json;
use shared::cache::{Cache, CacheSettings};
use shared::model::{Tags, Title, UserId};
use shared::service::{Conversations, ListRequest};
use shared::store::Store;

const CONVERSATIONS: usize = 40;
const ROUNDS: usize = 200;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    (sorted[index] * 10.0).round() / 10.0
}

#[tokio::main]
async fn main() {
    let Some(cache_url) = std::env::var("CACHE_URL").ok() else {
        eprintln!("run this through scripts/bench.sh, which starts the local servers");
        std::process::exit(2);
    };
    let state = tests::state().await;
    let user = UserId::parse(&tests::new_user()).unwrap();
    for i in 0..CONVERSATIONS {
        let title = Title::parse(&format!("Conversation {i}")).unwrap();
        state
            .conversations
            .create(&user, Some(title), Tags::default(), state.now())
            .await
            .unwrap();
    }

    let (client, calls) = tests::CallCounter::client().await;
    let store = Store::new(client, &state.config.table_name);
    let cursors = state.conversations.cursors().clone();
    let cache = Cache::new(CacheSettings {
        url: cache_url,
        cluster: false,
        timeout: std::time::Duration::from_millis(50),
        breaker_open_for: std::time::Duration::from_secs(30),
        namespace: state.config.table_name.clone(),
    })
    .unwrap();
    let cached = Conversations::new(store.clone(), cursors.clone(), cache.clone());
    let uncached = Conversations::new(store, cursors, Cache::disabled());
    cached.list(&user, ListRequest::default()).await.unwrap(); // connect once

    let mut results = Vec::new();
    for scenario in ["no cache", "cold cache", "warm cache"] {
        let service = if scenario == "no cache" {
            &uncached
        } else {
            &cached
        };
        let mut micros = Vec::with_capacity(ROUNDS);
        let mut store_calls = 0;
        for _ in 0..ROUNDS {
            if scenario == "cold cache" {
                // A write elsewhere made every cached page of the user unreachable.
                cache.invalidate_user(&user).await;
            }
            let before = calls.load(Ordering::Relaxed);
            let started = Instant::now();
            let page = service.list(&user, ListRequest::default()).await.unwrap();
            micros.push(started.elapsed().as_secs_f64() * 1e6);
            store_calls += calls.load(Ordering::Relaxed) - before;
            assert_eq!(page.items.len(), 20);
        }
        micros.sort_by(f64::total_cmp);
        let result = json!({
            "scenario": scenario,
            "requests": ROUNDS,
            "medianMicros": percentile(&micros, 0.5),
            "p95Micros": percentile(&micros, 0.95),
            "storeCallsPerRequest": store_calls as f64 / ROUNDS as f64,
        });
        eprintln!("{result}");
        results.push(result);
    }
    let stats = cache.stats().unwrap();
    let report = json!({
        "benchmark": "GET /conversations (20 of 40 conversations) through the service, by cache state",
        "server": "moto_server and redis-server on 127.0.0.1; a DynamoDB query costs far more in moto than in DynamoDB, and a Redis GET in ElastiCache adds a network round trip (~0.5 ms in the same AZ)",
        "machine": format!("{} cores", std::thread::available_parallelism().map_or(0, |n| n.get())),
        "profile": "bench (release)",
        "results": results,
        "cacheHits": stats.hits.load(Ordering::Relaxed),
        "cacheMisses": stats.misses.load(Ordering::Relaxed),
    });
    let path = tests::workspace_root().join("docs/benchmarks/cache-list.json");
    std::fs::write(&path, serde_json::to_string_pretty(&report).unwrap() + "\n").unwrap();
    eprintln!("written to {}", path.display());
}
