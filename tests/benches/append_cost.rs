//! Append cost as a conversation grows: messages 1 to 2,000 appended to one conversation
//! through the service the add-message handler calls, against the local DynamoDB server,
//! measuring the bytes each append sends to the table in write requests, the write units
//! DynamoDB would bill for them (`tests::meter`), and the time it takes; then the same 2,000
//! appends to a conversation that holds 100 branches (issue 19: an append never rewrites the
//! tree). The store writes as the template configures it once its switches are on: messages
//! by slot, lean items, deflated text. `scripts/bench.sh` runs it beside the same workload
//! through LangChain's `DynamoDBChatMessageHistory` (bench/peer/append_cost_langchain.py),
//! against the same server in the same run; results in docs/benchmarks/append-cost.json.

use std::time::Instant;

use serde_json::{json, Value};
use shared::cache::Cache;
use shared::model::{ConversationId, MessageId, NewMessage, Role, Tags, Title, UserId};
use shared::service::Conversations;
use shared::store::{ItemShape, Store};
use tests::meter::Meter;
use tests::WriteMeter;

/// The appends the curve is read at.
const CHECKPOINTS: [usize; 5] = [1, 10, 100, 1_000, 2_000];
const MESSAGES: usize = 2_000;
/// The branches of the second conversation, made before its appends are measured.
const BRANCHES: usize = 100;

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

fn message(n: usize) -> NewMessage {
    NewMessage::parse(role(n), content(n), vec![], Default::default(), None)
        .expect("a valid message")
}

struct Bench {
    conversations: Conversations,
    bytes: WriteMeter,
    units: Meter,
    user: UserId,
}

/// One append's cost: bytes written, write calls, write units, milliseconds.
struct Append {
    bytes: u64,
    calls: u64,
    units: u64,
    ms: f64,
}

impl Bench {
    async fn conversation(&self, title: &str) -> ConversationId {
        self.conversations
            .create(
                &self.user,
                Some(Title::parse(title).unwrap()),
                Tags::default(),
                chrono::Utc::now(),
            )
            .await
            .unwrap()
            .id
    }

    async fn append(&self, conversation: &ConversationId, n: usize) -> MessageId {
        self.conversations
            .add_message(&self.user, conversation, message(n), chrono::Utc::now())
            .await
            .expect("the append is stored")
            .message
            .id
    }

    /// Messages 1 to `MESSAGES` appended to `conversation`, each measured.
    async fn appends(&self, conversation: &ConversationId) -> Vec<Append> {
        let mut appends = Vec::with_capacity(MESSAGES);
        for n in 1..=MESSAGES {
            self.units.take();
            let (bytes, calls) = (self.bytes.bytes(), self.bytes.calls());
            let started = Instant::now();
            self.append(conversation, n).await;
            let ms = started.elapsed().as_secs_f64() * 1000.0;
            appends.push(Append {
                bytes: self.bytes.bytes() - bytes,
                calls: self.bytes.calls() - calls,
                units: self.units.take().writes(),
                ms,
            });
        }
        appends
    }
}

fn points(appends: &[Append]) -> Vec<Value> {
    CHECKPOINTS
        .iter()
        .map(|&at| {
            let append = &appends[at - 1];
            // Times are noisy one by one: the mean of this append and the four before it.
            let window = &appends[at.saturating_sub(5)..at];
            let ms = window.iter().map(|a| a.ms).sum::<f64>() / window.len() as f64;
            json!({
                "message": at,
                "bytesWritten": append.bytes,
                "writeCalls": append.calls,
                "writeUnits": append.units,
                "ms": (ms * 100.0).round() / 100.0,
            })
        })
        .collect()
}

#[tokio::main]
async fn main() {
    let Ok(target) = std::env::var("AWS_ENDPOINT_URL") else {
        eprintln!("run this through scripts/bench.sh, which starts the local servers");
        std::process::exit(2);
    };
    let state = tests::state().await;
    let units = Meter::start(&target).await;
    let (client, bytes) = WriteMeter::client_through(units.endpoint()).await;
    let store = Store::new(client, &state.config.table_name)
        .with_slot_keys(true)
        .with_item_shape(ItemShape::Lean)
        .with_compressed_text(true);
    let bench = Bench {
        conversations: Conversations::new(
            store,
            state.conversations.cursors().clone(),
            Cache::disabled(),
        ),
        bytes,
        units,
        user: UserId::parse(&tests::new_user()).unwrap(),
    };

    let straight = bench.conversation("Append cost").await;
    let appends = bench.appends(&straight).await;

    // A conversation the user kept editing: each edit of its last question forks a branch
    // (the edited one stays), answered before the next edit.
    let branched = bench.conversation("Append cost, branched").await;
    let mut question = bench.append(&branched, 1).await;
    bench.append(&branched, 2).await;
    for b in 0..BRANCHES {
        let edit = NewMessage::parse(
            Role::User,
            format!("{} (edit {b})", content(1)),
            vec![],
            Default::default(),
            None,
        )
        .unwrap();
        question = bench
            .conversations
            .edit_message(&bench.user, &branched, &question, edit, chrono::Utc::now())
            .await
            .expect("the edit is stored")
            .message
            .id;
        bench.append(&branched, 2).await;
    }
    let branched_appends = bench.appends(&branched).await;

    let total_bytes: u64 = appends.iter().map(|a| a.bytes).sum();
    let results = json!({
        "benchmark": "append cost as a conversation grows (Numina Conversations)",
        "server": "moto_server on 127.0.0.1 (the same one the peer runs against)",
        "profile": if cfg!(debug_assertions) { "dev (debug build)" } else { "bench (release)" },
        "store": "by slot, lean items, deflated text (SLOT_KEYS, LEAN_ITEMS, COMPRESS_TEXT on)",
        "messageBytes": 200,
        "messages": MESSAGES,
        "completed": MESSAGES,
        "points": points(&appends),
        "totalBytesWritten": total_bytes,
        "branched": {
            "branches": BRANCHES,
            "messagesBefore": 2 + 2 * BRANCHES,
            "points": points(&branched_appends),
            "totalBytesWritten": branched_appends.iter().map(|a| a.bytes).sum::<u64>(),
        },
        "note": "bytesWritten: the bodies of the write requests one append sends (the message's \
                 put at its slot, then the conversation's tip, count and activity). writeUnits: \
                 what DynamoDB bills for them, table and indexes, metered from the items by its \
                 rules. ms: the mean of the append and the four before it, measured against \
                 moto, which does the same work at any size only if the store's requests do. \
                 branched: the same appends to a conversation whose active branch is the last of \
                 100 made by editing its last question, each answered.",
    });
    let path = tests::workspace_root().join("docs/benchmarks/append-cost.json");
    std::fs::write(
        &path,
        serde_json::to_string_pretty(&results).unwrap() + "\n",
    )
    .unwrap();
    println!("{}", serde_json::to_string_pretty(&results).unwrap());
}
