//! Streaming completions: the reply arrives in pieces, and is generated to the end and saved
//! whole even when the reader leaves half-way.

use std::time::Duration;

use chrono::Utc;
use shared::assistant::{CompletionEvent, CompletionRequest};
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
