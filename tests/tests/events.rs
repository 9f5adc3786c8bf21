//! Every API Gateway event in `events/` (the ones `sam local invoke -e` uses) through the
//! handler its function runs, parsed by `lambda_http` exactly as in Lambda.

use assistant::State;
use chrono::Utc;
use lambda_http::http::StatusCode;
use lambda_http::Body;
use lambda_runtime::LambdaEvent;
use local::Endpoint;
use shared::model::{Conversation, UserId};
use shared::search::SearchQuery;
use shared::streams::{index_for_search, purge_deleted_conversations};
use std::time::Duration;
use tests::{
    conversation_saying, first_message_of, items_of_conversation, new_user, state, workspace_root,
    EVENT_MESSAGE,
};

/// The user and conversation the event files name; each run swaps in fresh ones.
const EVENT_USER: &str = "3f1c9a7e-0b7d-4f8e-9d61-2a9c2a0c1b11";
const EVENT_CONVERSATION: &str = "0193a4f2-7c1e-7b3a-9f00-5e2d1c4b6a77";
/// The account export the export events name.
const EVENT_EXPORT: &str = "0193a4f2-7c1e-7b3a-9f00-5e2d1c4b6a79";

/// A conversation of `user`'s with `messages` user messages.
async fn conversation_with_messages(state: &State, user: &str, messages: usize) -> Conversation {
    conversation_saying(state, user, (0..messages).map(|i| format!("message {i}"))).await
}

fn expected_status(endpoint: Endpoint) -> StatusCode {
    match endpoint {
        Endpoint::CreateConversation
        | Endpoint::AddMessage
        | Endpoint::EditMessage
        | Endpoint::CreateAttachmentUpload
        | Endpoint::ShareConversation
        | Endpoint::ContinueShared
        | Endpoint::CreatePreset => StatusCode::CREATED,
        Endpoint::DeleteConversation
        | Endpoint::DeleteMessage
        | Endpoint::RevokeShare
        | Endpoint::UnshareWithPerson
        | Endpoint::DeclineSharedWithMe
        | Endpoint::DeletePreset => StatusCode::NO_CONTENT,
        Endpoint::ExportConversation => StatusCode::SEE_OTHER,
        Endpoint::StartAccountExport => StatusCode::ACCEPTED,
        _ => StatusCode::OK,
    }
}

/// The id of an export started for `user`.
async fn started_export(state: &State, user: &str) -> uuid::Uuid {
    let request = shared::account_export::ExportRequest::parse(Default::default()).unwrap();
    let (job, _) = state
        .account_exports
        .start(&UserId::parse(user).unwrap(), request, chrono::Utc::now())
        .await
        .unwrap();
    job.export_id
}

#[tokio::test]
async fn every_event_file_runs_through_its_functions_handler() {
    let state = state().await;
    let mut files: Vec<_> = std::fs::read_dir(workspace_root().join("events"))
        .expect("events/ exists")
        .map(|entry| entry.expect("readable").path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();

    let mut api_events = 0;
    for path in files {
        let binary = path.file_stem().unwrap().to_str().unwrap();
        let Some(endpoint) = Endpoint::for_binary(binary) else {
            continue; // not behind the HTTP API: the table stream event (below) and the
                      // streaming Function URL event (tests/streaming_url.rs)
        };
        api_events += 1;

        let user = new_user();
        let conversation = conversation_with_messages(&state, &user, 1).await;

        let first_message = first_message_of(&state, &user, &conversation.id).await;
        let mut text = std::fs::read_to_string(&path)
            .unwrap()
            .replace(EVENT_USER, &user)
            .replace(EVENT_CONVERSATION, &conversation.id.to_string())
            .replace(EVENT_MESSAGE, &first_message);
        // On the heap: this test's future holds every step's.
        text = Box::pin(tests::with_placeholders(
            &state,
            text,
            &user,
            &conversation.id,
        ))
        .await;
        if endpoint == Endpoint::GetAccountExport {
            // The export the event asks about: one of this user's.
            let export = started_export(&state, &user).await;
            text = text.replace(EVENT_EXPORT, &export.to_string());
        }
        let request =
            lambda_http::request::from_str(&text).unwrap_or_else(|e| panic!("{binary}: {e}"));
        let response = endpoint.call(&state, request).await;
        let body = match response.body() {
            Body::Text(text) => text.clone(),
            _ => String::new(),
        };
        assert_eq!(
            response.status(),
            expected_status(endpoint),
            "{binary}: {body}"
        );
    }
    assert_eq!(api_events, 39, "one event per HTTP function");
}

#[tokio::test]
async fn the_stream_event_of_a_deleted_conversation_purges_what_the_request_left() {
    let state = state().await;
    let user = new_user();
    let owner = UserId::parse(&user).unwrap();
    let conversation = conversation_with_messages(&state, &user, 60).await;
    // A delete whose request ran out of purge budget at once: only the conversation item went.
    let deleted = state
        .conversations
        .delete(&owner, &conversation.id, Utc::now(), Duration::ZERO)
        .await
        .unwrap();
    assert!(!deleted.messages_purged);
    let id = conversation.id.to_string();
    assert!(!items_of_conversation(&state, &user, &id).await.is_empty());

    let text =
        std::fs::read_to_string(workspace_root().join("events/purge-deleted-conversations.json"))
            .unwrap()
            .replace(EVENT_USER, &user)
            .replace(EVENT_CONVERSATION, &id);
    let payload = serde_json::from_str(&text).unwrap();
    let mut context = lambda_runtime::Context::default();
    context.deadline = (Utc::now().timestamp_millis() + 60_000) as u64;
    let response =
        shared::table_changes::from_queue(LambdaEvent::new(payload, context), |changes| {
            purge_deleted_conversations(&state, changes)
        })
        .await
        .unwrap();
    assert!(response.batch_item_failures.is_empty());
    assert!(items_of_conversation(&state, &user, &id).await.is_empty());
}

#[tokio::test]
async fn the_stream_event_of_a_new_message_makes_it_searchable() {
    let state = state().await;
    let user = new_user();
    let owner = UserId::parse(&user).unwrap();
    let conversation = conversation_with_messages(&state, &user, 0).await;
    let id = conversation.id.to_string();
    let text = std::fs::read_to_string(workspace_root().join("events/index-for-search.json"))
        .unwrap()
        .replace(EVENT_USER, &user)
        .replace(EVENT_CONVERSATION, &id);
    let payload: serde_json::Value = serde_json::from_str(&text).unwrap();
    // The message the event reports was written: the table holds it.
    let body: serde_json::Value =
        serde_json::from_str(payload["Records"][0]["body"].as_str().unwrap()).unwrap();
    let image: serde_dynamo::Item =
        serde_json::from_value(body["dynamodb"]["NewImage"].clone()).unwrap();
    aws_sdk_dynamodb::Client::new(&aws_config::load_from_env().await)
        .put_item()
        .table_name(&state.config.table_name)
        .set_item(Some(image.into()))
        .send()
        .await
        .unwrap();
    let response = shared::table_changes::from_queue(
        LambdaEvent::new(
            serde_json::from_value(payload).unwrap(),
            lambda_runtime::Context::default(),
        ),
        |changes| index_for_search(&state, changes),
    )
    .await
    .expect("the event is indexed");
    assert!(response.batch_item_failures.is_empty());

    let query = SearchQuery::parse("last ferry").unwrap();
    let found = state.search.search(&owner, &query, 10, None).await.unwrap();
    assert_eq!(found.hits.len(), 1);
    assert_eq!(found.hits[0].conversation.id, conversation.id);
    assert!(found.hits[0].snippet.contains("last ferry"));
}
