//! The streaming Function URL: Cognito access tokens verified in the function (the URL has
//! no API Gateway authorizer), its event through its handler, and events streamed over HTTP.

use std::time::Duration;

use assistant::auth::JwtVerifier;
use chrono::Utc;
use futures::StreamExt;
use http_body_util::BodyExt;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::json;
use tests::{new_user, state, workspace_root, LocalApi};

const ISSUER: &str = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_TestPool";
const CLIENT_ID: &str = "test-app-client";

fn verifier() -> JwtVerifier {
    let jwks: JwkSet = serde_json::from_str(
        &std::fs::read_to_string(workspace_root().join("tests/fixtures/cognito-test-jwks.json"))
            .unwrap(),
    )
    .unwrap();
    JwtVerifier::new(ISSUER, CLIENT_ID, &jwks).unwrap()
}

/// A token as Cognito would sign it, with `claims` changed as given.
fn token(user: &str, change: impl FnOnce(&mut serde_json::Value)) -> String {
    let now = Utc::now().timestamp();
    let mut claims = json!({
        "sub": user, "iss": ISSUER, "client_id": CLIENT_ID, "token_use": "access",
        "iat": now, "exp": now + 600, "scope": "aws.cognito.signin.user.admin",
    });
    change(&mut claims);
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("test-key-1".into());
    let der = std::fs::read(workspace_root().join("tests/fixtures/cognito-test-key.der")).unwrap();
    encode(&header, &claims, &EncodingKey::from_rsa_der(&der)).unwrap()
}

#[tokio::test]
async fn a_cognito_access_token_for_our_client_is_accepted() {
    let user = verifier()
        .verify(&format!("Bearer {}", token("alice-sub", |_| {})))
        .await
        .unwrap();
    assert_eq!(user.as_str(), "alice-sub");
}

#[tokio::test]
async fn tokens_that_api_gateway_would_refuse_are_refused() {
    let verifier = verifier();
    let refused = [
        ("another client", token("a", |c| c["client_id"] = json!("someone-else"))),
        ("an id token", token("a", |c| c["token_use"] = json!("id"))),
        ("another pool", token("a", |c| c["iss"] = json!("https://cognito-idp.eu-west-1.amazonaws.com/other"))),
        ("expired", token("a", |c| c["exp"] = json!(Utc::now().timestamp() - 3600))),
        ("a sub that could spell a key", token("a#ACTIVE", |_| {})),
        ("garbage", "not-a-token".to_owned()),
        (
            "HS256 signed with the public key's bytes",
            encode(
                &Header {
                    kid: Some("test-key-1".into()),
                    ..Header::new(Algorithm::HS256)
                },
                &json!({"sub": "a", "iss": ISSUER, "client_id": CLIENT_ID, "token_use": "access", "exp": Utc::now().timestamp() + 600}),
                &EncodingKey::from_secret(b"test-key-1"),
            )
            .unwrap(),
        ),
    ];
    for (what, token) in refused {
        assert!(
            verifier.verify(&format!("Bearer {token}")).await.is_err(),
            "{what} was accepted"
        );
    }
}

/// A stand-in user pool publishing `keys` at `/.well-known/jwks.json` (what it serves can be
/// changed while it runs), counting the fetches; `hang` makes it never answer.
struct UserPool {
    issuer: String,
    keys: std::sync::Arc<std::sync::Mutex<serde_json::Value>>,
    fetches: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl UserPool {
    async fn start(keys: serde_json::Value, hang: bool) -> Self {
        use axum::routing::get;
        let keys = std::sync::Arc::new(std::sync::Mutex::new(keys));
        let fetches = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (served, counted) = (keys.clone(), fetches.clone());
        let app = axum::Router::new().route(
            "/pool/.well-known/jwks.json",
            get(move || {
                let (served, counted) = (served.clone(), counted.clone());
                async move {
                    counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    if hang {
                        tokio::time::sleep(Duration::from_secs(60)).await;
                    }
                    let keys = served.lock().unwrap().to_string();
                    ([("content-type", "application/json")], keys)
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}/pool", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            issuer,
            keys,
            fetches,
        }
    }

    fn fetches(&self) -> usize {
        self.fetches.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// The test key set with its key under another id.
fn key_set_with_id(kid: &str) -> serde_json::Value {
    let mut keys: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(workspace_root().join("tests/fixtures/cognito-test-jwks.json"))
            .unwrap(),
    )
    .unwrap();
    keys["keys"][0]["kid"] = json!(kid);
    keys
}

#[tokio::test]
async fn a_token_signed_with_a_new_key_makes_the_verifier_fetch_the_pools_keys_again_at_most_once_an_interval(
) {
    let interval = Duration::from_millis(300);
    // The pool published only its old key when the function started.
    let pool = UserPool::start(key_set_with_id("retired-key"), false).await;
    let verifier = JwtVerifier::fetch(&pool.issuer, CLIENT_ID)
        .await
        .unwrap()
        .refreshing_at_most_every(interval);
    assert_eq!(pool.fetches(), 1);
    let signed_with_new_key = format!(
        "Bearer {}",
        token("alice-sub", |c| c["iss"] = json!(pool.issuer))
    );
    *pool.keys.lock().unwrap() = key_set_with_id("test-key-1");

    // Just fetched: an unknown key is refused without asking again.
    assert!(verifier.verify(&signed_with_new_key).await.is_err());
    assert_eq!(pool.fetches(), 1);

    tokio::time::sleep(interval).await;
    let user = verifier.verify(&signed_with_new_key).await.unwrap();
    assert_eq!(user.as_str(), "alice-sub");
    assert_eq!(pool.fetches(), 2);

    // Unknown key ids (made up by anyone) do not make it fetch per request.
    let made_up = {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some("made-up".into());
        let der =
            std::fs::read(workspace_root().join("tests/fixtures/cognito-test-key.der")).unwrap();
        encode(
            &header,
            &json!({"sub": "x"}),
            &EncodingKey::from_rsa_der(&der),
        )
        .unwrap()
    };
    for _ in 0..5 {
        assert!(verifier.verify(&format!("Bearer {made_up}")).await.is_err());
    }
    assert_eq!(pool.fetches(), 2);
    assert!(verifier.verify(&signed_with_new_key).await.is_ok());
}

#[tokio::test]
async fn a_user_pool_that_never_answers_fails_the_cold_start_within_the_fetch_timeout() {
    let pool = UserPool::start(key_set_with_id("test-key-1"), true).await;
    let started = std::time::Instant::now();
    let failed = JwtVerifier::fetch(&pool.issuer, CLIENT_ID).await;
    assert!(failed.is_err());
    // A hang guard, not a speed target: the fetch gives up after KEY_FETCH_TIMEOUT.
    assert!(started.elapsed() < assistant::auth::KEY_FETCH_TIMEOUT + Duration::from_secs(5));
}

#[tokio::test]
async fn the_function_url_event_streams_a_completion_for_the_verified_user() {
    let state = state().await;
    let user = new_user();
    let owner = shared::model::UserId::parse(&user).unwrap();
    let conversation = state
        .conversations
        .create(&owner, None, shared::model::Tags::default(), Utc::now())
        .await
        .unwrap();
    let text = std::fs::read_to_string(workspace_root().join("events/completion-stream.json"))
        .unwrap()
        .replace("0193a4f2-7c1e-7b3a-9f00-5e2d1c4b6a77", &conversation.id.to_string())
        .replace(
            "Bearer <a Cognito access token; the tests sign one with tests/fixtures/cognito-test-key.der>",
            &format!("Bearer {}", token(&user, |_| {})),
        );
    let request = lambda_http::request::from_str(&text).unwrap();
    let verifier = verifier();
    let response = assistant::http::complete_streaming(&state, Some(&verifier), request)
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let body = BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    let body = String::from_utf8(body.to_vec()).unwrap();
    assert!(body.contains("event: delta"));
    assert!(body
        .trim_end()
        .split("\n\n")
        .last()
        .unwrap()
        .starts_with("event: done"));

    let saved = state
        .conversations
        .get(&owner, &conversation.id, 10, None)
        .await
        .unwrap();
    assert_eq!(saved.messages.len(), 2);
}

#[tokio::test]
async fn the_function_url_refuses_a_request_without_a_valid_token() {
    let state = state().await;
    let text =
        std::fs::read_to_string(workspace_root().join("events/completion-stream.json")).unwrap();
    let request = lambda_http::request::from_str(&text).unwrap();
    let verifier = verifier();
    let response = assistant::http::complete_streaming(&state, Some(&verifier), request)
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
}

#[tokio::test]
async fn over_http_a_client_that_hangs_up_after_the_first_event_loses_nothing() {
    let api = LocalApi::start().await;
    let user = new_user();
    let alice = api.as_user(&user);
    let id = alice.create_conversation(Some("Tunnel")).await;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(local::StreamingUrl::new(api.state.clone(), api.tokens.clone()).serve(listener));

    let response = reqwest::Client::new()
        .post(&url)
        .bearer_auth(api.tokens.mint(&user, 600))
        .json(&json!({"prompt": "Going into a tunnel", "conversationId": id, "stream": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut chunks = response.bytes_stream();
    let first = chunks.next().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).starts_with("event: delta"));
    drop(chunks); // the connection goes away

    let mut count = serde_json::Value::Null;
    for _ in 0..100 {
        count = alice.get(&format!("/conversations/{id}")).await.body["messageCount"].clone();
        if count == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(count, 2, "the reply was saved after the client left");
}

#[tokio::test]
async fn the_function_url_counts_completions_against_the_users_limit() {
    let state = tests::state_configured(
        &[("LIMIT_COMPLETIONS_PER_MINUTE", "1")],
        std::sync::Arc::new(shared::clock::SystemClock),
    )
    .await;
    let user = new_user();
    let event = std::fs::read_to_string(workspace_root().join("events/completion-stream.json"))
        .unwrap()
        .replace(
            "Bearer <a Cognito access token; the tests sign one with tests/fixtures/cognito-test-key.der>",
            &format!("Bearer {}", token(&user, |_| {})),
        );
    let send = || async {
        let mut body: serde_json::Value = serde_json::from_str(&event).unwrap();
        // A conversation of nobody's: the prompt goes to the caller's current session.
        let mut request: serde_json::Value =
            serde_json::from_str(body["body"].as_str().unwrap()).unwrap();
        request.as_object_mut().unwrap().remove("conversationId");
        body["body"] = serde_json::Value::String(request.to_string());
        let request = lambda_http::request::from_str(&body.to_string()).unwrap();
        assistant::http::complete_streaming(&state, Some(&verifier()), request)
            .await
            .unwrap()
    };
    assert_eq!(send().await.status(), 200);
    let refused = send().await;
    assert_eq!(refused.status(), 429);
    let retry_after: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after));
    let body = BodyExt::collect(refused.into_body())
        .await
        .unwrap()
        .to_bytes();
    let error: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(error["error"]["code"], "rate_limited");
}
