//! Exporting one conversation: the whole of it, oldest message first, as JSON (the format an
//! import reads) or Markdown, written to the bucket in parts and answered with a link; only
//! ever the caller's own.

use chrono::{Duration, SubsecRound, Utc};
use reqwest::StatusCode;
use serde_json::{json, Value};
use shared::export::ConversationExport;
use shared::model::{MessageId, UserId};
use tests::{append_directly, new_user, LocalApi};

struct Exported {
    status: StatusCode,
    location: Option<String>,
    body: Value,
}

/// `GET /conversations/{id}/export` without following the redirect.
async fn export(api: &LocalApi, user: &str, id: &str, query: &str) -> Exported {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = client
        .get(format!("{}/conversations/{id}/export{query}", api.base))
        .bearer_auth(api.tokens.mint(user, 3600))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let location = response
        .headers()
        .get("location")
        .map(|l| l.to_str().unwrap().to_owned());
    let body = response.json().await.unwrap_or(Value::Null);
    Exported {
        status,
        location,
        body,
    }
}

async fn download(url: &str) -> String {
    let response = reqwest::get(url).await.expect("the link answers");
    assert_eq!(response.status(), StatusCode::OK);
    response.text().await.unwrap()
}

#[tokio::test]
async fn a_json_export_holds_the_whole_conversation_as_stored() {
    let api = LocalApi::start().await;
    let user = new_user();
    let client = api.as_user(&user);
    let id = client.create_conversation(Some("Trip to Lisbon")).await;
    client.say(&id, "Where should we eat?").await;
    let with_extras = client
        .post(
            &format!("/conversations/{id}/messages"),
            json!({"role": "assistant", "content": "Try the bakery.\nIt opens at 7.",
                   "attachments": ["https://example.com/map.png"],
                   "metadata": {"model": "local", "tokens": 12}, "clientMessageId": "c-2",
                   "clientTimestamp": "2026-11-30T07:00:00.500123Z"}),
        )
        .await;
    assert_eq!(with_extras.status, StatusCode::CREATED);

    let exported = export(&api, &user, &id, "?format=json").await;
    assert_eq!(
        exported.status,
        StatusCode::SEE_OTHER,
        "{:?}",
        exported.body
    );
    let url = exported.location.expect("a Location");
    assert_eq!(exported.body["downloadUrl"], url.as_str());
    assert_eq!(exported.body["messageCount"], 2);
    assert_eq!(exported.body["format"], "json");

    let file: ConversationExport = serde_json::from_str(&download(&url).await).unwrap();
    assert_eq!(file.format_version, 1);
    assert_eq!(file.conversation.id.to_string(), id);
    assert_eq!(file.conversation.title, "Trip to Lisbon");
    assert_eq!(file.conversation.message_count, 2);
    let stored = client.get(&format!("/conversations/{id}")).await.body;
    let contents: Vec<&str> = file.messages.iter().map(|m| m.content.as_str()).collect();
    assert_eq!(
        contents,
        ["Where should we eat?", "Try the bakery.\nIt opens at 7."]
    );
    for (exported, stored) in file
        .messages
        .iter()
        .zip(stored["messages"].as_array().unwrap())
    {
        assert_eq!(exported.id.to_string(), stored["id"].as_str().unwrap());
    }
    assert_eq!(
        serde_json::to_value(&file.messages[1].attachments).unwrap(),
        json!(["https://example.com/map.png"])
    );
    assert_eq!(
        file.messages[1].metadata,
        serde_json::from_value(json!({"model": "local", "tokens": 12})).unwrap()
    );
    assert_eq!(file.messages[1].client_message_id.as_deref(), Some("c-2"));
    // Kept to the millisecond, as the API shows it.
    assert_eq!(
        file.messages[1].client_timestamp,
        Some("2026-11-30T07:00:00.500Z".parse().unwrap())
    );
    assert_eq!(file.messages[0].client_timestamp, None);
}

#[tokio::test]
async fn a_markdown_export_reads_as_the_conversation() {
    let api = LocalApi::start().await;
    let user = new_user();
    let client = api.as_user(&user);
    let id = client.create_conversation(Some("Recipes")).await;
    client.say(&id, "How long do I knead the dough?").await;
    client.say(&id, "And how long does it rise?").await;

    let exported = export(&api, &user, &id, "?format=markdown").await;
    assert_eq!(
        exported.status,
        StatusCode::SEE_OTHER,
        "{:?}",
        exported.body
    );
    let text = download(&exported.location.unwrap()).await;
    assert!(text.starts_with("# Recipes\n"), "{text}");
    let knead = text.find("How long do I knead the dough?").unwrap();
    let rise = text.find("And how long does it rise?").unwrap();
    assert!(knead < rise);
    assert_eq!(text.matches("**User**").count(), 2);
}

#[tokio::test]
async fn a_long_conversation_is_exported_whole_in_parts() {
    let api = LocalApi::start().await;
    let user = new_user();
    let client = api.as_user(&user);
    let id = client.create_conversation(Some("Long")).await;
    // 1,500 messages of 8 KB: 12 MB of content, more than one 8 MiB part and twice what
    // a Lambda response could carry.
    let contents = (0..1500).map(|n| format!("{n:05} {}", "x".repeat(8_000)));
    let messages = append_directly(
        &api.state,
        &user,
        &id,
        contents,
        Utc::now() - Duration::hours(1),
    )
    .await;
    let exported = export(&api, &user, &id, "").await;
    assert_eq!(
        exported.status,
        StatusCode::SEE_OTHER,
        "{:?}",
        exported.body
    );
    assert!(exported.body["bytes"].as_u64().unwrap() > 12_000_000);
    let file: ConversationExport =
        serde_json::from_str(&download(&exported.location.unwrap()).await).unwrap();
    assert_eq!(file.messages.len(), 1500);
    let ids: Vec<MessageId> = file.messages.iter().map(|m| m.id).collect();
    let expected: Vec<MessageId> = messages.iter().map(|m| m.id).collect();
    assert_eq!(ids, expected, "every message once, oldest first");
}

#[tokio::test]
async fn only_the_owner_can_export_and_bad_requests_are_400() {
    let api = LocalApi::start().await;
    let (a, b) = (new_user(), new_user());
    let id = api.as_user(&a).create_conversation(Some("Mine")).await;

    let theirs = export(&api, &b, &id, "").await;
    assert_eq!(theirs.status, StatusCode::NOT_FOUND);
    let nobodys = export(&api, &b, &uuid::Uuid::new_v4().to_string(), "").await;
    assert_eq!(theirs.body, nobodys.body);
    assert!(theirs.location.is_none());

    let bad_format = export(&api, &a, &id, "?format=pdf").await;
    assert_eq!(bad_format.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad_format.body["error"]["code"], "invalid_request");
    let bad_id = export(&api, &a, "not-an-id", "").await;
    assert_eq!(bad_id.status, StatusCode::BAD_REQUEST);
    let anonymous = api
        .anonymous()
        .get(&format!("/conversations/{id}/export"))
        .await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn an_export_imported_elsewhere_exports_the_same() {
    let api = LocalApi::start().await;
    let user = new_user();
    let client = api.as_user(&user);
    let id = client.create_conversation(Some("Garden plans")).await;
    client.say(&id, "Which roses grow in shade?").await;
    client
        .post(
            &format!("/conversations/{id}/messages"),
            json!({"role": "assistant", "content": "A few climbers do. \"Quote\" and émoji 🌹",
                   "attachments": ["https://example.com/rose.jpg"],
                   "metadata": {"sources": ["a", "b"], "score": 0.5}, "clientMessageId": "m-2",
                   "clientTimestamp": "2026-11-30T07:00:00Z"}),
        )
        .await;
    let long = format!("Notes: {}", "soil ".repeat(10_000)); // kept in S3, read back
    client.say(&id, &long).await;
    client
        .put(
            &format!("/conversations/{id}/tags"),
            json!({"tags": ["garden", "spring"]}),
        )
        .await;
    client
        .put(
            &format!("/conversations/{id}/archive"),
            json!({"archived": true}),
        )
        .await;
    let exported = export(&api, &user, &id, "").await;
    let first: ConversationExport =
        serde_json::from_str(&download(&exported.location.unwrap()).await).unwrap();
    assert!(first.messages[1].client_timestamp.is_some());

    // Into another deployment's table (a restore, a move): the same conversation comes out.
    let elsewhere = LocalApi::start().await;
    let owner = UserId::parse(&user).unwrap();
    let imported = elsewhere
        .state
        .exports
        .import_conversation(&owner, &first)
        .await
        .unwrap();
    assert!(imported.created);
    assert_eq!(imported.messages_stored, 3);
    let again = export(&elsewhere, &user, &id, "").await;
    let second: ConversationExport =
        serde_json::from_str(&download(&again.location.unwrap()).await).unwrap();
    assert_eq!(second.conversation, first.conversation);
    assert_eq!(second.messages, first.messages);

    // Importing again stores nothing twice.
    let repeated = elsewhere
        .state
        .exports
        .import_conversation(&owner, &first)
        .await
        .unwrap();
    assert!(!repeated.created);
    assert_eq!(repeated.messages_stored, 0);
    assert_eq!(repeated.messages_already_present, 3);
    let listed = elsewhere
        .as_user(&user)
        .get(&format!("/conversations/{id}"))
        .await;
    assert_eq!(listed.body["messageCount"], 3);
    assert_eq!(listed.body["isArchived"], true);
}

#[tokio::test]
async fn an_imported_file_keeps_client_timestamps_by_the_apis_rule() {
    let api = LocalApi::start().await;
    let user = new_user();
    let client = api.as_user(&user);
    let id = client.create_conversation(Some("Edited by hand")).await;
    client.say(&id, "first").await;
    client.say(&id, "second").await;
    let exported = export(&api, &user, &id, "").await;
    let mut file: ConversationExport =
        serde_json::from_str(&download(&exported.location.unwrap()).await).unwrap();
    // A file changed by hand: a time written after its message arrived, and nanoseconds.
    let arrived = file.messages[0].timestamp;
    file.messages[0].client_timestamp = Some(arrived + Duration::hours(1));
    let written = arrived - Duration::hours(1) + Duration::nanoseconds(987_654_321);
    file.messages[1].client_timestamp = Some(written);

    let elsewhere = LocalApi::start().await;
    let owner = UserId::parse(&user).unwrap();
    elsewhere
        .state
        .exports
        .import_conversation(&owner, &file)
        .await
        .unwrap();
    let again = export(&elsewhere, &user, &id, "").await;
    let imported: ConversationExport =
        serde_json::from_str(&download(&again.location.unwrap()).await).unwrap();
    assert_eq!(
        imported.messages[0].client_timestamp,
        Some(arrived.trunc_subsecs(3)),
        "never after its message arrived"
    );
    assert_eq!(
        imported.messages[1].client_timestamp,
        Some(written.trunc_subsecs(3)),
        "to the millisecond"
    );
}

#[tokio::test]
async fn an_untitled_conversation_keeps_its_derived_title_through_export_and_import() {
    let api = LocalApi::start().await;
    let user = new_user();
    let client = api.as_user(&user);
    let id = client.create_conversation(None).await;
    client.say(&id, "What is the capital of Peru?").await;
    let exported = export(&api, &user, &id, "").await;
    let first: ConversationExport =
        serde_json::from_str(&download(&exported.location.unwrap()).await).unwrap();
    assert_eq!(first.conversation.user_title, None);
    assert_eq!(
        first.conversation.auto_title.as_deref(),
        Some(first.conversation.title.as_str())
    );

    let elsewhere = LocalApi::start().await;
    let owner = UserId::parse(&user).unwrap();
    elsewhere
        .state
        .exports
        .import_conversation(&owner, &first)
        .await
        .unwrap();
    let again = export(&elsewhere, &user, &id, "").await;
    let second: ConversationExport =
        serde_json::from_str(&download(&again.location.unwrap()).await).unwrap();
    assert_eq!(second.conversation, first.conversation);
    assert_eq!(second.messages, first.messages);
    // Still untitled: a rename is still the user's first title.
    let renamed = elsewhere
        .as_user(&user)
        .put(
            &format!("/conversations/{id}/title"),
            json!({"title": "Peru"}),
        )
        .await;
    assert_eq!(renamed.body["title"], "Peru");
}

/// The export objects of one conversation in the bucket.
async fn export_objects(api: &LocalApi, user: &str, id: &str) -> Vec<String> {
    tests::object_keys_under(&api.state, &format!("exports/users/{user}/{id}/")).await
}

#[tokio::test]
async fn exporting_an_unchanged_conversation_again_hands_out_the_same_file() {
    let api = LocalApi::start().await;
    let user = new_user();
    let alice = api.as_user(&user);
    let id = alice.create_conversation(Some("Twice")).await;
    alice.say(&id, "first words").await;

    let first = export(&api, &user, &id, "?format=json").await;
    let again = export(&api, &user, &id, "?format=json").await;
    assert_eq!(again.status, StatusCode::SEE_OTHER);
    assert_eq!(
        export_objects(&api, &user, &id).await.len(),
        1,
        "written once"
    );
    assert_eq!(again.body["bytes"], first.body["bytes"]);
    assert_eq!(again.body["messageCount"], 1);
    let url = again.location.unwrap();
    assert!(download(&url).await.contains("first words"));

    // Another format is another file; a change makes the next export a new one.
    export(&api, &user, &id, "?format=markdown").await;
    alice.say(&id, "second words").await;
    let changed = export(&api, &user, &id, "?format=json").await;
    assert_eq!(changed.body["messageCount"], 2);
    assert!(download(&changed.location.unwrap())
        .await
        .contains("second words"));
    assert_eq!(export_objects(&api, &user, &id).await.len(), 3);
}
