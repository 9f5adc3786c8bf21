//! Attachment uploads against the local S3 server: a presigned upload done with a real HTTP
//! client, uploads only into the caller's own conversations, bad declarations refused, and
//! a deleted conversation's files deleted with it.

use reqwest::StatusCode;
use serde_json::{json, Value};
use shared::keys;
use shared::model::{ConversationId, UserId};
use tests::{new_user, s3, LocalApi};

/// Uploads `bytes` as the upload answer says: its method, URL and headers.
async fn upload(answer: &Value, bytes: Vec<u8>) -> reqwest::StatusCode {
    let target = &answer["upload"];
    let mut request = reqwest::Client::new().request(
        target["method"].as_str().unwrap().parse().unwrap(),
        target["url"].as_str().unwrap(),
    );
    for (name, value) in target["headers"].as_object().unwrap() {
        request = request.header(name, value.as_str().unwrap());
    }
    request.body(bytes).send().await.unwrap().status()
}

async fn objects_under(bucket: &str, prefix: &str) -> Vec<String> {
    s3().await
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .send()
        .await
        .unwrap()
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn a_presigned_upload_lands_under_the_conversation_and_goes_with_it() {
    let api = LocalApi::start().await;
    let user = new_user();
    let alice = api.as_user(&user);
    let id = alice.create_conversation(Some("With a photo")).await;
    let photo: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();

    let answer = alice
        .post(
            &format!("/conversations/{id}/attachments"),
            json!({"fileName": "lisbon.jpg", "contentType": "image/jpeg", "size": photo.len()}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{:?}", answer.body);
    assert_eq!(answer.body["upload"]["method"], "PUT");
    assert_eq!(answer.body["contentType"], "image/jpeg");
    assert!(answer.body["upload"]["expiresAt"].is_string());
    assert_eq!(upload(&answer.body, photo.clone()).await, StatusCode::OK);

    let owner = UserId::parse(&user).unwrap();
    let conversation = ConversationId::parse(&id).unwrap();
    let bucket = api.state.config.attachments_bucket.clone().unwrap();
    let prefix = keys::attachment_prefix(&owner, &conversation);
    let stored = objects_under(&bucket, &prefix).await;
    let attachment_id = answer.body["attachmentId"].as_str().unwrap();
    assert_eq!(stored, [format!("{prefix}attachments/{attachment_id}")]);
    let object = s3()
        .await
        .get_object()
        .bucket(&bucket)
        .key(&stored[0])
        .send()
        .await
        .unwrap();
    assert_eq!(object.content_type(), Some("image/jpeg"));
    let tags = s3()
        .await
        .get_object_tagging()
        .bucket(&bucket)
        .key(&stored[0])
        .send()
        .await
        .unwrap();
    assert_eq!(tags.tag_set()[0].key(), "state");
    assert_eq!(tags.tag_set()[0].value(), "pending");
    let body = object.body.collect().await.unwrap().into_bytes();
    assert_eq!(body.as_ref(), photo.as_slice());

    let deleted = alice.delete(&format!("/conversations/{id}")).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert!(objects_under(&bucket, &prefix).await.is_empty());
}

#[tokio::test]
async fn uploads_go_only_into_the_callers_own_conversations() {
    let api = LocalApi::start().await;
    let (a, b) = (new_user(), new_user());
    let id = api.as_user(&a).create_conversation(None).await;
    let declared = json!({"fileName": "x.png", "contentType": "image/png", "size": 10});

    let bobs = api
        .as_user(&b)
        .post(
            &format!("/conversations/{id}/attachments"),
            declared.clone(),
        )
        .await;
    assert_eq!(bobs.status, StatusCode::NOT_FOUND);
    assert_eq!(bobs.error_code(), "not_found");
    let nobodys = api
        .as_user(&b)
        .post(
            &format!("/conversations/{}/attachments", uuid::Uuid::new_v4()),
            declared,
        )
        .await;
    assert_eq!(
        nobodys.body, bobs.body,
        "the same answer as for no conversation"
    );
    let bucket = api.state.config.attachments_bucket.clone().unwrap();
    assert!(objects_under(&bucket, "users/").await.is_empty());
}

#[tokio::test]
async fn bad_upload_declarations_get_the_error_shape() {
    let api = LocalApi::start().await;
    let alice = api.as_user(&new_user());
    let id = alice.create_conversation(None).await;
    let path = format!("/conversations/{id}/attachments");
    for (body, status) in [
        (
            json!({"fileName": "a.exe", "contentType": "application/x-msdownload", "size": 10}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"fileName": "", "contentType": "image/png", "size": 10}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"fileName": "a/b.png", "contentType": "image/png", "size": 10}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"fileName": "a.png", "contentType": "image/png", "size": 0}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"fileName": "a.png", "contentType": "image/png", "size": -1}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"fileName": "a.png", "contentType": "image/png"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"fileName": "a.png", "contentType": "image/png", "size": 10, "acl": "public-read"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"fileName": "a.png", "contentType": "image/png", "size": 1u64 << 40}),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
    ] {
        let reply = alice.post(&path, body.clone()).await;
        assert_eq!(reply.status, status, "{body}");
        assert!(reply.body["error"]["code"].is_string(), "{body}");
    }
    let bad_id = alice
        .post(
            "/conversations/not-a-uuid/attachments",
            json!({"fileName": "a.png", "contentType": "image/png", "size": 10}),
        )
        .await;
    assert_eq!(bad_id.status, StatusCode::BAD_REQUEST);
}

/// Asks for an upload into the conversation and uploads `bytes`; returns the attachment id.
async fn uploaded(user: &tests::Client, conversation: &str, name: &str, bytes: Vec<u8>) -> String {
    let answer = user
        .post(
            &format!("/conversations/{conversation}/attachments"),
            json!({"fileName": name, "contentType": "image/png", "size": bytes.len()}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{:?}", answer.body);
    assert_eq!(upload(&answer.body, bytes).await, StatusCode::OK);
    answer.body["attachmentId"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_message_references_an_upload_and_readers_get_a_download_url() {
    let api = LocalApi::start().await;
    let user = new_user();
    let alice = api.as_user(&user);
    let id = alice.create_conversation(None).await;
    let picture: Vec<u8> = (0..70_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let attachment = uploaded(&alice, &id, "café menu.png", picture.clone()).await;

    let added = alice
        .post(
            &format!("/conversations/{id}/messages"),
            json!({
                "role": "user",
                "content": "What does this menu say?",
                "attachments": [{"attachmentId": attachment}, "https://example.com/old-style-link"]
            }),
        )
        .await;
    assert_eq!(added.status, StatusCode::CREATED, "{:?}", added.body);
    let file = &added.body["attachments"][0];
    assert_eq!(file["attachmentId"], attachment.as_str());
    assert_eq!(file["fileName"], "café menu.png");
    assert_eq!(file["contentType"], "image/png");
    assert_eq!(file["size"], picture.len());
    assert_eq!(
        added.body["attachments"][1],
        "https://example.com/old-style-link"
    );

    let read = alice.get(&format!("/conversations/{id}")).await;
    let file = &read.body["messages"][0]["attachments"][0];
    let url = file["downloadUrl"].as_str().expect("a download URL");
    assert!(file["downloadExpiresAt"].is_string());
    assert!(url.contains("X-Amz-Signature="), "a presigned URL: {url}");
    let downloaded = reqwest::get(url).await.unwrap();
    assert_eq!(downloaded.status(), StatusCode::OK);
    assert_eq!(
        downloaded.bytes().await.unwrap().as_ref(),
        picture.as_slice()
    );

    // Referenced: the lifecycle rule for unreferenced uploads no longer applies to it.
    let owner = UserId::parse(&user).unwrap();
    let conversation = ConversationId::parse(&id).unwrap();
    let bucket = api.state.config.attachments_bucket.clone().unwrap();
    let key = format!(
        "{}attachments/{attachment}",
        keys::attachment_prefix(&owner, &conversation)
    );
    let tags = s3()
        .await
        .get_object_tagging()
        .bucket(&bucket)
        .key(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(tags.tag_set()[0].value(), "attached");
}

#[tokio::test]
async fn a_reference_to_another_users_or_a_missing_upload_is_refused_and_nothing_is_written() {
    let api = LocalApi::start().await;
    let (a, b) = (new_user(), new_user());
    let alice = api.as_user(&a);
    let bob = api.as_user(&b);
    let alices = alice.create_conversation(None).await;
    let bobs = bob.create_conversation(None).await;
    let bobs_file = uploaded(&bob, &bobs, "private.png", vec![1, 2, 3]).await;
    // Alice's own upload, but into another of her conversations.
    let other = alice.create_conversation(None).await;
    let elsewhere = uploaded(&alice, &other, "elsewhere.png", vec![4, 5, 6]).await;
    let before = tests::items_of_conversation(&api.state, &a, &alices).await;

    for reference in [
        json!({"attachmentId": bobs_file}),
        json!({"attachmentId": elsewhere}),
        json!({"attachmentId": uuid::Uuid::now_v7().to_string()}),
        json!({"attachmentId": "not-an-id"}),
        json!({"attachmentId": bobs_file, "extra": true}),
        json!(42),
    ] {
        let reply = alice
            .post(
                &format!("/conversations/{alices}/messages"),
                json!({"role": "user", "content": "look", "attachments": [reference]}),
            )
            .await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{reference}: {:?}",
            reply.body
        );
        assert_eq!(reply.error_code(), "invalid_request", "{reference}");
    }
    assert_eq!(
        tests::items_of_conversation(&api.state, &a, &alices).await,
        before,
        "nothing written"
    );
}

#[tokio::test]
async fn a_one_megabyte_message_round_trips_byte_for_byte_and_its_item_stays_small() {
    let api = LocalApi::start().await;
    let user = new_user();
    let alice = api.as_user(&user);
    let id = alice.create_conversation(None).await;
    // 1 MB of varied text, multi-byte characters included.
    let content: String = (0..)
        .map(|i: u32| format!("line {i}: ünïcødé ✓ {}\n", i.wrapping_mul(2_654_435_761)))
        .take_while({
            let mut total = 0;
            move |line| {
                total += line.len();
                total <= 1_000_000
            }
        })
        .collect();
    assert!(content.len() > 990_000);

    let added = alice
        .post(
            &format!("/conversations/{id}/messages"),
            json!({"role": "user", "content": content, "clientMessageId": "big-1"}),
        )
        .await;
    assert_eq!(
        added.status,
        StatusCode::CREATED,
        "{:?}",
        added.body["error"]
    );
    assert_eq!(added.body["content"].as_str().unwrap(), content);

    let read = alice.get(&format!("/conversations/{id}")).await;
    assert_eq!(
        read.body["messages"][0]["content"].as_str().unwrap(),
        content
    );
    // A retry with the same client message id returns it from S3 too.
    let replayed = alice
        .post(
            &format!("/conversations/{id}/messages"),
            json!({"role": "user", "content": content, "clientMessageId": "big-1"}),
        )
        .await;
    assert_eq!(replayed.status, StatusCode::OK);
    assert_eq!(replayed.body["content"].as_str().unwrap(), content);

    let items = tests::items_of_conversation(&api.state, &user, &id).await;
    let message = items
        .iter()
        .find(|i| i["SK"].as_s().unwrap().starts_with("MESSAGE#"))
        .unwrap();
    assert_eq!(message["content"].as_s().unwrap(), "");
    assert!(message.contains_key("contentObject"));

    let owner = UserId::parse(&user).unwrap();
    let conversation = ConversationId::parse(&id).unwrap();
    let bucket = api.state.config.attachments_bucket.clone().unwrap();
    let prefix = keys::attachment_prefix(&owner, &conversation);
    assert_eq!(objects_under(&bucket, &prefix).await.len(), 1);
    alice.delete(&format!("/conversations/{id}")).await;
    assert!(objects_under(&bucket, &prefix).await.is_empty());
}

#[tokio::test]
async fn a_page_of_long_messages_stays_within_a_response_and_the_rest_follow_by_cursor() {
    let api = LocalApi::start().await;
    let alice = api.as_user(&new_user());
    let id = alice.create_conversation(None).await;
    for i in 0..5 {
        // Quotes take four bytes each once Lambda's envelope escapes the body again.
        let content = format!("{i}\"").repeat(500_000);
        let added = alice
            .post(
                &format!("/conversations/{id}/messages"),
                json!({"role": "user", "content": content}),
            )
            .await;
        assert_eq!(added.status, StatusCode::CREATED);
    }

    let mut seen = Vec::new();
    let mut path = format!("/conversations/{id}?messageLimit=50");
    loop {
        let page = alice.get(&path).await;
        assert_eq!(page.status, StatusCode::OK);
        let messages = page.body["messages"].as_array().unwrap();
        assert!(tests::as_lambda_returns_it(&page.body) < tests::LAMBDA_RESPONSE_LIMIT);
        let mut firsts: Vec<char> = messages
            .iter()
            .map(|m| m["content"].as_str().unwrap().chars().next().unwrap())
            .collect();
        firsts.append(&mut seen);
        seen = firsts;
        match page.body["olderMessagesCursor"].as_str() {
            Some(cursor) => path = format!("/conversations/{id}?messageLimit=50&before={cursor}"),
            None => break,
        }
    }
    assert_eq!(
        seen,
        ['0', '1', '2', '3', '4'],
        "every message once, oldest first"
    );
}

/// A message whose content sits in the bucket, read through a state built without the bucket
/// (as the functions that never read messages are): an error, never the message with empty
/// content in its place.
#[tokio::test]
async fn content_kept_in_the_bucket_is_never_read_back_empty_where_there_is_no_bucket() {
    let api = LocalApi::start().await;
    let user = new_user();
    let alice = api.as_user(&user);
    let id = alice.create_conversation(None).await;
    let content = "a long line of text\n".repeat(4_000);
    let added = alice.say(&id, &content).await;
    assert_eq!(added["content"].as_str().unwrap(), content);

    let sdk = aws_config::load_from_env().await;
    let without_bucket = shared::state::State::without_bucket(
        api.state.config.clone(),
        &sdk,
        std::sync::Arc::new(shared::clock::SystemClock),
    );
    let read = without_bucket
        .conversations
        .store()
        .messages_oldest_first(
            &UserId::parse(&user).unwrap(),
            &ConversationId::parse(&id).unwrap(),
            None,
            10,
        )
        .await;
    assert!(read.is_err(), "read as {:?}", read.map(|(m, _)| m));
}

/// The tag of an upload's object in the bucket (`pending` until a stored message names it).
async fn upload_state(api: &LocalApi, user: &str, conversation: &str, attachment: &str) -> String {
    let key = format!(
        "{}attachments/{attachment}",
        keys::attachment_prefix(
            &UserId::parse(user).unwrap(),
            &ConversationId::parse(conversation).unwrap()
        )
    );
    let tags = s3()
        .await
        .get_object_tagging()
        .bucket(api.state.config.attachments_bucket.clone().unwrap())
        .key(&key)
        .send()
        .await
        .unwrap();
    tags.tag_set()[0].value().to_owned()
}

#[tokio::test]
async fn an_upload_named_by_a_refused_message_stays_unreferenced_and_goes_with_the_lifecycle_rule()
{
    let api = LocalApi::start().await;
    let user = new_user();
    let alice = api.as_user(&user);
    let id = alice.create_conversation(None).await;
    let attachment = uploaded(&alice, &id, "receipt.png", vec![7; 1_000]).await;

    let refused = alice
        .post(
            &format!("/conversations/{id}/messages"),
            json!({
                "role": "user",
                "content": "   ",
                "attachments": [{"attachmentId": attachment}]
            }),
        )
        .await;
    assert_eq!(
        refused.status,
        StatusCode::BAD_REQUEST,
        "{:?}",
        refused.body
    );
    assert_eq!(upload_state(&api, &user, &id, &attachment).await, "pending");

    let stored = alice
        .post(
            &format!("/conversations/{id}/messages"),
            json!({
                "role": "user",
                "content": "Here is the receipt",
                "attachments": [{"attachmentId": attachment}]
            }),
        )
        .await;
    assert_eq!(stored.status, StatusCode::CREATED, "{:?}", stored.body);
    assert_eq!(
        upload_state(&api, &user, &id, &attachment).await,
        "attached"
    );
}
