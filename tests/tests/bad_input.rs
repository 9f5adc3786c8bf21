//! Bad input, endpoint by endpoint: a 4xx with the API's one error shape, and nothing written.

use reqwest::{Method, StatusCode};
use tests::{items_of_conversation, new_user, LocalApi, Reply};

fn assert_error_shape(reply: &Reply, expected: StatusCode, what: &str) {
    assert_eq!(reply.status, expected, "{what}: {:?}", reply.body);
    let error = reply.body["error"]
        .as_object()
        .unwrap_or_else(|| panic!("{what}: no error object: {:?}", reply.body));
    assert_eq!(error.len(), 2, "{what}: error has exactly code and message");
    assert!(
        error["code"].as_str().is_some_and(|c| !c.is_empty()),
        "{what}"
    );
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{what}"
    );
}

#[tokio::test]
async fn every_endpoint_refuses_bad_input_with_one_error_shape_and_writes_nothing() {
    let api = LocalApi::start().await;
    let user = new_user();
    let alice = api.as_user(&user);
    let id = alice.create_conversation(Some("Untouched")).await;
    alice.say(&id, "the only message").await;
    let items_before = items_of_conversation(&api.state, &user, &id).await;
    let list_before = alice.get("/conversations?includeArchived=true").await.body;

    let c = format!("/conversations/{id}");
    let too_long_title = format!(r#"{{"title": "{}"}}"#, "t".repeat(201));
    let too_many_tags = format!(
        r#"{{"tags": [{}]}}"#,
        (0..21)
            .map(|i| format!("\"t{i}\""))
            .collect::<Vec<_>>()
            .join(",")
    );
    let huge_content = format!(
        r#"{{"role": "user", "content": "{}"}}"#,
        "x".repeat(shared::model::MAX_CONTENT_BYTES + 1)
    );
    let long_client_id = format!(
        r#"{{"role": "user", "content": "hi", "clientMessageId": "{}"}}"#,
        "c".repeat(129)
    );
    let bad = StatusCode::BAD_REQUEST;

    let deep_metadata = format!(
        r#"{{"role": "user", "content": "hi", "metadata": {{"a": {}1{}}}}}"#,
        "[".repeat(40),
        "]".repeat(40)
    );
    let cases: Vec<(Method, String, Option<&str>, StatusCode)> = vec![
        // GET /conversations
        (Method::GET, "/conversations?limit=0".into(), None, bad),
        (Method::GET, "/conversations?limit=101".into(), None, bad),
        (Method::GET, "/conversations?limit=ten".into(), None, bad),
        (Method::GET, "/conversations?limit=-1".into(), None, bad),
        (
            Method::GET,
            "/conversations?limit=1&limit=2".into(),
            None,
            bad,
        ),
        (
            Method::GET,
            "/conversations?includeArchived=yes".into(),
            None,
            bad,
        ),
        (
            Method::GET,
            "/conversations?archived=maybe".into(),
            None,
            bad,
        ),
        (Method::GET, "/conversations?sort=title".into(), None, bad),
        (
            Method::GET,
            "/conversations?cursor=garbage".into(),
            None,
            bad,
        ),
        (Method::GET, "/conversations?page=0".into(), None, bad),
        (Method::GET, "/conversations?page=51".into(), None, bad),
        // A page number may pass over 1,000 conversations (200 with a search), read on the way.
        (
            Method::GET,
            "/conversations?page=50&limit=100".into(),
            None,
            bad,
        ),
        (
            Method::GET,
            "/conversations?page=12&limit=20&search=a".into(),
            None,
            bad,
        ),
        (
            Method::GET,
            format!("/conversations?search={}", "s".repeat(101)),
            None,
            bad,
        ),
        // GET /conversations/{id}
        (Method::GET, "/conversations/not-a-uuid".into(), None, bad),
        (Method::GET, format!("{c}?messageLimit=0"), None, bad),
        (Method::GET, format!("{c}?messageLimit=201"), None, bad),
        (Method::GET, format!("{c}?before=forged.cursor"), None, bad),
        // POST /conversations
        (Method::POST, "/conversations".into(), Some("{"), bad),
        (Method::POST, "/conversations".into(), Some("[]"), bad),
        (
            Method::POST,
            "/conversations".into(),
            Some(r#"["a title"]"#),
            bad,
        ),
        (
            Method::POST,
            "/conversations".into(),
            Some(r#"{"title": 5}"#),
            bad,
        ),
        (
            Method::POST,
            "/conversations".into(),
            Some(r#"{"name": "x"}"#),
            bad,
        ),
        (
            Method::POST,
            "/conversations".into(),
            Some(r#"{"title": "   "}"#),
            bad,
        ),
        (
            Method::POST,
            "/conversations".into(),
            Some(&too_long_title),
            bad,
        ),
        (
            Method::POST,
            "/conversations".into(),
            Some(r#"{"tags": "work"}"#),
            bad,
        ),
        (
            Method::POST,
            "/conversations".into(),
            Some(&too_many_tags),
            bad,
        ),
        // POST /conversations/{id}/messages
        (Method::POST, format!("{c}/messages"), None, bad),
        (
            Method::POST,
            format!("{c}/messages"),
            Some(r#"{"content": "no role"}"#),
            bad,
        ),
        (
            Method::POST,
            format!("{c}/messages"),
            Some(r#"{"role": "robot", "content": "hi"}"#),
            bad,
        ),
        (
            Method::POST,
            format!("{c}/messages"),
            Some(r#"{"role": "user", "content": "  "}"#),
            bad,
        ),
        (
            Method::POST,
            format!("{c}/messages"),
            Some(r#"{"role": "user", "content": "hi", "mood": "x"}"#),
            bad,
        ),
        (
            Method::POST,
            format!("{c}/messages"),
            Some(r#"{"role": "user", "content": "hi", "attachments": "a"}"#),
            bad,
        ),
        (
            Method::POST,
            format!("{c}/messages"),
            Some(r#"{"role": "user", "content": "hi", "metadata": [1]}"#),
            bad,
        ),
        (
            Method::POST,
            format!("{c}/messages"),
            Some(r#"{"role": "user", "content": "hi", "clientTimestamp": "yesterday"}"#),
            bad,
        ),
        (
            Method::POST,
            format!("{c}/messages"),
            Some(r#"{"role": "user", "content": "hi", "clientTimestamp": 1764892800}"#),
            bad,
        ),
        (
            Method::POST,
            format!("{c}/messages"),
            Some(&long_client_id),
            bad,
        ),
        // Found by schemathesis: metadata DynamoDB cannot store (was a 500, or a conversation
        // that could no longer be read).
        (
            Method::POST,
            format!("{c}/messages"),
            Some(r#"{"role": "user", "content": "hi", "metadata": {"": 1}}"#),
            bad,
        ),
        (
            Method::POST,
            format!("{c}/messages"),
            Some(r#"{"role": "user", "content": "hi", "metadata": {"a": {"b": {"": null}}}}"#),
            bad,
        ),
        (
            Method::POST,
            format!("{c}/messages"),
            Some(
                r#"{"role": "user", "content": "hi", "metadata": {"a": 1.1125369292536007e-308}}"#,
            ),
            bad,
        ),
        (
            Method::POST,
            format!("{c}/messages"),
            Some(r#"{"role": "user", "content": "hi", "metadata": {"a": [-1.5e-297]}}"#),
            bad,
        ),
        (
            Method::POST,
            format!("{c}/messages"),
            Some(&deep_metadata),
            bad,
        ),
        (
            Method::POST,
            format!("{c}/messages"),
            Some(&huge_content),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (
            Method::POST,
            "/conversations/123/messages".into(),
            Some(r#"{"role": "user", "content": "hi"}"#),
            bad,
        ),
        // PUT /conversations/{id}/title
        (Method::PUT, format!("{c}/title"), None, bad),
        (
            Method::PUT,
            format!("{c}/title"),
            Some(r#"{"title": ""}"#),
            bad,
        ),
        (
            Method::PUT,
            format!("{c}/title"),
            Some(r#"{"title": 1}"#),
            bad,
        ),
        (
            Method::PUT,
            format!("{c}/title"),
            Some(r#"{"title": "ok", "extra": 1}"#),
            bad,
        ),
        // PUT /conversations/{id}/archive
        (
            Method::PUT,
            format!("{c}/archive"),
            Some(r#"{"archived": "yes"}"#),
            bad,
        ),
        (
            Method::PUT,
            format!("{c}/archive"),
            Some(r#"{"archive": true}"#),
            bad,
        ),
        (Method::PUT, format!("{c}/archive"), Some("{oops"), bad),
        // PUT /conversations/{id}/tags
        (Method::PUT, format!("{c}/tags"), None, bad),
        (
            Method::PUT,
            format!("{c}/tags"),
            Some(r#"{"tags": "a"}"#),
            bad,
        ),
        (
            Method::PUT,
            format!("{c}/tags"),
            Some(r#"{"tags": [""]}"#),
            bad,
        ),
        (Method::PUT, format!("{c}/tags"), Some(&too_many_tags), bad),
        // DELETE /conversations/{id}
        (Method::DELETE, "/conversations/zzz".into(), None, bad),
        // GET /mobile/sync
        (Method::GET, "/mobile/sync?limit=0".into(), None, bad),
        (
            Method::GET,
            "/mobile/sync?includeMessages=x".into(),
            None,
            bad,
        ),
        (
            Method::GET,
            "/mobile/sync?since=forged.cursor".into(),
            None,
            bad,
        ),
        // POST /mobile/batch (malformed as a whole: nothing runs)
        (Method::POST, "/mobile/batch".into(), None, bad),
        (Method::POST, "/mobile/batch".into(), Some("{oops"), bad),
        (
            Method::POST,
            "/mobile/batch".into(),
            Some(r#"{"operations": {"type": "delete"}}"#),
            bad,
        ),
    ];

    for (method, path, body, expected) in cases {
        let what = format!(
            "{method} {} {}",
            &path[..path.len().min(80)],
            body.map_or("", |b| &b[..b.len().min(60)])
        );
        let reply = alice.send(method, &path, body).await;
        assert_error_shape(&reply, expected, &what);
    }

    assert_eq!(
        items_of_conversation(&api.state, &user, &id).await,
        items_before,
        "nothing written"
    );
    assert_eq!(
        alice.get("/conversations?includeArchived=true").await.body,
        list_before
    );
}

#[tokio::test]
async fn unknown_conversations_are_not_found_with_the_error_shape() {
    let api = LocalApi::start().await;
    let alice = api.as_user(&new_user());
    let reply = alice
        .get(&format!("/conversations/{}", uuid::Uuid::new_v4()))
        .await;
    assert_error_shape(&reply, StatusCode::NOT_FOUND, "unknown id");
}
