//! Appends under concurrency and retries: the count never drifts, nothing is stored twice.

use std::collections::HashSet;

use chrono::SubsecRound;
use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::json;
use tests::{new_user, LocalApi};

#[tokio::test]
async fn twenty_concurrent_appends_are_each_stored_once_and_counted_exactly() {
    let api = LocalApi::start().await;
    let alice = api.as_user(&new_user());
    let id = alice.create_conversation(Some("Busy")).await;

    let replies = join_all((0..20).map(|i| {
        let alice = alice.clone();
        let path = format!("/conversations/{id}/messages");
        async move {
            alice
                .post(
                    &path,
                    json!({"role": "user", "content": format!("parallel {i}")}),
                )
                .await
        }
    }))
    .await;
    for reply in &replies {
        assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    }

    let got = alice
        .get(&format!("/conversations/{id}?messageLimit=200"))
        .await;
    assert_eq!(got.body["messageCount"], 20);
    let contents: HashSet<&str> = got.body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    let expected: HashSet<String> = (0..20).map(|i| format!("parallel {i}")).collect();
    assert_eq!(contents, expected.iter().map(String::as_str).collect());
    assert_eq!(got.body["messages"].as_array().unwrap().len(), 20);
}

#[tokio::test]
async fn appending_is_idempotent_for_a_repeated_client_message_id() {
    let api = LocalApi::start().await;
    let alice = api.as_user(&new_user());
    let id = alice.create_conversation(Some("Flaky network")).await;
    let path = format!("/conversations/{id}/messages");
    let body = json!({"role": "user", "content": "sent twice", "clientMessageId": "phone-42"});

    let first = alice.post(&path, body.clone()).await;
    assert_eq!(first.status, StatusCode::CREATED);
    let retry = alice.post(&path, body.clone()).await;
    assert_eq!(retry.status, StatusCode::OK);
    assert_eq!(retry.body, first.body);

    let got = alice.get(&format!("/conversations/{id}")).await;
    assert_eq!(got.body["messageCount"], 1);
    assert_eq!(got.body["messages"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn simultaneous_retries_of_one_append_store_one_message() {
    let api = LocalApi::start().await;
    let alice = api.as_user(&new_user());
    let id = alice.create_conversation(Some("Retry storm")).await;
    let path = format!("/conversations/{id}/messages");
    let body = json!({"role": "user", "content": "once", "clientMessageId": "storm-1"});

    let replies = join_all((0..5).map(|_| alice.post(&path, body.clone()))).await;
    let ids: HashSet<&str> = replies
        .iter()
        .map(|r| r.body["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids.len(),
        1,
        "every retry answers with the one stored message"
    );
    assert_eq!(
        replies
            .iter()
            .filter(|r| r.status == StatusCode::CREATED)
            .count(),
        1
    );

    let got = alice.get(&format!("/conversations/{id}")).await;
    assert_eq!(got.body["messageCount"], 1);
    assert_eq!(got.body["messages"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn appending_to_a_missing_conversation_is_not_found_and_stores_nothing() {
    let api = LocalApi::start().await;
    let user = new_user();
    let alice = api.as_user(&user);
    let missing = uuid::Uuid::new_v4().to_string();
    let reply = alice
        .post(
            &format!("/conversations/{missing}/messages"),
            json!({"role": "user", "content": "hello?"}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert!(tests::items_of_conversation(&api.state, &user, &missing)
        .await
        .is_empty());
}

#[tokio::test]
async fn a_message_sent_later_keeps_the_time_the_user_wrote_it_and_the_servers_order() {
    let api = LocalApi::start().await;
    let alice = api.as_user(&new_user());
    let id = alice.create_conversation(Some("On the plane")).await;
    let path = format!("/conversations/{id}/messages");
    let sent_from = chrono::Utc::now();

    // Written offline an hour apart, the later one sent first; then one written now.
    let later = alice
        .post(
            &path,
            json!({"role": "user", "content": "landed", "clientTimestamp": "2026-11-30T09:15:30.250Z"}),
        )
        .await;
    assert_eq!(later.status, StatusCode::CREATED, "{:?}", later.body);
    assert_eq!(later.body["clientTimestamp"], "2026-11-30T09:15:30.250Z");
    let earlier = alice
        .post(
            &path,
            // Another zone and more precision: kept as the same instant, to the millisecond.
            json!({"role": "user", "content": "boarding", "clientTimestamp": "2026-11-30T09:15:30.123456+01:00"}),
        )
        .await;
    assert_eq!(earlier.body["clientTimestamp"], "2026-11-30T08:15:30.123Z");
    let now = alice
        .post(&path, json!({"role": "user", "content": "home"}))
        .await;
    assert!(now.body.get("clientTimestamp").is_none(), "{:?}", now.body);
    // A device clock ahead of the server's: never later than the message arrived.
    let ahead = (chrono::Utc::now() + chrono::Duration::days(1)).to_rfc3339();
    let future = alice
        .post(
            &path,
            json!({"role": "user", "content": "from the future", "clientTimestamp": ahead}),
        )
        .await;
    assert_eq!(future.status, StatusCode::CREATED);
    let kept: chrono::DateTime<chrono::Utc> = future.body["clientTimestamp"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let arrived: chrono::DateTime<chrono::Utc> =
        future.body["timestamp"].as_str().unwrap().parse().unwrap();
    assert!(kept <= arrived, "{kept} after {arrived}");

    // Read back in the order the server took them, each with the time its user wrote it.
    let got = alice.get(&format!("/conversations/{id}")).await;
    let messages = got.body["messages"].as_array().unwrap();
    let contents: Vec<&str> = messages
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(contents, ["landed", "boarding", "home", "from the future"]);
    assert_eq!(messages[0]["clientTimestamp"], "2026-11-30T09:15:30.250Z");
    assert_eq!(messages[1]["clientTimestamp"], "2026-11-30T08:15:30.123Z");
    assert!(messages[2].get("clientTimestamp").is_none());
    for message in messages {
        let server: chrono::DateTime<chrono::Utc> =
            message["timestamp"].as_str().unwrap().parse().unwrap();
        assert!(server >= sent_from.trunc_subsecs(3), "{message:?}");
    }
    // A repeat of a message with its client id answers the time first kept.
    let body = json!({"role": "user", "content": "again", "clientMessageId": "p-1", "clientTimestamp": "2026-11-29T10:00:00Z"});
    let first = alice.post(&path, body.clone()).await;
    let repeat = alice.post(&path, body).await;
    assert_eq!(repeat.status, StatusCode::OK);
    assert_eq!(repeat.body, first.body);
    assert_eq!(repeat.body["clientTimestamp"], "2026-11-29T10:00:00.000Z");
}
