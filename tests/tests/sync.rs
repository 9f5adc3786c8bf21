//! `GET /mobile/sync` through the local gateway against the local DynamoDB server: an app that
//! applies every response in order holds exactly the server's conversations.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{Duration, Utc};
use reqwest::StatusCode;
use serde_json::{json, Value};
use shared::clock::ManualClock;
use tests::{new_user, state_configured, Client, LocalApi};

/// What the app holds: conversations by id, as the server last described them.
#[derive(Default)]
struct App {
    conversations: BTreeMap<String, Value>,
    cursor: Option<String>,
    /// Conversations of the sync-from-scratch round in progress.
    full_round: Option<BTreeMap<String, Value>>,
}

impl App {
    /// Syncs until the server has nothing more, applying each page as the app would.
    async fn sync(&mut self, client: &Client, limit: usize) -> Vec<Value> {
        let mut pages = Vec::new();
        loop {
            let mut path = format!("/mobile/sync?limit={limit}");
            if let Some(cursor) = &self.cursor {
                path.push_str(&format!("&since={cursor}"));
            }
            let reply = client.get(&path).await;
            assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
            self.apply(&reply.body);
            let more = reply.body["hasMore"].as_bool().unwrap();
            pages.push(reply.body);
            if !more {
                return pages;
            }
        }
    }

    fn apply(&mut self, page: &Value) {
        let full = page["fullSync"].as_bool().unwrap();
        // A round from scratch is gathered apart: what it does not list, the app no longer
        // holds once it ends.
        let target = match full {
            true => self.full_round.get_or_insert_with(BTreeMap::new),
            false => &mut self.conversations,
        };
        for conversation in page["conversations"].as_array().unwrap() {
            target.insert(id_of(conversation), conversation.clone());
        }
        for deleted in page["deleted"].as_array().unwrap() {
            target.remove(&id_of(deleted));
        }
        if full && !page["hasMore"].as_bool().unwrap() {
            self.conversations = self.full_round.take().unwrap();
        }
        self.cursor = Some(page["cursor"].as_str().unwrap().to_owned());
    }
}

fn id_of(value: &Value) -> String {
    value["id"].as_str().unwrap().to_owned()
}

/// Every conversation the server lists for the client, archived included, by id.
async fn server_listing(client: &Client) -> BTreeMap<String, Value> {
    let mut all = BTreeMap::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = "/conversations?includeArchived=true&limit=100".to_owned();
        if let Some(cursor) = &cursor {
            path.push_str(&format!("&cursor={cursor}"));
        }
        let reply = client.get(&path).await;
        assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
        for conversation in reply.body["conversations"].as_array().unwrap() {
            all.insert(id_of(conversation), conversation.clone());
        }
        match reply.body["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return all,
        }
    }
}

/// A small deterministic generator, so a failing mix can be run again as it was.
struct Mix(u64);

impl Mix {
    fn next(&mut self, below: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) % below as u64) as usize
    }
}

#[tokio::test]
async fn an_app_that_applies_every_sync_in_order_holds_exactly_the_servers_conversations() {
    let api = LocalApi::start().await;
    let alice = api.as_user(&new_user());
    let mut app = App::default();
    let mut live: Vec<String> = Vec::new();
    let mut mix = Mix(0x5eed);
    for step in 0..60 {
        match (mix.next(8), live.is_empty()) {
            (0 | 1, _) | (_, true) => live.push(alice.create_conversation(None).await),
            (2 | 3, false) => {
                let id = &live[mix.next(live.len())];
                alice.say(id, &format!("message {step}")).await;
            }
            (4, false) => {
                let id = &live[mix.next(live.len())];
                let reply = alice
                    .put(
                        &format!("/conversations/{id}/title"),
                        json!({"title": format!("title {step}")}),
                    )
                    .await;
                assert_eq!(reply.status, StatusCode::OK);
            }
            (5, false) => {
                let id = &live[mix.next(live.len())];
                let reply = alice
                    .put(
                        &format!("/conversations/{id}/archive"),
                        json!({"archived": mix.next(2) == 0}),
                    )
                    .await;
                assert_eq!(reply.status, StatusCode::OK);
            }
            (6, false) => {
                let id = &live[mix.next(live.len())];
                let reply = alice
                    .put(
                        &format!("/conversations/{id}/tags"),
                        json!({"tags": [format!("t{step}")]}),
                    )
                    .await;
                assert_eq!(reply.status, StatusCode::OK);
            }
            _ => {
                let id = live.swap_remove(mix.next(live.len()));
                let reply = alice.delete(&format!("/conversations/{id}")).await;
                assert_eq!(reply.status, StatusCode::NO_CONTENT);
            }
        }
        // The app syncs now and then, in small pages, mid-way through the writes.
        if mix.next(4) == 0 {
            app.sync(&alice, 3).await;
        }
    }
    app.sync(&alice, 3).await;

    let server = server_listing(&alice).await;
    assert_eq!(server.len(), live.len());
    assert_eq!(
        app.conversations, server,
        "the app's copy differs from the server's listing"
    );
}

#[tokio::test]
async fn a_deleted_conversation_reaches_the_app_as_a_tombstone() {
    let api = LocalApi::start().await;
    let alice = api.as_user(&new_user());
    let kept = alice.create_conversation(Some("Kept")).await;
    let gone = alice.create_conversation(Some("Gone")).await;
    let mut app = App::default();
    let first = app.sync(&alice, 10).await;
    assert_eq!(first[0]["fullSync"], true);
    assert_eq!(app.conversations.len(), 2);

    assert_eq!(
        alice.delete(&format!("/conversations/{gone}")).await.status,
        StatusCode::NO_CONTENT
    );
    let pages = app.sync(&alice, 10).await;
    let deleted: Vec<String> = pages
        .iter()
        .flat_map(|p| p["deleted"].as_array().unwrap().iter().map(id_of))
        .collect();
    assert_eq!(deleted, vec![gone]);
    assert!(pages[0]["deleted"][0]["deletedAt"].is_string());
    assert_eq!(pages[0]["fullSync"], false);
    assert_eq!(app.conversations.keys().collect::<Vec<_>>(), [&kept]);
}

#[tokio::test]
async fn pages_are_bounded_and_a_round_lists_each_conversation_once() {
    let clock = Arc::new(ManualClock::at(Utc::now() - Duration::hours(1)));
    let api = LocalApi::serving(state_configured(&[], clock.clone()).await).await;
    let alice = api.as_user(&new_user());
    for n in 0..5 {
        alice.create_conversation(Some(&format!("c{n}"))).await;
    }
    clock.advance(Duration::minutes(2));
    let mut app = App::default();
    let pages = app.sync(&alice, 2).await;
    let sizes: Vec<usize> = pages
        .iter()
        .map(|p| p["conversations"].as_array().unwrap().len())
        .collect();
    // The snapshot in pages of 2, then what changed while it was read: nothing.
    assert_eq!(sizes, [2, 2, 1, 0]);
    let more: Vec<bool> = pages
        .iter()
        .map(|p| p["hasMore"].as_bool().unwrap())
        .collect();
    assert_eq!(more, [true, true, true, false]);
    assert!(pages.iter().all(|p| p["fullSync"] == true));
    assert_eq!(app.conversations.len(), 5);
}

#[tokio::test]
async fn a_conversation_that_moves_ahead_while_a_first_sync_reads_is_not_lost() {
    let clock = Arc::new(ManualClock::at(Utc::now() - Duration::hours(1)));
    let api = LocalApi::serving(state_configured(&[], clock.clone()).await).await;
    let alice = api.as_user(&new_user());
    let mut ids = Vec::new();
    for n in 0..5 {
        ids.push(alice.create_conversation(Some(&format!("c{n}"))).await);
        clock.advance(Duration::seconds(1));
    }
    clock.advance(Duration::minutes(2));

    // The first page holds the two most recently active; then the oldest, not read yet,
    // gets a message and jumps ahead of the pages already read.
    let first = alice.get("/mobile/sync?limit=2").await;
    let listed: Vec<String> = first.body["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .map(id_of)
        .collect();
    assert_eq!(listed, [ids[4].clone(), ids[3].clone()]);
    alice.say(&ids[0], "back to the oldest").await;

    let mut app = App::default();
    app.apply(&first.body);
    app.sync(&alice, 2).await;
    assert_eq!(app.conversations.len(), 5, "a conversation was lost");
    assert_eq!(app.conversations[&ids[0]]["messageCount"], 1);
    assert_eq!(app.conversations, server_listing(&alice).await);
}

#[tokio::test]
async fn include_messages_brings_the_newest_messages_of_each_changed_conversation() {
    let api = LocalApi::start().await;
    let alice = api.as_user(&new_user());
    let id = alice.create_conversation(Some("Chat")).await;
    for n in 0..4 {
        alice.say(&id, &format!("m{n}")).await;
    }
    let reply = alice.get("/mobile/sync?includeMessages=2").await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    let conversation = &reply.body["conversations"][0];
    let contents: Vec<&str> = conversation["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(contents, ["m2", "m3"]);
    assert_eq!(conversation["hasOlderMessages"], true);
    assert_eq!(conversation["messageCount"], 4);

    let none = alice.get("/mobile/sync").await;
    assert!(none.body["conversations"][0].get("messages").is_none());
}

#[tokio::test]
async fn a_write_stamped_before_the_last_sync_but_seen_after_it_is_not_missed() {
    // Two writers: one whose clock runs 20 seconds behind the other's (or whose write was
    // stamped, then committed 20 seconds later). The round after a sync starts again from
    // the settle window before it, so the late write still reaches the app.
    let now = Utc::now();
    let ahead = Arc::new(ManualClock::at(now));
    let writer = state_configured(&[("SYNC_SETTLE_SECONDS", "60")], ahead.clone()).await;
    let behind = Arc::new(ManualClock::at(now - Duration::seconds(20)));
    let late_writer = assistant::State::with_clock(
        writer.config.clone(),
        writer.model_config.clone(),
        &aws_config::load_from_env().await,
        behind,
    );
    let api = LocalApi::serving(writer).await;
    let late_api = LocalApi::serving(late_writer).await;
    let user = new_user();
    let alice = api.as_user(&user);

    alice.create_conversation(Some("First")).await;
    let mut app = App::default();
    app.sync(&alice, 10).await;
    ahead.advance(Duration::seconds(1));
    app.sync(&alice, 10).await;

    let late = late_api
        .as_user(&user)
        .create_conversation(Some("Late"))
        .await;
    ahead.advance(Duration::seconds(1));
    app.sync(&alice, 10).await;
    assert!(
        app.conversations.contains_key(&late),
        "a write stamped 20 s late was missed"
    );
}

#[tokio::test]
async fn a_cursor_older_than_the_tombstone_retention_asks_for_a_sync_from_scratch() {
    let clock = Arc::new(ManualClock::at(Utc::now()));
    let state = state_configured(&[("TOMBSTONE_RETENTION_DAYS", "30")], clock.clone()).await;
    let api = LocalApi::serving(state).await;
    let alice = api.as_user(&new_user());
    alice.create_conversation(None).await;
    let mut app = App::default();
    app.sync(&alice, 10).await;
    let cursor = app.cursor.clone().unwrap();

    clock.advance(Duration::days(29));
    let recent = alice.get(&format!("/mobile/sync?since={cursor}")).await;
    assert_eq!(recent.status, StatusCode::OK, "{:?}", recent.body);

    clock.advance(Duration::days(2));
    let stale = alice.get(&format!("/mobile/sync?since={cursor}")).await;
    assert_eq!(stale.status, StatusCode::GONE);
    assert_eq!(stale.error_code(), "resync_required");
    let again = alice.get("/mobile/sync").await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.body["fullSync"], true);
}

#[tokio::test]
async fn a_cached_sync_page_gives_way_to_the_users_next_write() {
    let api = LocalApi::start().await;
    assert!(
        api.state.conversations.cache().is_enabled(),
        "the test environment runs a cache"
    );
    let alice = api.as_user(&new_user());
    let id = alice.create_conversation(Some("Before")).await;
    let mut app = App::default();
    app.sync(&alice, 10).await;
    let cursor = app.cursor.clone().unwrap();
    let first = alice.get(&format!("/mobile/sync?since={cursor}")).await;
    let cached = alice.get(&format!("/mobile/sync?since={cursor}")).await;
    assert_eq!(first.body, cached.body);

    alice
        .put(
            &format!("/conversations/{id}/title"),
            json!({"title": "After"}),
        )
        .await;
    let after = alice.get(&format!("/mobile/sync?since={cursor}")).await;
    assert_eq!(after.body["conversations"][0]["title"], "After");
}

#[tokio::test]
async fn a_sync_shows_only_the_callers_conversations_and_cursors_are_per_user() {
    let api = LocalApi::start().await;
    let alice = api.as_user(&new_user());
    let bob = api.as_user(&new_user());
    let bobs = bob.create_conversation(Some("Bob's")).await;
    let bobs_deleted = bob.create_conversation(Some("Bob's deleted")).await;
    let alices = alice.create_conversation(Some("Alice's")).await;

    let mut bob_app = App::default();
    bob_app.sync(&bob, 10).await;
    bob.delete(&format!("/conversations/{bobs_deleted}")).await;

    let mut alice_app = App::default();
    let pages = alice_app.sync(&alice, 10).await;
    assert_eq!(
        alice_app.conversations.keys().collect::<Vec<_>>(),
        [&alices]
    );
    let later = alice_app.sync(&alice, 10).await;
    for page in pages.iter().chain(&later) {
        let text = page.to_string();
        assert!(!text.contains(&bobs) && !text.contains(&bobs_deleted));
    }

    // Bob's cursor means nothing to Alice.
    let bobs_cursor = bob_app.cursor.unwrap();
    let reply = alice
        .get(&format!("/mobile/sync?since={bobs_cursor}"))
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.error_code(), "invalid_request");
}

#[tokio::test]
async fn bad_sync_parameters_are_refused_with_the_one_error_shape() {
    let api = LocalApi::start().await;
    let alice = api.as_user(&new_user());
    for path in [
        "/mobile/sync?limit=0",
        "/mobile/sync?limit=101",
        "/mobile/sync?includeMessages=21",
        "/mobile/sync?since=garbage",
        "/mobile/sync?limit=abc",
    ] {
        let reply = alice.get(path).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{path}");
        assert_eq!(reply.error_code(), "invalid_request", "{path}");
    }
    let anonymous = api.anonymous().get("/mobile/sync").await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn conversations_the_migration_makes_from_old_memory_reach_an_app_that_synced_before() {
    let api = LocalApi::start().await;
    let user = new_user();
    let alice = api.as_user(&user);
    let mut app = App::default();
    app.sync(&alice, 10).await;
    assert!(app.conversations.is_empty());

    // Memory from two hours ago: the conversation it becomes is active in the past, but
    // changed now.
    let two_hours_ago = Utc::now() - Duration::hours(2);
    let owner = shared::model::UserId::parse(&user).unwrap();
    api.state
        .assistant
        .memory()
        .remember(
            &owner,
            &[
                tests::memory_entry(two_hours_ago, shared::model::Role::User, "Old question"),
                tests::memory_entry(
                    two_hours_ago + Duration::seconds(5),
                    shared::model::Role::Assistant,
                    "Old answer",
                ),
            ],
        )
        .await
        .unwrap();
    let migrated = alice.post("/conversations/migrate", json!({})).await;
    assert_eq!(
        migrated.body["conversationsCreated"], 1,
        "{:?}",
        migrated.body
    );

    app.sync(&alice, 10).await;
    assert_eq!(app.conversations, server_listing(&alice).await);
    let only = app.conversations.values().next().unwrap();
    assert_eq!(only["messageCount"], 2);
}

#[tokio::test]
async fn a_sync_after_writes_returns_exactly_the_conversations_changed_and_deleted_since() {
    let clock = Arc::new(ManualClock::at(Utc::now() - Duration::hours(1)));
    let state = state_configured(&[("SYNC_SETTLE_SECONDS", "60")], clock.clone()).await;
    let api = LocalApi::serving(state).await;
    let alice = api.as_user(&new_user());
    let mut ids = Vec::new();
    for n in 0..8 {
        ids.push(alice.create_conversation(Some(&format!("c{n}"))).await);
    }
    alice
        .put(
            &format!("/conversations/{}/archive", ids[7]),
            json!({"archived": true}),
        )
        .await;

    // The first sync, from nothing, returns everything, archived included.
    clock.advance(Duration::minutes(2));
    let mut app = App::default();
    let first = app.sync(&alice, 3).await;
    assert!(first.iter().all(|p| p["fullSync"] == true));
    assert_eq!(app.conversations.len(), 8);
    assert_eq!(app.conversations[&ids[7]]["isArchived"], true);

    // Minutes later (past the settle window): a message, a rename, an archive, tags and a
    // delete, each on a different conversation.
    clock.advance(Duration::minutes(2));
    alice.say(&ids[0], "new message").await;
    alice
        .put(
            &format!("/conversations/{}/title", ids[1]),
            json!({"title": "renamed"}),
        )
        .await;
    let archived = alice
        .put(
            &format!("/conversations/{}/archive", ids[2]),
            json!({"archived": true}),
        )
        .await;
    assert_eq!(archived.status, StatusCode::OK, "{:?}", archived.body);
    alice
        .put(
            &format!("/conversations/{}/tags", ids[3]),
            json!({"tags": ["x"]}),
        )
        .await;
    alice.delete(&format!("/conversations/{}", ids[4])).await;

    clock.advance(Duration::minutes(2));
    let pages = app.sync(&alice, 100).await;
    assert_eq!(pages.len(), 1);
    let changed: std::collections::BTreeSet<String> = pages[0]["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .map(id_of)
        .collect();
    let expected: std::collections::BTreeSet<String> = ids[..4].iter().cloned().collect();
    assert_eq!(changed, expected, "exactly the conversations changed");
    assert_eq!(
        pages[0]["deleted"]
            .as_array()
            .unwrap()
            .iter()
            .map(id_of)
            .collect::<Vec<_>>(),
        [ids[4].clone()]
    );
    assert_eq!(pages[0]["fullSync"], false);
    assert_eq!(app.conversations[&ids[0]]["messageCount"], 1);
    assert_eq!(app.conversations[&ids[1]]["title"], "renamed");
    assert_eq!(app.conversations[&ids[2]]["isArchived"], true);
    assert_eq!(app.conversations[&ids[3]]["tags"], json!(["x"]));
    assert_eq!(app.conversations, server_listing(&alice).await);

    // Nothing changed since: the next sync is empty.
    clock.advance(Duration::minutes(2));
    let quiet = app.sync(&alice, 100).await;
    assert_eq!(quiet[0]["conversations"], json!([]));
    assert_eq!(quiet[0]["deleted"], json!([]));
}

#[tokio::test]
async fn pages_with_messages_stay_within_what_lambda_can_return() {
    let api = LocalApi::start().await;
    let alice = api.as_user(&new_user());
    for _ in 0..3 {
        let id = alice.create_conversation(None).await;
        for _ in 0..3 {
            // Quotes take four bytes each once Lambda's envelope escapes the body again.
            let content = "\"".repeat(600_000);
            let added = alice
                .post(
                    &format!("/conversations/{id}/messages"),
                    json!({"role": "user", "content": content}),
                )
                .await;
            assert_eq!(added.status, StatusCode::CREATED);
        }
    }
    let mut cursor: Option<String> = None;
    let mut seen = std::collections::BTreeSet::new();
    loop {
        let mut path = "/mobile/sync?includeMessages=3".to_owned();
        if let Some(cursor) = &cursor {
            path.push_str(&format!("&since={cursor}"));
        }
        let page = alice.get(&path).await;
        assert_eq!(page.status, StatusCode::OK);
        let as_returned = tests::as_lambda_returns_it(&page.body);
        assert!(
            as_returned < tests::LAMBDA_RESPONSE_LIMIT,
            "{as_returned} bytes"
        );
        for conversation in page.body["conversations"].as_array().unwrap() {
            assert!(!conversation["messages"].as_array().unwrap().is_empty());
            seen.insert(id_of(conversation));
        }
        cursor = page.body["cursor"].as_str().map(str::to_owned);
        if page.body["hasMore"] == false {
            break;
        }
    }
    assert_eq!(seen.len(), 3);
}

/// An append moves only its conversation's last activity, not its place in the change log (two
/// write units less per message); the next sync still brings it, archived or not, and lists a
/// conversation once in a page even when it was also renamed.
#[tokio::test]
async fn appends_reach_the_next_sync_by_their_activity_once_per_page() {
    let clock = Arc::new(ManualClock::at(Utc::now() - Duration::hours(1)));
    let state = state_configured(&[("SYNC_SETTLE_SECONDS", "60")], clock.clone()).await;
    let api = LocalApi::serving(state.clone()).await;
    let user = new_user();
    let alice = api.as_user(&user);
    let mut ids = Vec::new();
    for n in 0..6 {
        ids.push(alice.create_conversation(Some(&format!("c{n}"))).await);
    }
    alice
        .put(
            &format!("/conversations/{}/archive", ids[5]),
            json!({"archived": true}),
        )
        .await;
    clock.advance(Duration::minutes(2));
    let mut app = App::default();
    app.sync(&alice, 3).await;
    assert_eq!(app.conversations.len(), 6);

    clock.advance(Duration::minutes(2));
    let change_log_place = |id: String| {
        let state = state.clone();
        let user = user.clone();
        async move {
            state
                .conversations
                .store()
                .conversation(
                    &domain::model::UserId::parse(&user).unwrap(),
                    &domain::model::ConversationId::parse(&id).unwrap(),
                )
                .await
                .unwrap()
                .expect("it exists")
                .changed_at()
                .map(str::to_owned)
        }
    };
    let before = change_log_place(ids[1].clone()).await;
    alice
        .put(
            &format!("/conversations/{}/title", ids[0]),
            json!({"title": "renamed first"}),
        )
        .await;
    clock.advance(Duration::seconds(1));
    alice.say(&ids[0], "after the rename").await;
    alice.say(&ids[1], "only a message").await;
    alice.say(&ids[5], "to an archived one").await;
    clock.advance(Duration::seconds(1));
    alice
        .put(
            &format!("/conversations/{}/title", ids[2]),
            json!({"title": "renamed third"}),
        )
        .await;
    alice.say(&ids[3], "another message").await;
    alice.say(&ids[0], "and one more").await;
    assert_eq!(
        change_log_place(ids[1].clone()).await,
        before,
        "an append leaves the change log as it was"
    );

    clock.advance(Duration::minutes(2));
    for limit in [1, 2, 100] {
        let mut this_app = App {
            conversations: app.conversations.clone(),
            cursor: app.cursor.clone(),
            full_round: None,
        };
        let pages = this_app.sync(&alice, limit).await;
        let mut changed = std::collections::BTreeSet::new();
        for page in &pages {
            let in_page: Vec<String> = page["conversations"]
                .as_array()
                .unwrap()
                .iter()
                .map(id_of)
                .collect();
            let distinct: std::collections::BTreeSet<&String> = in_page.iter().collect();
            assert_eq!(
                distinct.len(),
                in_page.len(),
                "listed twice in a page: {in_page:?}"
            );
            changed.extend(in_page);
        }
        let expected: std::collections::BTreeSet<String> =
            [0, 1, 2, 3, 5].iter().map(|&i| ids[i].clone()).collect();
        assert_eq!(changed, expected, "pages of {limit}");
        assert_eq!(this_app.conversations[&ids[0]]["messageCount"], 2);
        assert_eq!(this_app.conversations[&ids[0]]["title"], "renamed first");
        assert_eq!(this_app.conversations[&ids[5]]["messageCount"], 1);
        assert_eq!(this_app.conversations[&ids[5]]["isArchived"], true);
        assert_eq!(this_app.conversations, server_listing(&alice).await);
    }
}
