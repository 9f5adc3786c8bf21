//! Messages migrated per second: the migration as it runs (up to 100 items per transaction,
//! conversations and users written concurrently) against a one-message-per-call baseline
//! (each message its own transaction, one user at a time), in the same run, each on a fresh
//! table seeded with the same short-term memory. Needs the local DynamoDB server:
//! `scripts/bench.sh` starts it and runs this. Results: docs/benchmarks/migration-throughput.json.

use std::sync::atomic::Ordering;
use std::time::Instant;

use chrono::Utc;
use futures::{stream, StreamExt, TryStreamExt};
use serde_json::json;
use shared::migration::{MigrationOptions, Migrator};
use shared::model::UserId;
use shared::store::Store;

const USERS: usize = 6;
const MESSAGES_PER_USER: usize = 100;

struct Mode {
    name: &'static str,
    options: MigrationOptions,
    users_at_once: usize,
}

/// Counts every DynamoDB call the client makes.
#[tokio::main]
async fn main() {
    if std::env::var("AWS_ENDPOINT_URL").is_err() {
        eprintln!("run this through scripts/bench.sh, which starts the local DynamoDB server");
        std::process::exit(2);
    }
    let modes = [
        Mode {
            name: "one message per call (baseline)",
            options: MigrationOptions {
                transaction_items: 2,
                concurrency: 1,
                ..MigrationOptions::default()
            },
            users_at_once: 1,
        },
        Mode {
            name: "batched transactions, concurrent",
            options: MigrationOptions::default(),
            users_at_once: 4,
        },
    ];
    let mut results = Vec::new();
    for mode in &modes {
        let state = tests::state().await;
        let users: Vec<UserId> = (0..USERS)
            .map(|_| UserId::parse(&tests::new_user()).unwrap())
            .collect();
        local::seed::short_term_memory(
            state.assistant.memory(),
            &users,
            MESSAGES_PER_USER,
            Utc::now(),
        )
        .await
        .unwrap();

        let (client, calls) = tests::CallCounter::client().await;
        let migrator = Migrator::new(Store::new(client, &state.config.table_name), mode.options);
        let started = Instant::now();
        let migrated: u64 = stream::iter(&users)
            .map(|user| migrator.migrate_memory(user, false, Utc::now()))
            .buffer_unordered(mode.users_at_once)
            .map_ok(|summary| summary.messages_migrated)
            .try_fold(0, |total, n| async move { Ok(total + n) })
            .await
            .unwrap();
        let seconds = started.elapsed().as_secs_f64();
        assert_eq!(migrated, (USERS * MESSAGES_PER_USER) as u64);
        let calls = calls.load(Ordering::Relaxed);
        let per_second = migrated as f64 / seconds;
        eprintln!(
            "{:<36} {migrated} messages in {seconds:.2} s: {per_second:.0} messages/s, {calls} calls",
            mode.name
        );
        results.push(json!({
            "mode": mode.name,
            "transactionItems": mode.options.transaction_items,
            "conversationsAtOnce": mode.options.concurrency,
            "usersAtOnce": mode.users_at_once,
            "messages": migrated,
            "seconds": (seconds * 100.0).round() / 100.0,
            "messagesPerSecond": per_second.round(),
            "dynamodbCalls": calls,
            "callsPerMessage": (calls as f64 / migrated as f64 * 1000.0).round() / 1000.0,
        }));
    }
    let speedup = results[1]["messagesPerSecond"].as_f64().unwrap()
        / results[0]["messagesPerSecond"].as_f64().unwrap();
    let report = json!({
        "benchmark": "migration of short-term memory into conversations",
        "server": "moto_server on 127.0.0.1 (one request at a time: see scripts/moto_server.py; it copies the table on every transaction, so each call costs far more than in DynamoDB)",
        "profile": "bench (release)",
        "machine": format!("{} cores", std::thread::available_parallelism().map_or(0, |n| n.get())),
        "users": USERS,
        "messagesPerUser": MESSAGES_PER_USER,
        "results": results,
        "speedup": (speedup * 10.0).round() / 10.0,
        "note": "Against DynamoDB each call is a network round trip of a few milliseconds, so calls per message is the figure that carries over; moto handles one request at a time, so the concurrency gain here is only the overlap of client work.",
    });
    let path = tests::workspace_root().join("docs/benchmarks/migration-throughput.json");
    std::fs::write(&path, serde_json::to_string_pretty(&report).unwrap() + "\n").unwrap();
    eprintln!("speedup {speedup:.1}x; written to {}", path.display());
}
