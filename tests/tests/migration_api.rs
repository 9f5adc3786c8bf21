//! `POST /conversations/migrate` over HTTP through the local gateway: the caller's own memory
//! only, a dry run that writes nothing, repeats that add nothing, and bad requests refused.

use chrono::{Duration, Utc};
use domain::memory::MemoryEntry;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use shared::model::{Role, UserId};
use tests::{memory_entry, new_user, table_snapshot, LocalApi};

/// Three entries of `user`'s short-term memory, two hours old: two in one session, one in a
/// later session.
async fn remember_three(api: &LocalApi, user: &str) {
    let at = Utc::now() - Duration::hours(2);
    let entries: Vec<MemoryEntry> = [
        (0, Role::User, "Hello"),
        (1, Role::Assistant, "Hi!"),
        (90, Role::User, "Later"),
    ]
    .into_iter()
    .map(|(minute, role, content)| memory_entry(at + Duration::minutes(minute), role, content))
    .collect();
    api.state
        .assistant
        .memory()
        .remember(&UserId::parse(user).unwrap(), &entries)
        .await
        .unwrap();
}

fn counts(body: &Value) -> (u64, u64, u64) {
    (
        body["conversationsCreated"].as_u64().unwrap(),
        body["messagesMigrated"].as_u64().unwrap(),
        body["messagesAlreadyPresent"].as_u64().unwrap(),
    )
}

#[tokio::test]
async fn the_callers_memory_becomes_conversations_after_a_dry_run_and_a_repeat_adds_nothing() {
    let api = LocalApi::start().await;
    let user = new_user();
    remember_three(&api, &user).await;
    let alice = api.as_user(&user);
    let before = table_snapshot(&api.state).await;

    let dry = alice
        .post("/conversations/migrate", json!({"dryRun": true}))
        .await;
    assert_eq!(dry.status, StatusCode::OK, "{:?}", dry.body);
    assert_eq!(dry.body["dryRun"], true);
    assert_eq!(counts(&dry.body), (2, 3, 0));
    assert_eq!(
        table_snapshot(&api.state).await,
        before,
        "a dry run writes nothing"
    );

    let real = alice
        .send(Method::POST, "/conversations/migrate", None)
        .await;
    assert_eq!(real.status, StatusCode::OK);
    assert_eq!(real.body["dryRun"], false);
    assert_eq!(counts(&real.body), counts(&dry.body));
    assert_eq!(real.body["skippedCount"], 0);

    let listed = alice.get("/conversations").await;
    let titles: Vec<&str> = listed.body["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["Later", "Hello"]);

    let again = alice.post("/conversations/migrate", json!({})).await;
    assert_eq!(counts(&again.body), (0, 0, 0));
}

#[tokio::test]
async fn a_migration_touches_only_the_callers_own_memory() {
    let api = LocalApi::start().await;
    let (a, b) = (new_user(), new_user());
    remember_three(&api, &a).await;
    let before = table_snapshot(&api.state).await;

    let bobs = api
        .as_user(&b)
        .post("/conversations/migrate", json!({}))
        .await;
    assert_eq!(bobs.status, StatusCode::OK);
    assert_eq!(counts(&bobs.body), (0, 0, 0));
    assert_eq!(
        table_snapshot(&api.state).await,
        before,
        "nothing of Alice's moved"
    );
    assert_eq!(
        api.as_user(&b).get("/conversations").await.body["conversations"],
        json!([])
    );

    let alices = api
        .as_user(&a)
        .post("/conversations/migrate", json!({}))
        .await;
    assert_eq!(counts(&alices.body), (2, 3, 0));
}

#[tokio::test]
async fn bad_migration_requests_get_the_error_shape_and_change_nothing() {
    let api = LocalApi::start().await;
    let user = new_user();
    remember_three(&api, &user).await;
    let alice = api.as_user(&user);
    let before = table_snapshot(&api.state).await;

    for body in [
        r#"{"dryRun": "yes"}"#,
        r#"{"dry_run": true}"#,
        r#"{"dryRun": true, "user": "someone-else"}"#,
        r#"[true]"#,
        "not json",
    ] {
        let reply = alice
            .send(Method::POST, "/conversations/migrate", Some(body))
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(reply.error_code(), "invalid_request", "{body}");
        assert!(reply.body["error"]["message"].is_string());
    }
    let anonymous = api
        .anonymous()
        .post("/conversations/migrate", json!({}))
        .await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert_eq!(table_snapshot(&api.state).await, before);
}
