//! The context endpoint: the most recent messages within a token budget, the summary first,
//! short-term memory when there is no conversation, and expired memory never returned.

use std::sync::Arc;

use ai::context::{Tokenizer, TokenizerKind, REPLY_PRIMING_TOKENS, TOKENS_PER_MESSAGE};
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{Duration, TimeZone, Utc};
use reqwest::StatusCode;
use serde_json::{json, Value};
use shared::clock::{Clock, ManualClock};
use shared::model::{MessageId, Role, UserId};
use tests::{items_of_conversation, new_user, state_with_clock, LocalApi};

fn contents(reply: &Value) -> Vec<String> {
    reply["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn the_context_keeps_the_most_recent_messages_within_the_budget_oldest_first() {
    let api = LocalApi::start().await;
    let alice = api.as_user(&new_user());
    let id = alice.create_conversation(Some("Long chat")).await;
    for i in 0..30 {
        alice
            .say(&id, &format!("message {i:02} about the weather in Lisbon"))
            .await;
    }
    let tokenizer = Tokenizer::new(TokenizerKind::O200kBase);

    for budget in [20, 60, 150, 100_000] {
        let reply = alice
            .get(&format!("/conversations/context/{id}?maxTokens={budget}"))
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
        assert_eq!(reply.body["source"], "conversation");
        assert_eq!(reply.body["conversationId"], id.as_str());
        let kept = contents(&reply.body);
        let expected: Vec<String> = (30 - kept.len()..30)
            .map(|i| format!("message {i:02} about the weather in Lisbon"))
            .collect();
        assert_eq!(kept, expected, "the most recent, oldest first");
        let tokens = reply.body["tokenCount"].as_u64().unwrap() as usize;
        assert!(tokens <= budget, "never over the budget");
        let counted: usize = kept
            .iter()
            .map(|c| tokenizer.count(c) + TOKENS_PER_MESSAGE)
            .sum();
        assert_eq!(
            tokens,
            counted + REPLY_PRIMING_TOKENS,
            "a real tokenizer's count"
        );
        assert_eq!(reply.body["omittedMessages"], 30 - kept.len());
        assert_eq!(reply.body["tokenizer"], "o200k_base");
    }
    let limited = alice
        .get(&format!("/conversations/context/{id}?limit=4"))
        .await;
    assert_eq!(contents(&limited.body).len(), 4);
    assert_eq!(limited.body["omittedMessages"], 26);
}

#[tokio::test]
async fn the_summary_comes_first() {
    let api = LocalApi::start().await;
    let user = new_user();
    let alice = api.as_user(&user);
    let id = alice.create_conversation(Some("Summarised")).await;
    alice.say(&id, "latest question").await;
    // Set one directly on the item (tests/summaries.rs has the summarizer write it).
    let client = aws_sdk_dynamodb::Client::new(&aws_config::load_from_env().await);
    let partition = shared::keys::conversation_partition(
        &UserId::parse(&user).unwrap(),
        &shared::model::ConversationId::parse(&id).unwrap(),
    );
    client
        .update_item()
        .table_name(&api.state.config.table_name)
        .key("PK", AttributeValue::S(partition))
        .key("SK", AttributeValue::S("META".into()))
        .update_expression("SET summary = :s")
        .expression_attribute_values(":s", AttributeValue::S("They are planning a trip.".into()))
        .send()
        .await
        .unwrap();

    let reply = alice.get(&format!("/conversations/context/{id}")).await;
    let messages = reply.body["messages"].as_array().unwrap();
    // A model wrote it from the user's words: quoted context, never instructions.
    assert_eq!(messages[0]["role"], "user");
    assert!(messages[0]["content"]
        .as_str()
        .unwrap()
        .contains("They are planning a trip."));
    assert_eq!(messages[1]["content"], "latest question");
}

#[tokio::test]
async fn without_an_id_the_context_is_the_latest_active_conversation() {
    let api = LocalApi::start().await;
    let alice = api.as_user(&new_user());
    let older = alice.create_conversation(Some("older")).await;
    let newer = alice.create_conversation(Some("newer")).await;
    alice.say(&newer, "in the newer one").await;
    alice.say(&older, "the older one is active again").await;
    let archived = alice.create_conversation(Some("archived")).await;
    alice.say(&archived, "archived talk").await;
    alice
        .put(
            &format!("/conversations/{archived}/archive"),
            json!({"archived": true}),
        )
        .await;

    let reply = alice.get("/conversations/context").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body["conversationId"], older.as_str());
    assert_eq!(contents(&reply.body), vec!["the older one is active again"]);
}

#[tokio::test]
async fn short_term_memory_is_the_context_when_there_is_no_conversation_and_expired_entries_never_return(
) {
    let start = Utc.with_ymd_and_hms(2026, 11, 24, 12, 0, 0).unwrap();
    let clock = Arc::new(ManualClock::at(start));
    let api = LocalApi::serving(state_with_clock(clock.clone()).await).await;
    let user = new_user();
    let owner = UserId::parse(&user).unwrap();
    let memory = api.state.assistant.memory();

    let first = memory.entry(
        MessageId::generate(),
        Role::User,
        "remember the milk".into(),
        None,
        Default::default(),
        start,
    );
    clock.advance(Duration::hours(2));
    let second = memory.entry(
        MessageId::generate(),
        Role::Assistant,
        "I will remind you".into(),
        None,
        Default::default(),
        clock.now(),
    );
    memory.remember(&owner, &[first, second]).await.unwrap();

    let alice = api.as_user(&user);
    let fresh = alice.get("/conversations/context").await;
    assert_eq!(fresh.body["source"], "shortTermMemory");
    assert_eq!(
        contents(&fresh.body),
        vec!["remember the milk", "I will remind you"]
    );

    // 25 hours after the first entry: it has expired, the second (23 hours old) has not.
    clock.advance(Duration::hours(23));
    let later = alice.get("/conversations/context").await;
    assert_eq!(contents(&later.body), vec!["I will remind you"]);

    // Past both: nothing, although DynamoDB (which deletes late, and moto never) still holds them.
    clock.advance(Duration::hours(3));
    let expired = alice.get("/conversations/context").await;
    assert_eq!(expired.body["messages"], json!([]));
    let held = aws_sdk_dynamodb::Client::new(&aws_config::load_from_env().await)
        .query()
        .table_name(&api.state.config.table_name)
        .key_condition_expression("PK = :pk")
        .expression_attribute_values(
            ":pk",
            AttributeValue::S(shared::keys::memory_partition(&owner)),
        )
        .send()
        .await
        .unwrap();
    // The two entries, and the marker that lists the user for migration, all past their TTL.
    assert_eq!(held.items().len(), 3);
    for item in held.items() {
        let expires: i64 = item["expiresAt"].as_n().unwrap().parse().unwrap();
        assert!(expires < clock.now().timestamp());
    }
}

#[tokio::test]
async fn context_is_refused_for_another_users_conversation_and_for_bad_parameters() {
    let api = LocalApi::start().await;
    let alice = api.as_user(&new_user());
    let bob = api.as_user(&new_user());
    let id = alice.create_conversation(Some("private")).await;
    alice.say(&id, "secret").await;

    assert_eq!(
        bob.get(&format!("/conversations/context/{id}"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let bobs_latest = bob.get("/conversations/context").await;
    assert_eq!(bobs_latest.body["messages"], json!([]));

    for bad in [
        "maxTokens=0",
        "maxTokens=128001",
        "limit=0",
        "limit=201",
        "limit=x",
    ] {
        let reply = alice
            .get(&format!("/conversations/context/{id}?{bad}"))
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(reply.error_code(), "invalid_request");
    }
    assert_eq!(
        alice.get("/conversations/context/not-a-uuid").await.status,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn a_completion_stores_each_messages_token_count_and_a_context_read_uses_it() {
    let api = LocalApi::start().await;
    let user = new_user();
    let alice = api.as_user(&user);
    let id = alice.create_conversation(Some("Packing")).await;
    alice.say(&id, "I am going to Lisbon in June.").await;
    let reply = alice
        .post(
            "/completion",
            json!({"prompt": "What should I pack?", "conversationId": id, "stream": false}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);

    // The prompt and the reply carry their count in the deployment's encoding; a message
    // added through the API (whose function counts no tokens) carries none.
    let tokenizer = api.state.assistant.tokenizer();
    let encoding = tokenizer.kind().name();
    let items = items_of_conversation(&api.state, &user, &id).await;
    let text = |item: &std::collections::HashMap<String, AttributeValue>, name: &str| {
        item.get(name)
            .and_then(|v| v.as_s().ok())
            .cloned()
            .unwrap_or_default()
    };
    let messages: Vec<_> = items
        .iter()
        .filter(|item| text(item, "SK").starts_with("MESSAGE#"))
        .collect();
    assert_eq!(messages.len(), 3);
    for message in &messages {
        let content = text(message, "content");
        match content.as_str() {
            "I am going to Lisbon in June." => assert!(!message.contains_key("tokens")),
            _ => assert_eq!(
                text(message, "tokens"),
                format!("{encoding}:{}", tokenizer.count(&content)),
                "{content}"
            ),
        }
    }

    // The context trusts the stored count: a reply recorded as far over the budget is left
    // out although its text is short.
    let stored_reply = messages
        .iter()
        .find(|m| text(m, "role") == "assistant")
        .unwrap();
    let client = aws_sdk_dynamodb::Client::new(&aws_config::load_from_env().await);
    client
        .update_item()
        .table_name(&api.state.config.table_name)
        .key("PK", stored_reply["PK"].clone())
        .key("SK", stored_reply["SK"].clone())
        .update_expression("SET tokens = :tokens")
        .expression_attribute_values(":tokens", AttributeValue::S(format!("{encoding}:100000")))
        .send()
        .await
        .unwrap();
    let context = alice.get(&format!("/conversations/context/{id}")).await;
    assert_eq!(context.status, StatusCode::OK, "{:?}", context.body);
    assert_eq!(contents(&context.body), Vec::<String>::new());
    assert_eq!(context.body["omittedMessages"], 3);
}

#[tokio::test]
async fn short_term_memory_keeps_the_token_count_of_each_exchange() {
    let api = LocalApi::start().await;
    let user = new_user();
    let alice = api.as_user(&user);
    let reply = alice
        .post(
            "/completion",
            json!({"prompt": "Remember that I like trams.", "stream": false}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);

    let tokenizer = api.state.assistant.tokenizer();
    let remembered = api
        .state
        .assistant
        .memory()
        .recall(&UserId::parse(&user).unwrap(), 50, Utc::now())
        .await
        .unwrap();
    assert_eq!(remembered.len(), 2);
    for entry in remembered {
        assert_eq!(
            entry
                .token_count
                .and_then(|c| c.in_encoding(tokenizer.kind().name())),
            Some(tokenizer.count(&entry.content)),
            "{}",
            entry.content
        );
    }
}
