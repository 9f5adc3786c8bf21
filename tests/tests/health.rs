//! `GET /health` through the local gateway: no token, no user data, each dependency checked
//! within its timeout, 503 naming what failed.

use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::json;
use shared::clock::SystemClock;
use shared::migration::RunSummary;
use tests::{state_configured, LocalApi, Reply};

async fn health_of(api: &LocalApi) -> Reply {
    // A hang guard, not a speed target: each check has its own 1 s timeout.
    tokio::time::timeout(
        std::time::Duration::from_secs(20),
        api.anonymous().get("/health"),
    )
    .await
    .expect("the health check answers")
}

#[tokio::test]
async fn all_is_well_without_a_token_and_nothing_about_any_user_is_said() {
    let api = LocalApi::start().await;
    let alice = api.as_user(&tests::new_user());
    let id = alice.create_conversation(Some("Private title")).await;

    let reply = health_of(&api).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    assert_eq!(reply.body["status"], "ok");
    assert_eq!(reply.body["failed"], json!([]));
    let checks = &reply.body["checks"];
    for name in ["table", "bucket", "cache", "migration"] {
        assert_eq!(checks[name]["ok"], true, "{name}: {:?}", checks[name]);
    }
    assert_eq!(checks["table"]["status"], "ACTIVE");
    assert_eq!(checks["cache"]["configured"], true);
    assert_eq!(checks["migration"]["status"], "none yet");
    let text = reply.body.to_string();
    assert!(!text.contains(&id) && !text.contains("Private title"));
}

#[tokio::test]
async fn a_cache_that_never_answers_makes_it_unhealthy_without_hanging() {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("redis://{}", silent.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let state = state_configured(
        &[("CACHE_URL", &url), ("HEALTH_CHECK_TIMEOUT_MS", "300")],
        Arc::new(SystemClock),
    )
    .await;
    let api = LocalApi::serving(state).await;
    let reply = health_of(&api).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.body["status"], "unhealthy");
    assert_eq!(reply.body["failed"], json!(["cache"]));
    // The cache client's own 50 ms timeout, or the check's: either way, said in a few words.
    let error = reply.body["checks"]["cache"]["error"].as_str().unwrap();
    assert!(
        error == "timed out" || error.starts_with("unreachable"),
        "{error}"
    );
    assert_eq!(reply.body["checks"]["table"]["ok"], true);
}

#[tokio::test]
async fn a_missing_bucket_is_named() {
    let state = state_configured(
        &[("ATTACHMENTS_BUCKET", "no-such-bucket-anywhere")],
        Arc::new(SystemClock),
    )
    .await;
    let api = LocalApi::serving(state).await;
    let reply = health_of(&api).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.body["failed"], json!(["bucket"]));
    assert!(reply.body["checks"]["bucket"]["error"]
        .as_str()
        .unwrap()
        .starts_with("refused"));
}

#[tokio::test]
async fn a_migration_run_that_could_not_migrate_some_users_is_reported() {
    let api = LocalApi::start().await;
    let store = api.state.conversations.store();
    let mut run = RunSummary::started("run-1", false, chrono::Utc::now());
    store.start_run(&run).await.unwrap();
    let reply = health_of(&api).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    assert_eq!(
        reply.body["checks"]["migration"]["lastRun"]["runId"],
        "run-1"
    );
    assert_eq!(reply.body["checks"]["migration"]["status"], "running");

    run.run_id = "run-2".into();
    run.users_failed = 3;
    run.started_at = shared::keys::sortable_time(chrono::Utc::now());
    store.start_run(&run).await.unwrap();
    let reply = health_of(&api).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.body["failed"], json!(["migration"]));
    assert_eq!(
        reply.body["checks"]["migration"]["lastRun"]["usersFailed"],
        3
    );
}

/// `GET /health` as its Lambda function serves it: one state for every request.
async fn health_from(state: &health_check::State) -> (StatusCode, Option<u64>) {
    let request = lambda_http::http::Request::builder()
        .uri("/health")
        .body(lambda_http::Body::Empty)
        .unwrap();
    let response = health_check::http::health(state, request).await.unwrap();
    let age = response
        .headers()
        .get("age")
        .and_then(|age| age.to_str().ok()?.parse().ok());
    (
        StatusCode::from_u16(response.status().as_u16()).unwrap(),
        age,
    )
}

#[tokio::test]
async fn a_report_is_answered_again_for_a_few_seconds_without_calling_anything() {
    let server = std::env::var("AWS_ENDPOINT_URL").expect("set by scripts/test.sh");
    let proxy = tests::proxy::FaultProxy::start(server.trim_start_matches("http://")).await;
    let core = tests::state_through(proxy.endpoint(), &[("CACHE_URL", "")]).await;
    let function = health_check::State::over(core.core.clone());
    assert_eq!(health_from(&function).await, (StatusCode::OK, Some(0)));

    // The table and the bucket stop answering: the function's next answers within the window
    // are its last report, not new calls.
    proxy.set(tests::proxy::ProxyMode::Down);
    let (status, age) = health_from(&function).await;
    assert_eq!(status, StatusCode::OK);
    assert!(age.is_some_and(|age| age < health_check::http::REPORT_REUSED_FOR.as_secs()));

    // A new sandbox (or the next window) checks again and sees them gone.
    let fresh = health_check::State::over(core.core.clone());
    assert_eq!(health_from(&fresh).await.0, StatusCode::SERVICE_UNAVAILABLE);
}
