//! The memory a conversation export takes, at the largest content the API accepts: 200
//! messages of 2 MiB each (their content kept compressed in the bucket), exported to JSON
//! through the service the export-conversation handler calls, against the local servers.
//! Memory is this process's peak resident set (VmHWM, reset just before through
//! `/proc/self/clear_refs`) above what it held before; beside it, what reading one page of
//! those messages with their content at once takes (how exports read before). Results in
//! docs/benchmarks/export-memory.json. `EXPORT_MEMORY_MESSAGES` changes the count.

use serde_json::json;
use shared::export::ExportFormat;
use shared::model::{NewMessage, Role, Tags, Title, UserId, MAX_CONTENT_BYTES};

/// This process's resident set and its peak since the last reset, in KiB.
fn memory_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").expect("Linux /proc");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Resets the peak resident set to the current one.
fn reset_peak() {
    std::fs::write("/proc/self/clear_refs", "5").expect("a writable /proc/self/clear_refs");
}

/// Message `n`: as large as a message may be, words that compress as text does.
fn content(n: usize) -> String {
    let mut text = format!("Message {n}. ");
    let sentence = "The ferry leaves at seven; bring the map, the tickets and some bread. ";
    while text.len() + sentence.len() <= MAX_CONTENT_BYTES {
        text.push_str(sentence);
    }
    text
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    if std::env::var("AWS_ENDPOINT_URL").is_err() {
        eprintln!("run this through scripts/bench.sh, which starts the local servers");
        std::process::exit(2);
    }
    let messages: usize = std::env::var("EXPORT_MEMORY_MESSAGES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(200);
    let state = tests::state().await;
    let user = UserId::parse(&tests::new_user()).unwrap();
    let conversation = state
        .conversations
        .create(
            &user,
            Some(Title::parse("Export memory").unwrap()),
            Tags::default(),
            state.now(),
        )
        .await
        .unwrap();
    for n in 0..messages {
        let message = NewMessage::parse(
            if n % 2 == 0 {
                Role::User
            } else {
                Role::Assistant
            },
            content(n),
            Vec::new(),
            Default::default(),
            None,
        )
        .unwrap();
        state
            .conversations
            .add_message(&user, &conversation.id, message, state.now())
            .await
            .unwrap();
    }
    let bucket = state.attachments.as_ref().expect("the test bucket");

    let (before, _) = memory_kib();
    reset_peak();
    let file = state
        .exports
        .export_conversation(
            bucket,
            &user,
            &conversation.id,
            ExportFormat::Json,
            state.now(),
        )
        .await
        .unwrap();
    let (_, export_peak) = memory_kib();
    assert_eq!(file.messages, messages as u64);

    let (before_page, _) = memory_kib();
    reset_peak();
    let (page, _) = state
        .conversations
        .store()
        .messages_oldest_first(&user, &conversation.id, None, 200)
        .await
        .unwrap();
    let (_, page_peak) = memory_kib();
    let page_len = page.len();
    drop(page);

    let results = json!({
        "messages": messages,
        "messageBytes": MAX_CONTENT_BYTES,
        "exportBytes": file.bytes,
        "exportPeakAboveBaselineMiB": (export_peak.saturating_sub(before)) as f64 / 1024.0,
        "pageAtOnceMessages": page_len,
        "pageAtOncePeakAboveBaselineMiB": (page_peak.saturating_sub(before_page)) as f64 / 1024.0,
        "functionMemoryMiB": 512,
    });
    println!("{results:#}");
    let path = tests::workspace_root().join("docs/benchmarks/export-memory.json");
    std::fs::write(&path, format!("{results:#}\n")).unwrap();
}
