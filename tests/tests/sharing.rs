//! Share links (issue 20): the owner shares a conversation up to a message; anyone holding
//! the link reads exactly that snapshot without a token, whatever the owner adds, edits or
//! switches later; revoking or deleting ends it on the next request; a signed-in reader
//! continues it as a conversation of their own, once per request id; and no one but the
//! owner reaches the owner's links.

use std::sync::Arc;

use chrono::{Duration, Utc};
use futures::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use shared::clock::{Clock, ManualClock};
use tests::{new_user, state_with_clock, Client, LocalApi};

async fn share(owner: &Client, conversation: &str, body: Value) -> Value {
    let made = owner
        .post(&format!("/conversations/{conversation}/shares"), body)
        .await;
    assert_eq!(made.status, StatusCode::CREATED, "{:?}", made.body);
    made.body
}

/// The contents a link shows, oldest first (one page).
async fn read(reader: &Client, link: &Value) -> Vec<String> {
    let page = reader.get(link["path"].as_str().unwrap()).await;
    assert_eq!(page.status, StatusCode::OK, "{:?}", page.body);
    contents(&page.body)
}

fn contents(page: &Value) -> Vec<String> {
    page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap().to_owned())
        .collect()
}

async fn say_and_reply(owner: &Client, conversation: &str, words: &str) -> Value {
    let said = owner.say(conversation, words).await;
    let replied = owner
        .post(
            &format!("/conversations/{conversation}/messages"),
            json!({ "role": "assistant", "content": format!("re: {words}") }),
        )
        .await;
    assert_eq!(replied.status, StatusCode::CREATED, "{:?}", replied.body);
    said
}

#[tokio::test]
async fn a_link_shows_its_snapshot_and_nothing_the_owner_does_later() {
    let api = LocalApi::start().await;
    let alice = api.as_user(&new_user());
    let id = alice.create_conversation(Some("Trip plans")).await;
    say_and_reply(&alice, &id, "one").await;
    let two = say_and_reply(&alice, &id, "two").await;
    let link = share(&alice, &id, json!({})).await;
    assert_eq!(link["title"], "Trip plans");
    assert_eq!(link["conversationId"], id.as_str());
    assert_eq!(link["id"].as_str().unwrap().len(), 32, "192 random bits");
    let snapshot = ["one", "re: one", "two", "re: two"];
    let anyone = api.anonymous();
    assert_eq!(read(&anyone, &link).await, snapshot);

    // The owner goes on, edits a shared message, switches back and forth, renames.
    say_and_reply(&alice, &id, "three").await;
    let edited = alice
        .post(
            &format!(
                "/conversations/{id}/messages/{}/edit",
                two["id"].as_str().unwrap()
            ),
            json!({ "content": "two, edited" }),
        )
        .await;
    assert_eq!(edited.status, StatusCode::CREATED, "{:?}", edited.body);
    say_and_reply(&alice, &id, "on the new branch").await;
    let renamed = alice
        .put(
            &format!("/conversations/{id}/title"),
            json!({ "title": "Private now" }),
        )
        .await;
    assert!(renamed.status.is_success(), "{:?}", renamed.body);
    let page = anyone.get(link["path"].as_str().unwrap()).await;
    assert_eq!(contents(&page.body), snapshot);
    assert_eq!(page.body["title"], "Trip plans");

    // A link to a point back on the branch shown now: up to there only.
    let on_branch = alice.get(&format!("/conversations/{id}")).await.body["messages"][0].clone();
    let early = share(&alice, &id, json!({ "messageId": on_branch["id"] })).await;
    assert_eq!(read(&anyone, &early).await, ["one"]);
    // A message on a branch the conversation no longer shows: switch to it first.
    let off = alice
        .post(
            &format!("/conversations/{id}/shares"),
            json!({ "messageId": two["id"] }),
        )
        .await;
    assert_eq!(off.status, StatusCode::CONFLICT, "{:?}", off.body);
}

#[tokio::test]
async fn readers_see_no_user_no_ids_of_the_owners_and_no_metadata_or_files_unless_chosen() {
    let api = LocalApi::start().await;
    let owner = new_user();
    let alice = api.as_user(&owner);
    let id = alice.create_conversation(None).await;
    let said = alice
        .post(
            &format!("/conversations/{id}/messages"),
            json!({
                "role": "user",
                "content": "see this",
                "metadata": {"device": "alice's phone"},
                "attachments": ["https://example.com/picture"],
                "clientMessageId": "private-client-id"
            }),
        )
        .await;
    assert_eq!(said.status, StatusCode::CREATED, "{:?}", said.body);

    let plain = share(&alice, &id, json!({})).await;
    let page = api.anonymous().get(plain["path"].as_str().unwrap()).await;
    let text = page.body.to_string();
    for private in [
        owner.as_str(),
        id.as_str(),
        "alice's phone",
        "example.com",
        "private-client-id",
    ] {
        assert!(!text.contains(private), "{private} in {text}");
    }
    let message = &page.body["messages"][0];
    assert!(message.get("metadata").is_none() && message.get("attachments").is_none());
    // Nor does the cursor that pages back: signed, not secret, it holds no owner's key.
    alice.say(&id, "a second message").await;
    let later = share(&alice, &id, json!({})).await;
    let page = api
        .anonymous()
        .get(&format!(
            "{}?messageLimit=1",
            later["path"].as_str().unwrap()
        ))
        .await;
    let cursor = page.body["olderMessagesCursor"].as_str().unwrap();
    let payload = cursor.split('.').next().unwrap();
    use base64::Engine;
    let decoded = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    let decoded = String::from_utf8(decoded).unwrap();
    assert!(
        !decoded.contains(owner.as_str()) && !decoded.contains(id.as_str()),
        "{decoded}"
    );

    let chosen = share(
        &alice,
        &id,
        json!({ "includeMetadata": true, "includeAttachments": true }),
    )
    .await;
    let page = api.anonymous().get(chosen["path"].as_str().unwrap()).await;
    let message = &page.body["messages"][0];
    assert_eq!(message["metadata"], json!({"device": "alice's phone"}));
    assert_eq!(
        message["attachments"],
        json!(["https://example.com/picture"])
    );
    assert!(!page.body.to_string().contains(owner.as_str()));
}

#[tokio::test]
async fn the_public_read_pages_back_and_answers_a_cdn_with_an_etag() {
    let api = LocalApi::start().await;
    let alice = api.as_user(&new_user());
    let id = alice.create_conversation(None).await;
    for n in 0..7 {
        alice.say(&id, &format!("message {n}")).await;
    }
    let link = share(&alice, &id, json!({})).await;
    let path = link["path"].as_str().unwrap();
    let anyone = api.anonymous();

    let newest = anyone.get(&format!("{path}?messageLimit=3")).await;
    assert_eq!(
        contents(&newest.body),
        ["message 4", "message 5", "message 6"]
    );
    let cursor = newest.body["olderMessagesCursor"].as_str().unwrap();
    let older = anyone
        .get(&format!("{path}?messageLimit=3&before={cursor}"))
        .await;
    assert_eq!(
        contents(&older.body),
        ["message 1", "message 2", "message 3"]
    );
    let cursor = older.body["olderMessagesCursor"].as_str().unwrap();
    let oldest = anyone
        .get(&format!("{path}?messageLimit=3&before={cursor}"))
        .await;
    assert_eq!(contents(&oldest.body), ["message 0"]);
    assert!(oldest.body["olderMessagesCursor"].is_null());
    // A cursor of another link is refused.
    let other = share(&alice, &id, json!({})).await;
    let foreign = anyone
        .get(&format!(
            "{}?before={}",
            other["path"].as_str().unwrap(),
            newest.body["olderMessagesCursor"].as_str().unwrap()
        ))
        .await;
    assert_eq!(
        foreign.status,
        StatusCode::BAD_REQUEST,
        "{:?}",
        foreign.body
    );

    // Kept by a CDN, asked again each time: the same answer is a 304.
    assert_eq!(newest.headers["cache-control"], "public, no-cache");
    let etag = newest.headers["etag"].to_str().unwrap().to_owned();
    let again = reqwest::Client::new()
        .get(format!("{}{path}?messageLimit=3", api.base))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(again.headers()["etag"].to_str().unwrap(), etag);
    // As a compressing CDN asks: a weak tag compares equal too.
    let weak = reqwest::Client::new()
        .get(format!("{}{path}?messageLimit=3", api.base))
        .header("if-none-match", format!("W/{etag}"))
        .send()
        .await
        .unwrap();
    assert_eq!(weak.status(), StatusCode::NOT_MODIFIED);
}

#[tokio::test]
async fn revoking_deleting_the_conversation_or_the_links_message_ends_the_link_at_once() {
    let api = LocalApi::start().await;
    let alice = api.as_user(&new_user());
    let anyone = api.anonymous();
    let id = alice.create_conversation(None).await;
    say_and_reply(&alice, &id, "one").await;
    let two = say_and_reply(&alice, &id, "two").await;

    // Revoked: 404 from the next request, and gone from the owner's list.
    let revoked = share(&alice, &id, json!({})).await;
    let token = revoked["id"].as_str().unwrap();
    let gone = alice
        .delete(&format!("/conversations/{id}/shares/{token}"))
        .await;
    assert_eq!(gone.status, StatusCode::NO_CONTENT, "{:?}", gone.body);
    let after = anyone.get(revoked["path"].as_str().unwrap()).await;
    assert_eq!(after.status, StatusCode::NOT_FOUND);
    assert_eq!(after.headers["cache-control"], "public, no-cache");
    let again = alice
        .delete(&format!("/conversations/{id}/shares/{token}"))
        .await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);

    // Deleting the message a link ends at (here with what follows it) ends the link; a link
    // ending before it stays.
    let at_two = share(&alice, &id, json!({})).await;
    let first = alice.get(&format!("/conversations/{id}")).await.body["messages"][0].clone();
    let at_one = share(&alice, &id, json!({ "messageId": first["id"] })).await;
    let deleted = alice
        .delete(&format!(
            "/conversations/{id}/messages/{}",
            two["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{:?}", deleted.body);
    assert_eq!(
        anyone.get(at_two["path"].as_str().unwrap()).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(read(&anyone, &at_one).await, ["one"]);
    let listed = alice.get("/shares").await;
    let ids: Vec<&str> = listed.body["shares"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [at_one["id"].as_str().unwrap()]);

    // Deleting the conversation ends every link to it, and removes them from the table.
    let deleted = alice.delete(&format!("/conversations/{id}")).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert_eq!(
        anyone.get(at_one["path"].as_str().unwrap()).await.status,
        StatusCode::NOT_FOUND
    );
    assert!(alice.get("/shares").await.body["shares"]
        .as_array()
        .unwrap()
        .is_empty());
    let left = tests::table_snapshot(&api.state).await;
    for link in [&revoked, &at_two, &at_one] {
        let token = link["id"].as_str().unwrap();
        assert!(
            !left.iter().any(|item| format!("{item:?}").contains(token)),
            "nothing of link {token} is left"
        );
    }
}

#[tokio::test]
async fn an_expired_link_answers_404_and_leaves_the_owners_list() {
    let clock = Arc::new(ManualClock::at(Utc::now()));
    let api = LocalApi::serving(state_with_clock(clock.clone()).await).await;
    let alice = api.as_user(&new_user());
    let id = alice.create_conversation(None).await;
    alice.say(&id, "for a day").await;
    let expires = (clock.now() + Duration::days(1)).to_rfc3339();
    let link = share(&alice, &id, json!({ "expiresAt": expires })).await;
    assert!(link["expiresAt"].is_string());
    assert_eq!(read(&api.anonymous(), &link).await, ["for a day"]);

    clock.advance(Duration::days(1) + Duration::seconds(1));
    let expired = api.anonymous().get(link["path"].as_str().unwrap()).await;
    assert_eq!(expired.status, StatusCode::NOT_FOUND);
    let bob = api.as_user(&new_user());
    let continued = bob
        .post(
            &format!("{}/continue", link["path"].as_str().unwrap()),
            json!({}),
        )
        .await;
    assert_eq!(continued.status, StatusCode::NOT_FOUND);
    assert!(alice.get("/shares").await.body["shares"]
        .as_array()
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn continuing_makes_one_copy_per_request_id_that_the_reader_owns_alone() {
    let api = LocalApi::start().await;
    let alice = api.as_user(&new_user());
    let bob = api.as_user(&new_user());
    let id = alice.create_conversation(Some("Recipe")).await;
    say_and_reply(&alice, &id, "how long to boil an egg").await;
    alice
        .post(
            &format!("/conversations/{id}/messages"),
            json!({ "role": "user", "content": "long words ".repeat(4_000) }),
        )
        .await;
    let link = share(&alice, &id, json!({})).await;
    let continue_path = format!("{}/continue", link["path"].as_str().unwrap());

    let copy = bob
        .post(&continue_path, json!({ "requestId": "tap-1" }))
        .await;
    assert_eq!(copy.status, StatusCode::CREATED, "{:?}", copy.body);
    assert_eq!(copy.body["title"], "Recipe");
    assert_eq!(copy.body["messageCount"], 3);
    let copy_id = copy.body["id"].as_str().unwrap().to_owned();
    assert_ne!(copy_id, id);
    assert!(copy.headers["location"]
        .to_str()
        .unwrap()
        .ends_with(&copy_id));

    // The same request again: the same copy, nothing more.
    let retried = bob
        .post(&continue_path, json!({ "requestId": "tap-1" }))
        .await;
    assert_eq!(retried.status, StatusCode::OK, "{:?}", retried.body);
    assert_eq!(retried.body["id"], copy_id.as_str());
    assert_eq!(retried.body["messageCount"], 3);
    let listed = bob.get("/conversations").await;
    assert_eq!(listed.body["conversations"].as_array().unwrap().len(), 1);

    // Bob's own from then on: he goes on, Alice deletes hers, his stays whole.
    let read = bob.get(&format!("/conversations/{copy_id}")).await;
    assert_eq!(
        read.body["messages"][2]["content"],
        "long words ".repeat(4_000)
    );
    bob.say(&copy_id, "and a soft one?").await;
    alice.delete(&format!("/conversations/{id}")).await;
    let read = bob.get(&format!("/conversations/{copy_id}")).await;
    assert_eq!(read.status, StatusCode::OK);
    assert_eq!(read.body["messageCount"], 4);
    assert_eq!(
        read.body["messages"][0]["content"],
        "how long to boil an egg"
    );
    // And Alice's conversation never learned of it.
    assert_eq!(
        alice.get(&format!("/conversations/{copy_id}")).await.status,
        StatusCode::NOT_FOUND
    );
}

/// Uploads a four-byte map and says "the map" with it, in the owner's conversation.
async fn say_with_a_file(owner: &Client, conversation: &str) {
    let upload = owner
        .post(
            &format!("/conversations/{conversation}/attachments"),
            json!({"fileName": "map.png", "contentType": "image/png", "size": 4}),
        )
        .await;
    assert_eq!(upload.status, StatusCode::CREATED, "{:?}", upload.body);
    let target = &upload.body["upload"];
    let mut put = reqwest::Client::new().request(
        target["method"].as_str().unwrap().parse().unwrap(),
        target["url"].as_str().unwrap(),
    );
    for (name, value) in target["headers"].as_object().unwrap() {
        put = put.header(name, value.as_str().unwrap());
    }
    assert!(put
        .body(vec![1, 2, 3, 4])
        .send()
        .await
        .unwrap()
        .status()
        .is_success());
    let attachment = upload.body["attachmentId"].as_str().unwrap();
    let said = owner
        .post(
            &format!("/conversations/{conversation}/messages"),
            json!({"role": "user", "content": "the map", "attachments": [{"attachmentId": attachment}]}),
        )
        .await;
    assert_eq!(said.status, StatusCode::CREATED, "{:?}", said.body);
}

async fn downloaded(url: &str) -> Vec<u8> {
    reqwest::get(url)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .to_vec()
}

/// The `state` tag of the object under `key`, after setting it to `set` when given.
async fn tag_of(api: &LocalApi, key: &str, set: Option<&str>) -> String {
    use aws_sdk_s3::types::{Tag, Tagging};
    let s3 = tests::s3().await;
    let bucket = api.state.config.attachments_bucket.as_deref().unwrap();
    if let Some(value) = set {
        let tag = Tag::builder().key("state").value(value).build().unwrap();
        s3.put_object_tagging()
            .bucket(bucket)
            .key(key)
            .tagging(Tagging::builder().tag_set(tag).build().unwrap())
            .send()
            .await
            .unwrap();
    }
    let tags = s3
        .get_object_tagging()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap();
    tags.tag_set()
        .iter()
        .find(|tag| tag.key() == "state")
        .map(|tag| tag.value().to_owned())
        .unwrap_or_default()
}

#[tokio::test]
async fn a_links_files_are_its_own_copies_named_by_the_link_alone_and_go_with_it() {
    let (api, mut poller) =
        tests::api_feeding(local::StreamConsumer::PurgeDeletedConversations, &[]).await;
    let owner = new_user();
    let alice = api.as_user(&owner);
    let id = alice.create_conversation(None).await;
    say_with_a_file(&alice, &id).await;

    let without = share(&alice, &id, json!({})).await;
    let without_files = format!("shares/{}/", without["id"].as_str().unwrap());
    assert_eq!(
        tests::object_keys_under(&api.state, &without_files).await,
        Vec::<String>::new()
    );
    // Whatever the original's tag says (a share can come before its message's upload is
    // marked kept), the link's copy is kept: the rule for unreferenced uploads never takes it.
    let originals = tests::object_keys_under(
        &api.state,
        &format!("users/{owner}/conversations/{id}/attachments/"),
    )
    .await;
    tag_of(&api, &originals[0], Some("pending")).await;
    let link = share(&alice, &id, json!({ "includeAttachments": true })).await;
    let token = link["id"].as_str().unwrap();
    let files = format!("shares/{token}/");
    let copies = tests::object_keys_under(&api.state, &files).await;
    assert_eq!(copies.len(), 1);
    assert_eq!(tag_of(&api, &copies[0], None).await, "attached");

    let page = api.anonymous().get(link["path"].as_str().unwrap()).await;
    assert_eq!(page.status, StatusCode::OK, "{:?}", page.body);
    let url = page.body["messages"][0]["attachments"][0]["downloadUrl"]
        .as_str()
        .unwrap();
    assert!(url.contains(&files), "{url}");
    assert!(!url.contains(&owner) && !url.contains(&id), "{url}");
    assert!(!page.body.to_string().contains(&owner));
    assert_eq!(downloaded(url).await, [1, 2, 3, 4]);

    let revoked = alice
        .delete(&format!("/conversations/{id}/shares/{token}"))
        .await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT, "{:?}", revoked.body);
    while poller.poll_once().await.unwrap() > 0 {}
    assert_eq!(
        tests::object_keys_under(&api.state, &files).await,
        Vec::<String>::new()
    );
    // The owner's file stays theirs.
    let mine = alice.get(&format!("/conversations/{id}")).await;
    let url = mine.body["messages"][0]["attachments"][0]["downloadUrl"]
        .as_str()
        .unwrap();
    assert_eq!(downloaded(url).await, [1, 2, 3, 4]);
}

#[tokio::test]
async fn continuing_copies_the_files_a_link_shows_into_the_readers_own() {
    let api = LocalApi::start().await;
    let owner = new_user();
    let alice = api.as_user(&owner);
    let id = alice.create_conversation(None).await;
    say_with_a_file(&alice, &id).await;

    let link = share(&alice, &id, json!({ "includeAttachments": true })).await;
    let page = api.anonymous().get(link["path"].as_str().unwrap()).await;
    let url = page.body["messages"][0]["attachments"][0]["downloadUrl"]
        .as_str()
        .unwrap();
    assert_eq!(downloaded(url).await, [1, 2, 3, 4]);
    // The reader's copy is made from the link's own: the original is not needed.
    let s3 = tests::s3().await;
    for key in
        tests::object_keys_under(&api.state, &format!("users/{owner}/conversations/{id}/")).await
    {
        s3.delete_object()
            .bucket(api.state.config.attachments_bucket.as_deref().unwrap())
            .key(key)
            .send()
            .await
            .unwrap();
    }

    let bob = api.as_user(&new_user());
    let copy = bob
        .post(
            &format!("{}/continue", link["path"].as_str().unwrap()),
            json!({}),
        )
        .await;
    assert_eq!(copy.status, StatusCode::CREATED, "{:?}", copy.body);
    alice.delete(&format!("/conversations/{id}")).await;
    let read = bob
        .get(&format!(
            "/conversations/{}",
            copy.body["id"].as_str().unwrap()
        ))
        .await;
    let url = read.body["messages"][0]["attachments"][0]["downloadUrl"]
        .as_str()
        .unwrap();
    assert!(!url.contains(&owner), "the file is Bob's own copy: {url}");
    assert_eq!(downloaded(url).await, [1, 2, 3, 4]);
}

#[tokio::test]
async fn only_the_owner_reaches_their_links_and_only_with_a_token_beyond_reading() {
    let api = LocalApi::start().await;
    let alice = api.as_user(&new_user());
    let mallory = api.as_user(&new_user());
    let anonymous = api.anonymous();
    let id = alice.create_conversation(None).await;
    alice.say(&id, "mine").await;
    let link = share(&alice, &id, json!({})).await;
    let token = link["id"].as_str().unwrap();
    let path = link["path"].as_str().unwrap();

    // A stranger cannot share, list or revoke the owner's links: the same 404 as for a
    // conversation that does not exist.
    let shared = mallory
        .post(&format!("/conversations/{id}/shares"), json!({}))
        .await;
    assert_eq!(shared.status, StatusCode::NOT_FOUND);
    let unknown = mallory
        .post(
            &format!("/conversations/{}/shares", uuid::Uuid::new_v4()),
            json!({}),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(shared.body, unknown.body);
    assert!(mallory.get("/shares").await.body["shares"]
        .as_array()
        .unwrap()
        .is_empty());
    assert!(mallory
        .get(&format!("/shares?conversationId={id}"))
        .await
        .body["shares"]
        .as_array()
        .unwrap()
        .is_empty());
    let revoke = mallory
        .delete(&format!("/conversations/{id}/shares/{token}"))
        .await;
    assert_eq!(revoke.status, StatusCode::NOT_FOUND);
    assert_eq!(read(&anonymous, &link).await, ["mine"]);
    // Nor can an owner's cursor page another's links.
    for n in 0..2 {
        alice.say(&id, &format!("more {n}")).await;
        share(&alice, &id, json!({})).await;
    }
    let first = alice.get("/shares?limit=1").await;
    let cursor = first.body["nextCursor"].as_str().unwrap();
    let stolen = mallory
        .get(&format!("/shares?limit=1&cursor={cursor}"))
        .await;
    assert_eq!(stolen.status, StatusCode::BAD_REQUEST, "{:?}", stolen.body);

    // Without a token: only the public read.
    for (method, route) in [
        (Method::POST, format!("/conversations/{id}/shares")),
        (Method::GET, "/shares".to_owned()),
        (
            Method::DELETE,
            format!("/conversations/{id}/shares/{token}"),
        ),
        (Method::POST, format!("{path}/continue")),
    ] {
        let answer = anonymous.send(method, &route, Some("{}")).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{route}");
    }
    // A token that names no link, and one that is not a token: the same 404.
    let never = anonymous.get(&format!("/shared/{}", "A".repeat(32))).await;
    let malformed = anonymous.get("/shared/not-a-token").await;
    assert_eq!(never.status, StatusCode::NOT_FOUND);
    assert_eq!(malformed.status, StatusCode::NOT_FOUND);
    assert_eq!(never.body, malformed.body);
}

#[tokio::test]
async fn bad_share_requests_get_a_clear_400_and_make_no_link() {
    let api = LocalApi::start().await;
    let alice = api.as_user(&new_user());
    let id = alice.create_conversation(None).await;
    let empty = alice
        .post(&format!("/conversations/{id}/shares"), json!({}))
        .await;
    assert_eq!(
        empty.status,
        StatusCode::BAD_REQUEST,
        "nothing to share yet"
    );
    alice.say(&id, "hello").await;
    for body in [
        json!({ "expiresAt": "2020-01-01T00:00:00Z" }),
        json!({ "expiresAt": (Utc::now() + Duration::days(400)).to_rfc3339() }),
        json!({ "expiresAt": "tomorrow" }),
        json!({ "messageId": "not-an-id" }),
        json!({ "includeMetadata": "yes" }),
        json!({ "public": true }),
    ] {
        let refused = alice
            .post(&format!("/conversations/{id}/shares"), body.clone())
            .await;
        assert_eq!(
            refused.status,
            StatusCode::BAD_REQUEST,
            "{body}: {:?}",
            refused.body
        );
        assert_eq!(refused.error_code(), "invalid_request");
    }
    let unknown_message = alice
        .post(
            &format!("/conversations/{id}/shares"),
            json!({ "messageId": uuid::Uuid::new_v4() }),
        )
        .await;
    assert_eq!(unknown_message.status, StatusCode::NOT_FOUND);
    assert!(alice.get("/shares").await.body["shares"]
        .as_array()
        .unwrap()
        .is_empty());
    let link = share(&alice, &id, json!({})).await;
    let continued = api
        .as_user(&new_user())
        .post(
            &format!("{}/continue", link["path"].as_str().unwrap()),
            json!({ "requestId": "" }),
        )
        .await;
    assert_eq!(continued.status, StatusCode::BAD_REQUEST);
}

async fn share_with(owner: &Client, conversation: &str, person: &str) -> Value {
    let granted = owner
        .post(
            &format!("/conversations/{conversation}/people"),
            json!({ "userId": person }),
        )
        .await;
    assert_eq!(granted.status, StatusCode::CREATED, "{:?}", granted.body);
    granted.body
}

/// The titles of the conversations shared with `reader`, in the order listed (one page).
async fn shared_titles(reader: &Client, query: &str) -> (Vec<String>, Value) {
    let listed = reader.get(&format!("/shared-with-me{query}")).await;
    assert_eq!(listed.status, StatusCode::OK, "{:?}", listed.body);
    let titles = listed.body["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["title"].as_str().unwrap().to_owned())
        .collect();
    (titles, listed.body)
}

#[tokio::test]
async fn a_person_it_is_shared_with_reads_it_as_it_is_now_and_only_reads() {
    let api = LocalApi::start().await;
    let (owner, reader) = (new_user(), new_user());
    let alice = api.as_user(&owner);
    let bob = api.as_user(&reader);
    let id = alice.create_conversation(Some("Shared plans")).await;
    let private = alice.create_conversation(Some("Alice's diary")).await;
    alice.say(&private, "a secret").await;
    let two = say_and_reply(&alice, &id, "one").await;
    let granted = share_with(&alice, &id, &reader).await;
    assert_eq!(granted["userId"], reader.as_str());
    // Sharing again changes nothing.
    let again = alice
        .post(
            &format!("/conversations/{id}/people"),
            json!({ "userId": reader }),
        )
        .await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.body["grantedAt"], granted["grantedAt"]);
    let people = alice.get(&format!("/conversations/{id}/people")).await;
    assert_eq!(people.body["people"][0]["userId"], reader.as_str());

    // Bob sees it listed, with who shared it, and reads it whole, as it is now.
    let (titles, listed) = shared_titles(&bob, "").await;
    assert_eq!(titles, ["Shared plans"]);
    assert_eq!(listed.body_shared_by(), owner);
    alice
        .post(
            &format!(
                "/conversations/{id}/messages/{}/edit",
                two["id"].as_str().unwrap()
            ),
            json!({ "content": "one, edited" }),
        )
        .await;
    alice.say(&id, "after the edit").await;
    let read = bob.get(&format!("/shared-with-me/{id}")).await;
    assert_eq!(read.status, StatusCode::OK, "{:?}", read.body);
    assert_eq!(contents(&read.body), ["one, edited", "after the edit"]);
    assert_eq!(read.body["sharedBy"], owner.as_str());

    // Only reads: every route of the owner's is closed to him, as for any conversation not his.
    for (method, path, body) in [
        (Method::GET, format!("/conversations/{id}"), None),
        (
            Method::POST,
            format!("/conversations/{id}/messages"),
            Some(json!({"role": "user", "content": "bob was here"})),
        ),
        (
            Method::PUT,
            format!("/conversations/{id}/title"),
            Some(json!({"title": "Bob's now"})),
        ),
        (Method::DELETE, format!("/conversations/{id}"), None),
        (
            Method::POST,
            format!("/conversations/{id}/people"),
            Some(json!({"userId": new_user()})),
        ),
        (Method::GET, format!("/conversations/{id}/people"), None),
        (
            Method::POST,
            format!("/conversations/{id}/shares"),
            Some(json!({})),
        ),
    ] {
        let body = body.map(|b| b.to_string());
        let answer = bob.send(method.clone(), &path, body.as_deref()).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{method} {path}");
    }
    // And nothing of Alice's that was not shared with him.
    assert_eq!(
        bob.get(&format!("/shared-with-me/{private}")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        bob.get("/conversations").await.body["conversations"],
        json!([])
    );
    assert_eq!(
        alice.get(&format!("/conversations/{id}")).await.body["messageCount"],
        4
    );
}

trait SharedBy {
    fn body_shared_by(&self) -> String;
}

impl SharedBy for Value {
    fn body_shared_by(&self) -> String {
        self["conversations"][0]["sharedBy"]
            .as_str()
            .unwrap()
            .to_owned()
    }
}

#[tokio::test]
async fn taking_it_back_or_deleting_it_ends_a_persons_access_on_the_next_request() {
    let api = LocalApi::start().await;
    let (owner, reader) = (new_user(), new_user());
    let alice = api.as_user(&owner);
    let bob = api.as_user(&reader);
    let kept = alice.create_conversation(Some("Kept")).await;
    let taken = alice.create_conversation(Some("Taken back")).await;
    let deleted = alice.create_conversation(Some("Deleted")).await;
    for id in [&kept, &taken, &deleted] {
        alice.say(id, "hello").await;
        share_with(&alice, id, &reader).await;
    }
    assert_eq!(shared_titles(&bob, "").await.0.len(), 3);

    let revoked = alice
        .delete(&format!("/conversations/{taken}/people/{reader}"))
        .await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT);
    assert_eq!(
        bob.get(&format!("/shared-with-me/{taken}")).await.status,
        StatusCode::NOT_FOUND
    );
    let again = alice
        .delete(&format!("/conversations/{taken}/people/{reader}"))
        .await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);

    alice.delete(&format!("/conversations/{deleted}")).await;
    assert_eq!(
        bob.get(&format!("/shared-with-me/{deleted}")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(shared_titles(&bob, "").await.0, ["Kept"]);
    let left = tests::table_snapshot(&api.state).await;
    for gone in [&taken, &deleted] {
        assert!(
            !left.iter().any(|item| {
                let text = format!("{item:?}");
                text.contains(&format!("GRANT#{gone}"))
                    || text.contains(&reader) && text.contains(gone.as_str())
            }),
            "nothing of the grant of {gone} is left"
        );
    }
}

#[tokio::test]
async fn the_conversations_shared_with_someone_come_newest_activity_first_a_page_at_a_time() {
    let api = LocalApi::start().await;
    let reader = new_user();
    let bob = api.as_user(&reader);
    let (alice, carol) = (api.as_user(&new_user()), api.as_user(&new_user()));
    let first = alice.create_conversation(Some("first")).await;
    let second = carol.create_conversation(Some("second")).await;
    let third = alice.create_conversation(Some("third")).await;
    for (owner, id) in [(&alice, &first), (&carol, &second), (&alice, &third)] {
        owner.say(id, "hello").await;
        share_with(owner, id, &reader).await;
    }
    assert_eq!(
        shared_titles(&bob, "").await.0,
        ["third", "second", "first"]
    );
    // Always current: the owner's new message moves it up.
    alice.say(&first, "news").await;
    let (page, body) = shared_titles(&bob, "?limit=2").await;
    assert_eq!(page, ["first", "third"]);
    assert_eq!(body["hasMore"], true);
    let cursor = body["nextCursor"].as_str().unwrap();
    let (rest, body) = shared_titles(&bob, &format!("?limit=2&cursor={cursor}")).await;
    assert_eq!(rest, ["second"]);
    assert_eq!(body["hasMore"], false);
    // Someone else's cursor is refused.
    let mallory = api.as_user(&new_user());
    let stolen = mallory
        .get(&format!("/shared-with-me?limit=2&cursor={cursor}"))
        .await;
    assert_eq!(stolen.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn sharing_with_a_person_refuses_strangers_anonymous_callers_and_bad_ids() {
    let api = LocalApi::start().await;
    let (owner, reader) = (new_user(), new_user());
    let alice = api.as_user(&owner);
    let mallory = api.as_user(&new_user());
    let id = alice.create_conversation(None).await;
    alice.say(&id, "hello").await;
    share_with(&alice, &id, &reader).await;

    // A stranger: the same 404 as for a conversation nobody has, on every route.
    let unknown = uuid::Uuid::now_v7().to_string();
    for (method, route, body) in [
        (
            Method::POST,
            "/conversations/{id}/people",
            Some(json!({"userId": new_user()})),
        ),
        (Method::GET, "/conversations/{id}/people", None),
        (Method::DELETE, "/conversations/{id}/people/{reader}", None),
        (Method::GET, "/shared-with-me/{id}", None),
        (Method::DELETE, "/shared-with-me/{id}", None),
    ] {
        let body = body.map(|b| b.to_string());
        let path = |id: &str| route.replace("{id}", id).replace("{reader}", &reader);
        let hers = mallory
            .send(method.clone(), &path(&id), body.as_deref())
            .await;
        let nobodys = mallory
            .send(method.clone(), &path(&unknown), body.as_deref())
            .await;
        assert_eq!(hers.status, StatusCode::NOT_FOUND, "{method} {route}");
        assert_eq!(hers.body, nobodys.body, "{method} {route}");
        let anonymous = api
            .anonymous()
            .send(method.clone(), &path(&id), body.as_deref())
            .await;
        assert_eq!(
            anonymous.status,
            StatusCode::UNAUTHORIZED,
            "{method} {route}"
        );
    }
    assert_eq!(
        mallory.get("/shared-with-me").await.body["conversations"],
        json!([])
    );
    // Still shared with Bob, and only with him.
    let people = alice.get(&format!("/conversations/{id}/people")).await;
    assert_eq!(people.body["people"].as_array().unwrap().len(), 1);

    for body in [
        json!({ "userId": owner }),
        json!({ "userId": "has#a-hash" }),
        json!({ "userId": "" }),
        json!({}),
        json!({ "userId": reader, "role": "editor" }),
    ] {
        let refused = alice
            .post(&format!("/conversations/{id}/people"), body.clone())
            .await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{body}");
    }
    let bad = alice
        .delete(&format!("/conversations/{id}/people/has%23a-hash"))
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_person_declines_a_conversation_shared_with_them_and_it_leaves_both_lists() {
    let api = LocalApi::start().await;
    let (owner, reader) = (new_user(), new_user());
    let alice = api.as_user(&owner);
    let bob = api.as_user(&reader);
    let declined = alice.create_conversation(Some("Declined")).await;
    let kept = alice.create_conversation(Some("Kept")).await;
    share_with(&alice, &declined, &reader).await;
    share_with(&alice, &kept, &reader).await;

    let answer = bob.delete(&format!("/shared-with-me/{declined}")).await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT, "{:?}", answer.body);
    assert_eq!(shared_titles(&bob, "").await.0, ["Kept"]);
    assert_eq!(
        bob.get(&format!("/shared-with-me/{declined}")).await.status,
        StatusCode::NOT_FOUND
    );
    let people = alice
        .get(&format!("/conversations/{declined}/people"))
        .await;
    assert_eq!(
        people.body["people"],
        json!([]),
        "gone from the owner's list too"
    );
    let again = bob.delete(&format!("/shared-with-me/{declined}")).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
    // The owner may share it again: the counts were given back.
    share_with(&alice, &declined, &reader).await;
    assert_eq!(shared_titles(&bob, "").await.0.len(), 2);
}

#[tokio::test]
async fn no_more_than_a_hundred_people_however_many_shares_race() {
    let state = tests::state().await;
    let owner = shared::model::UserId::parse(&new_user()).unwrap();
    let conversation = tests::conversation_saying(&state, owner.as_str(), ["hello".to_owned()])
        .await
        .id;
    let people: Vec<_> = (0..shared::store::MAX_GRANTS_PER_CONVERSATION + 8)
        .map(|_| shared::model::UserId::parse(&new_user()).unwrap())
        .collect();
    let answers: Vec<_> = futures::stream::iter(&people)
        .map(|person| {
            state
                .sharing
                .share_with(&owner, &conversation, person, Utc::now())
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let granted = answers.iter().filter(|answer| answer.is_ok()).count();
    assert_eq!(granted, shared::store::MAX_GRANTS_PER_CONVERSATION);
    assert!(answers
        .iter()
        .filter_map(|answer| answer.as_ref().err())
        .all(|error| matches!(error, shared::error::Error::Invalid(_))));
    let listed = state.sharing.people(&owner, &conversation).await.unwrap();
    assert_eq!(listed.len(), shared::store::MAX_GRANTS_PER_CONVERSATION);
    // Taking one back makes room for one more.
    state
        .sharing
        .unshare(&owner, &conversation, &listed[0].grantee)
        .await
        .unwrap();
    let waiting = people
        .iter()
        .find(|person| listed.iter().all(|grant| &grant.grantee != *person))
        .unwrap();
    state
        .sharing
        .share_with(&owner, &conversation, waiting, Utc::now())
        .await
        .unwrap();
}

#[tokio::test]
async fn a_person_has_at_most_two_hundred_conversations_shared_with_them_at_once() {
    let state = tests::state().await;
    let reader = shared::model::UserId::parse(&new_user()).unwrap();
    let owners: Vec<_> = (0..shared::store::MAX_GRANTS_PER_GRANTEE + 4)
        .map(|_| new_user())
        .collect();
    let answers: Vec<_> = futures::stream::iter(&owners)
        .map(|owner| {
            let (state, reader) = (&state, &reader);
            async move {
                let conversation =
                    tests::conversation_saying(state, owner, Vec::<String>::new()).await;
                let owner = shared::model::UserId::parse(owner).unwrap();
                let shared = state
                    .sharing
                    .share_with(&owner, &conversation.id, reader, Utc::now())
                    .await;
                (owner, conversation.id, shared)
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let granted = answers
        .iter()
        .filter(|(_, _, shared)| shared.is_ok())
        .count();
    assert_eq!(granted, shared::store::MAX_GRANTS_PER_GRANTEE);
    assert!(answers
        .iter()
        .filter_map(|(_, _, shared)| shared.as_ref().err())
        .all(|error| matches!(error, shared::error::Error::Conflict(_))));
    // Declining one, or its owner deleting theirs, makes room again.
    let (_, declined, _) = answers.iter().find(|(_, _, s)| s.is_ok()).unwrap();
    state.sharing.decline(&reader, declined).await.unwrap();
    let (deleting_owner, deleted, _) = answers
        .iter()
        .rfind(|(_, id, s)| s.is_ok() && id != declined)
        .unwrap();
    state
        .conversations
        .delete(
            deleting_owner,
            deleted,
            Utc::now(),
            std::time::Duration::from_secs(10),
        )
        .await
        .unwrap();
    let refused: Vec<_> = answers
        .iter()
        .filter(|(_, _, s)| s.is_err())
        .take(2)
        .collect();
    for (owner, id, _) in refused {
        state
            .sharing
            .share_with(owner, id, &reader, Utc::now())
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn a_link_whose_last_message_is_gone_is_neither_read_nor_continued() {
    let api = LocalApi::start().await;
    let owner = new_user();
    let alice = api.as_user(&owner);
    let id = alice.create_conversation(None).await;
    alice.say(&id, "one").await;
    let two = alice.say(&id, "two").await;
    let link = share(&alice, &id, json!({})).await;
    // The message gone without the delete's clean-up (a link made while a delete ran).
    tests::remove_message_item(&api.state, &owner, &id, two["id"].as_str().unwrap()).await;
    let path = link["path"].as_str().unwrap();
    assert_eq!(
        api.anonymous().get(path).await.status,
        StatusCode::NOT_FOUND
    );
    let bob = api.as_user(&new_user());
    let continued = bob.post(&format!("{path}/continue"), json!({})).await;
    assert_eq!(continued.status, StatusCode::NOT_FOUND);
    assert_eq!(
        bob.get("/conversations").await.body["conversations"],
        json!([])
    );
}

/// The key of the item counting the conversations shared with `person`.
fn shared_with_count_key(
    person: &str,
) -> std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue> {
    use aws_sdk_dynamodb::types::AttributeValue::S;
    [
        ("PK".to_owned(), S(format!("USER#{person}#GRANTS"))),
        ("SK".to_owned(), S("COUNT".to_owned())),
    ]
    .into()
}

/// The count of conversations shared with `person`, as its item holds it.
async fn shared_with_count(state: &shared::state::State, person: &str) -> i64 {
    let item = aws_sdk_dynamodb::Client::new(&aws_config::load_from_env().await)
        .get_item()
        .table_name(&state.config.table_name)
        .set_key(Some(shared_with_count_key(person)))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
        .unwrap_or_default();
    match item.get("count") {
        Some(aws_sdk_dynamodb::types::AttributeValue::N(count)) => count.parse().unwrap(),
        _ => 0,
    }
}

#[tokio::test]
async fn a_grant_taken_back_twice_over_counts_once() {
    let state = tests::state().await;
    let (owner, reader) = (new_user(), new_user());
    let alice = shared::model::UserId::parse(&owner).unwrap();
    let bob = shared::model::UserId::parse(&reader).unwrap();
    let kept = tests::conversation_saying(&state, &owner, ["kept".to_owned()]).await;
    let deleted = tests::conversation_saying(&state, &owner, ["deleted".to_owned()]).await;
    for conversation in [&kept, &deleted] {
        state
            .sharing
            .share_with(&alice, &conversation.id, &bob, Utc::now())
            .await
            .unwrap();
    }
    assert_eq!(shared_with_count(&state, &reader).await, 2);

    // The delete takes it back from Bob at once; its partition (with Alice's record of the
    // grant) is left to the purge worker.
    state
        .conversations
        .delete(&alice, &deleted.id, Utc::now(), std::time::Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(shared_with_count(&state, &reader).await, 1);
    // Alice takes it back meanwhile, through her record still there: Bob's count stays.
    state
        .sharing
        .unshare(&alice, &deleted.id, &bob)
        .await
        .expect("her record of the grant is still there");
    assert_eq!(shared_with_count(&state, &reader).await, 1);
    // Bob declines the other, and declining it again changes nothing.
    state.sharing.decline(&bob, &kept.id).await.unwrap();
    assert!(state.sharing.decline(&bob, &kept.id).await.is_err());
    assert_eq!(shared_with_count(&state, &reader).await, 0);

    // A grant with no count beside it (made before the counts) ends without making one up.
    state
        .sharing
        .share_with(&alice, &kept.id, &bob, Utc::now())
        .await
        .unwrap();
    aws_sdk_dynamodb::Client::new(&aws_config::load_from_env().await)
        .delete_item()
        .table_name(&state.config.table_name)
        .set_key(Some(shared_with_count_key(&reader)))
        .send()
        .await
        .unwrap();
    state.sharing.unshare(&alice, &kept.id, &bob).await.unwrap();
    let (left, _) = state.sharing.shared_with_me(&bob, 10, None).await.unwrap();
    assert!(left.is_empty());
    assert_eq!(shared_with_count(&state, &reader).await, 0);
}

#[tokio::test]
async fn copying_a_links_files_begins_none_past_its_deadline() {
    let api = LocalApi::start().await;
    let owner = new_user();
    let alice = shared::model::UserId::parse(&owner).unwrap();
    let conversation = tests::conversation_saying(&api.state, &owner, Vec::<String>::new()).await;
    tests::say_with_a_file(&api.state, &owner, &conversation.id).await;
    let messages = api
        .state
        .conversations
        .get(&alice, &conversation.id, 10, None)
        .await
        .unwrap()
        .messages;
    let bucket = api.state.attachments.as_ref().unwrap();
    let token = domain::share::ShareToken::generate();
    let late = bucket
        .copy_files_for_link(&alice, &messages, &token, tokio::time::Instant::now())
        .await
        .unwrap();
    assert_eq!(late, shared::attachments::Copied::OutOfTime);
    let files = format!("shares/{token}/");
    assert_eq!(
        tests::object_keys_under(&api.state, &files).await,
        Vec::<String>::new()
    );
    let in_time = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    let copied = bucket
        .copy_files_for_link(&alice, &messages, &token, in_time)
        .await
        .unwrap();
    assert_eq!(copied, shared::attachments::Copied::All);
    assert_eq!(tests::object_keys_under(&api.state, &files).await.len(), 1);
}
