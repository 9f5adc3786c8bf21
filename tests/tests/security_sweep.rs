//! The fault suite's security sweep: every route of the template, with no token, an expired
//! token, a token signed with another key, another user's ids and tampered cursors. All are
//! refused, and never in a way that tells whether the target exists. Tokens are checked by the
//! local gateway as API Gateway's JWT authorizer checks them in AWS (the streaming Function
//! URL's own verifier has its sweep in tests/streaming_url.rs).

use std::collections::BTreeSet;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tests::{new_user, template, LocalApi};

struct Answer {
    status: StatusCode,
    body: Value,
}

async fn send(
    api: &LocalApi,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &Value,
) -> Answer {
    let method = Method::from_bytes(method.as_bytes()).unwrap();
    let mut request = reqwest::Client::new().request(method, format!("{}{path}", api.base));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if !body.is_null() {
        request = request
            .header("content-type", "application/json")
            .body(body.to_string());
    }
    let response = request.send().await.expect("the local API answers");
    let status = response.status();
    let text = response.text().await.unwrap();
    Answer {
        status,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
    }
}

/// A request a route's owner could send: the path with its ids, and a valid body.
fn request_for(
    method: &str,
    route: &str,
    conversation: &str,
    message: &str,
    export: &str,
    share: &str,
    preset: &str,
) -> (String, Value) {
    let path = if route.starts_with("/exports/") {
        route.replace("{id}", export)
    } else if route.starts_with("/presets/") {
        route.replace("{id}", preset)
    } else {
        route
            .replace("{id}", conversation)
            .replace("{messageId}", message)
            .replace("{shareId}", share)
            .replace("{userId}", "someone-she-shares-with")
    };
    let body = match (method, route) {
        ("POST", "/conversations") => json!({"title": "new"}),
        ("POST", "/conversations/{id}/messages") => json!({"role": "user", "content": "hi"}),
        ("PUT", "/conversations/{id}/title") => json!({"title": "renamed"}),
        ("PUT", "/conversations/{id}/archive") => json!({"archived": true}),
        ("PUT", "/conversations/{id}/tags") => json!({"tags": ["x"]}),
        ("POST", "/conversations/{id}/messages/{messageId}/edit") => json!({"content": "hi"}),
        ("PUT", "/conversations/{id}/branch") => json!({"messageId": message}),
        ("POST", "/completion") => json!({"prompt": "hello", "conversationId": conversation}),
        ("POST", "/conversations/migrate") => json!({"dryRun": true}),
        ("POST", "/conversations/{id}/attachments") => {
            json!({"fileName": "a.png", "contentType": "image/png", "size": 10})
        }
        ("POST", "/mobile/batch") => json!({"operations": []}),
        ("POST", "/exports") => json!({}),
        ("POST", "/conversations/{id}/shares") => json!({}),
        ("POST", "/shared/{shareId}/continue") => json!({"requestId": "sweep"}),
        ("POST", "/conversations/{id}/people") => json!({"userId": "someone-she-shares-with"}),
        ("POST", "/presets") => json!({"name": "mine"}),
        ("PUT", "/presets/{id}") => json!({"name": "renamed"}),
        ("PUT", "/conversations/{id}/preset") => json!({"presetId": uuid::Uuid::now_v7()}),
        _ => Value::Null,
    };
    let path = match route {
        "/search" => format!("{path}?q=secret"),
        _ => path,
    };
    (path, body)
}

#[tokio::test]
async fn every_route_refuses_bad_tokens_and_other_users_ids_without_telling_what_exists() {
    let api = LocalApi::start().await;
    let (a, b) = (new_user(), new_user());
    let alice = api.as_user(&a);
    let conversation = alice.create_conversation(Some("Alice's secret")).await;
    let message = alice.say(&conversation, "a secret message").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let export = alice.post("/exports", json!({})).await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let share = alice
        .post(&format!("/conversations/{conversation}/shares"), json!({}))
        .await
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let preset = alice
        .post("/presets", json!({"name": "Alice's preset"}))
        .await
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let unknown_preset = uuid::Uuid::now_v7().to_string();
    let expired = api.tokens.mint(&a, -120);
    let foreign_key = local::Tokens::new("not-the-deployment-secret").mint(&a, 3600);
    let bob = api.tokens.mint(&b, 3600);
    let unknown_conversation = uuid::Uuid::now_v7().to_string();
    let unknown_export = uuid::Uuid::now_v7().to_string();

    let routes = template().routes().unwrap();
    let mut swept = BTreeSet::new();
    for route in &routes {
        let (method, pattern) = (route.method.as_str(), route.path.as_str());
        let (path, body) = request_for(
            method,
            pattern,
            &conversation,
            &message,
            &export,
            &share,
            &preset,
        );
        let what = format!("{method} {pattern}");
        swept.insert((method.to_owned(), pattern.to_owned()));
        if pattern == "/health" {
            // The one public route: no token needed, no user data in it.
            let health = send(&api, method, &path, None, &body).await;
            assert!(health.body.get("conversations").is_none(), "{what}");
            continue;
        }
        if pattern == "/shared/{shareId}" {
            // Public by design: what Alice shared, to anyone holding the link, and nothing of
            // hers beyond it (tests/sharing.rs); a token, good or bad, changes nothing.
            for token in [None, Some(expired.as_str()), Some("not.a.jwt")] {
                let shared = send(&api, method, &path, token, &body).await;
                assert_eq!(shared.status, StatusCode::OK, "{what}");
                assert!(!shared.body.to_string().contains(&a), "{what}");
            }
            continue;
        }
        for (token, why) in [
            (None, "no token"),
            (Some(expired.as_str()), "an expired token"),
            (
                Some(foreign_key.as_str()),
                "a token signed with another key",
            ),
            (Some("not.a.jwt"), "a malformed token"),
        ] {
            let answer = send(&api, method, &path, token, &body).await;
            assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{what}: {why}");
        }
        // Bob with Alice's ids gets what an id nobody has gives: nothing tells them apart.
        if pattern.contains("{id}") {
            let (unknown_path, _) = request_for(
                method,
                pattern,
                &unknown_conversation,
                &message,
                &unknown_export,
                &share,
                &unknown_preset,
            );
            let hers = send(&api, method, &path, Some(&bob), &body).await;
            let nobodys = send(&api, method, &unknown_path, Some(&bob), &body).await;
            assert_eq!(
                hers.status,
                StatusCode::NOT_FOUND,
                "{what}: {:?}",
                hers.body
            );
            assert_eq!(hers.body, nobodys.body, "{what}");
        }
    }
    let all: BTreeSet<(String, String)> = routes
        .iter()
        .map(|r| (r.method.clone(), r.path.clone()))
        .collect();
    assert_eq!(swept, all, "every route was swept");
    // The completion with her conversation id, and the batch naming it, reach nothing.
    let completion = send(
        &api,
        "POST",
        "/completion",
        Some(&bob),
        &json!({"prompt": "hello", "conversationId": conversation}),
    )
    .await;
    assert_eq!(completion.status, StatusCode::NOT_FOUND);

    // Alice's conversation is as she left it.
    let mine = alice.get(&format!("/conversations/{conversation}")).await;
    assert_eq!(mine.body["title"], "Alice's secret");
    assert_eq!(mine.body["messageCount"], 1);
}

/// A cursor with one character changed, keeping it valid base64url.
fn tampered(cursor: &str) -> String {
    let mut chars: Vec<char> = cursor.chars().collect();
    let at = chars.len() / 2;
    chars[at] = if chars[at] == 'A' { 'B' } else { 'A' };
    chars.into_iter().collect()
}

#[tokio::test]
async fn tampered_and_borrowed_cursors_are_refused_on_every_route_that_takes_one() {
    let api = LocalApi::start().await;
    let (a, b) = (new_user(), new_user());
    let alice = api.as_user(&a);
    let bob = api.as_user(&b);
    let conversation = alice.create_conversation(Some("Many")).await;
    for n in 0..4 {
        alice
            .say(&conversation, &format!("secret number {n}"))
            .await;
    }
    alice.create_conversation(Some("Another secret")).await;
    let mut shared = String::new();
    for _ in 0..2 {
        shared = alice
            .post(&format!("/conversations/{conversation}/shares"), json!({}))
            .await
            .body["path"]
            .as_str()
            .unwrap()
            .to_owned();
    }
    let cursors = [
        (
            "/conversations?limit=1&cursor=".to_owned(),
            alice.get("/conversations?limit=1").await.body["nextCursor"].clone(),
        ),
        (
            format!("/conversations/{conversation}?messageLimit=1&before="),
            alice
                .get(&format!("/conversations/{conversation}?messageLimit=1"))
                .await
                .body["olderMessagesCursor"]
                .clone(),
        ),
        (
            "/mobile/sync?since=".to_owned(),
            alice.get("/mobile/sync").await.body["cursor"].clone(),
        ),
        (
            "/shares?limit=1&cursor=".to_owned(),
            alice.get("/shares?limit=1").await.body["nextCursor"].clone(),
        ),
    ];
    for (route, cursor) in &cursors {
        let cursor = cursor
            .as_str()
            .unwrap_or_else(|| panic!("{route}: a cursor"));
        let changed = alice.get(&format!("{route}{}", tampered(cursor))).await;
        assert_eq!(changed.status, StatusCode::BAD_REQUEST, "{route}: tampered");
        assert_eq!(changed.error_code(), "invalid_request");
        let borrowed = bob.get(&format!("{route}{cursor}")).await;
        assert!(
            [StatusCode::BAD_REQUEST, StatusCode::NOT_FOUND].contains(&borrowed.status),
            "{route}: borrowed {}",
            borrowed.status
        );
        let garbage = alice.get(&format!("{route}%00%ff-not-a-cursor")).await;
        assert_eq!(garbage.status, StatusCode::BAD_REQUEST, "{route}: garbage");
    }
    // A share link's cursor belongs to the link, not to a user: anyone holding the link may
    // page it (another link's cursor is refused: tests/sharing.rs), but not a changed one.
    let route = format!("{shared}?messageLimit=1&before=");
    let cursor = alice.get(&format!("{shared}?messageLimit=1")).await.body["olderMessagesCursor"]
        .as_str()
        .expect("a cursor")
        .to_owned();
    for cursor in [tampered(&cursor), "%00%ff-not-a-cursor".to_owned()] {
        let refused = bob.get(&format!("{route}{cursor}")).await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{route}{cursor}");
    }
}
