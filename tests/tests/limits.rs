//! Per-user limits on the expensive routes: a request rate per kind of route and a daily
//! budget of model tokens, counted in the table. Over a limit a user gets 429 `rate_limited`
//! with `Retry-After`; every other user goes on as before; `GET /usage` shows the counts.

use std::sync::Arc;

use chrono::{Duration, TimeZone, Utc};
use reqwest::StatusCode;
use serde_json::json;
use shared::clock::ManualClock;
use tests::{new_user, state_configured, LocalApi, Reply};

/// 12:00:30 UTC: half a minute before the next window, eleven and a half hours before the
/// next day.
fn half_past_noon() -> Arc<ManualClock> {
    Arc::new(ManualClock::at(
        Utc.with_ymd_and_hms(2026, 12, 3, 12, 0, 30).unwrap(),
    ))
}

async fn api_limited(limits: &[(&str, &str)], clock: Arc<ManualClock>) -> LocalApi {
    LocalApi::serving(state_configured(limits, clock).await).await
}

fn retry_after(reply: &Reply) -> u64 {
    reply.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

fn prompt(text: &str) -> serde_json::Value {
    json!({ "prompt": text })
}

#[tokio::test]
async fn a_user_over_their_completion_rate_gets_429_with_retry_after_while_another_is_unaffected() {
    let clock = half_past_noon();
    let api = api_limited(&[("LIMIT_COMPLETIONS_PER_MINUTE", "2")], clock.clone()).await;
    let (alice, bob) = (api.as_user(&new_user()), api.as_user(&new_user()));

    for n in 0..2 {
        let reply = alice
            .post("/completion", prompt(&format!("question {n}")))
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    }
    let refused = alice.post("/completion", prompt("one more")).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.error_code(), "rate_limited");
    assert_eq!(retry_after(&refused), 30, "until the next minute");
    assert!(refused.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("at most 2 a minute"));

    let reply = bob.post("/completion", prompt("hello")).await;
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "another user is not limited by alice"
    );

    clock.advance(Duration::seconds(30));
    let reply = alice.post("/completion", prompt("the next minute")).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);

    let usage = alice.get("/usage").await;
    assert_eq!(usage.status, StatusCode::OK);
    assert_eq!(
        usage.body["requests"]["completion"]["today"], 3,
        "the refused one is not counted"
    );
    assert_eq!(usage.body["requests"]["completion"]["perMinute"], 2);
}

#[tokio::test]
async fn a_user_out_of_model_tokens_waits_until_midnight_utc_and_usage_shows_why() {
    let clock = half_past_noon();
    let api = api_limited(&[("LIMIT_DAILY_MODEL_TOKENS", "40")], clock.clone()).await;
    let (alice, bob) = (api.as_user(&new_user()), api.as_user(&new_user()));

    let first = alice
        .post(
            "/completion",
            prompt("Tell me about the sea, the sky and the mountains."),
        )
        .await;
    assert_eq!(first.status, StatusCode::OK, "{:?}", first.body);
    let spent = first.body["usage"]["inputTokens"].as_u64().unwrap()
        + first.body["usage"]["outputTokens"].as_u64().unwrap();
    assert!(spent >= 40, "one exchange spends the budget: {spent}");

    let refused = alice.post("/completion", prompt("and the rivers?")).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.error_code(), "rate_limited");
    assert_eq!(retry_after(&refused), 11 * 3600 + 59 * 60 + 30);

    let usage = alice.get("/usage").await;
    assert_eq!(usage.body["day"], "2026-12-03");
    assert_eq!(usage.body["resetsAt"], "2026-12-04T00:00:00.000Z");
    assert_eq!(usage.body["modelTokens"]["used"], spent);
    assert_eq!(usage.body["modelTokens"]["limit"], 40);
    assert_eq!(usage.body["modelTokens"]["remaining"], 0);

    let reply = bob.post("/completion", prompt("hello")).await;
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "another user's budget is their own"
    );

    clock.advance(Duration::hours(12));
    let reply = alice.post("/completion", prompt("a new day")).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    assert_eq!(alice.get("/usage").await.body["day"], "2026-12-04");
}

#[tokio::test]
async fn each_expensive_route_is_limited_by_its_own_kind() {
    let clock = half_past_noon();
    let api = api_limited(
        &[
            ("LIMIT_SEARCHES_PER_MINUTE", "1"),
            ("LIMIT_EXPORTS_PER_MINUTE", "1"),
            ("LIMIT_BATCHES_PER_MINUTE", "1"),
            ("LIMIT_MIGRATIONS_PER_MINUTE", "1"),
        ],
        clock,
    )
    .await;
    let alice = api.as_user(&new_user());
    let conversation = alice.create_conversation(Some("Rivers")).await;

    let batch =
        json!({ "operations": [{ "type": "getConversation", "conversationId": conversation }] });
    let routes = [
        ("GET", "/search?q=rivers".to_owned(), None),
        ("GET", format!("/conversations/{conversation}/export"), None),
        ("POST", "/mobile/batch".to_owned(), Some(batch.to_string())),
        (
            "POST",
            "/conversations/migrate".to_owned(),
            Some(json!({ "dryRun": true }).to_string()),
        ),
    ];
    for (method, path, body) in &routes {
        let method: reqwest::Method = method.parse().unwrap();
        let first = alice.send(method.clone(), path, body.as_deref()).await;
        assert!(
            first.status.is_success() || first.status.is_redirection(),
            "{path}: {} {:?}",
            first.status,
            first.body
        );
        let again = alice.send(method, path, body.as_deref()).await;
        assert_eq!(again.status, StatusCode::TOO_MANY_REQUESTS, "{path}");
        assert_eq!(again.error_code(), "rate_limited");
        assert!(retry_after(&again) >= 1);
    }
    // An account export is an export too: this minute's one is spent.
    let account_export = alice.post("/exports", json!({})).await;
    assert_eq!(account_export.status, StatusCode::TOO_MANY_REQUESTS);
    // Listing, reading and writing conversations are never limited.
    for _ in 0..5 {
        assert_eq!(alice.get("/conversations").await.status, StatusCode::OK);
    }
    let usage = alice.get("/usage").await.body;
    assert_eq!(usage["requests"]["search"]["today"], 1);
    assert_eq!(usage["requests"]["export"]["today"], 1);
    assert_eq!(usage["requests"]["batch"]["today"], 1);
    assert_eq!(usage["requests"]["migration"]["today"], 1);
    assert_eq!(usage["requests"]["completion"]["today"], 0);
}

#[tokio::test]
async fn concurrent_requests_never_pass_a_limit_together() {
    let api = api_limited(&[("LIMIT_SEARCHES_PER_MINUTE", "5")], half_past_noon()).await;
    let alice = api.as_user(&new_user());
    let replies = futures::future::join_all((0..12).map(|_| alice.get("/search?q=anything"))).await;
    let admitted = replies
        .iter()
        .filter(|r| r.status == StatusCode::OK)
        .count();
    let refused = replies
        .iter()
        .filter(|r| r.status == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!((admitted, refused), (5, 7));
}

#[tokio::test]
async fn a_request_refused_for_bad_input_spends_nothing() {
    let api = api_limited(&[("LIMIT_COMPLETIONS_PER_MINUTE", "1")], half_past_noon()).await;
    let alice = api.as_user(&new_user());
    let bad = alice
        .post("/completion", json!({ "prompt": "hi", "maxTokens": 0 }))
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let good = alice.post("/completion", prompt("hi")).await;
    assert_eq!(good.status, StatusCode::OK, "{:?}", good.body);
}

#[tokio::test]
async fn usage_needs_a_token_and_shows_only_the_callers_counts() {
    let api = api_limited(&[], half_past_noon()).await;
    assert_eq!(
        api.anonymous().get("/usage").await.status,
        StatusCode::UNAUTHORIZED
    );
    let (alice, bob) = (api.as_user(&new_user()), api.as_user(&new_user()));
    alice.get("/search?q=rivers").await;
    let usage = bob.get("/usage").await.body;
    assert_eq!(usage["requests"]["search"]["today"], 0);
    assert_eq!(usage["modelTokens"]["used"], 0);
    assert_eq!(usage["requests"]["completion"]["perMinute"], 20);
    assert_eq!(usage["modelTokens"]["limit"], 200_000);
}

/// Two requests at a minute's edge whose clocks disagree: the later clock opened the next
/// minute first, and the earlier one counts in it (it is not refused as a conflict, 503).
#[tokio::test]
async fn a_request_from_a_clock_a_moment_behind_counts_in_the_minute_already_opened() {
    let state = state_configured(
        &[("LIMIT_SEARCHES_PER_MINUTE", "2")],
        Arc::new(shared::clock::SystemClock),
    )
    .await;
    let user = shared::model::UserId::parse(&new_user()).unwrap();
    let search = domain::usage::Metered::Search;
    let edge = Utc.with_ymd_and_hms(2026, 12, 3, 12, 1, 0).unwrap();
    let behind = edge - Duration::milliseconds(100);
    state.usage.admit(&user, search, edge).await.unwrap();
    state.usage.admit(&user, search, behind).await.unwrap();
    // Both counted in the new minute: a third is refused until it ends.
    let refused = state.usage.admit(&user, search, behind).await.unwrap_err();
    match refused {
        shared::Error::RateLimited {
            retry_after_seconds,
            ..
        } => assert_eq!(retry_after_seconds, 61, "to the end of 12:01"),
        other => panic!("{other:?}"),
    }
}

/// A retry of an answered request, or a batch sent again whose every operation was applied,
/// does nothing new: it is answered at once, even by a user at their limit, and not counted.
#[tokio::test]
async fn retries_of_answered_requests_are_answered_at_the_limit_and_not_counted() {
    let clock = half_past_noon();
    let api = api_limited(
        &[
            ("LIMIT_COMPLETIONS_PER_MINUTE", "1"),
            ("LIMIT_BATCHES_PER_MINUTE", "1"),
        ],
        clock,
    )
    .await;
    let alice = api.as_user(&new_user());
    let asked = json!({ "prompt": "once", "requestId": "retry-1", "stream": false });
    let first = alice.post("/completion", asked.clone()).await;
    assert_eq!(first.status, StatusCode::OK, "{:?}", first.body);
    let retried = alice.post("/completion", asked).await;
    assert_eq!(retried.status, StatusCode::OK, "{:?}", retried.body);
    assert_eq!(retried.body["replayed"], true);
    let another = alice.post("/completion", prompt("a new question")).await;
    assert_eq!(another.status, StatusCode::TOO_MANY_REQUESTS);

    let batch = json!({ "operations": [
        { "opId": "c1", "type": "createConversation", "clientConversationId": "x", "title": "Once" },
    ]});
    let applied = alice.post("/mobile/batch", batch.clone()).await;
    assert_eq!(applied.status, StatusCode::OK, "{:?}", applied.body);
    let replayed = alice.post("/mobile/batch", batch).await;
    assert_eq!(replayed.status, StatusCode::OK, "{:?}", replayed.body);
    assert_eq!(replayed.body["results"][0]["replayed"], true);

    let usage = alice.get("/usage").await;
    assert_eq!(usage.body["requests"]["completion"]["today"], 1);
    assert_eq!(usage.body["requests"]["batch"]["today"], 1);
}
