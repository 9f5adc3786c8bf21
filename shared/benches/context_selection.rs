//! Context selection over a 10,000-message conversation: what choosing a model's context
//! costs in CPU once the store has read the window. Writes its results to
//! `docs/benchmarks/context-selection.json` (run: `cargo bench -p shared --bench context_selection`).

use std::hint::black_box;
use std::time::{Duration, Instant};

use serde_json::json;
use shared::context::{select, ContextMessage, Tokenizer, TokenizerKind};
use shared::model::Role;

const HISTORY: usize = 10_000;
const ROUNDS: usize = 200;

/// A deterministic history, newest first: messages of 5 to 400 words, alternating roles.
fn history() -> Vec<ContextMessage> {
    let words = [
        "weather",
        "Lisbon",
        "itinerary",
        "museum",
        "tram",
        "pastel",
        "sunset",
        "river",
        "budget",
        "hotel",
    ];
    (0..HISTORY)
        .rev()
        .map(|i| {
            let length = 5 + (i * 7919) % 396;
            let content = (0..length)
                .map(|w| words[(i + w) % words.len()])
                .collect::<Vec<_>>()
                .join(" ");
            let role = if i % 2 == 0 {
                Role::User
            } else {
                Role::Assistant
            };
            ContextMessage { role, content }
        })
        .collect()
}

struct Measured {
    median: Duration,
    p95: Duration,
}

fn measure(mut run: impl FnMut()) -> Measured {
    for _ in 0..10 {
        run();
    }
    let mut samples: Vec<Duration> = (0..ROUNDS)
        .map(|_| {
            let start = Instant::now();
            run();
            start.elapsed()
        })
        .collect();
    samples.sort();
    Measured {
        median: samples[ROUNDS / 2],
        p95: samples[ROUNDS * 95 / 100],
    }
}

fn micros(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6 * 10.0).round() / 10.0
}

fn main() {
    let history = history();
    let preamble = vec![ContextMessage {
        role: Role::System,
        content: "You are Numina, a thoughtful assistant.".into(),
    }];
    let mut results = Vec::new();
    for kind in [TokenizerKind::O200kBase, TokenizerKind::Cl100kBase] {
        let tokenizer = Tokenizer::new(kind);
        let load = Instant::now();
        tokenizer.count("warm the encoding tables");
        let load = load.elapsed();
        for (scenario, max_tokens, limit) in [
            ("default budget", 4_000, 50),
            ("largest window", 128_000, 200),
        ] {
            let mut kept = 0;
            let measured = measure(|| {
                let selection = select(
                    &tokenizer,
                    preamble.clone(),
                    black_box(&history),
                    max_tokens,
                    limit,
                );
                kept = selection.messages.len();
                black_box(selection);
            });
            println!(
                "{:<12} {scenario:<15} maxTokens={max_tokens:<7} limit={limit:<4} kept={kept:<4} median={:>9.1}µs p95={:>9.1}µs",
                kind.name(),
                micros(measured.median),
                micros(measured.p95)
            );
            results.push(json!({
                "tokenizer": kind.name(),
                "scenario": scenario,
                "historyMessages": HISTORY,
                "maxTokens": max_tokens,
                "limit": limit,
                "messagesKept": kept,
                "medianMicros": micros(measured.median),
                "p95Micros": micros(measured.p95),
                "encodingFirstUseMillis": (load.as_secs_f64() * 1e3 * 10.0).round() / 10.0,
            }));
        }
    }
    let report = json!({
        "benchmark": "context selection over a 10,000-message conversation",
        "rounds": ROUNDS,
        "profile": if cfg!(debug_assertions) { "debug" } else { "release" },
        "machine": format!("{} cores", std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)),
        "results": results,
    });
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/benchmarks/context-selection.json"
    );
    std::fs::write(
        path,
        serde_json::to_string_pretty(&report).expect("JSON") + "\n",
    )
    .expect("write the results file");
    println!("results written to docs/benchmarks/context-selection.json");
}
