//! Append cost as a conversation grows: messages 1 to 2,000 appended to one conversation
//! through the service the add-message handler calls, against the local DynamoDB server,
//! measuring the bytes each append sends to the table in write requests and the time it takes.
//! `scripts/bench.sh` runs it beside the same workload through LangChain's
//! `DynamoDBChatMessageHistory` (bench/peer/append_cost_langchain.py), against the same server
//! in the same run; results in docs/benchmarks/append-cost.json.

use std::time::Instant;

use serde_json::json;
use shared::cache::Cache;
use shared::model::{NewMessage, Role, Tags, Title, UserId};
use shared::service::Conversations;
use shared::store::Store;

/// The appends the curve is read at.
const CHECKPOINTS: [usize; 5] = [1, 10, 100, 1_000, 2_000];
const MESSAGES: usize = 2_000;

/// The workload both sides run: message `n` (from 1), alternating user and assistant, about
/// 200 bytes each.
fn content(n: usize) -> String {
    let mut text = format!("Message {n}: ");
    while text.len() < 200 {
        text.push_str("planning the trip to Lisbon, the trams and the bakeries. ");
    }
    text.truncate(200);
    text
}

fn role(n: usize) -> Role {
    if n % 2 == 1 {
        Role::User
    } else {
        Role::Assistant
    }
}

#[tokio::main]
async fn main() {
    if std::env::var("AWS_ENDPOINT_URL").is_err() {
        eprintln!("run this through scripts/bench.sh, which starts the local servers");
        std::process::exit(2);
    }
    let state = tests::state().await;
    let user = UserId::parse(&tests::new_user()).unwrap();
    let (client, meter) = tests::WriteMeter::client().await;
    let store = Store::new(client, &state.config.table_name);
    let conversations = Conversations::new(
        store,
        state.conversations.cursors().clone(),
        Cache::disabled(),
    );
    let conversation = conversations
        .create(
            &user,
            Some(Title::parse("Append cost").unwrap()),
            Tags::default(),
            state.now(),
        )
        .await
        .unwrap();

    let mut appends = Vec::with_capacity(MESSAGES);
    for n in 1..=MESSAGES {
        let message = NewMessage::parse(role(n), content(n), vec![], Default::default(), None)
            .expect("a valid message");
        let (bytes, calls) = (meter.bytes(), meter.calls());
        let started = Instant::now();
        conversations
            .add_message(&user, &conversation.id, message, state.now())
            .await
            .expect("the append is stored");
        let took = started.elapsed().as_secs_f64() * 1000.0;
        appends.push((meter.bytes() - bytes, meter.calls() - calls, took));
    }

    let points: Vec<_> = CHECKPOINTS
        .iter()
        .map(|&at| {
            let (bytes, calls, _) = appends[at - 1];
            // Times are noisy one by one: the mean of this append and the four before it.
            let window = &appends[at.saturating_sub(5)..at];
            let ms = window.iter().map(|a| a.2).sum::<f64>() / window.len() as f64;
            json!({
                "message": at,
                "bytesWritten": bytes,
                "writeCalls": calls,
                "ms": (ms * 100.0).round() / 100.0,
            })
        })
        .collect();
    let total_bytes: u64 = appends.iter().map(|a| a.0).sum();
    let results = json!({
        "benchmark": "append cost as a conversation grows (Numina Conversations)",
        "server": "moto_server on 127.0.0.1 (the same one the peer runs against)",
        "profile": if cfg!(debug_assertions) { "dev (debug build)" } else { "bench (release)" },
        "messageBytes": 200,
        "messages": MESSAGES,
        "completed": MESSAGES,
        "points": points,
        "totalBytesWritten": total_bytes,
        "note": "bytesWritten: the bodies of the write requests one append sends (a \
                 TransactWriteItems: the message item, the conversation's count and activity). \
                 ms: the mean of the append and the four before it, measured against moto, \
                 which does the same work at any size only if the store's requests do.",
    });
    let path = tests::workspace_root().join("docs/benchmarks/append-cost.json");
    std::fs::write(
        &path,
        serde_json::to_string_pretty(&results).unwrap() + "\n",
    )
    .unwrap();
    println!("{}", serde_json::to_string_pretty(&results).unwrap());
}
