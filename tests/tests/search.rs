//! Search by title and message content: the index follows the table's stream (fed here by
//! the local poller, as Lambda feeds the indexer in AWS), every write path is indexed, edits
//! and deletes are reflected, and nobody finds another user's conversations.

use chrono::{Duration, Utc};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tests::capacity::item_bytes;
use tests::{
    append_directly, items_of_conversation, new_user, search_blocks_of, template, Client, LocalApi,
};

use local::{StreamConsumer, StreamPoller};

/// The local API with the search indexer fed from the table's stream.
async fn api_with_indexer() -> (LocalApi, StreamPoller) {
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let api = LocalApi::start().await;
    let poller = StreamPoller::from_latest(
        api.state.clone(),
        &template(),
        Some(&[StreamConsumer::IndexForSearch]),
    )
    .await
    .expect("the table has a stream");
    (api, poller)
}

/// Runs the indexer over everything written so far.
async fn index(poller: &mut StreamPoller) {
    poller.poll_once().await.expect("the stream is readable");
}

async fn search(client: &Client, query: &str) -> Value {
    let reply = client.get(&format!("/search?{query}")).await;
    assert_eq!(reply.status, StatusCode::OK, "{query}: {:?}", reply.body);
    reply.body
}

fn found_ids(body: &Value) -> Vec<String> {
    body["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| r["conversation"]["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_word_from_message_3000_of_a_long_conversation_is_found() {
    let (api, mut poller) = api_with_indexer().await;
    let user = new_user();
    let client = api.as_user(&user);
    let id = client.create_conversation(Some("A long chat")).await;
    // 3,000 messages through the migration's writer (transactions of up to 100 items): the
    // index hears of them from the stream like of any other write.
    let contents = (1..=3000).map(|n| {
        if n == 3000 {
            "Finally: the ferry to Zanzibar leaves at nine from the old harbour.".to_owned()
        } else {
            format!(
                "Message number {n} about planning the trip, day {}.",
                n % 14
            )
        }
    });
    let messages = append_directly(
        &api.state,
        &user,
        &id,
        contents,
        Utc::now() - Duration::hours(2),
    )
    .await;
    index(&mut poller).await;

    let body = search(&client, "q=zanzibar").await;
    assert_eq!(found_ids(&body), vec![id.clone()]);
    let hit = &body["results"][0];
    assert_eq!(hit["matchedIn"], "message");
    assert_eq!(hit["messageId"], messages[2999].id.to_string());
    assert!(
        hit["snippet"].as_str().unwrap().contains("Zanzibar"),
        "{hit}"
    );
    assert_eq!(hit["conversation"]["messageCount"], 3000);
    // Case and common words do not matter; every word must be there.
    assert_eq!(
        found_ids(&search(&client, "q=The%20FERRY%20to%20zanzibar").await),
        vec![id.clone()]
    );
    assert!(found_ids(&search(&client, "q=zanzibar%20airport").await).is_empty());
    // The index of 3,000 messages: a few blocks, each at most one write unit.
    let blocks = search_blocks_of(&api.state, &user, &id).await;
    assert!((2..=60).contains(&blocks.len()), "{} blocks", blocks.len());
    for block in &blocks {
        assert!(item_bytes(block) <= 1024, "{}", item_bytes(block));
    }
}

#[tokio::test]
async fn another_users_matching_conversations_are_never_returned() {
    let (api, mut poller) = api_with_indexer().await;
    let (a, b) = (new_user(), new_user());
    let (alice, bob) = (api.as_user(&a), api.as_user(&b));
    let hers = alice.create_conversation(Some("Secret recipe")).await;
    alice.say(&hers, "The secret ingredient is cardamom.").await;
    alice.create_conversation(Some("More secret things")).await;
    let his = bob.create_conversation(Some("Groceries")).await;
    bob.say(&his, "Buy a secret amount of cardamom.").await;
    index(&mut poller).await;

    let alice_found = search(&alice, "q=secret%20cardamom").await;
    assert_eq!(found_ids(&alice_found), vec![hers.clone()]);
    let bob_found = search(&bob, "q=secret%20cardamom").await;
    assert_eq!(found_ids(&bob_found), vec![his.clone()]);
    // A word only Alice wrote finds nothing for Bob: the same answer as a word nobody wrote.
    let only_hers = search(&bob, "q=ingredient").await;
    let nobodys = search(&bob, "q=neverwrittenanywhere").await;
    for field in ["results", "nextCursor", "hasMore"] {
        assert_eq!(only_hers[field], nobodys[field], "{field}");
    }
    assert!(found_ids(&search(&bob, "q=recipe").await).is_empty());

    // Alice's cursor is refused for Bob (and for another query of hers).
    let page = search(&alice, "q=secret&limit=1").await;
    let cursor = page["nextCursor"]
        .as_str()
        .expect("a second page")
        .to_owned();
    let with_her_cursor = bob
        .get(&format!("/search?q=secret&limit=1&cursor={cursor}"))
        .await;
    assert_eq!(with_her_cursor.status, StatusCode::BAD_REQUEST);
    let other_query = alice
        .get(&format!("/search?q=cardamom&cursor={cursor}"))
        .await;
    assert_eq!(other_query.status, StatusCode::BAD_REQUEST);
    // Without a token, nothing.
    assert_eq!(
        api.anonymous().get("/search?q=secret").await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn renames_and_deletes_are_reflected() {
    let (api, mut poller) = api_with_indexer().await;
    let user = new_user();
    let client = api.as_user(&user);
    let id = client.create_conversation(Some("Hiking in Norway")).await;
    client.say(&id, "Which fjord has the best trails?").await;
    index(&mut poller).await;
    assert_eq!(
        found_ids(&search(&client, "q=norway").await),
        vec![id.clone()]
    );

    let renamed = client
        .put(
            &format!("/conversations/{id}/title"),
            json!({"title": "Hiking in Iceland"}),
        )
        .await;
    assert_eq!(renamed.status, StatusCode::OK);
    index(&mut poller).await;
    assert!(found_ids(&search(&client, "q=norway").await).is_empty());
    let iceland = search(&client, "q=iceland").await;
    assert_eq!(found_ids(&iceland), vec![id.clone()]);
    assert_eq!(iceland["results"][0]["matchedIn"], "title");
    assert_eq!(iceland["results"][0]["snippet"], "Hiking in Iceland");
    assert_eq!(
        found_ids(&search(&client, "q=hiking").await),
        vec![id.clone()]
    );

    // Gone from search as soon as it is deleted, before its entries are purged.
    assert_eq!(
        client.delete(&format!("/conversations/{id}")).await.status,
        StatusCode::NO_CONTENT
    );
    assert!(found_ids(&search(&client, "q=fjord").await).is_empty());
    assert!(found_ids(&search(&client, "q=iceland").await).is_empty());
    // The delete's purge took its search blocks with the rest of the conversation.
    index(&mut poller).await;
    assert_eq!(items_of_conversation(&api.state, &user, &id).await, vec![]);
    assert_eq!(search_blocks_of(&api.state, &user, &id).await, vec![]);
}

#[tokio::test]
async fn a_conversation_deleted_before_its_messages_are_indexed_leaves_no_blocks() {
    let (api, mut poller) = api_with_indexer().await;
    let user = new_user();
    let client = api.as_user(&user);
    let id = client.create_conversation(None).await;
    client.say(&id, "Quarterly budget review notes").await;
    // Content too large for its item is in S3, and goes with the conversation too.
    let long = format!("Budget appendix. {}", "line item ".repeat(5_000));
    client.say(&id, &long).await;
    // Deleted and purged before the indexer runs: the indexer writes the message's block,
    // finds the conversation gone and takes it back.
    assert_eq!(
        client.delete(&format!("/conversations/{id}")).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(items_of_conversation(&api.state, &user, &id).await, vec![]);
    // Written after the delete, in the same stream batch: indexed, not held up by the
    // records of the deleted conversation.
    let other = client.create_conversation(None).await;
    client.say(&other, "Start").await;
    client.say(&other, "Budget for the offsite").await;
    index(&mut poller).await;
    assert_eq!(items_of_conversation(&api.state, &user, &id).await, vec![]);
    assert_eq!(search_blocks_of(&api.state, &user, &id).await, vec![]);
    assert_eq!(search_blocks_of(&api.state, &user, &other).await.len(), 1);
    assert_eq!(found_ids(&search(&client, "q=budget").await), vec![other]);
}

#[tokio::test]
async fn title_hits_come_first_then_the_newest_message_hits() {
    let (api, mut poller) = api_with_indexer().await;
    let client = api.as_user(&new_user());
    // Untitled conversations take their first message as title: start them with another.
    let older = client.create_conversation(None).await;
    client.say(&older, "Baking questions").await;
    client.say(&older, "Notes on sourdough starters").await;
    let titled = client.create_conversation(Some("Sourdough")).await;
    client.say(&titled, "Flour and water").await;
    let newer = client.create_conversation(None).await;
    client.say(&newer, "Bread again").await;
    client.say(&newer, "More sourdough questions").await;
    index(&mut poller).await;

    let body = search(&client, "q=sourdough").await;
    assert_eq!(found_ids(&body), [titled, newer, older]);
    let places: Vec<&str> = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["matchedIn"].as_str().unwrap())
        .collect();
    assert_eq!(places, ["title", "message", "message"]);
    assert_eq!(body["terms"], json!(["sourdough"]));
    assert_eq!(body["hasMore"], false);
}

#[tokio::test]
async fn pages_of_results_list_every_match_once() {
    let (api, mut poller) = api_with_indexer().await;
    let client = api.as_user(&new_user());
    let mut expected = Vec::new();
    for i in 0..23 {
        let id = client.create_conversation(None).await;
        client.say(&id, &format!("Volcano fact number {i}")).await;
        expected.push(id);
    }
    let other = client.create_conversation(None).await;
    client.say(&other, "Nothing about mountains").await;
    index(&mut poller).await;

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let query = match &cursor {
            Some(c) => format!("q=volcano&limit=5&cursor={c}"),
            None => "q=volcano&limit=5".to_owned(),
        };
        let page = search(&client, &query).await;
        assert!(page["results"].as_array().unwrap().len() <= 5);
        seen.extend(found_ids(&page));
        match page["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    expected.reverse(); // newest first
    assert_eq!(seen, expected);
}

#[tokio::test]
async fn the_mobile_batch_and_large_messages_are_indexed_too() {
    let (api, mut poller) = api_with_indexer().await;
    let client = api.as_user(&new_user());
    let batch = client
        .post(
            "/mobile/batch",
            json!({"operations": [
                {"opId": "1", "type": "createConversation", "clientConversationId": "c1", "title": "Offline notes"},
                {"opId": "2", "type": "addMessage", "clientConversationId": "c1", "role": "user", "content": "Remember the lighthouse"},
            ]}),
        )
        .await;
    assert_eq!(batch.status, StatusCode::OK, "{:?}", batch.body);
    // Content too large for its item lives in S3; the indexer reads it from there.
    let big = client.create_conversation(None).await;
    let content = format!("Harpsichord tuning, at length. {}", "la ".repeat(20_000));
    client.say(&big, &content).await;
    index(&mut poller).await;

    assert_eq!(found_ids(&search(&client, "q=lighthouse").await).len(), 1);
    assert_eq!(found_ids(&search(&client, "q=harpsichord").await), [big]);
}

#[tokio::test]
async fn a_search_it_cannot_answer_is_a_clear_400() {
    let api = LocalApi::start().await;
    let client = api.as_user(&new_user());
    let long = "word".repeat(60);
    for query in [
        "".to_owned(),
        "q=".to_owned(),
        "q=%20%20".to_owned(),
        format!("q={long}"),
        "q=one%20two%20three%20four%20five%20six%20seven%20eight%20nine".to_owned(),
        "q=x&limit=0".to_owned(),
        "q=x&limit=51".to_owned(),
        "q=x&cursor=not-a-cursor".to_owned(),
    ] {
        let reply = client.get(&format!("/search?{query}")).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{query}: {:?}",
            reply.body
        );
        assert_eq!(reply.error_code(), "invalid_request", "{query}");
    }
    // Only common words: nothing to look for, so nothing found.
    let body = search(&client, "q=the%20and%20of").await;
    assert_eq!(body["results"], json!([]));
    assert_eq!(body["terms"], json!([]));
}

/// The version a block was last written at (each write adds one).
fn version(
    block: &std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>,
) -> u64 {
    block["v"].as_n().unwrap().parse().unwrap()
}

#[tokio::test]
async fn a_message_of_known_words_writes_nothing_and_a_replay_changes_nothing() {
    let (api, mut poller) = api_with_indexer().await;
    let user = new_user();
    let client = api.as_user(&user);
    let id = client.create_conversation(None).await;
    client.say(&id, "Tide tables for the harbour").await;
    index(&mut poller).await;
    let blocks = search_blocks_of(&api.state, &user, &id).await;
    assert_eq!(blocks.len(), 1);
    assert_eq!(version(&blocks[0]), 1);

    // Only words the conversation's block has: nothing is written.
    client.say(&id, "Harbour tide tables, the TABLES!").await;
    index(&mut poller).await;
    assert_eq!(search_blocks_of(&api.state, &user, &id).await, blocks);

    // New words: the same block takes them, in one write.
    let lantern = client.say(&id, "Bring a lantern").await;
    index(&mut poller).await;
    let grown = search_blocks_of(&api.state, &user, &id).await;
    assert_eq!(grown.len(), 1);
    assert_eq!(version(&grown[0]), 2);

    // Records delivered again find their words indexed: nothing more is written.
    let store = api.state.conversations.store();
    let owner = shared::model::UserId::parse(&user).unwrap();
    let conversation = shared::model::ConversationId::parse(&id).unwrap();
    let messages = store
        .messages_oldest_first(&owner, &conversation, None, 10)
        .await
        .unwrap()
        .0;
    assert_eq!(messages.len(), 3);
    let written = shared::search::index_messages(store, &owner, &conversation, &messages)
        .await
        .unwrap();
    assert_eq!(written, 0);
    assert_eq!(search_blocks_of(&api.state, &user, &id).await, grown);
    let hit = &search(&client, "q=lantern").await["results"][0];
    assert_eq!(hit["messageId"], lantern["id"]);
}

#[tokio::test]
async fn messages_written_before_the_indexed_ones_are_found_at_their_place() {
    // A conversation kept by time keys (as before slot keys): a migration writes its older
    // messages among them (into one kept by slot, they go after its messages, by slot).
    let (api, mut poller) =
        tests::api_feeding(StreamConsumer::IndexForSearch, &[("SLOT_KEYS", "false")]).await;
    let user = new_user();
    let client = api.as_user(&user);
    let id = client.create_conversation(Some("Garden")).await;
    client.say(&id, "Planting tulips this week").await;
    index(&mut poller).await;
    // Older messages arrive later (as a migration writes earlier short-term memory).
    let older = append_directly(
        &api.state,
        &user,
        &id,
        ["Compost first, then the marigolds".to_owned()],
        Utc::now() - Duration::days(3),
    )
    .await;
    index(&mut poller).await;
    assert_eq!(search_blocks_of(&api.state, &user, &id).await.len(), 2);

    let body = search(&client, "q=marigolds").await;
    assert_eq!(found_ids(&body), vec![id.clone()]);
    assert_eq!(body["results"][0]["messageId"], older[0].id.to_string());
    assert_eq!(
        found_ids(&search(&client, "q=tulips%20compost").await),
        vec![id]
    );
}

#[tokio::test]
async fn a_backfill_stopped_midway_goes_on_where_it_stopped_and_ends_as_one_run() {
    use shared::search_backfill::{backfill_search, BackfillOptions};
    let api = LocalApi::start().await;
    let user = new_user();
    let client = api.as_user(&user);
    // Three conversations written with no indexer running.
    let mut ids = Vec::new();
    for (n, word) in ["walrus", "narwhal", "beluga"].into_iter().enumerate() {
        let id = client.create_conversation(None).await;
        let contents = (0..4).map(|m| format!("Note {m} about the {word}"));
        append_directly(
            &api.state,
            &user,
            &id,
            contents,
            Utc::now() - Duration::hours(n as i64 + 1),
        )
        .await;
        ids.push(id);
    }
    let store = api.state.conversations.store();
    let options = BackfillOptions {
        segments: Some(1),
        parallel: 1,
        page_items: 3,
        pages: Some(2),
    };
    // Stopped after two pages of three items: not finished, and it says so.
    let stopped = backfill_search(store, options).await.unwrap();
    assert!(!stopped.finished());
    assert!(stopped.messages < 12, "{stopped:?}");
    // The next run goes on from there to the end.
    let finished = backfill_search(
        store,
        BackfillOptions {
            pages: None,
            ..options
        },
    )
    .await
    .unwrap();
    assert!(finished.finished());
    assert_eq!(finished.messages, 12);
    for (id, word) in ids.iter().zip(["walrus", "narwhal", "beluga"]) {
        assert_eq!(
            found_ids(&search(&client, &format!("q={word}")).await),
            vec![id.clone()]
        );
        // One block each, as one uninterrupted run writes.
        assert_eq!(search_blocks_of(&api.state, &user, id).await.len(), 1);
    }
    let blocks: Vec<_> =
        futures::future::join_all(ids.iter().map(|id| search_blocks_of(&api.state, &user, id)))
            .await;
    assert_eq!(backfill_search(store, options).await.unwrap(), finished);
    let again: Vec<_> =
        futures::future::join_all(ids.iter().map(|id| search_blocks_of(&api.state, &user, id)))
            .await;
    assert_eq!(again, blocks, "a finished backfill writes nothing");
}

#[tokio::test]
async fn a_message_older_than_a_full_blocks_newest_leaves_that_block_searchable() {
    let (api, mut poller) = api_with_indexer().await;
    let user = new_user();
    let client = api.as_user(&user);
    let id = client.create_conversation(Some("Words")).await;
    let start = Utc::now() - Duration::hours(1);
    // 26 messages of 8 words no other message has: a block of 208 terms, nearly full.
    let words = |m: usize| -> String {
        (0..8)
            .map(|w| format!("w{m}x{w}q"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let messages = append_directly(&api.state, &user, &id, (0..26).map(words), start).await;
    index(&mut poller).await;
    assert_eq!(search_blocks_of(&api.state, &user, &id).await.len(), 1);
    // A message from between two of them, with new words, arrives later: it starts a block
    // of its own inside the first block's span.
    append_directly(
        &api.state,
        &user,
        &id,
        [words(100)],
        start + Duration::microseconds(10_500),
    )
    .await;
    index(&mut poller).await;
    assert_eq!(search_blocks_of(&api.state, &user, &id).await.len(), 2);
    // A word of a message after it, in the first block, is still found at its message.
    let body = search(&client, "q=w20x3q").await;
    assert_eq!(found_ids(&body), vec![id.clone()]);
    assert_eq!(body["results"][0]["messageId"], messages[20].id.to_string());
    let body = search(&client, "q=w100x1q").await;
    assert_eq!(found_ids(&body), vec![id]);
}

/// A reply kept deflated (`COMPRESS_TEXT`) reaches the indexer through the stream's image as
/// the text it was, and its words are found.
#[tokio::test]
async fn a_word_of_a_reply_kept_deflated_is_found() {
    let (api, mut poller) =
        tests::api_feeding(StreamConsumer::IndexForSearch, &[("COMPRESS_TEXT", "true")]).await;
    let user = new_user();
    let alice = api.as_user(&user);
    let id = alice.create_conversation(Some("Birds")).await;
    let answer = (1..=25)
        .map(|n| format!("Note {n}: the swallows come back to the old barn every spring."))
        .collect::<Vec<_>>()
        .join(" ")
        + " Also the hoopoe.";
    let added = alice
        .post(
            &format!("/conversations/{id}/messages"),
            json!({"role": "assistant", "content": answer}),
        )
        .await;
    assert_eq!(added.status, StatusCode::CREATED, "{:?}", added.body);
    let items = items_of_conversation(&api.state, &user, &id).await;
    assert!(
        items.iter().any(|item| item
            .get("content")
            .is_some_and(|content| content.as_b().is_ok())),
        "the reply is kept deflated"
    );
    index(&mut poller).await;
    let found = search(&alice, "q=hoopoe").await;
    assert_eq!(found_ids(&found), vec![id]);
}

#[tokio::test]
async fn a_page_whose_candidates_miss_ends_early_with_a_cursor_and_the_next_pages_find_the_hit() {
    let api = LocalApi::start().await;
    let user = new_user();
    let client = api.as_user(&user);
    let store = api.state.conversations.store();
    let owner = shared::model::UserId::parse(&user).unwrap();
    // The conversation that has the word, ranked last: its block is the oldest.
    let real = client.create_conversation(Some("Reading list")).await;
    let kept = append_directly(
        &api.state,
        &user,
        &real,
        ["A zyzzyva on the last page of the dictionary".to_owned()],
        Utc::now() - Duration::days(2),
    )
    .await;
    let real_id = shared::model::ConversationId::parse(&real).unwrap();
    shared::search::index_messages(store, &owner, &real_id, &kept)
        .await
        .unwrap();
    // 25 conversations whose index says they have the word, while no message of theirs
    // does (what a term's hash shared with another word looks like).
    for n in 0..25 {
        let id = client
            .create_conversation(Some(&format!("Decoy {n}")))
            .await;
        let id = shared::model::ConversationId::parse(&id).unwrap();
        let never_stored = shared::model::Message {
            id: shared::model::MessageId::generate(),
            conversation_id: id,
            role: shared::model::Role::User,
            content: "zyzzyva".to_owned(),
            timestamp: Utc::now() - Duration::minutes(n),
            attachments: Vec::new(),
            metadata: Default::default(),
            client_message_id: None,
            client_timestamp: None,
            token_count: None,
            slot: None,
        };
        shared::search::index_messages(store, &owner, &id, &[never_stored])
            .await
            .unwrap();
    }

    // A page of 2 looks into 22 candidates at most: none holds the word, so it ends early.
    let first = search(&client, "q=zyzzyva&limit=2").await;
    assert_eq!(first["results"], json!([]));
    assert_eq!(first["hasMore"], true);
    let mut cursor = first["nextCursor"].as_str().expect("a cursor").to_owned();
    let mut found = Vec::new();
    for _ in 0..5 {
        let page = search(&client, &format!("q=zyzzyva&limit=2&cursor={cursor}")).await;
        found.extend(found_ids(&page));
        match page["nextCursor"].as_str() {
            Some(next) => cursor = next.to_owned(),
            None => break,
        }
    }
    assert_eq!(found, vec![real]);
}
