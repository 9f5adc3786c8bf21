//! Conversations as a tree of branches (issue 19): editing a user's message makes a sibling
//! on a new branch, which the conversation shows and goes on from; the old branch stays; each
//! message shows its place among its siblings; paging back reads the active branch only, once
//! and in order; the model hears only the active branch.

use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::{json, Value};
use shared::clock::SystemClock;
use shared::model::{ConversationId, MessageId, NewMessage, Role, UserId};
use tests::{new_user, state, state_configured, ChatBehaviour, ChatServer, Client, LocalApi};

/// The local API with the model a stand-in chat server answers as (`echo: <last message>`).
async fn api_with_model(server: &ChatServer) -> LocalApi {
    let state = state_configured(
        &[
            ("MODEL_PROVIDER", "openai"),
            ("OPENAI_BASE_URL", &server.base_url),
            ("MODEL_ID", "test-model"),
        ],
        Arc::new(SystemClock),
    )
    .await;
    LocalApi::serving(state).await
}

async fn reply(client: &Client, conversation: &str, content: &str) -> Value {
    let reply = client
        .post(
            &format!("/conversations/{conversation}/messages"),
            json!({ "role": "assistant", "content": content }),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    reply.body
}

async fn edit(client: &Client, conversation: &str, message: &Value, content: &str) -> Value {
    let reply = client
        .post(
            &format!(
                "/conversations/{conversation}/messages/{}/edit",
                message["id"].as_str().unwrap()
            ),
            json!({ "content": content }),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    reply.body
}

/// The conversation as its owner reads it: each message's content, and its siblings as
/// "position/count" when it has any.
async fn shown(client: &Client, conversation: &str) -> Vec<String> {
    let read = client.get(&format!("/conversations/{conversation}")).await;
    assert_eq!(read.status, StatusCode::OK, "{:?}", read.body);
    described(&read.body)
}

/// The conversation's `messageCount`, as its owner reads it.
async fn message_count(client: &Client, conversation: &str) -> u64 {
    let read = client.get(&format!("/conversations/{conversation}")).await;
    assert_eq!(read.status, StatusCode::OK, "{:?}", read.body);
    read.body["messageCount"].as_u64().unwrap()
}

fn described(body: &Value) -> Vec<String> {
    body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let content = m["content"].as_str().unwrap();
            match m.get("siblings") {
                Some(s) => format!("{content} [{}/{}]", s["position"], s["count"]),
                None => content.to_owned(),
            }
        })
        .collect()
}

#[tokio::test]
async fn an_edit_is_a_sibling_on_a_new_branch_that_the_conversation_shows_and_goes_on_from() {
    let api = LocalApi::start().await;
    let alice = api.as_user(&new_user());
    let id = alice.create_conversation(Some("Branches")).await;
    alice.say(&id, "one").await;
    reply(&alice, &id, "reply to one").await;
    let two = alice.say(&id, "two").await;
    reply(&alice, &id, "reply to two").await;

    let edited = edit(&alice, &id, &two, "two, said better").await;
    assert_eq!(edited["role"], "user");
    assert_eq!(edited["content"], "two, said better");
    assert_eq!(edited["siblings"], json!({"count": 2, "position": 2}));
    assert_ne!(edited["id"], two["id"]);
    assert_eq!(
        shown(&alice, &id).await,
        ["one", "reply to one", "two, said better [2/2]"]
    );

    // The conversation goes on from the edit.
    reply(&alice, &id, "reply to the better two").await;
    alice.say(&id, "three").await;
    assert_eq!(
        shown(&alice, &id).await,
        [
            "one",
            "reply to one",
            "two, said better [2/2]",
            "reply to the better two",
            "three"
        ]
    );

    // A third try at the same message: three siblings.
    let again = edit(&alice, &id, &edited, "two, third try").await;
    assert_eq!(again["siblings"], json!({"count": 3, "position": 3}));
    assert_eq!(
        shown(&alice, &id).await,
        ["one", "reply to one", "two, third try [3/3]"]
    );

    // The first message has no parent: its edit is a second root.
    let first = alice.get(&format!("/conversations/{id}")).await.body["messages"][0].clone();
    let root = edit(&alice, &id, &first, "one, again").await;
    assert_eq!(root["siblings"], json!({"count": 2, "position": 2}));
    assert_eq!(shown(&alice, &id).await, ["one, again [2/2]"]);

    // Every message is kept and counted: the tree holds 9.
    assert_eq!(message_count(&alice, &id).await, 9);
}

#[tokio::test]
async fn an_edit_off_the_active_branch_still_forks_at_that_messages_parent() {
    let api = LocalApi::start().await;
    let alice = api.as_user(&new_user());
    let id = alice.create_conversation(None).await;
    alice.say(&id, "one").await;
    let two = alice.say(&id, "two").await;
    alice.say(&id, "three").await;
    edit(&alice, &id, &two, "two, second try").await;
    // "two" is no longer shown; another device edits it all the same.
    edit(&alice, &id, &two, "two, from the other device").await;
    assert_eq!(
        shown(&alice, &id).await,
        ["one", "two, from the other device [3/3]"]
    );
}

#[tokio::test]
async fn an_edit_sent_again_with_its_client_message_id_makes_no_second_branch() {
    let api = LocalApi::start().await;
    let alice = api.as_user(&new_user());
    let id = alice.create_conversation(None).await;
    let one = alice.say(&id, "one").await;
    let path = format!(
        "/conversations/{id}/messages/{}/edit",
        one["id"].as_str().unwrap()
    );
    let body = json!({"content": "one, edited", "clientMessageId": "edit-1"});
    let first = alice.post(&path, body.clone()).await;
    assert_eq!(first.status, StatusCode::CREATED, "{:?}", first.body);
    let again = alice.post(&path, body).await;
    assert_eq!(again.status, StatusCode::OK, "{:?}", again.body);
    assert_eq!(again.body["id"], first.body["id"]);
    assert_eq!(again.body["siblings"], first.body["siblings"]);
    assert_eq!(shown(&alice, &id).await, ["one, edited [2/2]"]);
    assert_eq!(message_count(&alice, &id).await, 2);

    // The id of an append, sent with an edit: two different things, both made.
    let said = alice
        .post(
            &format!("/conversations/{id}/messages"),
            json!({"role": "user", "content": "two", "clientMessageId": "same-id"}),
        )
        .await;
    assert_eq!(said.status, StatusCode::CREATED);
    let edit_of_two = alice
        .post(
            &format!(
                "/conversations/{id}/messages/{}/edit",
                said.body["id"].as_str().unwrap()
            ),
            json!({"content": "two, edited", "clientMessageId": "same-id"}),
        )
        .await;
    assert_eq!(
        edit_of_two.status,
        StatusCode::CREATED,
        "{:?}",
        edit_of_two.body
    );
    assert_ne!(edit_of_two.body["id"], said.body["id"]);
    assert_eq!(
        shown(&alice, &id).await,
        ["one, edited [2/2]", "two, edited [2/2]"]
    );
}

#[tokio::test]
async fn edits_are_refused_for_replies_unknown_messages_bad_bodies_and_other_users() {
    let api = LocalApi::start().await;
    let owner = new_user();
    let alice = api.as_user(&owner);
    let id = alice.create_conversation(None).await;
    let one = alice.say(&id, "one").await;
    let answer = reply(&alice, &id, "an answer").await;
    let before = tests::table_snapshot(&api.state).await;

    let on = |message: &Value| {
        format!(
            "/conversations/{id}/messages/{}/edit",
            message["id"].as_str().unwrap()
        )
    };
    let refused = alice.post(&on(&answer), json!({"content": "no"})).await;
    assert_eq!(
        refused.status,
        StatusCode::BAD_REQUEST,
        "{:?}",
        refused.body
    );
    let unknown = json!({"id": MessageId::generate().to_string()});
    let missing = alice.post(&on(&unknown), json!({"content": "no"})).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND, "{:?}", missing.body);
    for body in [
        json!({}),
        json!({"content": ""}),
        json!({"content": "x", "role": "assistant"}),
    ] {
        let bad = alice.post(&on(&one), body).await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{:?}", bad.body);
        assert!(bad.body["error"]["code"].is_string(), "{:?}", bad.body);
    }
    let bad_id = alice
        .post(
            &format!("/conversations/{id}/messages/not-an-id/edit"),
            json!({"content": "x"}),
        )
        .await;
    assert_eq!(bad_id.status, StatusCode::BAD_REQUEST);

    // Another user learns nothing: the same answer as for a conversation that does not exist.
    let mallory = api.as_user(&new_user());
    let theirs = mallory
        .post(&on(&one), json!({"content": "mine now"}))
        .await;
    assert_eq!(theirs.status, StatusCode::NOT_FOUND, "{:?}", theirs.body);
    assert_eq!(
        api.anonymous()
            .post(&on(&one), json!({"content": "x"}))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );

    assert_eq!(
        tests::table_snapshot(&api.state).await,
        before,
        "nothing changed"
    );
    assert_eq!(shown(&alice, &id).await, ["one", "an answer"]);
}

#[tokio::test]
async fn paging_back_a_branch_of_500_messages_with_50_side_branches_reads_it_once_in_order() {
    let state = state().await;
    let user = new_user();
    let owner = UserId::parse(&user).unwrap();
    let conversations = &state.conversations;
    let conversation = conversations
        .create(&owner, None, Default::default(), chrono::Utc::now())
        .await
        .unwrap();
    let id: ConversationId = conversation.id;
    let say = |content: String| {
        NewMessage::parse(Role::User, content, vec![], Default::default(), None).unwrap()
    };
    // The first 300 through the migration's writer (keyed by time: the trunk's older part),
    // then rounds of three said by slot, each round's last said again.
    let mut expected: Vec<String> = (0..300).map(|n| format!("migrated {n}")).collect();
    tests::append_directly(
        &state,
        &user,
        &id.to_string(),
        expected.clone(),
        chrono::Utc::now() - chrono::Duration::hours(1),
    )
    .await;
    for round in 0..50 {
        let mut last = None;
        for n in 0..3 {
            let content = format!("round {round} message {n}");
            let added = conversations
                .add_message(&owner, &id, say(content.clone()), chrono::Utc::now())
                .await
                .unwrap();
            expected.push(content);
            last = Some(added.message);
        }
        // The round's last message said again: the first try becomes a side branch.
        let last = last.unwrap();
        let content = format!("round {round} message 2, edited");
        conversations
            .edit_message(
                &owner,
                &id,
                &last.id,
                say(content.clone()),
                chrono::Utc::now(),
            )
            .await
            .unwrap();
        *expected.last_mut().unwrap() = content;
    }
    for n in 0..50 {
        let content = format!("last run {n}");
        conversations
            .add_message(&owner, &id, say(content.clone()), chrono::Utc::now())
            .await
            .unwrap();
        expected.push(content);
    }
    assert_eq!(expected.len(), 500);

    let api = LocalApi::serving(state).await;
    let alice = api.as_user(&user);
    let mut read: Vec<String> = Vec::new();
    let mut before: Option<String> = None;
    loop {
        let path = match &before {
            Some(cursor) => format!("/conversations/{id}?messageLimit=50&before={cursor}"),
            None => format!("/conversations/{id}?messageLimit=50"),
        };
        let page = alice.get(&path).await;
        assert_eq!(page.status, StatusCode::OK, "{:?}", page.body);
        let mut contents = described(&page.body);
        contents.extend(read);
        read = contents;
        match page.body["olderMessagesCursor"].as_str() {
            Some(cursor) => before = Some(cursor.to_owned()),
            None => break,
        }
    }
    let siblings: Vec<&String> = read.iter().filter(|m| m.ends_with("[2/2]")).collect();
    assert_eq!(
        siblings.len(),
        50,
        "each edited message shows its side branch"
    );
    let plain: Vec<String> = read
        .iter()
        .map(|m| m.trim_end_matches(" [2/2]").to_owned())
        .collect();
    assert_eq!(plain, expected, "the active branch, once, oldest first");
}

#[tokio::test]
async fn the_model_hears_only_the_active_branch() {
    let server = ChatServer::start(ChatBehaviour::Answer).await;
    let api = api_with_model(&server).await;
    let alice = api.as_user(&new_user());
    let id = alice.create_conversation(None).await;
    alice.say(&id, "my favourite fruit").await;
    let secret = alice.say(&id, "is the quince").await;
    reply(&alice, &id, "a fine quince").await;
    edit(&alice, &id, &secret, "is the apple").await;

    let completion = alice
        .post(
            "/completion",
            json!({"prompt": "which fruit?", "conversationId": id}),
        )
        .await;
    assert_eq!(completion.status, StatusCode::OK, "{:?}", completion.body);
    let heard = server.requests().last().unwrap().to_string();
    assert!(heard.contains("is the apple"), "{heard}");
    assert!(
        !heard.contains("quince"),
        "the side branch reached the model: {heard}"
    );

    let context = alice.get(&format!("/conversations/context/{id}")).await;
    assert_eq!(context.status, StatusCode::OK, "{:?}", context.body);
    assert!(
        !context.body.to_string().contains("quince"),
        "{:?}",
        context.body
    );
}

async fn switch(client: &Client, conversation: &str, body: Value) -> Vec<String> {
    let switched = client
        .put(&format!("/conversations/{conversation}/branch"), body)
        .await;
    assert_eq!(switched.status, StatusCode::OK, "{:?}", switched.body);
    let shown_after = shown(client, conversation).await;
    assert_eq!(
        described(&switched.body),
        shown_after,
        "answers as it reads"
    );
    shown_after
}

#[tokio::test]
async fn switching_shows_the_newest_leaf_under_a_sibling_and_the_conversation_goes_on_there() {
    let api = LocalApi::start().await;
    let alice = api.as_user(&new_user());
    let id = alice.create_conversation(None).await;
    alice.say(&id, "one").await;
    let two = alice.say(&id, "two").await;
    reply(&alice, &id, "first reply").await;
    let better = edit(&alice, &id, &two, "two, better").await;
    reply(&alice, &id, "better reply").await;

    // Back to the first try, by its id: it shows with the reply it had.
    let first = switch(&alice, &id, json!({"messageId": two["id"]})).await;
    assert_eq!(first, ["one", "two [1/2]", "first reply"]);
    // The conversation goes on from there; the edit's branch stays.
    alice.say(&id, "more on the first").await;
    assert_eq!(
        shown(&alice, &id).await,
        ["one", "two [1/2]", "first reply", "more on the first"]
    );

    // To the second sibling by position, from the first: the branch written last under it.
    let second = switch(&alice, &id, json!({"messageId": two["id"], "position": 2})).await;
    assert_eq!(second, ["one", "two, better [2/2]", "better reply"]);
    alice.say(&id, "more on the better").await;

    // Back to the first sibling by position from the second: its newest leaf.
    let again = switch(
        &alice,
        &id,
        json!({"messageId": better["id"], "position": 1}),
    )
    .await;
    assert_eq!(
        again,
        ["one", "two [1/2]", "first reply", "more on the first"]
    );
    // The branch already shown: nothing changes.
    let same = switch(&alice, &id, json!({"messageId": two["id"]})).await;
    assert_eq!(same, again);
    let read = alice.get(&format!("/conversations/{id}")).await;
    assert_eq!(
        read.body["messageCount"], 7,
        "every message of every branch"
    );
}

#[tokio::test]
async fn an_append_that_read_the_tip_before_an_edit_goes_on_the_new_branch() {
    // An append's read of the tip, then an edit, then the append's put: the seal at the old
    // branch's next slot turns the put away, and the message goes after the edit.
    let state = state().await;
    let user = new_user();
    let owner = UserId::parse(&user).unwrap();
    let conversation = state
        .conversations
        .create(&owner, None, Default::default(), chrono::Utc::now())
        .await
        .unwrap();
    let say = |content: &str| {
        NewMessage::parse(
            Role::User,
            content.to_owned(),
            vec![],
            Default::default(),
            Some("late-1"),
        )
        .unwrap()
    };
    let one = state
        .conversations
        .add_message(
            &owner,
            &conversation.id,
            NewMessage {
                client_message_id: None,
                ..say("one")
            },
            chrono::Utc::now(),
        )
        .await
        .unwrap()
        .message;
    state
        .conversations
        .edit_message(
            &owner,
            &conversation.id,
            &one.id,
            NewMessage {
                client_message_id: None,
                ..say("one, edited")
            },
            chrono::Utc::now(),
        )
        .await
        .unwrap();
    // The late append's record names the slot it read before the edit (the one the seal holds).
    let partition = shared::keys::conversation_partition(&owner, &conversation.id);
    let client = aws_sdk_dynamodb::Client::new(&aws_config::load_from_env().await);
    client
        .put_item()
        .table_name(&state.config.table_name)
        .item(
            "PK",
            aws_sdk_dynamodb::types::AttributeValue::S(partition.clone()),
        )
        .item(
            "SK",
            aws_sdk_dynamodb::types::AttributeValue::S("CLIENT_MESSAGE#late-1".into()),
        )
        .item(
            "target",
            aws_sdk_dynamodb::types::AttributeValue::S("0000#0000000002".into()),
        )
        .send()
        .await
        .unwrap();
    let late = state
        .conversations
        .add_message(&owner, &conversation.id, say("late"), chrono::Utc::now())
        .await
        .unwrap();
    assert!(!late.replayed);
    let api = LocalApi::serving(state).await;
    let alice = api.as_user(&user);
    assert_eq!(
        shown(&alice, &conversation.id.to_string()).await,
        ["one, edited [2/2]", "late"]
    );
}

#[tokio::test]
async fn switches_are_refused_for_unknown_messages_bad_positions_bad_bodies_and_other_users() {
    let api = LocalApi::start().await;
    let alice = api.as_user(&new_user());
    let id = alice.create_conversation(None).await;
    let one = alice.say(&id, "one").await;
    edit(&alice, &id, &one, "one, again").await;
    let before = tests::table_snapshot(&api.state).await;
    let path = format!("/conversations/{id}/branch");

    for (body, status) in [
        (
            json!({"messageId": MessageId::generate().to_string()}),
            StatusCode::NOT_FOUND,
        ),
        (
            json!({"messageId": one["id"], "position": 3}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"messageId": one["id"], "position": 0}),
            StatusCode::BAD_REQUEST,
        ),
        (json!({"messageId": "not-an-id"}), StatusCode::BAD_REQUEST),
        (json!({}), StatusCode::BAD_REQUEST),
        (
            json!({"messageId": one["id"], "leaf": true}),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let refused = alice.put(&path, body.clone()).await;
        assert_eq!(refused.status, status, "{body}: {:?}", refused.body);
        assert!(
            refused.body["error"]["code"].is_string(),
            "{:?}",
            refused.body
        );
    }
    let mallory = api.as_user(&new_user());
    let theirs = mallory.put(&path, json!({"messageId": one["id"]})).await;
    assert_eq!(theirs.status, StatusCode::NOT_FOUND, "{:?}", theirs.body);
    let anonymous = api
        .anonymous()
        .put(&path, json!({"messageId": one["id"]}))
        .await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);

    assert_eq!(
        tests::table_snapshot(&api.state).await,
        before,
        "nothing changed"
    );
}

#[tokio::test]
async fn a_summary_of_a_branch_left_behind_reaches_neither_the_reader_nor_the_model() {
    let server = ChatServer::start(ChatBehaviour::Answer).await;
    let (api, mut poller) = tests::api_feeding(
        local::StreamConsumer::SummarizeConversations,
        &[
            ("MODEL_PROVIDER", "openai"),
            ("OPENAI_BASE_URL", &server.base_url),
            ("MODEL_ID", "test-model"),
            ("SUMMARY_EVERY_MESSAGES", "2"),
        ],
    )
    .await;
    let alice = api.as_user(&new_user());
    let id = alice.create_conversation(None).await;
    alice.say(&id, "my favourite fruit").await;
    let secret = alice.say(&id, "is the quince").await;
    poller.poll_once().await.unwrap();
    let summarized = alice.get(&format!("/conversations/{id}")).await;
    assert!(
        summarized.body["summary"]
            .as_str()
            .is_some_and(|s| s.contains("quince")),
        "{:?}",
        summarized.body
    );

    edit(&alice, &id, &secret, "is the apple").await;
    let read = alice.get(&format!("/conversations/{id}")).await;
    assert!(!read.body.to_string().contains("quince"), "{:?}", read.body);
    let completion = alice
        .post(
            "/completion",
            json!({"prompt": "which fruit?", "conversationId": id}),
        )
        .await;
    assert_eq!(completion.status, StatusCode::OK, "{:?}", completion.body);
    let heard = server.requests().last().unwrap().to_string();
    assert!(heard.contains("is the apple"), "{heard}");
    assert!(
        !heard.contains("quince"),
        "the left branch's summary reached the model: {heard}"
    );

    // Summarized again, from the root of the active path.
    poller.poll_once().await.unwrap();
    let again = alice.get(&format!("/conversations/{id}")).await;
    let summary = again.body["summary"].as_str().unwrap_or_default();
    assert!(
        summary.contains("apple") && !summary.contains("quince"),
        "{summary}"
    );
}

async fn batch(client: &Client, operations: Value) -> Vec<Value> {
    let reply = client
        .post("/mobile/batch", json!({ "operations": operations }))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    reply.body["results"].as_array().unwrap().clone()
}

/// What a sync from `cursor` brings of `conversation`, with its newest messages, and the next
/// cursor.
async fn synced(
    client: &Client,
    conversation: &str,
    cursor: Option<&str>,
) -> (Option<Vec<String>>, String) {
    let path = match cursor {
        Some(cursor) => format!("/mobile/sync?includeMessages=20&since={cursor}"),
        None => "/mobile/sync?includeMessages=20".to_owned(),
    };
    let reply = client.get(&path).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    let found = reply.body["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == conversation)
        .map(described);
    (found, reply.body["cursor"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn two_devices_editing_one_message_offline_converge_after_sync_and_a_replay_changes_nothing()
{
    let api = LocalApi::start().await;
    let user = new_user();
    let phone = api.as_user(&user);
    let tablet = api.as_user(&user);
    let id = phone.create_conversation(None).await;
    phone.say(&id, "one").await;
    let two = phone.say(&id, "two").await;
    let (_, phone_cursor) = synced(&phone, &id, None).await;
    let (_, tablet_cursor) = synced(&tablet, &id, None).await;

    // Each device edits "two" offline, then sends its batch.
    let from_phone = json!([{ "opId": "phone-1", "type": "editMessage", "conversationId": id,
        "messageId": two["id"], "content": "two, from the phone", "clientTimestamp": "2026-12-01T10:00:00Z" }]);
    let from_tablet = json!([{ "opId": "tablet-1", "type": "editMessage", "conversationId": id,
        "messageId": two["id"], "content": "two, from the tablet", "clientTimestamp": "2026-12-01T10:05:00Z" }]);
    let phone_result = batch(&phone, from_phone.clone()).await;
    assert_eq!(phone_result[0]["status"], 201, "{phone_result:?}");
    assert_eq!(
        phone_result[0]["body"]["siblings"],
        json!({"count": 2, "position": 2})
    );
    let tablet_result = batch(&tablet, from_tablet.clone()).await;
    assert_eq!(tablet_result[0]["status"], 201, "{tablet_result:?}");
    assert_eq!(
        tablet_result[0]["body"]["siblings"],
        json!({"count": 3, "position": 3})
    );

    // Both sync and hold the same conversation: the edit that arrived last is shown, each
    // edit a sibling of "two".
    let (on_phone, _) = synced(&phone, &id, Some(&phone_cursor)).await;
    let (on_tablet, _) = synced(&tablet, &id, Some(&tablet_cursor)).await;
    assert_eq!(on_phone, on_tablet);
    assert_eq!(on_phone.unwrap(), ["one", "two, from the tablet [3/3]"]);

    // The batches sent again (a lost answer): the same answers, nothing more.
    let before = tests::table_snapshot(&api.state).await;
    let again = batch(&phone, from_phone).await;
    assert_eq!(again[0]["replayed"], true);
    assert_eq!(again[0]["body"]["id"], phone_result[0]["body"]["id"]);
    assert_eq!(batch(&tablet, from_tablet).await[0]["replayed"], true);
    assert_eq!(
        tests::table_snapshot(&api.state).await,
        before,
        "a replay changes nothing"
    );
}

#[tokio::test]
async fn offline_switches_are_ordered_by_when_they_were_made_and_sync_brings_the_branch_shown() {
    let api = LocalApi::start().await;
    let user = new_user();
    let phone = api.as_user(&user);
    let tablet = api.as_user(&user);
    let id = phone.create_conversation(None).await;
    phone.say(&id, "one").await;
    let two = phone.say(&id, "two").await;
    let better = edit(&phone, &id, &two, "two, better").await;
    let (_, cursor) = synced(&tablet, &id, None).await;

    // The tablet went back to "two" at 10:05, the phone to "two, better" at 10:00; the
    // tablet's batch arrives first, and the phone's, made earlier, is refused.
    let later = batch(
        &tablet,
        json!([{ "opId": "tablet-switch", "type": "switchBranch",
        "conversationId": id, "messageId": two["id"], "clientTimestamp": "2026-12-01T10:05:00Z" }]),
    )
    .await;
    assert_eq!(later[0]["status"], 200, "{later:?}");
    let earlier = batch(&phone, json!([{ "opId": "phone-switch", "type": "switchBranch",
        "conversationId": id, "messageId": better["id"], "clientTimestamp": "2026-12-01T10:00:00Z" }])).await;
    assert_eq!(earlier[0]["status"], 409, "{earlier:?}");
    assert_eq!(shown(&phone, &id).await, ["one", "two [1/2]"]);

    // The switch is a change of the conversation: the next sync brings it.
    let (brought, _) = synced(&tablet, &id, Some(&cursor)).await;
    assert_eq!(brought.unwrap(), ["one", "two [1/2]"]);

    // A batch naming another user's message, or one that does not exist, changes nothing.
    let mallory = api.as_user(&new_user());
    let theirs = batch(&mallory, json!([
        { "opId": "m-1", "type": "switchBranch", "conversationId": id, "messageId": two["id"] },
        { "opId": "m-2", "type": "editMessage", "conversationId": id, "messageId": two["id"], "content": "mine" },
        { "opId": "m-3", "type": "editMessage", "conversationId": id, "messageId": "nope", "content": "x" },
    ])).await;
    assert_eq!(theirs[0]["status"], 404, "{theirs:?}");
    assert_eq!(theirs[1]["status"], 404, "{theirs:?}");
    assert_eq!(theirs[2]["status"], 400, "{theirs:?}");
    assert_eq!(shown(&phone, &id).await, ["one", "two [1/2]"]);
}

/// The file an export of `conversation` in `format` gives its owner.
async fn exported(api: &LocalApi, user: &str, conversation: &str, format: &str) -> String {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = client
        .get(format!(
            "{}/conversations/{conversation}/export?format={format}",
            api.base
        ))
        .bearer_auth(api.tokens.mint(user, 3600))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let url = response.headers()["location"].to_str().unwrap().to_owned();
    reqwest::get(url).await.unwrap().text().await.unwrap()
}

#[tokio::test]
async fn exports_hold_the_branch_the_conversation_shows() {
    let api = LocalApi::start().await;
    let user = new_user();
    let alice = api.as_user(&user);
    let id = alice.create_conversation(None).await;
    alice.say(&id, "one").await;
    let two = alice.say(&id, "two, the quince").await;
    reply(&alice, &id, "a reply about quinces").await;
    edit(&alice, &id, &two, "two, the apple").await;
    reply(&alice, &id, "a reply about apples").await;

    let markdown = exported(&api, &user, &id, "markdown").await;
    assert!(
        markdown.contains("two, the apple") && markdown.contains("about apples"),
        "{markdown}"
    );
    assert!(!markdown.contains("quince"), "{markdown}");
    let json: Value = serde_json::from_str(&exported(&api, &user, &id, "json").await).unwrap();
    let contents: Vec<&str> = json["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(contents, ["one", "two, the apple", "a reply about apples"]);
}

/// Every item of the table, as text: what a whole-table scan would show.
async fn scanned(api: &LocalApi) -> String {
    format!("{:?}", tests::table_snapshot(&api.state).await)
}

#[tokio::test]
async fn deleting_a_message_takes_it_and_what_grew_from_it_from_reads_search_context_and_the_table()
{
    let (api, mut poller) = tests::api_feeding(local::StreamConsumer::IndexForSearch, &[]).await;
    let user = new_user();
    let alice = api.as_user(&user);
    let id = alice.create_conversation(None).await;
    let one = alice.say(&id, "one").await;
    let two = alice.say(&id, "two, the quince").await;
    reply(&alice, &id, "a reply about the marmelo").await;
    edit(&alice, &id, &two, "two, the apple").await;
    reply(&alice, &id, "a reply about apples").await;
    poller.poll_once().await.unwrap();
    let found = alice.get("/search?q=marmelo").await;
    assert_eq!(
        found.body["results"].as_array().unwrap().len(),
        1,
        "{:?}",
        found.body
    );

    // The first try at "two", off the branch shown, and the reply under it.
    let deleted = alice
        .delete(&format!(
            "/conversations/{id}/messages/{}",
            two["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{:?}", deleted.body);
    poller.poll_once().await.unwrap();
    assert_eq!(
        shown(&alice, &id).await,
        ["one", "two, the apple", "a reply about apples"],
        "the edit has no sibling left"
    );
    assert_eq!(message_count(&alice, &id).await, 3);
    let found = alice.get("/search?q=marmelo").await;
    assert_eq!(found.body["results"], json!([]), "{:?}", found.body);
    let context = alice.get(&format!("/conversations/context/{id}")).await;
    assert!(
        !context.body.to_string().contains("quince"),
        "{:?}",
        context.body
    );
    let table = scanned(&api).await;
    for gone in ["quince", "marmelo", two["id"].as_str().unwrap()] {
        assert!(!table.contains(gone), "{gone} is still in the table");
    }

    // Deleted again: it is not there.
    let again = alice
        .delete(&format!(
            "/conversations/{id}/messages/{}",
            two["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);

    // The first message: everything goes, and the conversation goes on from nothing.
    let all = alice
        .delete(&format!(
            "/conversations/{id}/messages/{}",
            one["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(all.status, StatusCode::NO_CONTENT, "{:?}", all.body);
    assert!(shown(&alice, &id).await.is_empty());
    let table = scanned(&api).await;
    for gone in ["apple", "\"one\""] {
        assert!(!table.contains(gone), "{gone} is still in the table");
    }
    alice.say(&id, "a new start").await;
    assert_eq!(shown(&alice, &id).await, ["a new start"]);
    assert_eq!(message_count(&alice, &id).await, 1);
}

#[tokio::test]
async fn deleting_the_shown_branchs_message_shows_its_parents_branch_and_appends_go_there() {
    let api = LocalApi::start().await;
    let alice = api.as_user(&new_user());
    let id = alice.create_conversation(None).await;
    alice.say(&id, "one").await;
    let two = alice.say(&id, "two").await;
    reply(&alice, &id, "first reply").await;
    let better = edit(&alice, &id, &two, "two, better").await;
    reply(&alice, &id, "better reply").await;

    // The edit, shown: the conversation goes back to its first try.
    let deleted = alice
        .delete(&format!(
            "/conversations/{id}/messages/{}",
            better["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{:?}", deleted.body);
    assert_eq!(shown(&alice, &id).await, ["one", "two", "first reply"]);
    alice.say(&id, "three").await;
    assert_eq!(
        shown(&alice, &id).await,
        ["one", "two", "first reply", "three"]
    );

    // The last reply of the branch shown: its parent is the leaf, and the next message
    // follows it.
    let replied = reply(&alice, &id, "a reply to regret").await;
    alice
        .delete(&format!(
            "/conversations/{id}/messages/{}",
            replied["id"].as_str().unwrap()
        ))
        .await;
    reply(&alice, &id, "a better reply").await;
    assert_eq!(
        shown(&alice, &id).await,
        ["one", "two", "first reply", "three", "a better reply"]
    );
    assert_eq!(message_count(&alice, &id).await, 5);
}

#[tokio::test]
async fn a_deleted_exchange_leaves_no_copy_in_short_term_memory_or_a_completions_record() {
    let server = ChatServer::start(ChatBehaviour::Answer).await;
    let api = api_with_model(&server).await;
    let alice = api.as_user(&new_user());
    let id = alice.create_conversation(None).await;
    alice.say(&id, "hello").await;
    let body = json!({"prompt": "my bank PIN is 4321", "conversationId": id, "requestId": "pin-1"});
    let first = alice.post("/completion", body.clone()).await;
    assert_eq!(first.status, StatusCode::OK, "{:?}", first.body);
    let read = alice.get(&format!("/conversations/{id}")).await;
    let prompt = read.body["messages"][1]["id"].as_str().unwrap().to_owned();

    let deleted = alice
        .delete(&format!("/conversations/{id}/messages/{prompt}"))
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{:?}", deleted.body);
    assert_eq!(shown(&alice, &id).await, ["hello"]);
    let memory = alice.get("/conversations/context").await;
    assert!(
        !memory.body.to_string().contains("4321"),
        "{:?}",
        memory.body
    );
    assert!(
        !scanned(&api).await.contains("4321"),
        "a copy is left in the table"
    );
    // The same request again is a new completion, not the deleted reply replayed.
    let again = alice.post("/completion", body).await;
    assert_eq!(again.status, StatusCode::OK, "{:?}", again.body);
    assert_ne!(again.body["replayed"], true);
    assert_eq!(server.calls(), 2);
}

#[tokio::test]
async fn a_batch_deletes_a_message_once_and_another_user_deletes_nothing() {
    let api = LocalApi::start().await;
    let user = new_user();
    let alice = api.as_user(&user);
    let id = alice.create_conversation(None).await;
    alice.say(&id, "one").await;
    let two = alice.say(&id, "two").await;
    let operation = json!([{ "opId": "del-1", "type": "deleteMessage", "conversationId": id,
        "messageId": two["id"] }]);

    let mallory = api.as_user(&new_user());
    let before = tests::table_snapshot(&api.state).await;
    let theirs = batch(&mallory, operation.clone()).await;
    assert_eq!(theirs[0]["status"], 404, "{theirs:?}");
    let direct = mallory
        .delete(&format!(
            "/conversations/{id}/messages/{}",
            two["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(direct.status, StatusCode::NOT_FOUND);
    let bad = alice
        .delete(&format!("/conversations/{id}/messages/not-an-id"))
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        tests::table_snapshot(&api.state).await,
        before,
        "nothing changed"
    );

    let first = batch(&alice, operation.clone()).await;
    assert_eq!(first[0]["status"], 204, "{first:?}");
    let again = batch(&alice, operation).await;
    assert_eq!(again[0]["status"], 204);
    assert_eq!(again[0]["replayed"], true);
    assert_eq!(shown(&alice, &id).await, ["one"]);
}

#[tokio::test]
async fn regenerating_a_reply_answers_its_prompt_again_as_a_sibling_once() {
    let server = ChatServer::start(ChatBehaviour::Answer).await;
    let api = api_with_model(&server).await;
    let alice = api.as_user(&new_user());
    let id = alice.create_conversation(None).await;
    alice.say(&id, "hello").await;
    let first = alice
        .post(
            "/completion",
            json!({"prompt": "name a fruit", "conversationId": id}),
        )
        .await;
    assert_eq!(first.status, StatusCode::OK, "{:?}", first.body);
    let reply = first.body["replyMessageId"].as_str().unwrap().to_owned();

    let body = json!({"regenerate": reply, "conversationId": id, "requestId": "again-1"});
    let again = alice.post("/completion", body.clone()).await;
    assert_eq!(again.status, StatusCode::OK, "{:?}", again.body);
    assert_eq!(again.body["promptMessageId"], first.body["promptMessageId"]);
    assert_ne!(again.body["replyMessageId"], first.body["replyMessageId"]);
    // The model heard the conversation up to the prompt, and not the reply it regenerates.
    let heard = server.requests().last().unwrap().to_string();
    assert!(heard.contains("name a fruit"), "{heard}");
    assert!(
        !heard.contains("echo: name a fruit"),
        "the old reply reached the model: {heard}"
    );
    assert_eq!(
        shown(&alice, &id).await,
        ["hello", "name a fruit", "echo: name a fruit [2/2]"]
    );
    // A retry regenerates nothing more; the old reply is a sibling to switch back to.
    let retried = alice.post("/completion", body).await;
    assert_eq!(retried.body["replayed"], true, "{:?}", retried.body);
    assert_eq!(server.calls(), 2);
    let back = switch(&alice, &id, json!({"messageId": reply})).await;
    assert_eq!(back, ["hello", "name a fruit", "echo: name a fruit [1/2]"]);

    // Not a reply, another user's, both a prompt and a reply, or no conversation: refused.
    let prompt = first.body["promptMessageId"].as_str().unwrap();
    for (body, status) in [
        (
            json!({"regenerate": prompt, "conversationId": id}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"regenerate": reply, "prompt": "x", "conversationId": id}),
            StatusCode::BAD_REQUEST,
        ),
        (json!({"regenerate": reply}), StatusCode::BAD_REQUEST),
        (
            json!({"regenerate": "nope", "conversationId": id}),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let refused = alice.post("/completion", body.clone()).await;
        assert_eq!(refused.status, status, "{body}: {:?}", refused.body);
    }
    let mallory = api.as_user(&new_user());
    let theirs = mallory
        .post(
            "/completion",
            json!({"regenerate": reply, "conversationId": id}),
        )
        .await;
    assert_eq!(theirs.status, StatusCode::NOT_FOUND, "{:?}", theirs.body);
    assert_eq!(server.calls(), 2, "no refused request reached the model");
}

#[tokio::test]
async fn a_branch_only_looked_at_keeps_the_time_it_was_last_written() {
    let api = LocalApi::start().await;
    let alice = api.as_user(&new_user());
    let id = alice.create_conversation(None).await;
    let one = alice.say(&id, "one").await;
    let two = alice.say(&id, "two").await;
    reply(&alice, &id, "reply").await;
    edit(&alice, &id, &two, "two, again").await;
    reply(&alice, &id, "reply again").await;
    // Back to the first try, written there last.
    switch(&alice, &id, json!({"messageId": two["id"]})).await;
    alice.say(&id, "more").await;
    // A look at the second try, and back: nothing written there.
    switch(&alice, &id, json!({"messageId": two["id"], "position": 2})).await;
    let back = switch(&alice, &id, json!({"messageId": two["id"], "position": 1})).await;
    assert_eq!(back, ["one", "two [1/2]", "reply", "more"]);
    // The newest leaf under the first message is still the one written last.
    let newest = switch(&alice, &id, json!({"messageId": one["id"]})).await;
    assert_eq!(newest, ["one", "two [1/2]", "reply", "more"]);
}

#[tokio::test]
async fn an_answer_written_while_its_question_was_edited_stays_with_its_question() {
    let state = state().await;
    let user = new_user();
    let owner = UserId::parse(&user).unwrap();
    let conversations = state.conversations.clone();
    let conversation = conversations
        .create(&owner, None, Default::default(), chrono::Utc::now())
        .await
        .unwrap();
    let id = conversation.id;
    let say = |role: Role, content: &str| {
        NewMessage::parse(role, content.to_owned(), vec![], Default::default(), None).unwrap()
    };
    let question = conversations
        .add_message(
            &owner,
            &id,
            say(Role::User, "the first question"),
            chrono::Utc::now(),
        )
        .await
        .unwrap()
        .message;
    // The model is still answering when the user edits the question.
    conversations
        .edit_message(
            &owner,
            &id,
            &question.id,
            say(Role::User, "the question, edited"),
            chrono::Utc::now(),
        )
        .await
        .unwrap();
    conversations
        .add_reply(
            &owner,
            &id,
            &question,
            say(Role::Assistant, "the answer to the first"),
            chrono::Utc::now(),
        )
        .await
        .unwrap();

    let api = LocalApi::serving(state).await;
    let alice = api.as_user(&user);
    let id = id.to_string();
    assert_eq!(shown(&alice, &id).await, ["the question, edited [2/2]"]);
    let back = switch(&alice, &id, json!({"messageId": question.id.to_string()})).await;
    assert_eq!(
        back,
        ["the first question [1/2]", "the answer to the first"]
    );
    assert_eq!(message_count(&alice, &id).await, 3);
}

#[tokio::test]
async fn an_edited_message_is_found_by_search() {
    let (api, mut poller) = tests::api_feeding(local::StreamConsumer::IndexForSearch, &[]).await;
    let alice = api.as_user(&new_user());
    let id = alice.create_conversation(None).await;
    alice.say(&id, "one").await;
    let two = alice.say(&id, "two").await;
    reply(&alice, &id, "a reply").await;
    edit(&alice, &id, &two, "two, about the cardamom buns").await;
    reply(&alice, &id, "a reply about saffron").await;
    poller.poll_once().await.unwrap();
    for (word, found) in [
        ("cardamom", "two, about the cardamom buns"),
        ("saffron", "a reply about saffron"),
    ] {
        let hits = alice.get(&format!("/search?q={word}")).await;
        assert_eq!(hits.status, StatusCode::OK, "{:?}", hits.body);
        let text = hits.body.to_string();
        assert!(text.contains(found), "{word}: {text}");
    }
}

#[tokio::test]
async fn a_message_with_hundreds_after_it_is_deleted_whole() {
    let state = state().await;
    let user = new_user();
    let owner = UserId::parse(&user).unwrap();
    let conversations = state.conversations.clone();
    let id = conversations
        .create(&owner, None, Default::default(), chrono::Utc::now())
        .await
        .unwrap()
        .id;
    let say = |content: String| {
        NewMessage::parse(Role::User, content, vec![], Default::default(), None).unwrap()
    };
    let mut third = None;
    for n in 1..=230 {
        let added = conversations
            .add_message(&owner, &id, say(format!("message {n}")), chrono::Utc::now())
            .await
            .unwrap();
        if n == 3 {
            third = Some(added.message.id);
        }
    }
    // Over two transactions' worth of items after it, and a branch among them.
    let branched_at = conversations
        .get(&owner, &id, 200, None)
        .await
        .unwrap()
        .messages[100]
        .id;
    conversations
        .edit_message(
            &owner,
            &id,
            &branched_at,
            say("an edit far down".into()),
            chrono::Utc::now(),
        )
        .await
        .unwrap();
    let deleted = conversations
        .delete_message(
            &owner,
            &id,
            &third.unwrap(),
            std::time::Duration::from_secs(60),
        )
        .await
        .unwrap();
    assert_eq!(deleted, 229, "228 after it on the trunk, and the edit");
    let api = LocalApi::serving(state).await;
    let alice = api.as_user(&user);
    let id = id.to_string();
    assert_eq!(shown(&alice, &id).await, ["message 1", "message 2"]);
    assert_eq!(message_count(&alice, &id).await, 2);
    let table = scanned(&api).await;
    assert!(!table.contains("message 3\"") && !table.contains("far down"));
}

#[tokio::test]
async fn a_reply_whose_question_was_deleted_meanwhile_is_not_kept() {
    let state = state().await;
    let owner = UserId::parse(&new_user()).unwrap();
    let conversations = state.conversations.clone();
    let id = conversations
        .create(&owner, None, Default::default(), chrono::Utc::now())
        .await
        .unwrap()
        .id;
    let say = |role: Role, content: &str| {
        NewMessage::parse(role, content.to_owned(), vec![], Default::default(), None).unwrap()
    };
    let question = conversations
        .add_message(
            &owner,
            &id,
            say(Role::User, "a question"),
            chrono::Utc::now(),
        )
        .await
        .unwrap()
        .message;
    conversations
        .delete_message(
            &owner,
            &id,
            &question.id,
            std::time::Duration::from_secs(10),
        )
        .await
        .unwrap();
    let kept = conversations
        .add_reply(
            &owner,
            &id,
            &question,
            say(Role::Assistant, "an answer"),
            chrono::Utc::now(),
        )
        .await;
    assert!(
        matches!(kept, Err(shared::error::Error::NotFound)),
        "{kept:?}"
    );
    let read = conversations.get(&owner, &id, 10, None).await.unwrap();
    assert!(read.messages.is_empty());
    assert_eq!(read.conversation.message_count, 0);
}

#[tokio::test]
async fn a_regenerated_reply_hears_no_summary_of_what_came_after_it() {
    let server = ChatServer::start(ChatBehaviour::Answer).await;
    let (api, mut poller) = tests::api_feeding(
        local::StreamConsumer::SummarizeConversations,
        &[
            ("MODEL_PROVIDER", "openai"),
            ("OPENAI_BASE_URL", &server.base_url),
            ("MODEL_ID", "test-model"),
            ("SUMMARY_EVERY_MESSAGES", "2"),
        ],
    )
    .await;
    let alice = api.as_user(&new_user());
    let id = alice.create_conversation(None).await;
    let first = alice
        .post(
            "/completion",
            json!({"prompt": "name a fruit", "conversationId": id}),
        )
        .await;
    assert_eq!(first.status, StatusCode::OK, "{:?}", first.body);
    alice.say(&id, "and a vegetable: the turnip").await;
    poller.poll_once().await.unwrap();
    let summarized = alice.get(&format!("/conversations/{id}")).await;
    assert!(
        summarized.body["summary"]
            .as_str()
            .is_some_and(|s| s.contains("turnip")),
        "{:?}",
        summarized.body
    );
    let again = alice
        .post(
            "/completion",
            json!({"regenerate": first.body["replyMessageId"], "conversationId": id}),
        )
        .await;
    assert_eq!(again.status, StatusCode::OK, "{:?}", again.body);
    let heard = server.requests().last().unwrap().to_string();
    assert!(heard.contains("name a fruit"), "{heard}");
    assert!(
        !heard.contains("turnip"),
        "a later message reached the model: {heard}"
    );
}

#[tokio::test]
async fn a_json_export_keeps_the_whole_tree_and_imports_back_the_same() {
    let api = LocalApi::start().await;
    let user = new_user();
    let alice = api.as_user(&user);
    let id = alice.create_conversation(Some("A tree")).await;
    let one = alice.say(&id, "one").await;
    let two = alice.say(&id, "two").await;
    reply(&alice, &id, "a reply to two").await;
    let better = edit(&alice, &id, &two, "two, better").await;
    reply(&alice, &id, "a reply to the better two").await;
    switch(&alice, &id, json!({"messageId": two["id"]})).await;
    alice.say(&id, "three, after the first two").await;
    edit(&alice, &id, &one, "one, said again").await;
    switch(&alice, &id, json!({"messageId": better["id"]})).await;
    let shown_before = shown(&alice, &id).await;
    assert_eq!(
        shown_before,
        [
            "one [1/2]",
            "two, better [2/2]",
            "a reply to the better two"
        ]
    );

    let file: shared::export::ConversationExport =
        serde_json::from_str(&exported(&api, &user, &id, "json").await).unwrap();
    let contents = |messages: &[shared::export::ExportedMessage]| -> Vec<String> {
        messages.iter().map(|m| m.content.clone()).collect()
    };
    assert_eq!(
        contents(&file.messages),
        ["one", "two, better", "a reply to the better two"]
    );
    let runs: Vec<(Option<String>, Vec<String>)> = file
        .branches
        .iter()
        .map(|b| (b.parent_id.map(|p| p.to_string()), contents(&b.messages)))
        .collect();
    assert_eq!(
        runs,
        [
            (
                Some(one["id"].as_str().unwrap().to_owned()),
                vec![
                    "two".to_owned(),
                    "a reply to two".to_owned(),
                    "three, after the first two".to_owned()
                ]
            ),
            (None, vec!["one, said again".to_owned()]),
        ]
    );
    assert_eq!(file.conversation.message_count, 7);

    // Into another deployment's table: the same file comes out, every message kept once.
    let elsewhere = LocalApi::start().await;
    let owner = UserId::parse(&user).unwrap();
    let imported = elsewhere
        .state
        .exports
        .import_conversation(&owner, &file)
        .await
        .unwrap();
    assert_eq!(imported.messages_stored, 7);
    let again: shared::export::ConversationExport =
        serde_json::from_str(&exported(&elsewhere, &user, &id, "json").await).unwrap();
    assert_eq!(again.conversation, file.conversation);
    assert_eq!(again.messages, file.messages);
    assert_eq!(again.branches, file.branches);
    let repeated = elsewhere
        .state
        .exports
        .import_conversation(&owner, &file)
        .await
        .unwrap();
    assert_eq!(repeated.messages_stored, 0);
    assert_eq!(repeated.messages_already_present, 7);
    let there = elsewhere.as_user(&user);
    assert_eq!(message_count(&there, &id).await, 7);
    let back = switch(&there, &id, json!({"messageId": two["id"]})).await;
    assert_eq!(
        back,
        [
            "one [1/2]",
            "two [2/2]",
            "a reply to two",
            "three, after the first two"
        ]
    );
}

#[tokio::test]
async fn a_client_message_id_of_a_deleted_message_appends_again() {
    let api = LocalApi::start().await;
    let alice = api.as_user(&new_user());
    let id = alice.create_conversation(None).await;
    alice.say(&id, "one").await;
    let body = json!({"role": "user", "content": "two", "clientMessageId": "c-2"});
    let first = alice
        .post(&format!("/conversations/{id}/messages"), body.clone())
        .await;
    assert_eq!(first.status, StatusCode::CREATED);
    let deleted = alice
        .delete(&format!(
            "/conversations/{id}/messages/{}",
            first.body["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    // The same id sent again (an app that never saw the first answer): stored, no error.
    let again = alice
        .post(&format!("/conversations/{id}/messages"), body)
        .await;
    assert_eq!(again.status, StatusCode::CREATED, "{:?}", again.body);
    assert_eq!(shown(&alice, &id).await, ["one", "two"]);
    assert_eq!(message_count(&alice, &id).await, 2);
}

#[tokio::test]
async fn messages_a_migration_moves_into_a_branched_conversation_go_on_its_active_branch() {
    let api = LocalApi::start().await;
    let user = new_user();
    let alice = api.as_user(&user);
    let id = alice.create_conversation(None).await;
    alice.say(&id, "one").await;
    let two = alice.say(&id, "two").await;
    edit(&alice, &id, &two, "two, edited").await;
    // Through the migration's writer (held short-term memory, an old app's session, an
    // import into the conversation): after the branch shown, whatever their times.
    tests::append_directly(
        &api.state,
        &user,
        &id,
        ["moved in".to_owned()],
        chrono::Utc::now() - chrono::Duration::hours(1),
    )
    .await;
    assert_eq!(
        shown(&alice, &id).await,
        ["one", "two, edited [2/2]", "moved in"]
    );
    assert_eq!(message_count(&alice, &id).await, 4);
    let back = switch(&alice, &id, json!({"messageId": two["id"]})).await;
    assert_eq!(back, ["one", "two [1/2]"]);
}

#[tokio::test]
async fn a_branch_left_forked_at_a_deleted_message_is_left_out_of_exports_not_a_failure() {
    let api = LocalApi::start().await;
    let user = new_user();
    let alice = api.as_user(&user);
    let id = alice.create_conversation(None).await;
    alice.say(&id, "one").await;
    let two = alice.say(&id, "two").await;
    let three = alice.say(&id, "three").await;
    edit(&alice, &id, &three, "three, edited").await;
    switch(&alice, &id, json!({"messageId": three["id"]})).await;
    // What a delete of "two" racing an edit of "three" left before edits checked their
    // parent: "two" and "three" gone, the branch forked at "two" still there.
    for message in [&two, &three] {
        tests::remove_message_item(&api.state, &user, &id, message["id"].as_str().unwrap()).await;
    }
    let file: Value = serde_json::from_str(&exported(&api, &user, &id, "json").await).unwrap();
    let kept: Vec<&str> = file["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(kept, ["one"]);
    assert!(
        file["branches"].as_array().is_none_or(Vec::is_empty),
        "{file}"
    );
}

#[tokio::test]
async fn an_import_stopped_inside_a_run_goes_on_from_where_it_stopped_when_run_again() {
    let api = LocalApi::start().await;
    let user = new_user();
    let alice = api.as_user(&user);
    let id = alice.create_conversation(None).await;
    alice.say(&id, "root").await;
    let mut trunk = Vec::new();
    for n in 0..100 {
        trunk.push(alice.say(&id, &format!("m{n}")).await);
    }
    // The run off the path is the trunk after "root" (100 messages, more than a transaction
    // puts back); a second run forks inside it, at m95.
    let again = edit(&alice, &id, &trunk[0], "m0, again").await;
    switch(&alice, &id, json!({"messageId": trunk[96]["id"]})).await;
    edit(&alice, &id, &trunk[96], "m96, again").await;
    switch(&alice, &id, json!({"messageId": again["id"]})).await;
    let file: shared::export::ConversationExport =
        serde_json::from_str(&exported(&api, &user, &id, "json").await).unwrap();
    let runs: Vec<usize> = file.branches.iter().map(|b| b.messages.len()).collect();
    assert_eq!(runs, [100, 1]);

    // What an import that stopped after the first run's first transaction left.
    let elsewhere = LocalApi::start().await;
    let owner = UserId::parse(&user).unwrap();
    let mut stopped = file.clone();
    stopped.branches.truncate(1);
    stopped.branches[0].messages.truncate(89);
    let first = elsewhere
        .state
        .exports
        .import_conversation(&owner, &stopped)
        .await
        .unwrap();
    assert_eq!(first.messages_stored, 2 + 89);

    // Run again with the whole file: the rest of the run, then the run forked inside it.
    let rest = elsewhere
        .state
        .exports
        .import_conversation(&owner, &file)
        .await
        .unwrap();
    assert_eq!(rest.messages_stored, (100 - 89) + 1);
    assert_eq!(rest.messages_already_present, 2 + 89);
    let back: shared::export::ConversationExport =
        serde_json::from_str(&exported(&elsewhere, &user, &id, "json").await).unwrap();
    assert_eq!(back.messages, file.messages);
    assert_eq!(back.branches, file.branches);
    assert_eq!(
        message_count(&elsewhere.as_user(&user), &id).await,
        2 + 100 + 1
    );
}
