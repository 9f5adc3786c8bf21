//! Every endpoint through real HTTP against the local gateway and the local DynamoDB server.

use aws_sdk_dynamodb::types::AttributeValue;
use reqwest::StatusCode;
use serde_json::json;
use shared::clock::SystemClock;
use tests::{items_of_conversation, new_user, state_configured, LocalApi};

/// The local API without the cache (every read is the table's answer), writing lean items
/// (docs/operations.md, "Lean items") in the release before slot keys (a message kept by slot
/// holds its id and time: `slot_keys.rs`).
async fn api_writing_lean_items() -> LocalApi {
    let overrides = [
        ("CACHE_URL", ""),
        ("LEAN_ITEMS", "true"),
        ("SLOT_KEYS", "false"),
    ];
    let state = state_configured(&overrides, std::sync::Arc::new(SystemClock)).await;
    LocalApi::serving(state).await
}

#[tokio::test]
async fn a_created_conversation_is_listed_and_read_back_with_its_messages() {
    let api = LocalApi::start().await;
    let alice = api.as_user(&new_user());

    let created = alice
        .post(
            "/conversations",
            json!({"title": "Trip plans", "tags": ["travel"]}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let id = created.body["id"].as_str().unwrap().to_owned();
    assert_eq!(created.body["title"], "Trip plans");
    assert_eq!(created.body["messageCount"], 0);
    assert_eq!(created.body["isArchived"], false);
    assert_eq!(created.body["tags"], json!(["travel"]));

    let first = alice.say(&id, "Where should we go in May?").await;
    assert_eq!(first["role"], "user");
    let reply = alice
        .post(
            &format!("/conversations/{id}/messages"),
            json!({"role": "assistant", "content": "Lisbon is lovely in May.", "metadata": {"model": "local", "tokens": 7}}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED);

    let got = alice.get(&format!("/conversations/{id}")).await;
    assert_eq!(got.status, StatusCode::OK, "{:?}", got.body);
    assert_eq!(got.body["messageCount"], 2);
    let messages = got.body["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0]["content"], "Where should we go in May?");
    assert_eq!(
        messages[1]["metadata"],
        json!({"model": "local", "tokens": 7})
    );
    assert_eq!(got.body["hasOlderMessages"], false);

    let listed = alice.get("/conversations").await;
    assert_eq!(listed.status, StatusCode::OK);
    let conversations = listed.body["conversations"].as_array().unwrap();
    assert_eq!(conversations.len(), 1);
    assert_eq!(conversations[0]["id"], id.as_str());
    assert_eq!(conversations[0]["messageCount"], 2);
}

#[tokio::test]
async fn a_conversation_without_a_title_is_named_after_its_first_user_message() {
    let api = LocalApi::start().await;
    let alice = api.as_user(&new_user());
    let id = alice.create_conversation(None).await;
    let untitled = alice.get(&format!("/conversations/{id}")).await;
    assert_eq!(untitled.body["title"], "New conversation");

    alice
        .post(
            &format!("/conversations/{id}/messages"),
            json!({"role": "system", "content": "You are helpful."}),
        )
        .await;
    alice
        .say(&id, "How do I bake sourdough bread?\nI have a starter.")
        .await;
    alice.say(&id, "Something else entirely").await;

    let got = alice.get(&format!("/conversations/{id}")).await;
    assert_eq!(got.body["title"], "How do I bake sourdough bread?");
}

#[tokio::test]
async fn rename_archive_unarchive_and_tags_change_the_conversation() {
    let api = LocalApi::start().await;
    let alice = api.as_user(&new_user());
    let id = alice.create_conversation(Some("Old name")).await;

    let renamed = alice
        .put(
            &format!("/conversations/{id}/title"),
            json!({"title": "  New name "}),
        )
        .await;
    assert_eq!(renamed.status, StatusCode::OK);
    assert_eq!(renamed.body["title"], "New name");

    let archived = alice
        .put(
            &format!("/conversations/{id}/archive"),
            json!({"archived": true}),
        )
        .await;
    assert_eq!(archived.status, StatusCode::OK);
    assert_eq!(archived.body["isArchived"], true);
    assert_eq!(
        alice.get("/conversations").await.body["conversations"],
        json!([])
    );
    let only_archived = alice.get("/conversations?archived=only").await;
    assert_eq!(only_archived.body["conversations"][0]["id"], id.as_str());

    let unarchived = alice
        .put(
            &format!("/conversations/{id}/archive"),
            json!({"archived": false}),
        )
        .await;
    assert_eq!(unarchived.body["isArchived"], false);
    assert_eq!(
        alice.get("/conversations").await.body["conversations"][0]["id"],
        id.as_str()
    );

    let tagged = alice
        .put(
            &format!("/conversations/{id}/tags"),
            json!({"tags": ["work", " ideas ", "work"]}),
        )
        .await;
    assert_eq!(tagged.status, StatusCode::OK);
    assert_eq!(tagged.body["tags"], json!(["work", "ideas"]));
}

#[tokio::test]
async fn archiving_with_an_empty_body_archives_as_the_original_endpoint_did() {
    let api = LocalApi::start().await;
    let alice = api.as_user(&new_user());
    let id = alice.create_conversation(Some("Legacy")).await;
    let reply = alice
        .send(
            reqwest::Method::PUT,
            &format!("/conversations/{id}/archive"),
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body["isArchived"], true);
}

#[tokio::test]
async fn deleting_a_conversation_removes_it_and_every_message_item() {
    let api = LocalApi::start().await;
    let user = new_user();
    let alice = api.as_user(&user);
    let id = alice.create_conversation(Some("To delete")).await;
    for i in 0..30 {
        alice.say(&id, &format!("message {i}")).await;
    }
    let deleted = alice.delete(&format!("/conversations/{id}")).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert_eq!(
        alice.get(&format!("/conversations/{id}")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        alice.get("/conversations").await.body["conversations"],
        json!([])
    );
    assert!(tests::items_of_conversation(&api.state, &user, &id)
        .await
        .is_empty());
    assert_eq!(
        alice.delete(&format!("/conversations/{id}")).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn older_messages_are_read_page_by_page_with_the_cursor() {
    let api = LocalApi::start().await;
    let alice = api.as_user(&new_user());
    let id = alice.create_conversation(Some("Long")).await;
    for i in 0..12 {
        alice.say(&id, &format!("m{i:02}")).await;
    }
    let mut seen = Vec::new();
    let mut path = format!("/conversations/{id}?messageLimit=5");
    loop {
        let page = alice.get(&path).await;
        assert_eq!(page.status, StatusCode::OK, "{:?}", page.body);
        let mut contents: Vec<String> = page.body["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["content"].as_str().unwrap().to_owned())
            .collect();
        contents.append(&mut seen);
        seen = contents;
        match page.body["olderMessagesCursor"].as_str() {
            Some(cursor) => path = format!("/conversations/{id}?messageLimit=5&before={cursor}"),
            None => break,
        }
    }
    let expected: Vec<String> = (0..12).map(|i| format!("m{i:02}")).collect();
    assert_eq!(seen, expected);
}

#[tokio::test]
async fn a_request_without_a_valid_token_is_refused_before_any_handler_runs() {
    let api = LocalApi::start().await;
    let reply = api.anonymous().get("/conversations").await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    let wrong_key = local::Tokens::new("another-secret").mint("alice", 60);
    let reply = reqwest::Client::new()
        .get(format!("{}/conversations", api.base))
        .bearer_auth(wrong_key)
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), StatusCode::UNAUTHORIZED);
}

/// The functions that never reach the attachments bucket (listing, creating, renaming,
/// archiving, tagging, searching) build their state without it: no S3 client at all, and
/// conversations work the same through it.
#[tokio::test]
async fn a_state_without_the_bucket_serves_the_conversations_functions_it_is_built_for() {
    let full = tests::state().await;
    let sdk = aws_config::load_from_env().await;
    let core = shared::state::State::without_bucket(
        full.core.config.clone(),
        &sdk,
        std::sync::Arc::new(shared::clock::SystemClock),
    );
    assert!(core.attachments.is_none());
    let api = LocalApi::serving(assistant::State::over(
        core,
        full.model_config.clone(),
        &sdk,
    ))
    .await;
    let alice = api.as_user(&new_user());

    let id = alice.create_conversation(Some("Trip plans")).await;
    let renamed = alice
        .put(
            &format!("/conversations/{id}/title"),
            json!({"title": "Lisbon"}),
        )
        .await;
    assert_eq!(renamed.status, StatusCode::OK, "{:?}", renamed.body);
    let tagged = alice
        .put(
            &format!("/conversations/{id}/tags"),
            json!({"tags": ["travel"]}),
        )
        .await;
    assert_eq!(tagged.status, StatusCode::OK, "{:?}", tagged.body);
    let archived = alice
        .put(
            &format!("/conversations/{id}/archive"),
            json!({"archived": true}),
        )
        .await;
    assert_eq!(archived.status, StatusCode::OK, "{:?}", archived.body);
    let listed = alice.get("/conversations?archived=only").await;
    assert_eq!(listed.status, StatusCode::OK);
    assert_eq!(listed.body["conversations"][0]["id"], id.as_str());
    assert_eq!(listed.body["conversations"][0]["title"], "Lisbon");
    assert_eq!(listed.body["conversations"][0]["tags"], json!(["travel"]));
    let found = alice.get("/search?q=lisbon").await;
    assert_eq!(found.status, StatusCode::OK, "{:?}", found.body);
    let export = alice.post("/exports", json!({})).await;
    assert_eq!(export.status, StatusCode::ACCEPTED, "{:?}", export.body);
}

/// What conversation items written before issue 18 held twice: the owner and the id (in the
/// partition key) and the kind (in the sort key).
const STORED_TWICE: [&str; 3] = ["userId", "conversationId", "entity"];

async fn stored_twice_in(api: &LocalApi, user: &str, id: &str) -> Vec<String> {
    let items = items_of_conversation(&api.state, user, id).await;
    let meta = items
        .iter()
        .find(|item| item["SK"] == AttributeValue::S("META".to_owned()))
        .expect("the conversation's item");
    STORED_TWICE
        .iter()
        .filter(|name| meta.contains_key(**name))
        .map(|name| name.to_string())
        .collect()
}

/// Gives the conversation's item the attributes items written before issue 18 hold.
async fn as_written_before(api: &LocalApi, user: &str, id: &str) {
    let client = aws_sdk_dynamodb::Client::new(&aws_config::load_from_env().await);
    client
        .update_item()
        .table_name(&api.state.config.table_name)
        .key("PK", AttributeValue::S(format!("USER#{user}#CONV#{id}")))
        .key("SK", AttributeValue::S("META".to_owned()))
        .update_expression("SET userId = :user, conversationId = :id, entity = :entity")
        .expression_attribute_values(":user", AttributeValue::S(user.to_owned()))
        .expression_attribute_values(":id", AttributeValue::S(id.to_owned()))
        .expression_attribute_values(":entity", AttributeValue::S("Conversation".to_owned()))
        .send()
        .await
        .expect("write the earlier shape");
}

#[tokio::test]
async fn lean_conversation_items_keep_their_owner_and_id_only_in_their_key_and_earlier_items_shed_them(
) {
    let api = api_writing_lean_items().await;
    let user = new_user();
    let alice = api.as_user(&user);
    let id = alice.create_conversation(Some("Kept once")).await;
    alice.say(&id, "first").await;
    assert_eq!(
        stored_twice_in(&api, &user, &id).await,
        Vec::<String>::new()
    );
    let path = format!("/conversations/{id}");
    let read = alice.get(&path).await.body;
    let listed = alice.get("/conversations").await.body;

    // An item of the earlier shape reads the same, and its next write (an append, a rename)
    // removes what it held twice.
    as_written_before(&api, &user, &id).await;
    assert_eq!(stored_twice_in(&api, &user, &id).await, STORED_TWICE);
    assert_eq!(alice.get(&path).await.body, read);
    assert_eq!(alice.get("/conversations").await.body, listed);
    alice.say(&id, "second").await;
    assert_eq!(
        stored_twice_in(&api, &user, &id).await,
        Vec::<String>::new()
    );

    as_written_before(&api, &user, &id).await;
    let renamed = alice
        .put(&format!("{path}/title"), json!({"title": "Renamed"}))
        .await;
    assert_eq!(renamed.status, StatusCode::OK, "{:?}", renamed.body);
    assert_eq!(renamed.body["id"], id.as_str());
    assert_eq!(
        stored_twice_in(&api, &user, &id).await,
        Vec::<String>::new()
    );
    let shown = alice.get(&path).await.body;
    assert_eq!(shown["userId"], user.as_str());
    assert_eq!(shown["messageCount"], 2);
}

/// What message items written before issue 18 held twice (the conversation in the partition
/// key, the time and id in the sort key, the kind) or held empty.
const MESSAGE_STORED_TWICE: [&str; 6] = [
    "conversationId",
    "messageId",
    "timestamp",
    "entity",
    "attachments",
    "metadata",
];

#[tokio::test]
async fn lean_message_items_keep_their_conversation_time_and_id_only_in_their_keys_and_earlier_items_read_the_same(
) {
    let api = api_writing_lean_items().await;
    let user = new_user();
    let alice = api.as_user(&user);
    let id = alice.create_conversation(Some("Said once")).await;
    let said = alice.say(&id, "only in the keys").await;
    let items = items_of_conversation(&api.state, &user, &id).await;
    let message = items
        .iter()
        .find(|item| matches!(&item["SK"], AttributeValue::S(sk) if sk.starts_with("MESSAGE#")))
        .expect("the message's item");
    for name in MESSAGE_STORED_TWICE {
        assert!(!message.contains_key(name), "{name} in {message:?}");
    }
    let path = format!("/conversations/{id}");
    let read = alice.get(&path).await.body;
    assert_eq!(read["messages"][0]["id"], said["id"]);
    assert_eq!(read["messages"][0]["timestamp"], said["timestamp"]);

    // The same message as an item written before holds it reads the same.
    let client = aws_sdk_dynamodb::Client::new(&aws_config::load_from_env().await);
    let sort_key = message["SK"].as_s().unwrap();
    let time = &sort_key["MESSAGE#".len()..sort_key.rfind('#').unwrap()];
    client
        .update_item()
        .table_name(&api.state.config.table_name)
        .key("PK", message["PK"].clone())
        .key("SK", message["SK"].clone())
        .update_expression(
            "SET conversationId = :conversation, messageId = :message, #time = :time, \
             entity = :entity, attachments = :none, metadata = :nothing",
        )
        .expression_attribute_names("#time", "timestamp")
        .expression_attribute_values(":conversation", AttributeValue::S(id.clone()))
        .expression_attribute_values(
            ":message",
            AttributeValue::S(said["id"].as_str().unwrap().to_owned()),
        )
        .expression_attribute_values(":time", AttributeValue::S(time.to_owned()))
        .expression_attribute_values(":entity", AttributeValue::S("Message".to_owned()))
        .expression_attribute_values(":none", AttributeValue::L(Vec::new()))
        .expression_attribute_values(":nothing", AttributeValue::M(Default::default()))
        .send()
        .await
        .expect("write the earlier shape");
    assert_eq!(alice.get(&path).await.body, read);
}

/// With neither switch set, what the release before issue 18 requires of a conversation's
/// and a message's item is written (ids beside the keys, content as text however long), and
/// no update removes it: that release reads every item this one writes.
#[tokio::test]
async fn by_default_items_hold_what_the_release_before_requires_and_keep_it() {
    // The switches as a blank template parameter leaves them: off.
    let overrides = [
        ("CACHE_URL", ""),
        ("LEAN_ITEMS", ""),
        ("COMPRESS_TEXT", ""),
        ("SLOT_KEYS", ""),
    ];
    let state = state_configured(&overrides, std::sync::Arc::new(SystemClock)).await;
    let api = LocalApi::serving(state).await;
    let user = new_user();
    let alice = api.as_user(&user);
    let id = alice.create_conversation(Some("Both releases")).await;
    let said = alice.say(&id, "read by either").await;
    let long = "Every release before this one reads this reply as text. ".repeat(40);
    let replied = alice
        .post(
            &format!("/conversations/{id}/messages"),
            json!({"role": "assistant", "content": long}),
        )
        .await;
    assert_eq!(replied.status, StatusCode::CREATED, "{:?}", replied.body);
    let renamed = alice
        .put(
            &format!("/conversations/{id}/title"),
            json!({"title": "Still both"}),
        )
        .await;
    assert_eq!(renamed.status, StatusCode::OK, "{:?}", renamed.body);

    let items = items_of_conversation(&api.state, &user, &id).await;
    let text = |item: &std::collections::HashMap<String, AttributeValue>, name: &str| {
        item.get(name)
            .and_then(|v| v.as_s().ok())
            .cloned()
            .unwrap_or_else(|| panic!("{name} missing from {item:?}"))
    };
    let meta = items
        .iter()
        .find(|item| text(item, "SK") == "META")
        .unwrap();
    assert_eq!(text(meta, "userId"), user);
    assert_eq!(text(meta, "conversationId"), id);
    assert_eq!(text(meta, "entity"), "Conversation");
    let message = items
        .iter()
        .find(|item| text(item, "SK").starts_with("MESSAGE#"))
        .unwrap();
    assert_eq!(text(message, "conversationId"), id);
    assert_eq!(text(message, "messageId"), said["id"].as_str().unwrap());
    let reply = items
        .iter()
        .find(|item| text(item, "SK").ends_with(replied.body["id"].as_str().unwrap()))
        .unwrap();
    assert_eq!(text(reply, "content"), long, "the content as text");
    assert_eq!(text(message, "entity"), "Message");
    // The time and id its sort key says (the API shows the time to the millisecond).
    let sort_key = text(message, "SK");
    let stored_time = text(message, "timestamp");
    let id_said = said["id"].as_str().unwrap();
    assert_eq!(sort_key, format!("MESSAGE#{stored_time}#{id_said}"));
    let time_said = said["timestamp"].as_str().unwrap().trim_end_matches('Z');
    assert!(
        stored_time.starts_with(time_said),
        "{stored_time} {time_said}"
    );
}

/// With `COMPRESS_TEXT` on, content that deflating makes smaller is kept deflated in its item
/// (short content stays text), and a page, a repeated append and the context read it back as
/// it was written.
#[tokio::test]
async fn long_content_is_kept_deflated_and_every_reader_gets_it_back_as_written() {
    let overrides = [("CACHE_URL", ""), ("COMPRESS_TEXT", "true")];
    let state = state_configured(&overrides, std::sync::Arc::new(SystemClock)).await;
    let api = LocalApi::serving(state).await;
    let user = new_user();
    let alice = api.as_user(&user);
    let id = alice.create_conversation(Some("Long answers")).await;
    let question = "Why are there two tides a day?";
    alice.say(&id, question).await;
    let answer = (1..=30)
        .map(|n| {
            format!("Step {n}: the moon pulls the near ocean and the earth away from the far one.")
        })
        .collect::<Vec<_>>()
        .join(" ");
    let sent = json!({"role": "assistant", "content": answer, "clientMessageId": "answer-1"});
    let path = format!("/conversations/{id}/messages");
    let added = alice.post(&path, sent.clone()).await;
    assert_eq!(added.status, StatusCode::CREATED, "{:?}", added.body);
    assert_eq!(added.body["content"], answer.as_str());
    // Sent again: the stored message, read back from its deflated item.
    let repeated = alice.post(&path, sent).await;
    assert_eq!(repeated.status, StatusCode::OK, "{:?}", repeated.body);
    assert_eq!(repeated.body, added.body);

    let items = items_of_conversation(&api.state, &user, &id).await;
    let contents: Vec<&AttributeValue> = items
        .iter()
        .filter(|item| item["SK"].as_s().unwrap().starts_with("MESSAGE#"))
        .map(|item| &item["content"])
        .collect();
    assert_eq!(contents[0], &AttributeValue::S(question.to_owned()));
    let deflated = contents[1]
        .as_b()
        .expect("the long answer is kept deflated");
    assert!(
        deflated.as_ref().len() * 4 < answer.len(),
        "{} bytes for {}",
        deflated.as_ref().len(),
        answer.len()
    );

    let path = format!("/conversations/{id}");
    let read = alice.get(&path).await.body;
    assert_eq!(read["messages"][0]["content"], question);
    assert_eq!(read["messages"][1]["content"], answer.as_str());
    let context = alice.get(&format!("/conversations/context/{id}")).await;
    assert!(
        context.body.to_string().contains("Step 30: the moon"),
        "{:?}",
        context.body
    );
}
