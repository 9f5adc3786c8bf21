//! Deleting a conversation removes every copy of it: its own partition, and under its owner
//! the short-term memory of its exchanges and the completion records holding its replies. No
//! context, no retried request and no scan of the table finds it afterwards; only the
//! tombstone that keeps it deleted names it.

use reqwest::StatusCode;
use serde_json::json;
use tests::{new_user, table_snapshot, LocalApi};

/// The items of the table whose attributes mention `text`, as (PK, SK).
async fn items_mentioning(api: &LocalApi, text: &str) -> Vec<(String, String)> {
    table_snapshot(&api.state)
        .await
        .into_iter()
        .filter(|item| format!("{item:?}").contains(text))
        .map(|item| {
            let key = |name: &str| item[name].as_s().cloned().unwrap_or_default();
            (key("PK"), key("SK"))
        })
        .collect()
}

#[tokio::test]
async fn a_deleted_conversations_exchanges_leave_short_term_memory_and_the_completion_records() {
    let api = LocalApi::start().await;
    let user = new_user();
    let alice = api.as_user(&user);
    let id = alice.create_conversation(Some("Bank")).await;
    let pin = format!("{:04}", uuid::Uuid::new_v4().as_u128() % 10_000);
    let secret = format!("my bank PIN is {pin} (note {})", uuid::Uuid::new_v4());
    let completion = json!({
        "prompt": secret, "conversationId": id, "requestId": "pin-1", "stream": false
    });
    let reply = alice.post("/completion", completion.clone()).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    let copies = items_mentioning(&api, &secret).await;
    assert!(
        copies.iter().any(|(pk, _)| pk.ends_with("#MEMORY"))
            && copies.iter().any(|(pk, _)| pk.ends_with("#COMPLETION")),
        "the exchange is in short-term memory and in the completion record: {copies:?}"
    );

    let deleted = alice.delete(&format!("/conversations/{id}")).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{:?}", deleted.body);

    // With no conversation left, the context comes from short-term memory: without the PIN.
    let context = alice.get("/conversations/context").await;
    assert_eq!(context.status, StatusCode::OK, "{:?}", context.body);
    assert!(
        !context.body.to_string().contains(&secret),
        "the deleted exchange is not in the context: {}",
        context.body
    );
    assert_eq!(items_mentioning(&api, &secret).await, vec![]);
    assert_eq!(
        items_mentioning(&api, &id).await,
        vec![(format!("USER#{user}#DELETED"), format!("CONV#{id}"))],
        "only the tombstone names the conversation"
    );

    // A retry of the request is not answered from a record of the deleted exchange.
    let retried = alice.post("/completion", completion).await;
    assert_eq!(retried.status, StatusCode::NOT_FOUND, "{:?}", retried.body);
    assert_eq!(items_mentioning(&api, &secret).await, vec![]);
}

#[tokio::test]
async fn a_delete_forgets_only_that_conversations_exchanges() {
    let api = LocalApi::start().await;
    let user = new_user();
    let alice = api.as_user(&user);
    let kept = alice.create_conversation(Some("Kept")).await;
    let gone = alice.create_conversation(Some("Gone")).await;
    let say = |conversation: &str, prompt: &str, request: &str| {
        json!({
            "prompt": prompt, "conversationId": conversation, "requestId": request,
            "stream": false
        })
    };
    let kept_prompt = format!("keep this {}", uuid::Uuid::new_v4());
    let gone_prompt = format!("forget this {}", uuid::Uuid::new_v4());
    for body in [
        say(&kept, &kept_prompt, "kept-1"),
        say(&gone, &gone_prompt, "gone-1"),
    ] {
        let reply = alice.post("/completion", body).await;
        assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    }
    let kept_before = items_mentioning(&api, &kept_prompt).await;

    let deleted = alice.delete(&format!("/conversations/{gone}")).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);

    assert_eq!(items_mentioning(&api, &gone_prompt).await, vec![]);
    assert_eq!(items_mentioning(&api, &kept_prompt).await, kept_before);
    let replayed = alice
        .post("/completion", say(&kept, &kept_prompt, "kept-1"))
        .await;
    assert_eq!(replayed.status, StatusCode::OK);
    assert_eq!(replayed.body["replayed"], true);
}

#[tokio::test]
async fn a_deleted_conversation_leaves_no_batch_answer_holding_its_content() {
    let api = LocalApi::start().await;
    let user = new_user();
    let alice = api.as_user(&user);
    let secret = format!("my door code is {}", uuid::Uuid::new_v4());
    let title = format!("Codes {}", uuid::Uuid::new_v4());
    let kept_words = format!("kept {}", uuid::Uuid::new_v4());
    let kept_title = format!("Kept {}", uuid::Uuid::new_v4());
    let kept = alice.create_conversation(Some("Kept")).await;
    let batch = json!({ "operations": [
        { "opId": "c1", "type": "createConversation", "clientConversationId": "codes", "title": title },
        { "opId": "m1", "type": "addMessage", "clientConversationId": "codes", "role": "user", "content": secret },
        { "opId": "m2", "type": "addMessage", "conversationId": kept, "role": "user", "content": kept_words },
        { "opId": "r2", "type": "rename", "conversationId": kept, "title": kept_title },
    ]});
    let reply = alice.post("/mobile/batch", batch.clone()).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    let id = reply.body["conversationIds"]["codes"]
        .as_str()
        .unwrap()
        .to_owned();
    let copies = items_mentioning(&api, &title).await;
    assert!(
        copies.iter().any(|(pk, _)| pk.ends_with("#BATCH")),
        "the batch's answer holds the title: {copies:?}"
    );

    let deleted = alice.delete(&format!("/conversations/{id}")).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{:?}", deleted.body);
    assert_eq!(items_mentioning(&api, &secret).await, vec![]);
    assert_eq!(items_mentioning(&api, &title).await, vec![]);
    assert_eq!(
        items_mentioning(&api, &id).await,
        vec![(format!("USER#{user}#DELETED"), format!("CONV#{id}"))],
        "only the tombstone names the conversation"
    );
    // The other conversation's answers stay, and replay as they were.
    assert!(items_mentioning(&api, &kept_title)
        .await
        .iter()
        .any(|(pk, _)| pk.ends_with("#BATCH")));
    let replayed = alice.post("/mobile/batch", batch).await;
    let results = replayed.body["results"].as_array().unwrap();
    assert_eq!(results[2]["replayed"], true);
    assert_eq!(results[3]["replayed"], true);
    assert_eq!(results[3]["body"]["title"], kept_title.as_str());
    assert_eq!(
        results[0]["status"], 409,
        "the deleted conversation is not created again"
    );
    // The deleted conversation's operations are not answered with its content again.
    assert!(!replayed.body.to_string().contains(&secret));
    assert_eq!(items_mentioning(&api, &secret).await, vec![]);
}
