//! `POST /mobile/batch` through the local gateway against the local DynamoDB server: an app's
//! offline queue runs in order, each operation once, however often it is sent again.

use chrono::{Duration, SubsecRound, Utc};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tests::{new_user, table_snapshot, Client, LocalApi, Reply};

async fn batch(client: &Client, operations: &[Value]) -> Reply {
    client
        .post("/mobile/batch", json!({ "operations": operations }))
        .await
}

/// Each operation's status, in order.
fn statuses(reply: &Reply) -> Vec<u64> {
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    reply.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect()
}

/// The results without the `replayed` flag: what the app reads from each.
fn answers(reply: &Reply) -> Vec<Value> {
    reply.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let mut r = r.clone();
            r.as_object_mut().unwrap().remove("replayed");
            r
        })
        .collect()
}

/// An offline session: a conversation made offline, two messages, a rename, tags, an archive
/// and a read of the result.
fn offline_queue() -> Vec<Value> {
    vec![
        json!({"opId": "op-1", "type": "createConversation", "clientConversationId": "local-1", "title": "On the train"}),
        json!({"opId": "op-2", "type": "addMessage", "clientConversationId": "local-1", "role": "user", "content": "Is there wifi?"}),
        json!({"opId": "op-3", "type": "addMessage", "clientConversationId": "local-1", "role": "assistant", "content": "Usually in first class."}),
        json!({"opId": "op-4", "type": "rename", "clientConversationId": "local-1", "title": "Train wifi"}),
        json!({"opId": "op-5", "type": "setTags", "clientConversationId": "local-1", "tags": ["travel"]}),
        json!({"opId": "op-6", "type": "archive", "clientConversationId": "local-1", "archived": true}),
        json!({"opId": "op-7", "type": "getConversation", "clientConversationId": "local-1"}),
    ]
}

#[tokio::test]
async fn an_offline_queue_runs_in_order_and_maps_the_apps_ids_to_the_servers() {
    let api = LocalApi::start().await;
    let alice = api.as_user(&new_user());
    let reply = batch(&alice, &offline_queue()).await;
    assert_eq!(statuses(&reply), [201, 201, 201, 200, 200, 200, 200]);
    let id = reply.body["conversationIds"]["local-1"]
        .as_str()
        .unwrap()
        .to_owned();
    let results = reply.body["results"].as_array().unwrap();
    assert_eq!(results[0]["opId"], "op-1");
    assert_eq!(results[0]["body"]["id"], id.as_str());
    assert_eq!(results[1]["body"]["conversationId"], id.as_str());
    assert!(results[1]["body"].get("content").is_none());
    assert_eq!(results[1]["body"]["contentBytes"], 14);
    let read = &results[6]["body"];
    assert_eq!(read["title"], "Train wifi");
    assert_eq!(read["tags"], json!(["travel"]));
    assert_eq!(read["isArchived"], true);
    assert_eq!(read["messageCount"], 2);
    assert_eq!(read["messages"][1]["content"], "Usually in first class.");

    let stored = alice.get(&format!("/conversations/{id}")).await;
    assert_eq!(stored.body["messageCount"], 2);
    assert_eq!(stored.body["title"], "Train wifi");

    // A later batch refers to the same offline conversation by the app's id.
    let later = batch(
        &alice,
        &[json!({"opId": "op-8", "type": "addMessage", "clientConversationId": "local-1", "role": "user", "content": "Thanks"})],
    )
    .await;
    assert_eq!(statuses(&later), [201]);
    assert_eq!(later.body["conversationIds"]["local-1"], id.as_str());
}

#[tokio::test]
async fn replaying_a_batch_changes_nothing_and_answers_the_same() {
    let api = LocalApi::start().await;
    let alice = api.as_user(&new_user());
    let queue = offline_queue();
    let first = batch(&alice, &queue).await;
    let after_first = table_snapshot(&api.state).await;

    // The response was lost: the app sends the whole batch again.
    let replay = batch(&alice, &queue).await;
    assert_eq!(answers(&replay), answers(&first));
    let replayed: Vec<bool> = replay.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["replayed"].as_bool().unwrap())
        .collect();
    // Writes come from their records; the read is answered afresh.
    assert_eq!(replayed, [true, true, true, true, true, true, false]);
    assert_eq!(
        replay.body["conversationIds"],
        first.body["conversationIds"]
    );
    assert_eq!(table_snapshot(&api.state).await, after_first);
}

#[tokio::test]
async fn a_prefix_then_an_overlapping_batch_apply_each_operation_once() {
    let api = LocalApi::start().await;
    let alice = api.as_user(&new_user());
    let queue = offline_queue();
    let prefix = batch(&alice, &queue[..3]).await;
    assert_eq!(statuses(&prefix), [201, 201, 201]);
    let overlap = batch(&alice, &queue[1..]).await;
    assert_eq!(statuses(&overlap), [201, 201, 200, 200, 200, 200]);
    assert_eq!(answers(&overlap)[..2], answers(&prefix)[1..]);

    let once = api.as_user(&new_user());
    batch(&once, &queue).await;
    let id = overlap.body["conversationIds"]["local-1"].as_str().unwrap();
    let stored = alice.get(&format!("/conversations/{id}")).await;
    assert_eq!(stored.body["messageCount"], 2);
    assert_eq!(stored.body["messages"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn the_same_batch_sent_twice_at_once_applies_each_operation_once() {
    let api = LocalApi::start().await;
    let alice = api.as_user(&new_user());
    let queue = offline_queue();
    let (a, b) = tokio::join!(batch(&alice, &queue), batch(&alice, &queue));
    assert_eq!(statuses(&a)[..6], [201, 201, 201, 200, 200, 200]);
    assert_eq!(answers(&a)[..6], answers(&b)[..6]);
    let id = a.body["conversationIds"]["local-1"].as_str().unwrap();
    let stored = alice.get(&format!("/conversations/{id}")).await;
    assert_eq!(stored.body["messageCount"], 2);
    assert_eq!(stored.body["messages"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn one_failing_operation_does_not_stop_the_others_and_says_why() {
    let api = LocalApi::start().await;
    let alice = api.as_user(&new_user());
    let before = table_snapshot(&api.state).await;
    let missing = uuid::Uuid::new_v4().to_string();
    let reply = batch(
        &alice,
        &[
            json!({"opId": "a", "type": "teleport"}),
            json!({"opId": "b", "type": "addMessage", "conversationId": missing, "role": "user", "content": "hi"}),
            json!({"opId": "c", "type": "createConversation", "title": ""}),
            json!({"opId": "d", "type": "rename", "conversationId": "not-an-id", "title": "x"}),
            json!({"opId": "e", "type": "addMessage", "clientConversationId": "x", "conversationId": missing, "role": "user", "content": "hi"}),
            json!({"opId": "f", "type": "createConversation", "clientConversationId": "ok", "unknownField": 1}),
            json!({"opId": "g", "type": "createConversation", "clientConversationId": "ok"}),
        ],
    )
    .await;
    assert_eq!(statuses(&reply), [400, 404, 400, 400, 400, 400, 201]);
    let results = reply.body["results"].as_array().unwrap();
    assert_eq!(results[0]["error"]["code"], "invalid_request");
    assert!(results[0]["error"]["message"]
        .as_str()
        .unwrap()
        .contains("teleport"));
    assert_eq!(results[1]["error"]["code"], "not_found");
    // Only the last operation wrote anything: one conversation and its record.
    let after = table_snapshot(&api.state).await;
    assert_eq!(after.len(), before.len() + 2);
}

#[tokio::test]
async fn a_failed_operation_runs_again_on_replay_and_can_then_succeed() {
    let api = LocalApi::start().await;
    let alice = api.as_user(&new_user());
    let message = json!({"opId": "m1", "type": "addMessage", "clientConversationId": "later", "role": "user", "content": "queued first"});
    let early = batch(&alice, std::slice::from_ref(&message)).await;
    assert_eq!(statuses(&early), [404]);
    let fixed = batch(
        &alice,
        &[
            json!({"opId": "c1", "type": "createConversation", "clientConversationId": "later"}),
            message,
        ],
    )
    .await;
    assert_eq!(statuses(&fixed), [201, 201]);
}

#[tokio::test]
async fn an_operation_id_used_for_another_operation_is_refused() {
    let api = LocalApi::start().await;
    let alice = api.as_user(&new_user());
    batch(
        &alice,
        &[json!({"opId": "same", "type": "createConversation", "clientConversationId": "a"})],
    )
    .await;
    let reused = batch(
        &alice,
        &[json!({"opId": "same", "type": "createConversation", "clientConversationId": "b"})],
    )
    .await;
    assert_eq!(statuses(&reused), [409]);
    assert_eq!(
        reused.body["results"][0]["error"]["code"],
        "operation_id_reused"
    );
}

#[tokio::test]
async fn batches_beyond_the_limits_are_refused_whole_and_change_nothing() {
    let api = LocalApi::start().await;
    let alice = api.as_user(&new_user());
    let before = table_snapshot(&api.state).await;

    let too_many: Vec<Value> = (0..101)
        .map(|n| json!({"opId": format!("op-{n}"), "type": "createConversation"}))
        .collect();
    let reply = batch(&alice, &too_many).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(reply.error_code(), "payload_too_large");

    let huge = "x".repeat(4 * 1024 * 1024);
    let reply = batch(
        &alice,
        &[json!({"opId": "big", "type": "createConversation", "title": huge})],
    )
    .await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);

    for body in [
        json!({"operations": []}),
        json!({"operations": "none"}),
        json!({"operations": [], "extra": true}),
        json!({"ops": []}),
        json!([1, 2]),
    ] {
        let reply = alice.post("/mobile/batch", body.clone()).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(reply.error_code(), "invalid_request", "{body}");
    }
    let not_json = alice
        .send(reqwest::Method::POST, "/mobile/batch", Some("{nope"))
        .await;
    assert_eq!(not_json.status, StatusCode::BAD_REQUEST);
    assert_eq!(table_snapshot(&api.state).await, before);
}

#[tokio::test]
async fn of_two_offline_edits_the_later_made_wins_whatever_order_they_arrive_in() {
    let api = LocalApi::start().await;
    let alice = api.as_user(&new_user());
    let id = alice.create_conversation(Some("Original")).await;
    let earlier = (Utc::now() - Duration::hours(2)).to_rfc3339();
    let later = (Utc::now() - Duration::hours(1)).to_rfc3339();

    // The phone renamed it an hour ago; the tablet two hours ago, and syncs last.
    let phone = batch(
        &alice,
        &[json!({"opId": "phone-1", "type": "rename", "conversationId": id, "title": "Phone", "clientTimestamp": later})],
    )
    .await;
    assert_eq!(statuses(&phone), [200]);
    let tablet = batch(
        &alice,
        &[
            json!({"opId": "tablet-1", "type": "rename", "conversationId": id, "title": "Tablet", "clientTimestamp": earlier}),
            json!({"opId": "tablet-2", "type": "setTags", "conversationId": id, "tags": ["t"], "clientTimestamp": earlier}),
        ],
    )
    .await;
    // The older rename loses; the tags, set by nobody since, are applied.
    assert_eq!(statuses(&tablet), [409, 200]);
    assert_eq!(tablet.body["results"][0]["error"]["code"], "conflict");
    let stored = alice.get(&format!("/conversations/{id}")).await;
    assert_eq!(stored.body["title"], "Phone");
    assert_eq!(stored.body["tags"], json!(["t"]));

    // An edit made online now wins over an offline one made before it.
    alice
        .put(
            &format!("/conversations/{id}/archive"),
            json!({"archived": true}),
        )
        .await;
    let stale_unarchive = batch(
        &alice,
        &[json!({"opId": "tablet-3", "type": "archive", "conversationId": id, "archived": false, "clientTimestamp": later})],
    )
    .await;
    assert_eq!(statuses(&stale_unarchive), [409]);
    let stored = alice.get(&format!("/conversations/{id}")).await;
    assert_eq!(stored.body["isArchived"], true);
}

#[tokio::test]
async fn a_batch_delete_is_final_and_reaches_the_next_sync() {
    let api = LocalApi::start().await;
    let alice = api.as_user(&new_user());
    let made = batch(
        &alice,
        &[json!({"opId": "c", "type": "createConversation", "clientConversationId": "tmp"})],
    )
    .await;
    let id = made.body["conversationIds"]["tmp"]
        .as_str()
        .unwrap()
        .to_owned();
    let first_sync = alice.get("/mobile/sync").await;
    let cursor = first_sync.body["cursor"].as_str().unwrap().to_owned();

    let deleted = batch(
        &alice,
        &[json!({"opId": "d", "type": "delete", "clientConversationId": "tmp"})],
    )
    .await;
    assert_eq!(statuses(&deleted), [204]);
    assert!(deleted.body["results"][0].get("body").is_none());

    // Creating it again under the same app id does not bring it back.
    let again = batch(
        &alice,
        &[json!({"opId": "c-again", "type": "createConversation", "clientConversationId": "tmp"})],
    )
    .await;
    assert_eq!(statuses(&again), [409]);

    let sync = alice.get(&format!("/mobile/sync?since={cursor}")).await;
    assert_eq!(sync.body["deleted"][0]["id"], id.as_str());
    assert_eq!(sync.body["conversations"], json!([]));
}

#[tokio::test]
async fn another_users_ids_and_operation_ids_reach_nothing_of_theirs() {
    let api = LocalApi::start().await;
    let alice = api.as_user(&new_user());
    let bob = api.as_user(&new_user());
    let alices = batch(&alice, &offline_queue()).await;
    let alice_id = alices.body["conversationIds"]["local-1"]
        .as_str()
        .unwrap()
        .to_owned();
    let before = table_snapshot(&api.state).await;

    // Bob names Alice's conversation by its server id: not found, nothing changed.
    let by_id = batch(
        &bob,
        &[
            json!({"opId": "x1", "type": "addMessage", "conversationId": alice_id, "role": "user", "content": "hi"}),
            json!({"opId": "x2", "type": "rename", "conversationId": alice_id, "title": "Bob's now"}),
            json!({"opId": "x3", "type": "delete", "conversationId": alice_id}),
            json!({"opId": "x4", "type": "getConversation", "conversationId": alice_id}),
        ],
    )
    .await;
    assert_eq!(statuses(&by_id), [404, 404, 404, 404]);
    assert_eq!(table_snapshot(&api.state).await, before);

    // Bob uses Alice's app ids and operation ids: he gets his own, fresh.
    let same_ids = batch(&bob, &offline_queue()).await;
    assert_eq!(statuses(&same_ids), [201, 201, 201, 200, 200, 200, 200]);
    let bob_id = same_ids.body["conversationIds"]["local-1"]
        .as_str()
        .unwrap();
    assert_ne!(bob_id, alice_id);
    assert!(same_ids.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["replayed"] == false));
    let alices_now = alice.get(&format!("/conversations/{alice_id}")).await;
    assert_eq!(alices_now.body["messageCount"], 2);
}

/// An offline queue of 100 operations of every kind, over conversations made in it.
fn hundred_mixed_operations() -> Vec<Value> {
    let mut operations = Vec::new();
    let made_at = (Utc::now() - Duration::minutes(30)).to_rfc3339();
    for n in 0..100 {
        let conversation = format!("local-{}", n / 10);
        let op_id = format!("queue-{n}");
        let operation = match n % 10 {
            0 => {
                json!({"opId": op_id, "type": "createConversation", "clientConversationId": conversation, "title": format!("Offline {n}")})
            }
            1..=4 => {
                json!({"opId": op_id, "type": "addMessage", "clientConversationId": conversation, "role": if n % 2 == 0 { "user" } else { "assistant" }, "content": format!("message {n}")})
            }
            5 => {
                json!({"opId": op_id, "type": "rename", "clientConversationId": conversation, "title": format!("Renamed {n}"), "clientTimestamp": made_at})
            }
            6 => {
                json!({"opId": op_id, "type": "setTags", "clientConversationId": conversation, "tags": [format!("tag{n}")], "clientTimestamp": made_at})
            }
            7 => {
                json!({"opId": op_id, "type": "archive", "clientConversationId": conversation, "archived": n % 20 == 7, "clientTimestamp": made_at})
            }
            8 if n % 30 == 8 => {
                json!({"opId": op_id, "type": "delete", "clientConversationId": conversation})
            }
            8 => {
                json!({"opId": op_id, "type": "addMessage", "clientConversationId": conversation, "role": "user", "content": "one more"})
            }
            _ => {
                json!({"opId": op_id, "type": "getConversation", "clientConversationId": conversation, "messageLimit": 10})
            }
        };
        operations.push(operation);
    }
    operations
}

#[tokio::test]
async fn a_queue_of_a_hundred_mixed_operations_replayed_three_times_is_as_if_sent_once() {
    let api = LocalApi::start().await;
    let alice = api.as_user(&new_user());
    let queue = hundred_mixed_operations();
    let once = batch(&alice, &queue).await;
    let codes = statuses(&once);
    assert_eq!(codes.len(), 100);
    assert!(
        codes.iter().all(|s| [200, 201, 204, 404].contains(s)),
        "{codes:?}"
    );
    // Reads of a conversation deleted earlier in the queue are the only 404s.
    assert_eq!(codes.iter().filter(|s| **s == 204).count(), 4);
    assert_eq!(codes.iter().filter(|s| **s == 404).count(), 4);
    let state_once = table_snapshot(&api.state).await;
    let listing_once = alice.get("/conversations?includeArchived=true").await.body;

    // A conversation the queue deleted is gone with the recorded answers that held its title
    // and tags: a replay answers its operations as for any deleted conversation (its create
    // 409, the rest 404), and changes nothing. Every other operation answers as the first
    // time.
    let deleted: Vec<&str> = queue
        .iter()
        .filter(|op| op["type"] == "delete")
        .map(|op| op["clientConversationId"].as_str().unwrap())
        .collect();
    let expected: Vec<Value> = queue
        .iter()
        .zip(answers(&once))
        .map(|(op, first)| {
            let gone = deleted.contains(&op["clientConversationId"].as_str().unwrap());
            match op["type"].as_str().unwrap() {
                "delete" => first,
                "createConversation" if gone => {
                    json!({"opId": op["opId"], "status": 409, "code": "conflict"})
                }
                _ if gone => json!({"opId": op["opId"], "status": 404, "code": "not_found"}),
                _ => first,
            }
        })
        .collect();
    for _ in 0..3 {
        let again = batch(&alice, &queue).await;
        let replayed: Vec<Value> = answers(&again)
            .into_iter()
            .zip(&expected)
            .map(|(answer, expected)| match expected.get("code") {
                Some(_) => json!({"opId": answer["opId"], "status": answer["status"], "code": answer["error"]["code"]}),
                None => answer,
            })
            .collect();
        assert_eq!(replayed, expected);
        assert_eq!(again.body["conversationIds"], once.body["conversationIds"]);
        assert_eq!(table_snapshot(&api.state).await, state_once);
    }
    assert_eq!(
        alice.get("/conversations?includeArchived=true").await.body,
        listing_once
    );
    let listed = listing_once["conversations"].as_array().unwrap();
    assert_eq!(listed.len(), 6);
    assert!(listed.iter().all(|c| c["messageCount"] == 5));
}

#[tokio::test]
async fn an_operation_without_a_usable_id_fails_alone_and_a_read_needs_none() {
    let api = LocalApi::start().await;
    let alice = api.as_user(&new_user());
    let id = alice.create_conversation(Some("Read me")).await;
    let reply = batch(
        &alice,
        &[
            json!({"type": "createConversation"}),
            json!({"opId": "", "type": "createConversation"}),
            json!({"opId": 7, "type": "createConversation"}),
            json!("not an operation"),
            json!({"type": "getConversation", "conversationId": id}),
            json!({"opId": "ok", "type": "createConversation", "clientConversationId": "ok"}),
        ],
    )
    .await;
    assert_eq!(statuses(&reply), [400, 400, 400, 400, 200, 201]);
    let results = reply.body["results"].as_array().unwrap();
    assert_eq!(results[0]["opId"], Value::Null);
    assert!(results[0]["error"]["message"]
        .as_str()
        .unwrap()
        .contains("opId"));
    assert_eq!(results[4]["body"]["title"], "Read me");
    assert_eq!(results[5]["opId"], "ok");
    // Only the last operation made a conversation.
    let listed = alice.get("/conversations").await;
    assert_eq!(listed.body["conversations"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn two_copies_of_a_batch_at_once_leave_the_state_one_copy_leaves() {
    // The app gave up waiting and sent the batch again while the first copy still ran: each
    // operation runs once, in order, and both copies answer alike.
    let api = LocalApi::start().await;
    let alice = api.as_user(&new_user());
    let id = alice.create_conversation(Some("Before")).await;
    let mut queue = Vec::new();
    for n in 0..6 {
        queue.push(json!({"opId": format!("rename-{n}"), "type": "rename", "conversationId": id, "title": format!("Title {n}")}));
        queue.push(json!({"opId": format!("say-{n}"), "type": "addMessage", "conversationId": id, "role": "user", "content": format!("m{n}")}));
    }
    let (a, b) = tokio::join!(batch(&alice, &queue), batch(&alice, &queue));
    assert_eq!(statuses(&a), [200, 201].repeat(6));
    assert_eq!(answers(&a), answers(&b));
    let stored = alice.get(&format!("/conversations/{id}")).await;
    assert_eq!(stored.body["title"], "Title 5");
    assert_eq!(stored.body["messageCount"], 6);
}

#[tokio::test]
async fn operations_a_batch_had_no_time_for_are_not_run_and_run_when_sent_again() {
    let clock = std::sync::Arc::new(shared::clock::SystemClock);
    let hurried = tests::state_configured(&[("BATCH_TIME_BUDGET_MS", "0")], clock.clone()).await;
    let mut relaxed_config = hurried.config.clone();
    relaxed_config.batch_time_budget = std::time::Duration::from_secs(20);
    let api = LocalApi::serving(hurried).await;
    let user = new_user();
    let before = table_snapshot(&api.state).await;
    let queue = offline_queue();
    let hurried_reply = batch(&api.as_user(&user), &queue).await;
    // Every operation is answered not_run, the read too: reads are bounded by the batch's
    // time as writes are (a hundred of them once ran past it).
    assert_eq!(
        statuses(&hurried_reply),
        [503, 503, 503, 503, 503, 503, 503]
    );
    assert_eq!(hurried_reply.body["results"][6]["error"]["code"], "not_run");
    assert_eq!(hurried_reply.body["results"][0]["error"]["code"], "not_run");
    assert_eq!(table_snapshot(&api.state).await, before);

    // The same table, with time to spare: the whole queue runs.
    let relaxed = assistant::State::with_clock(
        relaxed_config,
        api.state.model_config.clone(),
        &aws_config::load_from_env().await,
        clock,
    );
    let relaxed_api = LocalApi::serving(relaxed).await;
    let again = batch(&relaxed_api.as_user(&user), &queue).await;
    assert_eq!(statuses(&again), [201, 201, 201, 200, 200, 200, 200]);
}

#[tokio::test]
async fn a_message_queued_offline_keeps_the_time_it_was_written_through_the_batch_and_its_replay() {
    let api = LocalApi::start().await;
    let alice = api.as_user(&new_user());
    let written = (Utc::now() - Duration::hours(5)).trunc_subsecs(3);
    let queue = vec![
        json!({"opId": "w-1", "type": "createConversation", "clientConversationId": "local-w", "title": "Offline"}),
        json!({"opId": "w-2", "type": "addMessage", "clientConversationId": "local-w", "role": "user", "content": "written in the tunnel", "clientTimestamp": written.to_rfc3339()}),
        json!({"opId": "w-3", "type": "getConversation", "clientConversationId": "local-w"}),
    ];
    let first = batch(&alice, &queue).await;
    assert_eq!(statuses(&first), [201, 201, 200]);
    let kept = written.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    assert_eq!(first.body["results"][1]["body"]["clientTimestamp"], kept);
    let read = &first.body["results"][2]["body"]["messages"][0];
    assert_eq!(read["clientTimestamp"], kept);
    let server: chrono::DateTime<Utc> = read["timestamp"].as_str().unwrap().parse().unwrap();
    assert!(
        server > written + Duration::hours(4),
        "the server's time stays its own"
    );

    let replay = batch(&alice, &queue).await;
    assert_eq!(answers(&replay), answers(&first));
}

#[tokio::test]
async fn an_add_message_with_a_malformed_client_timestamp_fails_alone_and_writes_nothing() {
    let api = LocalApi::start().await;
    let alice = api.as_user(&new_user());
    let id = alice.create_conversation(Some("Clock trouble")).await;
    let before = table_snapshot(&api.state).await;
    let reply = batch(
        &alice,
        &[
            json!({"opId": "t-1", "type": "addMessage", "conversationId": id, "role": "user", "content": "when?", "clientTimestamp": "2026-11-30 09:15:30Z"}),
            json!({"opId": "t-2", "type": "getConversation", "conversationId": id}),
        ],
    )
    .await;
    assert_eq!(statuses(&reply), [400, 200]);
    assert_eq!(reply.body["results"][0]["error"]["code"], "invalid_request");
    assert_eq!(reply.body["results"][1]["body"]["messageCount"], 0);
    assert_eq!(table_snapshot(&api.state).await, before);
}
