//! Appends by slot (`SLOT_KEYS`, docs/data-model.md "Appending"): a message is put at the
//! slot after its conversation's tip, then counted by moving the tip onto it. These tests stop
//! a writer between and inside those writes, and show that the message is stored once and
//! counted once by whoever comes next: a retry, the next append, or the indexer the table's
//! stream feeds.

use std::sync::Arc;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::Utc;
use local::{StreamConsumer, StreamPoller};
use reqwest::StatusCode;
use serde_json::{json, Value};
use shared::clock::SystemClock;
use shared::keys;
use shared::model::{ClientMessageId, ConversationId, Message, MessageId, Role, UserId};
use shared::store::Store;
use tests::{
    api_feeding, items_of_conversation, new_user, state_configured, Fault, FaultyWrites, LocalApi,
};

/// The local API without the cache (every read is the table's answer), appending by slot.
async fn api() -> LocalApi {
    let overrides = [("CACHE_URL", ""), ("SLOT_KEYS", "true")];
    LocalApi::serving(state_configured(&overrides, Arc::new(SystemClock)).await).await
}

/// A store over the same table as `api` whose `kill_at`-th write fails by `fault` (and every
/// later one), as a writer that stops there.
async fn writer_stopping_at(api: &LocalApi, kill_at: usize, fault: Fault) -> Store {
    Store::new(
        FaultyWrites::client(kill_at, fault).await,
        &api.state.config.table_name,
    )
    .with_slot_keys(true)
}

fn user_message(conversation: &str, content: &str, client_id: Option<&str>) -> Message {
    Message {
        id: MessageId::generate(),
        conversation_id: ConversationId::parse(conversation).unwrap(),
        role: Role::User,
        content: content.to_owned(),
        timestamp: Utc::now(),
        attachments: Vec::new(),
        metadata: Default::default(),
        client_message_id: client_id.map(str::to_owned),
        client_timestamp: None,
        token_count: None,
        slot: None,
    }
}

/// The conversation's message items (by their keys, in key order) and its item's count and tip.
async fn stored(api: &LocalApi, user: &str, id: &str) -> (Vec<String>, String, Option<String>) {
    let items = items_of_conversation(&api.state, user, id).await;
    let messages = items
        .iter()
        .map(|item| item["SK"].as_s().unwrap().clone())
        .filter(|sk| keys::is_message_sort_key(sk))
        .collect();
    let meta = items
        .iter()
        .find(|item| item["SK"].as_s().unwrap() == "META")
        .expect("the conversation's item");
    let count = meta["messageCount"].as_n().unwrap().clone();
    let tip = meta.get("tip").map(|tip| tip.as_s().unwrap().clone());
    (messages, count, tip)
}

fn slot(number: u64) -> String {
    keys::slot_sort_key(keys::Slot::trunk(number))
}

#[tokio::test]
async fn a_message_kept_by_slot_holds_its_id_and_time_and_reads_back_as_sent() {
    let api = api().await;
    let user = new_user();
    let alice = api.as_user(&user);
    let id = alice.create_conversation(Some("Slots")).await;
    let first = alice.say(&id, "one").await;
    let second = alice.say(&id, "two").await;

    let items = items_of_conversation(&api.state, &user, &id).await;
    let at = |sk: &str| {
        items
            .iter()
            .find(|item| item["SK"].as_s().unwrap() == sk)
            .unwrap_or_else(|| panic!("{sk} in {items:?}"))
    };
    for (said, number) in [(&first, 1), (&second, 2)] {
        let item = at(&slot(number));
        let id = uuid::Uuid::parse_str(said["id"].as_str().unwrap()).unwrap();
        assert_eq!(item["id"], AttributeValue::B(id.as_bytes().to_vec().into()));
        // Kept to the microsecond, shown to the millisecond.
        let micros: i64 = item["at"].as_n().unwrap().parse().unwrap();
        let time = chrono::DateTime::from_timestamp_micros(micros).unwrap();
        let shown =
            chrono::DateTime::parse_from_rfc3339(said["timestamp"].as_str().unwrap()).unwrap();
        assert_eq!(
            chrono::SubsecRound::trunc_subsecs(time, 3),
            shown,
            "{time} against {shown}"
        );
        assert!(!item.contains_key("messageId") && !item.contains_key("timestamp"));
    }
    assert_eq!(stored(&api, &user, &id).await.1, "2");
    assert_eq!(
        stored(&api, &user, &id).await.2.as_deref(),
        Some("0000#0000000002")
    );
    let read = alice.get(&format!("/conversations/{id}")).await.body;
    assert_eq!(read["messageCount"], 2);
    assert_eq!(read["messages"], json!([first, second]));
    assert!(first["timestamp"].as_str() < second["timestamp"].as_str());
}

/// The rollout (docs/operations.md, "Slot keys"): a conversation whose messages were appended
/// in a transaction, under time keys, goes on by slot after them, read in one order and paged
/// across the change.
#[tokio::test]
async fn a_conversation_begun_before_the_switch_goes_on_by_slot_after_its_earlier_messages() {
    let api = api().await;
    let user = new_user();
    let alice = api.as_user(&user);
    let id = alice.create_conversation(Some("Before and after")).await;
    let before_switch = api
        .state
        .conversations
        .store()
        .clone()
        .with_slot_keys(false);
    let owner = UserId::parse(&user).unwrap();
    for content in ["before 1", "before 2"] {
        let outcome = before_switch
            .append_message(&owner, &user_message(&id, content, None), None, None)
            .await
            .unwrap();
        assert!(matches!(outcome, shared::store::AppendOutcome::Stored(_)));
    }
    alice.say(&id, "after 1").await;
    alice.say(&id, "after 2").await;

    let (messages, count, tip) = stored(&api, &user, &id).await;
    assert_eq!(count, "4");
    assert_eq!(tip.as_deref(), Some("0000#0000000002"));
    assert_eq!(&messages[2..], [slot(1), slot(2)]);
    let contents = |page: &Value| -> Vec<String> {
        page["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["content"].as_str().unwrap().to_owned())
            .collect()
    };
    let newest = alice
        .get(&format!("/conversations/{id}?messageLimit=3"))
        .await
        .body;
    assert_eq!(contents(&newest), ["before 2", "after 1", "after 2"]);
    let cursor = newest["olderMessagesCursor"]
        .as_str()
        .expect("an older page");
    let older = alice
        .get(&format!(
            "/conversations/{id}?messageLimit=3&before={cursor}"
        ))
        .await
        .body;
    assert_eq!(contents(&older), ["before 1"]);
}

/// Every way a writer can stop inside an append with a client message id (before each of its
/// three writes, or after one whose answer was lost), followed by the app's retry with the same
/// id: one message, counted once, and the retry answers with it.
#[tokio::test]
async fn an_append_stopped_at_any_write_and_retried_is_stored_and_counted_once() {
    let api = api().await;
    let user = new_user();
    let owner = UserId::parse(&user).unwrap();
    let alice = api.as_user(&user);
    for fault in [Fault::BeforeSending, Fault::AnswerLost] {
        for kill_at in 1..=3 {
            let id = alice.create_conversation(Some("Stopped")).await;
            alice.say(&id, "before").await;
            let client_id = format!("stopped-{kill_at}-{fault:?}");
            let writer = writer_stopping_at(&api, kill_at, fault).await;
            let stopped = writer
                .append_message(
                    &owner,
                    &user_message(&id, "the one", Some(&client_id)),
                    Some(&ClientMessageId::parse(&client_id).unwrap()),
                    None,
                )
                .await;
            // Stopped at the count (write 3), the message is stored: acknowledged.
            assert_eq!(
                stopped.is_ok(),
                kill_at == 3,
                "{fault:?} at write {kill_at}"
            );

            let retry = alice
                .post(
                    &format!("/conversations/{id}/messages"),
                    json!({"role": "user", "content": "the one", "clientMessageId": client_id}),
                )
                .await;
            assert!(
                [StatusCode::CREATED, StatusCode::OK].contains(&retry.status),
                "{fault:?} at write {kill_at}: {:?}",
                retry.body
            );
            let (messages, count, tip) = stored(&api, &user, &id).await;
            assert_eq!(messages, [slot(1), slot(2)], "{fault:?} at write {kill_at}");
            assert_eq!(count, "2", "{fault:?} at write {kill_at}");
            assert_eq!(tip.as_deref(), Some("0000#0000000002"));
            let read = alice.get(&format!("/conversations/{id}")).await.body;
            assert_eq!(
                read["messages"][1], retry.body,
                "{fault:?} at write {kill_at}"
            );
        }
    }
}

/// A retry whose first attempt claimed its client id's slot and stopped before storing the
/// message, while others took that slot and more: the message goes after them, once.
#[tokio::test]
async fn a_retry_whose_first_attempt_never_stored_goes_after_the_messages_stored_since() {
    let api = api().await;
    let user = new_user();
    let owner = UserId::parse(&user).unwrap();
    let alice = api.as_user(&user);
    let id = alice.create_conversation(Some("Overtaken")).await;
    // Its record (write 1) names slot 1; its message (write 2) is never sent.
    let writer = writer_stopping_at(&api, 2, Fault::BeforeSending).await;
    let stopped = writer
        .append_message(
            &owner,
            &user_message(&id, "late", Some("late-1")),
            Some(&ClientMessageId::parse("late-1").unwrap()),
            None,
        )
        .await;
    assert!(stopped.is_err());
    for n in 1..=3 {
        alice.say(&id, &format!("meanwhile {n}")).await;
    }
    let path = format!("/conversations/{id}/messages");
    let body = json!({"role": "user", "content": "late", "clientMessageId": "late-1"});
    let retry = alice.post(&path, body.clone()).await;
    assert_eq!(retry.status, StatusCode::CREATED, "{:?}", retry.body);
    let again = alice.post(&path, body).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.body, retry.body);

    let (messages, count, _) = stored(&api, &user, &id).await;
    assert_eq!(messages, [slot(1), slot(2), slot(3), slot(4)]);
    assert_eq!(count, "4");
    let read = alice.get(&format!("/conversations/{id}")).await.body;
    assert_eq!(read["messages"][3], retry.body);
}

/// A writer that stored its message and could not count it, with no append after: the
/// indexer, fed by the table's stream, counts it within the batch (and a second delivery of
/// the record counts nothing more). The next append would have counted it too.
#[tokio::test]
async fn a_message_whose_writer_stopped_before_counting_it_is_counted_by_the_indexer_once() {
    let (api, mut poller): (LocalApi, StreamPoller) = api_feeding(
        StreamConsumer::IndexForSearch,
        &[("CACHE_URL", ""), ("SLOT_KEYS", "true")],
    )
    .await;
    let user = new_user();
    let owner = UserId::parse(&user).unwrap();
    let alice = api.as_user(&user);
    let id = alice.create_conversation(Some("Uncounted")).await;
    alice.say(&id, "counted").await;
    // Write 1 puts the message, write 2 (the count) is never sent.
    let writer = writer_stopping_at(&api, 2, Fault::BeforeSending).await;
    let stopped = writer
        .append_message(&owner, &user_message(&id, "uncounted", None), None, None)
        .await;
    // Stored, so acknowledged: counting it is left to whoever comes next.
    assert!(stopped.is_ok());
    let (messages, count, tip) = stored(&api, &user, &id).await;
    assert_eq!(
        (messages.len(), count.as_str(), tip.as_deref()),
        (2, "1", Some("0000#0000000001"))
    );

    poller.poll_once().await.expect("the stream is readable");
    let (messages, count, tip) = stored(&api, &user, &id).await;
    assert_eq!(messages, [slot(1), slot(2)]);
    assert_eq!(
        (count.as_str(), tip.as_deref()),
        ("2", Some("0000#0000000002"))
    );
    // Counting again (a record delivered twice) changes nothing.
    api.state
        .conversations
        .store()
        .count_through(
            &keys::conversation_partition(&owner, &ConversationId::parse(&id).unwrap()),
            keys::Slot::trunk(2),
        )
        .await
        .unwrap();
    assert_eq!(stored(&api, &user, &id).await.1, "2");
    let read = alice.get(&format!("/conversations/{id}")).await.body;
    assert_eq!(read["messageCount"], 2);
    assert_eq!(read["messages"][1]["content"], "uncounted");

    // Without the indexer, the next append counts it first.
    let writer = writer_stopping_at(&api, 2, Fault::BeforeSending).await;
    let stopped = writer
        .append_message(
            &owner,
            &user_message(&id, "uncounted too", None),
            None,
            None,
        )
        .await;
    assert!(stopped.is_ok());
    alice.say(&id, "next").await;
    let (messages, count, tip) = stored(&api, &user, &id).await;
    assert_eq!(messages.len(), 4);
    assert_eq!(
        (count.as_str(), tip.as_deref()),
        ("4", Some("0000#0000000004"))
    );
}

/// A message too large for its item (its content in S3) whose count fails: the append is
/// acknowledged, its content stays where the item points, and the retry, the page and the
/// next append all read it (the count comes with the next append), and it titles its
/// conversation.
#[tokio::test]
async fn a_large_message_whose_count_failed_keeps_its_content_and_is_acknowledged() {
    let api = api().await;
    let user = new_user();
    let owner = UserId::parse(&user).unwrap();
    let alice = api.as_user(&user);
    let id = alice.create_conversation(None).await;
    let bucket = api
        .state
        .config
        .attachments_bucket
        .clone()
        .expect("a bucket");
    // Write 1 claims the client id, write 2 puts the message (its content went to S3 first),
    // write 3 (the count) fails.
    let writer = writer_stopping_at(&api, 3, Fault::BeforeSending)
        .await
        .with_content_objects(shared::store::ContentObjects::new(
            tests::s3().await,
            bucket,
        ));
    let content = "a long line of words to keep. ".repeat(1_500);
    let client_id = ClientMessageId::parse("large-1").unwrap();
    let outcome = writer
        .append_message(
            &owner,
            &user_message(&id, &content, Some("large-1")),
            Some(&client_id),
            None,
        )
        .await
        .expect("acknowledged: the message is stored");
    assert!(matches!(outcome, shared::store::AppendOutcome::Stored(_)));
    let (messages, count, _) = stored(&api, &user, &id).await;
    assert_eq!((messages.len(), count.as_str()), (1, "0"));

    let retry = alice
        .post(
            &format!("/conversations/{id}/messages"),
            json!({"role": "user", "content": content, "clientMessageId": "large-1"}),
        )
        .await;
    assert_eq!(retry.status, StatusCode::OK, "{:?}", retry.body);
    assert_eq!(retry.body["content"], content.as_str());
    alice.say(&id, "next").await;
    let read = alice.get(&format!("/conversations/{id}")).await;
    assert_eq!(read.status, StatusCode::OK, "{:?}", read.body);
    assert_eq!(read.body["messageCount"], 2);
    assert_eq!(read.body["messages"][0]["content"], content.as_str());
    // Counted by the retry, it titles the conversation from its content (read back from S3).
    assert_eq!(
        read.body["title"],
        shared::model::Title::derived_from(&content).as_str()
    );
}

/// The switch turned off again after messages were kept by slot: an append in a transaction
/// would sort before them, so a conversation that holds slots goes on by slot.
#[tokio::test]
async fn with_the_switch_off_again_a_conversation_that_holds_slots_goes_on_by_slot() {
    let api = api().await;
    let user = new_user();
    let owner = UserId::parse(&user).unwrap();
    let alice = api.as_user(&user);
    let id = alice.create_conversation(Some("Switched back")).await;
    alice.say(&id, "by slot").await;
    let switched_off = api
        .state
        .conversations
        .store()
        .clone()
        .with_slot_keys(false);
    let outcome = switched_off
        .append_message(&owner, &user_message(&id, "after", None), None, None)
        .await
        .unwrap();
    assert!(matches!(outcome, shared::store::AppendOutcome::Stored(_)));
    let (messages, count, tip) = stored(&api, &user, &id).await;
    assert_eq!(messages, [slot(1), slot(2)]);
    assert_eq!(
        (count.as_str(), tip.as_deref()),
        ("2", Some("0000#0000000002"))
    );
    // A conversation that holds no slot still appends in a transaction, under time keys.
    let other = alice.create_conversation(Some("Never by slot")).await;
    switched_off
        .append_message(&owner, &user_message(&other, "timed", None), None, None)
        .await
        .unwrap();
    let (messages, count, tip) = stored(&api, &user, &other).await;
    assert!(!messages[0].starts_with(keys::SLOT_PREFIX), "{messages:?}");
    assert_eq!((count.as_str(), tip), ("1", None));
}

/// A message counted late (its writer stopped between its two writes) reaches the app that
/// synced in between: its conversation's activity is the count's time, not the message's
/// older one, which the sync cursor has passed.
#[tokio::test]
async fn a_message_counted_late_reaches_a_sync_whose_cursor_passed_its_time() {
    let (api, mut poller): (LocalApi, StreamPoller) = api_feeding(
        StreamConsumer::IndexForSearch,
        &[
            ("CACHE_URL", ""),
            ("SLOT_KEYS", "true"),
            ("SYNC_SETTLE_SECONDS", "1"),
        ],
    )
    .await;
    let user = new_user();
    let owner = UserId::parse(&user).unwrap();
    let alice = api.as_user(&user);
    let id = alice.create_conversation(Some("Counted late")).await;
    alice.say(&id, "counted").await;
    let writer = writer_stopping_at(&api, 2, Fault::BeforeSending).await;
    let stopped = writer
        .append_message(&owner, &user_message(&id, "uncounted", None), None, None)
        .await;
    assert!(stopped.is_ok());
    // The app syncs after a later change elsewhere: its cursor, less the second each round
    // looks back again, is past the message's time.
    tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;
    let later = alice.create_conversation(Some("Later")).await;
    alice.say(&later, "later").await;
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(cursor) => format!("/mobile/sync?since={cursor}"),
            None => "/mobile/sync".to_owned(),
        };
        let page = alice.get(&path).await;
        assert_eq!(page.status, StatusCode::OK, "{:?}", page.body);
        cursor = Some(page.body["cursor"].as_str().unwrap().to_owned());
        if !page.body["hasMore"].as_bool().unwrap() {
            break;
        }
    }

    poller.poll_once().await.expect("the stream is readable");
    let since = alice
        .get(&format!("/mobile/sync?since={}", cursor.unwrap()))
        .await;
    assert_eq!(since.status, StatusCode::OK, "{:?}", since.body);
    let changed: Vec<&Value> = since.body["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["id"] == id.as_str())
        .collect();
    assert_eq!(changed.len(), 1, "{:?}", since.body);
    assert_eq!(changed[0]["messageCount"], 2);
}

/// Content too large for its item goes to S3 under a key made of the message's id. Sent
/// again with the same id (a migration run again, which keeps its messages' ids), the append
/// finds the message stored and keeps the object it points to, by slot and in a transaction.
#[tokio::test]
async fn an_append_sent_again_with_the_same_message_id_keeps_its_large_content() {
    let api = api().await;
    let user = new_user();
    let owner = UserId::parse(&user).unwrap();
    let alice = api.as_user(&user);
    let bucket = api
        .state
        .config
        .attachments_bucket
        .clone()
        .expect("a bucket");
    let content = "a long line of words to keep. ".repeat(1_500);
    for slot_keys in [true, false] {
        let store = api
            .state
            .conversations
            .store()
            .clone()
            .with_slot_keys(slot_keys)
            .with_content_objects(shared::store::ContentObjects::new(
                tests::s3().await,
                bucket.clone(),
            ));
        let id = alice.create_conversation(Some("Large, twice")).await;
        let client_id = ClientMessageId::parse("large-twice").unwrap();
        let message = user_message(&id, &content, Some("large-twice"));
        let first = store
            .append_message(&owner, &message, Some(&client_id), None)
            .await
            .unwrap();
        assert!(matches!(first, shared::store::AppendOutcome::Stored(_)));
        let again = store
            .append_message(&owner, &message, Some(&client_id), None)
            .await
            .unwrap();
        assert!(
            matches!(again, shared::store::AppendOutcome::AlreadyStored(_)),
            "by slot: {slot_keys}"
        );
        let read = alice.get(&format!("/conversations/{id}")).await;
        assert_eq!(
            read.status,
            StatusCode::OK,
            "by slot: {slot_keys}: {:?}",
            read.body
        );
        assert_eq!(read.body["messageCount"], 1);
        assert_eq!(read.body["messages"][0]["content"], content.as_str());
    }
}

/// An append by slot that claimed its client id and stopped before putting its message, into
/// a conversation holding no slot yet; the switch is turned off and the app retries: the
/// retry goes on by slot, at the slot the record names (not 503 for ever).
#[tokio::test]
async fn a_retry_after_the_switch_is_turned_off_goes_on_from_its_record_by_slot() {
    let api = api().await;
    let user = new_user();
    let owner = UserId::parse(&user).unwrap();
    let alice = api.as_user(&user);
    let id = alice.create_conversation(Some("Claimed, then off")).await;
    // Write 1 claims the client id, write 2 (the message) is never sent.
    let writer = writer_stopping_at(&api, 2, Fault::BeforeSending).await;
    let stopped = writer
        .append_message(
            &owner,
            &user_message(&id, "first", Some("claimed-1")),
            Some(&ClientMessageId::parse("claimed-1").unwrap()),
            None,
        )
        .await;
    assert!(stopped.is_err());

    let switched_off = api
        .state
        .conversations
        .store()
        .clone()
        .with_slot_keys(false);
    let retry = switched_off
        .append_message(
            &owner,
            &user_message(&id, "first", Some("claimed-1")),
            Some(&ClientMessageId::parse("claimed-1").unwrap()),
            None,
        )
        .await
        .expect("the retry goes on by slot");
    assert!(matches!(retry, shared::store::AppendOutcome::Stored(_)));
    let (messages, count, tip) = stored(&api, &user, &id).await;
    assert_eq!(messages, [slot(1)]);
    assert_eq!(
        (count.as_str(), tip.as_deref()),
        ("1", Some("0000#0000000001"))
    );
}

/// Migrated messages written in a transaction, into a conversation that came to hold slots
/// after the migration looked: refused there (a time key would sort before the slots), they
/// go by slot, after them, once each (a run again stores nothing).
#[tokio::test]
async fn migrated_messages_into_a_conversation_that_holds_slots_go_after_them_by_slot() {
    let api = api().await;
    let user = new_user();
    let owner = UserId::parse(&user).unwrap();
    let alice = api.as_user(&user);
    let id = alice.create_conversation(Some("Migrated into")).await;
    alice.say(&id, "by slot").await;
    let conversation = ConversationId::parse(&id).unwrap();
    let said_before = Utc::now() - chrono::Duration::hours(1);
    let migrated: Vec<Message> = ["remembered", "and this"]
        .into_iter()
        .map(|content| Message {
            timestamp: said_before,
            ..user_message(&id, content, None)
        })
        .collect();
    let store = api.state.conversations.store();
    let stored_now = store
        .append_migrated(&owner, &conversation, &migrated, None)
        .await
        .unwrap();
    assert_eq!(stored_now, 2);
    let again = store
        .append_migrated(&owner, &conversation, &migrated, None)
        .await
        .unwrap();
    assert_eq!(again, 0);
    let (messages, count, _) = stored(&api, &user, &id).await;
    assert_eq!(messages, [slot(1), slot(2), slot(3)]);
    assert_eq!(count, "3");
    let read = alice.get(&format!("/conversations/{id}")).await.body;
    assert_eq!(read["messages"][1]["content"], "remembered");
    assert_eq!(read["messages"][2]["content"], "and this");
}
