//! The local runner feeds the table's stream to the stream functions as Lambda's event
//! source mappings do, with the template's filter patterns: what each function gets here is
//! what it gets in AWS.

use aws_lambda_events::event::dynamodb::EventRecord;
use local::streams::matches_filters;
use local::{StreamConsumer, StreamPoller};
use reqwest::StatusCode;
use tests::{items_of_conversation, new_user, template, LocalApi};

fn record(event_name: &str, pk: &str, sk: &str) -> EventRecord {
    let mut record = EventRecord::default();
    record.event_name = event_name.to_owned();
    record.change.keys =
        serde_dynamo::to_item(serde_json::json!({"PK": pk, "SK": sk})).expect("keys as an item");
    record
}

#[test]
fn the_stream_readers_are_sent_only_the_records_their_template_filters_let_through() {
    let subscriptions = template().stream_subscriptions().unwrap();
    let filters_of = |binary: &str| {
        subscriptions
            .iter()
            .find(|s| s.binary == binary)
            .unwrap_or_else(|| panic!("{binary} reads the stream"))
            .filters
            .clone()
    };
    let conversation = "USER#u#CONV#c";
    let message = record(
        "INSERT",
        conversation,
        "MESSAGE#2026-11-25T00:00:00.000000Z#m",
    );
    let meta_insert = record("INSERT", conversation, "META");
    let meta_modify = record("MODIFY", conversation, "META");
    let meta_remove = record("REMOVE", conversation, "META");
    let search_entry = record("INSERT", conversation, "TERM#ferry");
    let memory = record("INSERT", "USER#u#MEMORY", "MEMORY#2026#m");
    let mut running_export = record("MODIFY", "USER#u#EXPORT", "EXPORT#e");
    running_export.change.new_image =
        serde_dynamo::to_item(serde_json::json!({"status": "running"})).unwrap();
    let mut held_memory = record("INSERT", "USER#u#MEMORY", "MEMORY#2026#m");
    held_memory.change.new_image =
        serde_dynamo::to_item(serde_json::json!({"held": true})).unwrap();
    let mut finished_export = running_export.clone();
    finished_export.change.new_image =
        serde_dynamo::to_item(serde_json::json!({"status": "done"})).unwrap();

    // The dispatcher is sent exactly the changes some background function acts on.
    let dispatcher = filters_of("dispatch-table-changes");
    for each in [
        &message,
        &meta_insert,
        &meta_modify,
        &meta_remove,
        &search_entry,
        &memory,
        &running_export,
        &finished_export,
        &held_memory,
    ] {
        assert_eq!(
            matches_filters(&dispatcher, each),
            !shared::table_changes::route(each).is_empty(),
            "{each:?}"
        );
    }
    assert!(matches_filters(&dispatcher, &running_export));
    assert!(matches_filters(&dispatcher, &held_memory));
    assert!(!matches_filters(&dispatcher, &search_entry));

    let invalidate = filters_of("invalidate-cached-reads");
    for wanted in [&message, &meta_modify, &meta_remove] {
        assert!(matches_filters(&invalidate, wanted), "{wanted:?}");
    }
    // The index's own writes change nothing a cache holds.
    assert!(!matches_filters(&invalidate, &search_entry));
}

#[tokio::test]
async fn a_delete_reaches_the_purge_function_through_the_stream() {
    let api = LocalApi::start().await;
    let mut poller = StreamPoller::from_latest(
        api.state.clone(),
        &template(),
        Some(&[StreamConsumer::PurgeDeletedConversations]),
    )
    .await
    .unwrap();
    let user = new_user();
    let client = api.as_user(&user);
    let id = client.create_conversation(Some("To be deleted")).await;
    for i in 0..30 {
        client.say(&id, &format!("message {i}")).await;
    }
    // A conversation item removed without its messages, as a delete that ran out of time
    // leaves it: the stream's purge function removes the rest.
    let owner = shared::model::UserId::parse(&user).unwrap();
    let conversation = shared::model::ConversationId::parse(&id).unwrap();
    api.state
        .conversations
        .delete(
            &owner,
            &conversation,
            chrono::Utc::now(),
            std::time::Duration::ZERO,
        )
        .await
        .unwrap();
    assert!(!items_of_conversation(&api.state, &user, &id)
        .await
        .is_empty());
    poller.poll_once().await.unwrap();
    assert_eq!(items_of_conversation(&api.state, &user, &id).await, vec![]);
    assert_eq!(
        client.get(&format!("/conversations/{id}")).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn the_stream_keeps_flowing_after_a_cancelled_transaction() {
    let api = LocalApi::start().await;
    let mut poller = StreamPoller::from_latest(
        api.state.clone(),
        &template(),
        Some(&[StreamConsumer::IndexForSearch]),
    )
    .await
    .unwrap();
    let client = api.as_user(&new_user());
    let gone = client.create_conversation(None).await;
    assert_eq!(
        client
            .delete(&format!("/conversations/{gone}"))
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    // An append to it is a transaction DynamoDB cancels (its condition fails).
    let refused = client
        .post(
            &format!("/conversations/{gone}/messages"),
            serde_json::json!({"role": "user", "content": "hello"}),
        )
        .await;
    assert_eq!(refused.status, StatusCode::NOT_FOUND);
    let id = client.create_conversation(Some("Afterwards")).await;
    client.say(&id, "A unicorn walked in").await;
    poller.poll_once().await.unwrap();
    let found = client.get("/search?q=unicorn").await;
    assert_eq!(found.body["results"][0]["conversation"]["id"], id.as_str());
}
