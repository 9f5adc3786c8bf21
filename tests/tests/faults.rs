//! The fault suite's store faults: the local AWS server made unreachable in the middle of
//! appends from several clients that retry, and a table that throttles. Requests reach the
//! server through a proxy that cuts or throttles them (`tests::proxy`); everything else is the
//! real handlers against the real server.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use tests::proxy::{FaultProxy, ProxyMode};
use tests::{items_of_conversation, new_user, state_through, Client, LocalApi};

/// The local API whose handlers reach the server through a fault proxy.
async fn api_behind_proxy() -> (LocalApi, FaultProxy) {
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let server = std::env::var("AWS_ENDPOINT_URL").expect("set by scripts/test.sh");
    let proxy = FaultProxy::start(server.trim_start_matches("http://")).await;
    // Without the cache: every read is the table's answer.
    let state = state_through(proxy.endpoint(), &[("CACHE_URL", "")]).await;
    (LocalApi::serving(state).await, proxy)
}

/// Sends the message until it is acknowledged (201, or 200 for a repeat), as the app does:
/// the same `clientMessageId` every time. Returns the attempts it took and the answers seen.
async fn append_until_acknowledged(
    client: &Client,
    conversation: &str,
    client_id: &str,
) -> (usize, Vec<StatusCode>) {
    let mut seen = Vec::new();
    for attempt in 1..=200 {
        let reply = client
            .post(
                &format!("/conversations/{conversation}/messages"),
                json!({"role": "user", "content": format!("note {client_id}"), "clientMessageId": client_id}),
            )
            .await;
        seen.push(reply.status);
        match reply.status {
            StatusCode::CREATED | StatusCode::OK => return (attempt, seen),
            status if status.is_server_error() || status == StatusCode::CONFLICT => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            status => panic!("{client_id}: {status} {:?}", reply.body),
        }
    }
    panic!("{client_id} was never acknowledged: {seen:?}");
}

#[tokio::test]
async fn every_acknowledged_message_is_stored_exactly_once_across_a_store_outage() {
    let (api, proxy) = api_behind_proxy().await;
    let user = new_user();
    let client = api.as_user(&user);
    let conversation = client.create_conversation(Some("Through the outage")).await;

    // Four clients, 12 messages each, while the server goes away for 3 seconds.
    let senders = (0..4).map(|sender| {
        let client = api.as_user(&user);
        let conversation = conversation.clone();
        tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            for n in 0..12 {
                let id = format!("c{sender}-{n}");
                let (attempts, seen) = append_until_acknowledged(&client, &conversation, &id).await;
                acknowledged.push((id, attempts, seen));
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
            acknowledged
        })
    });
    let senders: Vec<_> = senders.collect();
    tokio::time::sleep(Duration::from_millis(400)).await;
    proxy.set(ProxyMode::Down);
    tokio::time::sleep(Duration::from_secs(3)).await;
    proxy.set(ProxyMode::Pass);
    let mut acknowledged = Vec::new();
    for sender in senders {
        acknowledged.extend(sender.await.unwrap());
    }

    // The outage was felt: some requests failed and were sent again, always as a 503 with
    // Retry-After (never a 500), and none was lost or doubled.
    let retried: Vec<_> = acknowledged.iter().filter(|(_, a, _)| *a > 1).collect();
    assert!(!retried.is_empty(), "the outage failed some requests");
    for (id, _, seen) in &acknowledged {
        for status in seen {
            assert!(
                [
                    StatusCode::CREATED,
                    StatusCode::OK,
                    StatusCode::SERVICE_UNAVAILABLE,
                    StatusCode::CONFLICT
                ]
                .contains(status),
                "{id}: {seen:?}"
            );
        }
    }
    let items = items_of_conversation(&api.state, &user, &conversation).await;
    let mut stored: BTreeMap<String, usize> = BTreeMap::new();
    for item in &items {
        if item["SK"].as_s().unwrap().starts_with("MESSAGE#") {
            let client_id = item["clientMessageId"].as_s().unwrap().clone();
            *stored.entry(client_id).or_default() += 1;
        }
    }
    let sent: BTreeSet<String> = acknowledged.iter().map(|(id, _, _)| id.clone()).collect();
    assert_eq!(
        stored.keys().cloned().collect::<BTreeSet<_>>(),
        sent,
        "every acknowledged message"
    );
    assert!(
        stored.values().all(|n| *n == 1),
        "each exactly once: {stored:?}"
    );
    let meta = items
        .iter()
        .find(|i| i["SK"].as_s().unwrap() == "META")
        .unwrap();
    assert_eq!(
        meta["messageCount"].as_n().unwrap(),
        "48",
        "the count is exact"
    );
    let listed = client
        .get(&format!("/conversations/{conversation}?messageLimit=100"))
        .await;
    assert_eq!(listed.body["messages"].as_array().unwrap().len(), 48);
}

#[tokio::test]
async fn throttling_is_retried_by_the_sdk_and_what_stays_throttled_is_a_503_that_changes_nothing() {
    let (api, proxy) = api_behind_proxy().await;
    let user = new_user();
    let client = api.as_user(&user);
    let conversation = client.create_conversation(Some("Busy table")).await;
    let path = format!("/conversations/{conversation}/messages");

    // Two throttled answers: the SDK's retries (4 attempts) absorb them.
    proxy.throttle_next(2);
    let absorbed = client
        .post(
            &path,
            json!({"role": "user", "content": "first", "clientMessageId": "t-1"}),
        )
        .await;
    assert_eq!(absorbed.status, StatusCode::CREATED, "{:?}", absorbed.body);
    assert_eq!(proxy.throttled(), 2);
    let before = items_of_conversation(&api.state, &user, &conversation).await;

    // Throttled throughout: 503 with Retry-After, and nothing written.
    proxy.throttle_next(u64::MAX);
    let refused = client
        .post(
            &path,
            json!({"role": "user", "content": "second", "clientMessageId": "t-2"}),
        )
        .await;
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.error_code(), "unavailable");
    assert_eq!(refused.headers["retry-after"], "1");
    let attempts = proxy.throttled() - 2;
    assert_eq!(
        attempts,
        u64::from(shared::config::DEFAULT_STORE_MAX_ATTEMPTS as u32),
        "the SDK's attempts, then the 503"
    );
    for write in [
        client
            .put(
                &format!("/conversations/{conversation}/title"),
                json!({"title": "x"}),
            )
            .await,
        client
            .post("/conversations", json!({"title": "another"}))
            .await,
    ] {
        assert_eq!(write.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(write.headers["retry-after"], "1");
    }
    proxy.throttle_next(0);
    proxy.set(ProxyMode::Pass);
    assert_eq!(
        items_of_conversation(&api.state, &user, &conversation).await,
        before,
        "nothing half-written"
    );
    // Sent again once the table has capacity: stored once.
    let again = client
        .post(
            &path,
            json!({"role": "user", "content": "second", "clientMessageId": "t-2"}),
        )
        .await;
    assert_eq!(again.status, StatusCode::CREATED);
    let shown = client.get(&format!("/conversations/{conversation}")).await;
    assert_eq!(shown.body["messageCount"], 2);
    assert_eq!(shown.body["title"], "Busy table");
}

/// A transaction committed whose answer was lost on the way back: the SDK sends it again with
/// the same `ClientRequestToken`, and DynamoDB (moto, as scripts/moto_server.py makes it)
/// answers the repeat without applying it twice. So an append without `clientMessageId` is
/// acknowledged once and stored once, and a delete answers 204, not 404.
#[tokio::test]
async fn a_transaction_whose_answer_was_lost_is_retried_with_its_token_and_applied_once() {
    let server = std::env::var("AWS_ENDPOINT_URL").expect("set by scripts/test.sh");
    let proxy = tests::recording::RecordingProxy::start(&server).await;
    // Appends in a transaction: with slot keys, only the delete is one.
    let state = state_through(
        proxy.endpoint(),
        &[("CACHE_URL", ""), ("SLOT_KEYS", "false")],
    )
    .await;
    let api = LocalApi::serving(state).await;
    let user = new_user();
    let alice = api.as_user(&user);
    let id = alice.create_conversation(Some("Lost answers")).await;

    proxy.take_calls();
    proxy.lose_next_answer_of("TransactWriteItems");
    let added = alice
        .post(
            &format!("/conversations/{id}/messages"),
            json!({"role": "user", "content": "said once"}),
        )
        .await;
    assert_eq!(added.status, StatusCode::CREATED, "{:?}", added.body);
    let transactions: Vec<Option<String>> = proxy
        .take_calls()
        .into_iter()
        .filter(|call| call.operation == "TransactWriteItems")
        .map(|call| call.client_request_token)
        .collect();
    assert_eq!(transactions.len(), 2, "sent, and sent again");
    assert!(transactions[0].is_some(), "the transaction carries a token");
    assert_eq!(
        transactions[0], transactions[1],
        "the repeat has the same token"
    );
    let read = alice.get(&format!("/conversations/{id}")).await;
    let messages = read.body["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert_eq!(read.body["messageCount"], 1);

    proxy.lose_next_answer_of("TransactWriteItems");
    let deleted = alice.delete(&format!("/conversations/{id}")).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{:?}", deleted.body);
    assert_eq!(items_of_conversation(&api.state, &user, &id).await, vec![]);
}

/// An append by slot whose answers were lost on the way back: the SDK sends the message's
/// put again, which finds the slot taken by that very message, and the count's update again,
/// which finds the tip already on it. Each message is acknowledged once, stored once and
/// counted once.
#[tokio::test]
async fn an_append_by_slot_whose_answers_were_lost_is_stored_and_counted_once() {
    let server = std::env::var("AWS_ENDPOINT_URL").expect("set by scripts/test.sh");
    let proxy = tests::recording::RecordingProxy::start(&server).await;
    let state = state_through(
        proxy.endpoint(),
        &[("CACHE_URL", ""), ("SLOT_KEYS", "true")],
    )
    .await;
    let api = LocalApi::serving(state).await;
    let user = new_user();
    let alice = api.as_user(&user);
    let id = alice.create_conversation(Some("Lost answers")).await;

    for (lost, content) in [("PutItem", "put once"), ("UpdateItem", "counted once")] {
        proxy.take_calls();
        proxy.lose_next_answer_of(lost);
        let added = alice
            .post(
                &format!("/conversations/{id}/messages"),
                json!({"role": "user", "content": content}),
            )
            .await;
        assert_eq!(
            added.status,
            StatusCode::CREATED,
            "{lost}: {:?}",
            added.body
        );
        let sent = proxy
            .take_calls()
            .into_iter()
            .filter(|call| call.operation == lost)
            .count();
        assert_eq!(sent, 2, "{lost}: sent, and sent again");
    }
    let read = alice.get(&format!("/conversations/{id}")).await;
    let contents: Vec<&str> = read.body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(contents, ["put once", "counted once"]);
    assert_eq!(read.body["messageCount"], 2);
}
