//! Deleting a conversation removes every copy of it: its own partition, and under its owner
//! the short-term memory of its exchanges and the completion records holding its replies. No
//! context, no retried request and no scan of the table finds it afterwards; only the
//! tombstone that keeps it deleted names it.

use reqwest::StatusCode;
use serde_json::json;
use tests::{new_user, search_blocks_of, table_snapshot, LocalApi};

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

/// The bucket's objects under the user's prefixes, with their bytes as text.
async fn objects_of(api: &LocalApi, user: &str) -> Vec<(String, String)> {
    objects_under(
        api,
        [format!("users/{user}/"), format!("exports/users/{user}/")],
    )
    .await
}

/// The bucket's objects under these prefixes, with their bytes as text.
async fn objects_under(
    api: &LocalApi,
    prefixes: impl IntoIterator<Item = String>,
) -> Vec<(String, String)> {
    let bucket = api.state.config.attachments_bucket.clone().unwrap();
    let s3 = tests::s3().await;
    let mut found = Vec::new();
    for prefix in prefixes {
        let mut pages = s3
            .list_objects_v2()
            .bucket(&bucket)
            .prefix(&prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            for object in page.unwrap().contents() {
                let key = object.key().unwrap().to_owned();
                let body = s3
                    .get_object()
                    .bucket(&bucket)
                    .key(&key)
                    .send()
                    .await
                    .unwrap();
                let bytes = body.body.collect().await.unwrap().into_bytes();
                found.push((key, String::from_utf8_lossy(&bytes).into_owned()));
            }
        }
    }
    found
}

/// Feeds the stream to its functions until it has nothing more to say.
async fn until_quiet(poller: &mut local::StreamPoller) {
    for _ in 0..30 {
        if poller.poll_once().await.expect("the stream is readable") == 0 {
            return;
        }
    }
    panic!("the stream did not settle");
}

#[tokio::test]
async fn a_conversation_that_went_every_path_leaves_nothing_in_the_table_or_the_bucket() {
    let (api, mut poller) = tests::api_feeding_every_function(&[
        ("SUMMARY_EVERY_MESSAGES", "2"),
        ("EXPORT_RETRY_BASE_MS", "10"),
    ])
    .await;
    let user = new_user();
    let alice = api.as_user(&user);
    // A word no other test writes: letters only, so search indexes it whole.
    let secret: String = uuid::Uuid::new_v4()
        .as_bytes()
        .iter()
        .map(|b| char::from(b'a' + b % 26))
        .collect();
    let id = alice
        .create_conversation(Some(&format!("About {secret}")))
        .await;

    // An attachment, referenced by a message.
    let upload = alice
        .post(
            &format!("/conversations/{id}/attachments"),
            json!({"fileName": "note.txt", "contentType": "text/plain", "size": secret.len()}),
        )
        .await;
    assert_eq!(upload.status, StatusCode::CREATED, "{:?}", upload.body);
    let target = &upload.body["upload"];
    let mut put = reqwest::Client::new().put(target["url"].as_str().unwrap());
    for (name, value) in target["headers"].as_object().unwrap() {
        put = put.header(name, value.as_str().unwrap());
    }
    let put = put.body(secret.clone()).send().await.unwrap();
    assert!(put.status().is_success());
    let attachment = upload.body["attachmentId"].as_str().unwrap();
    let added = alice
        .post(
            &format!("/conversations/{id}/messages"),
            json!({"role": "user", "content": format!("see {secret}"),
                   "attachments": [{"attachmentId": attachment}]}),
        )
        .await;
    assert_eq!(added.status, StatusCode::CREATED, "{:?}", added.body);
    // A link that shows the file: its readers download the link's own copy.
    let link = alice
        .post(
            &format!("/conversations/{id}/shares"),
            json!({"includeAttachments": true}),
        )
        .await;
    assert_eq!(link.status, StatusCode::CREATED, "{:?}", link.body);
    let link_files = format!("shares/{}/", link.body["id"].as_str().unwrap());
    // A completion, a batch, the search index and a summary.
    let completion = json!({"prompt": format!("remember {secret}"), "conversationId": id,
                            "requestId": "every-path-1", "stream": false});
    let reply = alice.post("/completion", completion).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    let batch = json!({"operations": [
        {"opId": "b1", "type": "addMessage", "conversationId": id, "role": "user",
         "content": format!("and {secret} again")},
    ]});
    let batched = alice.post("/mobile/batch", batch).await;
    assert_eq!(batched.status, StatusCode::OK, "{:?}", batched.body);
    until_quiet(&mut poller).await;
    let found = alice.get(&format!("/search?q={secret}")).await;
    assert_eq!(found.status, StatusCode::OK, "{:?}", found.body);
    assert!(
        found.body.to_string().contains(&id),
        "indexed: {}",
        found.body
    );
    // Exports: of the conversation, in both formats, and of the whole account.
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for format in ["json", "markdown"] {
        let exported = no_redirects
            .get(format!(
                "{}/conversations/{id}/export?format={format}",
                api.base
            ))
            .bearer_auth(api.tokens.mint(&user, 3600))
            .send()
            .await
            .unwrap();
        assert_eq!(exported.status(), StatusCode::SEE_OTHER);
    }
    let account = alice.post("/exports", json!({})).await;
    assert_eq!(account.status, StatusCode::ACCEPTED, "{:?}", account.body);
    until_quiet(&mut poller).await;
    let table_before = items_mentioning(&api, &secret).await;
    assert!(
        table_before.iter().any(|(pk, _)| pk.ends_with("#MEMORY")),
        "every path left its copy: {table_before:?}"
    );
    // The search index holds its words' hashes, in blocks named by the conversation.
    let blocks = search_blocks_of(&api.state, &user, &id).await;
    assert!(!blocks.is_empty(), "indexed");
    let bucket_before = objects_of(&api, &user).await;
    assert!(
        bucket_before
            .iter()
            .filter(|(_, body)| body.contains(&secret))
            .count()
            >= 4,
        "the attachment and the exports hold it: {:?}",
        bucket_before.iter().map(|(key, _)| key).collect::<Vec<_>>()
    );

    let link_copies = objects_under(&api, [link_files.clone()]).await;
    assert_eq!(link_copies.len(), 1, "{link_copies:?}");
    assert_eq!(link_copies[0].1, secret, "the link's copy of the file");

    let deleted = alice.delete(&format!("/conversations/{id}")).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{:?}", deleted.body);
    until_quiet(&mut poller).await;

    assert_eq!(items_mentioning(&api, &secret).await, vec![]);
    assert_eq!(
        objects_under(&api, [link_files]).await,
        vec![],
        "the link's copies went with it"
    );
    assert_eq!(
        items_mentioning(&api, &id).await,
        vec![(format!("USER#{user}#DELETED"), format!("CONV#{id}"))],
        "only the tombstone names the conversation"
    );
    let left: Vec<String> = objects_of(&api, &user)
        .await
        .into_iter()
        .filter(|(key, body)| key.contains(&id) || body.contains(&secret) || body.contains(&id))
        .map(|(key, _)| key)
        .collect();
    assert_eq!(
        left,
        Vec::<String>::new(),
        "no object holds the conversation"
    );
    // The account export that held it says why its files are gone.
    let export_id = account.body["id"].as_str().unwrap();
    let withdrawn = alice.get(&format!("/exports/{export_id}")).await;
    assert_eq!(withdrawn.status, StatusCode::OK, "{:?}", withdrawn.body);
    assert_eq!(withdrawn.body["status"], "failed", "{:?}", withdrawn.body);
    assert_eq!(
        withdrawn.body["error"],
        shared::account_export::WITHDRAWN,
        "{:?}",
        withdrawn.body
    );
}

#[tokio::test]
async fn a_delete_during_an_account_export_stops_it_and_leaves_none_of_its_files() {
    let (api, mut poller) = tests::api_feeding_every_function(&[
        ("EXPORT_CONVERSATIONS_PER_RUN", "1"),
        ("EXPORT_RETRY_BASE_MS", "10"),
    ])
    .await;
    let user = new_user();
    let alice = api.as_user(&user);
    let mut ids = Vec::new();
    for n in 0..3 {
        let id = alice.create_conversation(Some(&format!("Chat {n}"))).await;
        alice.say(&id, &format!("message {n}")).await;
        ids.push(id);
    }
    until_quiet(&mut poller).await;
    let started = alice.post("/exports", json!({})).await;
    assert_eq!(started.status, StatusCode::ACCEPTED, "{:?}", started.body);
    let export_id = started.body["id"].as_str().unwrap().to_owned();
    // One run: the first conversation is written, the export goes on.
    poller.poll_once().await.unwrap();
    let running = alice.get(&format!("/exports/{export_id}")).await;
    assert_eq!(running.body["status"], "running", "{:?}", running.body);

    let deleted_at = chrono::Utc::now();
    let deleted = alice.delete(&format!("/conversations/{}", ids[0])).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    until_quiet(&mut poller).await;

    let withdrawn = alice.get(&format!("/exports/{export_id}")).await;
    assert_eq!(withdrawn.body["status"], "failed", "{:?}", withdrawn.body);
    assert_eq!(withdrawn.body["error"], shared::account_export::WITHDRAWN);
    let left: Vec<String> = objects_of(&api, &user)
        .await
        .into_iter()
        .map(|(key, _)| key)
        .filter(|key| key.contains("/account/"))
        .collect();
    assert_eq!(left, Vec::<String>::new(), "the export left no file");
    // A new export holds the conversations left, and a purge of the delete that comes again
    // later (a message moved back from its dead-letter queue) leaves it alone.
    // (A record's time is rounded down to the second: an export begun within the second of
    // the delete counts as begun before it.)
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let again = alice.post("/exports", json!({})).await;
    assert_eq!(again.status, StatusCode::ACCEPTED, "{:?}", again.body);
    until_quiet(&mut poller).await;
    let mut record = aws_lambda_events::event::dynamodb::EventRecord::default();
    record.event_name = "REMOVE".into();
    record.change.keys = serde_dynamo::to_item(json!({
        "PK": format!("USER#{user}#CONV#{}", ids[0]), "SK": "META"
    }))
    .unwrap();
    record.change.sequence_number = Some("1".into());
    record.change.approximate_creation_date_time = deleted_at;
    let mut event = aws_lambda_events::event::dynamodb::Event::default();
    event.records = vec![record];
    let mut context = lambda_runtime::Context::default();
    context.deadline = (chrono::Utc::now().timestamp_millis() + 60_000) as u64;
    let purged = shared::streams::purge_deleted_conversations(
        &api.state,
        lambda_runtime::LambdaEvent::new(event, context),
    )
    .await
    .unwrap();
    assert!(purged.batch_item_failures.is_empty());
    let kept = alice
        .get(&format!("/exports/{}", again.body["id"].as_str().unwrap()))
        .await;
    assert_eq!(kept.body["status"], "done", "{:?}", kept.body);
}

#[tokio::test]
async fn the_hourly_sweep_removes_what_a_delete_left_or_what_was_written_after_it_once() {
    use shared::purge::{sweep_deleted_conversations, SWEEP_GRACE};
    let clock = std::sync::Arc::new(shared::clock::ManualClock::at(chrono::Utc::now()));
    let api = LocalApi::serving(tests::state_with_clock(clock.clone()).await).await;
    let user = new_user();
    let alice = api.as_user(&user);
    let id = alice.create_conversation(Some("Swept")).await;
    alice.say(&id, "a message to delete").await;
    let deleted = alice.delete(&format!("/conversations/{id}")).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{:?}", deleted.body);

    // Written after the delete's purge (a late upload, a write that raced the delete): the
    // stream's purge has run; only a sweep can find them.
    let late = format!("written late {}", uuid::Uuid::new_v4());
    let write_late = || async {
        let bucket = api.state.config.attachments_bucket.clone().unwrap();
        tests::s3()
            .await
            .put_object()
            .bucket(&bucket)
            .key(format!("users/{user}/conversations/{id}/late-upload"))
            .body(late.clone().into_bytes().into())
            .send()
            .await
            .unwrap();
        let conversation = shared::model::ConversationId::parse(&id).unwrap();
        let owner = shared::model::UserId::parse(&user).unwrap();
        aws_sdk_dynamodb::Client::new(&aws_config::load_from_env().await)
            .put_item()
            .table_name(&api.state.config.table_name)
            .item(
                "PK",
                s(&shared::keys::conversation_partition(&owner, &conversation)),
            )
            .item("SK", s("MESSAGE#late"))
            .item("content", s(&late))
            .send()
            .await
            .unwrap();
    };
    write_late().await;
    let sweep = || {
        sweep_deleted_conversations(
            &api.state,
            std::time::Instant::now() + std::time::Duration::from_secs(60),
        )
    };

    // Within the grace, the sweep leaves the delete to the purge worker.
    clock.advance(SWEEP_GRACE - chrono::Duration::minutes(1));
    let report = sweep().await.unwrap();
    assert_eq!(
        (report.finished, report.unfinished, report.complete),
        (0, 0, true)
    );
    assert_eq!(items_mentioning(&api, &late).await.len(), 1);

    clock.advance(chrono::Duration::minutes(2));
    let report = sweep().await.unwrap();
    assert_eq!(
        (report.finished, report.unfinished, report.complete),
        (1, 0, true)
    );
    assert_eq!(items_mentioning(&api, &late).await, vec![]);
    assert_eq!(objects_of(&api, &user).await, vec![]);
    assert_eq!(
        items_mentioning(&api, &id).await,
        vec![(format!("USER#{user}#DELETED"), format!("CONV#{id}"))],
        "only the tombstone names the conversation"
    );

    // Each delete is swept once: the next sweep has nothing to do.
    let report = sweep().await.unwrap();
    assert_eq!(
        (report.finished, report.unfinished, report.complete),
        (0, 0, true)
    );
}

fn s(value: &str) -> aws_sdk_dynamodb::types::AttributeValue {
    aws_sdk_dynamodb::types::AttributeValue::S(value.to_owned())
}
