//! Streaming completions: the reply arrives in pieces, and is generated to the end and saved
//! whole even when the reader leaves half-way.

use std::time::Duration;

use assistant::service::{CompletionEvent, CompletionRequest};
use chrono::Utc;
use shared::model::UserId;
use tests::{new_user, LocalApi};

fn request(prompt: &str, conversation: &str) -> CompletionRequest {
    CompletionRequest::parse(prompt.into(), Some(conversation), None, None, None).unwrap()
}

#[tokio::test]
async fn a_streamed_reply_arrives_in_pieces_and_is_saved_whole() {
    let api = LocalApi::start().await;
    let user = new_user();
    let alice = api.as_user(&user);
    let id = alice.create_conversation(Some("Streaming")).await;

    let mut events = api
        .state
        .assistant
        .complete_streaming(
            &UserId::parse(&user).unwrap(),
            request("Tell me a story", &id),
            Utc::now(),
        )
        .await
        .unwrap();
    let mut pieces = Vec::new();
    let done = loop {
        match events
            .recv()
            .await
            .expect("the stream ends with an outcome")
        {
            CompletionEvent::Delta(text) => pieces.push(text),
            CompletionEvent::Done(done) => break done,
            CompletionEvent::Failed(error) => panic!("failed: {error}"),
        }
    };
    assert!(pieces.len() > 3, "the reply came in pieces");
    assert_eq!(pieces.concat(), done.reply);

    let conversation = alice.get(&format!("/conversations/{id}")).await;
    assert_eq!(conversation.body["messageCount"], 2);
    assert_eq!(
        conversation.body["messages"][1]["content"],
        done.reply.as_str()
    );
}

#[tokio::test]
async fn a_reader_that_leaves_half_way_loses_nothing() {
    let api = LocalApi::start().await;
    let user = new_user();
    let alice = api.as_user(&user);
    let id = alice.create_conversation(Some("Dropped")).await;

    let mut events = api
        .state
        .assistant
        .complete_streaming(
            &UserId::parse(&user).unwrap(),
            request("Are you still there?", &id),
            Utc::now(),
        )
        .await
        .unwrap();
    let first = events.recv().await;
    assert!(matches!(first, Some(CompletionEvent::Delta(_))));
    drop(events); // the app went into a tunnel

    let mut saved = serde_json::Value::Null;
    for _ in 0..100 {
        saved = alice.get(&format!("/conversations/{id}")).await.body;
        if saved["messageCount"] == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        saved["messageCount"], 2,
        "the reply was saved after the reader left"
    );
    let reply = saved["messages"][1]["content"].as_str().unwrap();
    assert!(reply.starts_with("You said: \"Are you still there?\""));
    assert!(reply.ends_with("in view."), "saved whole: {reply}");
}

/// The events of a `text/event-stream` body, as (event, data) pairs.
fn parse_events(body: &str) -> Vec<(String, serde_json::Value)> {
    body.split("\n\n")
        .filter(|block| !block.trim().is_empty())
        .map(|block| {
            let mut event = String::new();
            let mut data = String::new();
            for line in block.lines() {
                if let Some(name) = line.strip_prefix("event: ") {
                    event = name.to_owned();
                } else if let Some(payload) = line.strip_prefix("data: ") {
                    data.push_str(payload);
                }
            }
            (
                event,
                serde_json::from_str(&data).expect("each event carries JSON"),
            )
        })
        .collect()
}

async fn post_streaming(api: &LocalApi, user: &str, body: serde_json::Value) -> (String, String) {
    let response = reqwest::Client::new()
        .post(format!("{}/completion", api.base))
        .bearer_auth(api.tokens.mint(user, 600))
        .json(&body)
        .send()
        .await
        .unwrap();
    let kind = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (kind, response.text().await.unwrap())
}

#[tokio::test]
async fn stream_true_answers_with_server_sent_events_ending_in_done() {
    let api = LocalApi::start().await;
    let user = new_user();
    let alice = api.as_user(&user);
    let id = alice.create_conversation(Some("SSE")).await;

    let (kind, body) = post_streaming(
        &api,
        &user,
        serde_json::json!({"prompt": "Stream this", "conversationId": id, "stream": true}),
    )
    .await;
    assert_eq!(kind, "text/event-stream");
    let events = parse_events(&body);
    let (last, done) = events.last().unwrap();
    assert_eq!(last, "done");
    let pieces: String = events
        .iter()
        .filter(|(event, _)| event == "delta")
        .map(|(_, data)| data["text"].as_str().unwrap())
        .collect();
    assert!(events.len() > 3);
    assert_eq!(done["response"], pieces.as_str());
    assert_eq!(done["savedTo"], "conversation");
    let conversation = alice.get(&format!("/conversations/{id}")).await;
    assert_eq!(conversation.body["messageCount"], 2);
    assert_eq!(conversation.body["messages"][1]["content"], pieces.as_str());
}

#[tokio::test]
async fn a_model_failing_during_a_stream_ends_it_with_an_error_event_and_the_prompt_kept() {
    let server = tests::ChatServer::start(tests::ChatBehaviour::Fail).await;
    let state = tests::state_configured(
        &[
            ("MODEL_PROVIDER", "openai"),
            ("OPENAI_BASE_URL", &server.base_url),
            ("MODEL_ID", "test-model"),
        ],
        std::sync::Arc::new(shared::clock::SystemClock),
    )
    .await;
    let api = LocalApi::serving(state).await;
    let user = new_user();
    let alice = api.as_user(&user);
    let id = alice.create_conversation(Some("Failing stream")).await;

    let (_, body) = post_streaming(
        &api,
        &user,
        serde_json::json!({"prompt": "Hello?", "conversationId": id, "stream": true}),
    )
    .await;
    let events = parse_events(&body);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].0, "error");
    assert_eq!(events[0].1["error"]["code"], "model_failed");
    let conversation = alice.get(&format!("/conversations/{id}")).await;
    assert_eq!(conversation.body["messageCount"], 1);
}
