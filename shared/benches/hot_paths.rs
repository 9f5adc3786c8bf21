//! Handler CPU: criterion benchmarks of the pure code on every request's path, with no I/O.
//! - request parsing and validation: an API Gateway event (events/add-message.json, as Lambda
//!   hands it over) parsed into a request, the caller, the conversation id and the body read,
//!   and the message validated;
//! - item mapping: a 200-message page of DynamoDB items mapped to messages and written as the
//!   response's JSON, with the content as text and deflated (`COMPRESS_TEXT`);
//! - cursors: a listing position signed into a cursor, and checked back;
//! - context selection over a 10,000-message conversation (default budget and largest window)
//!   whose messages were counted when written, as the assistant stores them, and at the default
//!   budget over messages added through the API, which are counted as the context is read.
//!
//! Run: `cargo bench -p shared --bench hot_paths` (criterion writes its estimates under
//! target/criterion; bench/report.py reads them into docs/benchmarks.md).

use std::hint::black_box;
use std::time::Duration;

use ai::context::{select, ContextMessage, Tokenizer, TokenizerKind};
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, TimeDelta, Utc};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use shared::attachments::DownloadLinks;
use shared::cursor::{CursorSigner, Position};
use shared::http::wire::{AddMessageBody, ConversationWithMessagesView};
use shared::http::{caller, conversation_id, json_body};
use shared::model::{
    Conversation, ConversationId, ConversationWithMessages, Message, MessageId, Metadata,
    NewMessage, Role, Title, UserId,
};
use shared::store::{conversation_and_messages, ConversationItem, MessageItem};

type Item = std::collections::HashMap<String, AttributeValue>;

const WORDS: [&str; 10] = [
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

/// Message `i` of a deterministic conversation: 5 to 400 words, alternating roles.
fn text(i: usize) -> String {
    let length = 5 + (i * 7919) % 396;
    (0..length)
        .map(|w| WORDS[(i + w) % WORDS.len()])
        .collect::<Vec<_>>()
        .join(" ")
}

fn role(i: usize) -> Role {
    if i.is_multiple_of(2) {
        Role::User
    } else {
        Role::Assistant
    }
}

fn request_parsing(c: &mut Criterion) {
    let event = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../events/add-message.json"
    ))
    .expect("events/add-message.json");
    c.bench_function("request/add-message event to a validated message", |b| {
        b.iter(|| {
            let request = lambda_http::request::from_str(black_box(&event)).expect("an event");
            let user = caller(&request).expect("a caller");
            let id = conversation_id(&request).expect("an id");
            let body: AddMessageBody = json_body(&request).expect("a body");
            let message = NewMessage::parse(
                body.role,
                body.content,
                Vec::new(),
                body.metadata,
                body.client_message_id.as_deref(),
            )
            .expect("a valid message");
            black_box((user, id, message))
        })
    });
}

/// A conversation's partition as a read returns it: its item, then 200 messages newest first;
/// their content `deflated` as `COMPRESS_TEXT` writes it, or text.
fn page_items(
    user: &UserId,
    id: ConversationId,
    start: DateTime<Utc>,
    deflated: bool,
) -> Vec<Item> {
    let title = Title::parse("Lisbon").expect("a title");
    let mut conversation = ConversationItem::new(user, id, Some(&title), Vec::new(), start);
    conversation.message_count = 200;
    let mut items = vec![serde_dynamo::to_item(&conversation).expect("an item")];
    for i in (0..200).rev() {
        let message = Message {
            id: MessageId::generate(),
            conversation_id: id,
            role: role(i),
            content: text(i),
            timestamp: start + TimeDelta::seconds(i as i64),
            attachments: Vec::new(),
            metadata: Metadata::new(),
            client_message_id: Some(format!("client-{i}")),
            client_timestamp: None,
            token_count: None,
            slot: None,
        };
        let mut item: Item =
            serde_dynamo::to_item(MessageItem::new(user, &message)).expect("an item");
        item.insert(
            "content".to_owned(),
            shared::store::deflated::text_attribute(&message.content, deflated),
        );
        items.push(item);
    }
    items
}

fn item_mapping(c: &mut Criterion) {
    let user = UserId::parse("3f1c9a7e-0b7d-4f8e-9d61-2a9c2a0c1b11").unwrap();
    let id = ConversationId::generate();
    let links = DownloadLinks::new();
    for (name, deflated) in [
        ("items/200-message page to response JSON", false),
        (
            "items/200-message page, content deflated (COMPRESS_TEXT), to response JSON",
            true,
        ),
    ] {
        let items = page_items(&user, id, Utc::now() - TimeDelta::days(1), deflated);
        // The items are the query's output, owned: copying them is not part of the path.
        c.bench_function(name, |b| {
            b.iter_batched(
                || items.clone(),
                |items| {
                    let (conversation, messages) =
                        conversation_and_messages(black_box(items)).expect("mapped");
                    let mut messages: Vec<Message> = messages
                        .into_iter()
                        .map(MessageItem::into_message)
                        .collect();
                    messages.reverse();
                    let page = ConversationWithMessages {
                        conversation: Conversation::from(conversation.expect("the conversation")),
                        messages,
                        older_messages: None,
                        siblings: Vec::new(),
                        settings: None,
                    };
                    black_box(
                        serde_json::to_vec(&ConversationWithMessagesView::new(&page, &links))
                            .expect("json"),
                    )
                },
                BatchSize::LargeInput,
            )
        });
    }
}

fn cursors(c: &mut Criterion) {
    let signer = CursorSigner::new(b"local-cursor-signing-secret-0123456789abcdef");
    let scope = "list:3f1c9a7e-0b7d-4f8e-9d61-2a9c2a0c1b11:active";
    let position: Position = [
        (
            "PK",
            "USER#3f1c9a7e-0b7d-4f8e-9d61-2a9c2a0c1b11#CONV#0193a4f2-7c1e-7b3a-9f00-5e2d1c4b6a77",
        ),
        ("SK", "CONV"),
        ("owner", "USER#3f1c9a7e-0b7d-4f8e-9d61-2a9c2a0c1b11#ACTIVE"),
        (
            "lastActivity",
            "2026-11-30T18:21:07.123Z#0193a4f2-7c1e-7b3a-9f00-5e2d1c4b6a77",
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let cursor = signer.encode(scope, position.clone());
    c.bench_function("cursor/encode", |b| {
        b.iter(|| black_box(signer.encode(black_box(scope), black_box(position.clone()))))
    });
    c.bench_function("cursor/decode", |b| {
        b.iter(|| {
            black_box(
                signer
                    .decode(black_box(scope), black_box(&cursor))
                    .expect("genuine"),
            )
        })
    });
}

fn context_selection(c: &mut Criterion) {
    let tokenizer = Tokenizer::new(TokenizerKind::O200kBase);
    // As the assistant stores its prompts and replies: each counted once, when written.
    let counted: Vec<ContextMessage> = (0..10_000)
        .rev()
        .map(|i| {
            let content = text(i);
            let tokens = tokenizer.token_count(&content);
            ContextMessage::stored(role(i), content, Some(tokens))
        })
        .collect();
    // As messages added through the API are stored (those functions count no tokens).
    let uncounted: Vec<ContextMessage> = (0..10_000)
        .rev()
        .map(|i| ContextMessage::new(role(i), text(i)))
        .collect();
    let preamble = vec![ContextMessage::new(
        Role::System,
        "You are Numina, a thoughtful assistant.",
    )];
    tokenizer.count("warm the encoding tables");
    for (name, history, max_tokens, limit) in [
        (
            "context/10,000 messages, default budget (4,000 tokens, 50)",
            &counted,
            4_000,
            50,
        ),
        (
            "context/10,000 messages, largest window (128,000 tokens, 200)",
            &counted,
            128_000,
            200,
        ),
        (
            "context/10,000 messages not counted when written, default budget",
            &uncounted,
            4_000,
            50,
        ),
    ] {
        c.bench_function(name, |b| {
            b.iter(|| {
                black_box(select(
                    &tokenizer,
                    preamble.clone(),
                    black_box(history),
                    max_tokens,
                    limit,
                ))
            })
        });
    }
}

fn settings() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50)
}

criterion_group! {
    name = hot_paths;
    config = settings();
    targets = request_parsing, item_mapping, cursors, context_selection
}
criterion_main!(hot_paths);
