//! The cache in front of the store, against a real redis-server: every write is seen by the
//! writer's next read, reads are served from the cache until then, and with the cache
//! stopped, refusing connections or never answering, every endpoint still answers correctly
//! while the circuit breaker keeps requests from waiting on it; and under load, a cache that
//! hangs, stops and comes back mid-run costs no wrong answer and no wait for it.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::Utc;
use reqwest::StatusCode;
use serde_json::{json, Value};
use shared::cache::CacheStats;
use shared::clock::SystemClock;
use shared::keys;
use shared::model::{ConversationId, Role, UserId};
use tests::{memory_entry, new_user, state_configured, Client, LocalApi};

fn stats(api: &LocalApi) -> &CacheStats {
    api.state
        .conversations
        .cache()
        .stats()
        .expect("the tests run with CACHE_URL set (scripts/env.sh)")
}

fn count(counter: &std::sync::atomic::AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

fn titles(list: &Value) -> Vec<String> {
    list["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["title"].as_str().unwrap().to_owned())
        .collect()
}

/// Reads the list and the conversation twice (the second time from the cache) and returns
/// what the second read saw.
async fn warm(user: &Client, id: &str) -> (Value, Value) {
    for _ in 0..2 {
        user.get("/conversations?includeArchived=true").await;
        user.get(&format!("/conversations/{id}")).await;
    }
    (
        user.get("/conversations?includeArchived=true").await.body,
        user.get(&format!("/conversations/{id}")).await.body,
    )
}

#[tokio::test]
async fn every_write_is_seen_by_the_writers_next_read_with_the_cache_on() {
    let api = LocalApi::start().await;
    let user_id = new_user();
    let alice = api.as_user(&user_id);
    let id = alice.create_conversation(Some("First")).await;
    let hits_before = count(&stats(&api).hits);
    warm(&alice, &id).await;
    assert!(
        count(&stats(&api).hits) > hits_before,
        "reads are served from the cache"
    );

    // create
    let second = alice.create_conversation(Some("Second")).await;
    let (list, _) = warm(&alice, &id).await;
    assert_eq!(titles(&list), ["Second", "First"]);

    // add a message
    alice.say(&id, "hello").await;
    let (list, conversation) = warm(&alice, &id).await;
    assert_eq!(conversation["messageCount"], 1);
    assert_eq!(conversation["messages"][0]["content"], "hello");
    assert_eq!(titles(&list)[0], "First", "the append moved it to the top");

    // rename
    alice
        .put(
            &format!("/conversations/{id}/title"),
            json!({"title": "Renamed"}),
        )
        .await;
    let (list, conversation) = warm(&alice, &id).await;
    assert_eq!(conversation["title"], "Renamed");
    assert!(titles(&list).contains(&"Renamed".to_owned()));

    // tags
    alice
        .put(
            &format!("/conversations/{id}/tags"),
            json!({"tags": ["cached"]}),
        )
        .await;
    let (_, conversation) = warm(&alice, &id).await;
    assert_eq!(conversation["tags"], json!(["cached"]));

    // archive
    alice
        .put(
            &format!("/conversations/{id}/archive"),
            json!({"archived": true}),
        )
        .await;
    let (_, conversation) = warm(&alice, &id).await;
    assert_eq!(conversation["isArchived"], true);
    let active = alice.get("/conversations").await;
    assert_eq!(titles(&active.body), ["Second"]);
    alice
        .put(
            &format!("/conversations/{id}/archive"),
            json!({"archived": false}),
        )
        .await;

    // completion
    alice
        .post(
            "/completion",
            json!({"prompt": "Tell me more", "conversationId": id}),
        )
        .await;
    let (_, conversation) = warm(&alice, &id).await;
    assert_eq!(conversation["messageCount"], 3);

    // migration of short-term memory
    let at = Utc::now() - chrono::Duration::hours(1);
    api.state
        .assistant
        .memory()
        .remember(
            &UserId::parse(&user_id).unwrap(),
            &[memory_entry(at, Role::User, "Remembered only")],
        )
        .await
        .unwrap();
    warm(&alice, &id).await;
    alice.post("/conversations/migrate", json!({})).await;
    let (list, _) = warm(&alice, &id).await;
    assert!(titles(&list).contains(&"Remembered only".to_owned()));

    // delete
    alice.delete(&format!("/conversations/{second}")).await;
    let (list, _) = warm(&alice, &id).await;
    assert!(!titles(&list).contains(&"Second".to_owned()));
    let gone = alice.get(&format!("/conversations/{second}")).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn reads_come_from_the_cache_until_the_user_writes_and_only_their_own_writes_count() {
    let api = LocalApi::start().await;
    let (a, b) = (new_user(), new_user());
    let alice = api.as_user(&a);
    let bob = api.as_user(&b);
    let id = alice.create_conversation(Some("Cached title")).await;
    alice.get("/conversations").await;

    // A change that bypasses the service (so nothing invalidates): the cached page stays.
    let client = aws_sdk_dynamodb::Client::new(&aws_config::load_from_env().await);
    let conversation = ConversationId::parse(&id).unwrap();
    client
        .update_item()
        .table_name(&api.state.config.table_name)
        .key(
            "PK",
            AttributeValue::S(keys::conversation_partition(
                &UserId::parse(&a).unwrap(),
                &conversation,
            )),
        )
        .key("SK", AttributeValue::S(keys::CONVERSATION_SK.into()))
        .update_expression("SET title = :t")
        .expression_attribute_values(":t", AttributeValue::S("Changed behind the cache".into()))
        .send()
        .await
        .unwrap();
    let hits = count(&stats(&api).hits);
    assert_eq!(
        titles(&alice.get("/conversations").await.body),
        ["Cached title"]
    );
    assert_eq!(count(&stats(&api).hits), hits + 1);

    // Another user's write does not touch Alice's cached reads.
    bob.create_conversation(Some("Bob's")).await;
    assert_eq!(
        titles(&alice.get("/conversations").await.body),
        ["Cached title"]
    );

    // Alice's own write makes every cached page of hers unreachable at once.
    alice.create_conversation(Some("Newer")).await;
    assert_eq!(
        titles(&alice.get("/conversations").await.body),
        ["Newer", "Changed behind the cache"]
    );
}

/// A redis-server of the test's own, which it can stop and start again.
struct PrivateRedis {
    port: u16,
    child: Option<Child>,
}

impl PrivateRedis {
    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut redis = Self { port, child: None };
        redis.restart();
        redis
    }

    fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is installed by scripts/setup.sh");
        self.child = Some(child);
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("redis-server did not start");
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().ok();
            child.wait().ok();
        }
    }

    /// Freezes the server (SIGSTOP): connections stay open and commands are never answered,
    /// as a cache node that hangs does; `resume` lets it go on.
    fn hang(&self) {
        self.signal("-STOP");
    }

    fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("a running server").id();
        let sent = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.resume();
        }
        self.stop();
    }
}

async fn api_with_cache_at(url: &str) -> LocalApi {
    api_with_cache_and_breaker(url, "1").await
}

/// The local API with a cache at `url` whose breaker, once open, stays open this long.
async fn api_with_cache_and_breaker(url: &str, breaker_seconds: &str) -> LocalApi {
    let state = state_configured(
        &[
            ("CACHE_URL", url),
            ("CACHE_TIMEOUT_MS", "200"),
            ("CACHE_BREAKER_SECONDS", breaker_seconds),
        ],
        Arc::new(SystemClock),
    )
    .await;
    LocalApi::serving(state).await
}

/// Every endpoint that reads or writes conversations, each answering as it would without any
/// cache: create, append, list, read, rename, tags, completion, context, migrate, archive,
/// delete.
async fn every_endpoint_answers(user: &Client, round: &str) {
    let id = user.create_conversation(Some(round)).await;
    user.say(&id, &format!("{round} message")).await;
    let list = user.get("/conversations").await;
    assert_eq!(list.status, StatusCode::OK);
    assert_eq!(titles(&list.body)[0], round);
    let got = user.get(&format!("/conversations/{id}")).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(
        got.body["messages"][0]["content"],
        format!("{round} message")
    );
    let renamed = user
        .put(
            &format!("/conversations/{id}/title"),
            json!({"title": format!("{round}!")}),
        )
        .await;
    assert_eq!(renamed.status, StatusCode::OK);
    let list = user.get("/conversations").await;
    assert_eq!(titles(&list.body)[0], format!("{round}!"));
    let tagged = user
        .put(
            &format!("/conversations/{id}/tags"),
            json!({"tags": [round]}),
        )
        .await;
    assert_eq!(tagged.body["tags"], json!([round]));
    let completed = user
        .post(
            "/completion",
            json!({"prompt": "and then?", "conversationId": id}),
        )
        .await;
    assert_eq!(completed.status, StatusCode::OK, "{:?}", completed.body);
    let context = user.get(&format!("/conversations/context/{id}")).await;
    assert_eq!(context.status, StatusCode::OK);
    assert_eq!(context.body["messages"].as_array().unwrap().len(), 3);
    let migrated = user.post("/conversations/migrate", json!({})).await;
    assert_eq!(migrated.status, StatusCode::OK);
    let archived = user
        .put(
            &format!("/conversations/{id}/archive"),
            json!({"archived": true}),
        )
        .await;
    assert_eq!(archived.body["isArchived"], true);
    let only_archived = user.get("/conversations?archived=only").await;
    assert!(titles(&only_archived.body).contains(&format!("{round}!")));
    let deleted = user.delete(&format!("/conversations/{id}")).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    let gone = user.get(&format!("/conversations/{id}")).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn with_the_cache_stopped_every_endpoint_answers_and_the_breaker_stops_trying() {
    let mut redis = PrivateRedis::start();
    // A breaker that stays open longer than a round takes on a loaded machine (a round is a
    // dozen requests), so "one failure, then the breaker" holds however slow the requests.
    let api = api_with_cache_and_breaker(&redis.url(), "10").await;
    let alice = api.as_user(&new_user());

    every_endpoint_answers(&alice, "before").await;
    assert_eq!(count(&stats(&api).errors), 0);

    redis.stop();
    every_endpoint_answers(&alice, "while stopped").await;
    // One failure opened the breaker; the round's other cache operations (three
    // invalidations and three reads, less the one that failed) skipped the cache.
    assert_eq!(count(&stats(&api).errors), 1);
    assert!(count(&stats(&api).skipped) >= 5);

    redis.restart();
    tokio::time::sleep(Duration::from_millis(10_100)).await;
    let hits = count(&stats(&api).hits);
    every_endpoint_answers(&alice, "after").await;
    // Once it is back the cache is used again: at once on an idle machine; on a loaded one a
    // slow reconnect can open the breaker for another 10 seconds first.
    let mut used_again = false;
    for _ in 0..50 {
        alice.get("/conversations").await;
        alice.get("/conversations").await;
        if count(&stats(&api).hits) > hits {
            used_again = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(used_again, "the cache is used again once it is back");
}

#[tokio::test]
async fn a_cache_that_refuses_connections_or_never_answers_is_gone_around() {
    // Nothing listens on this port.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let refused_url = format!("redis://{}", closed.local_addr().unwrap());
    drop(closed);
    // This one accepts connections and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_url = format!("redis://{}", silent.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });

    for (what, url) in [("refusing", refused_url), ("silent", silent_url)] {
        // A breaker that stays open for the whole round, however slow the machine: one
        // failure, then no more attempts.
        let api = api_with_cache_and_breaker(&url, "600").await;
        let alice = api.as_user(&new_user());
        every_endpoint_answers(&alice, what).await;
        assert_eq!(
            count(&stats(&api).errors),
            1,
            "{what}: one failure, then the breaker"
        );
        assert_eq!(count(&stats(&api).hits), 0, "{what}");
    }
}

#[tokio::test]
async fn a_write_that_could_not_reach_the_cache_is_invalidated_by_the_stream_consumer() {
    let mut redis = PrivateRedis::start();
    let api = api_with_cache_at(&redis.url()).await;
    let user = new_user();
    let alice = api.as_user(&user);
    let id = alice.create_conversation(Some("Before")).await;
    alice.get("/conversations").await;
    alice.get("/conversations").await;

    redis.stop();
    let renamed = alice
        .put(
            &format!("/conversations/{id}/title"),
            json!({"title": "After"}),
        )
        .await;
    assert_eq!(renamed.status, StatusCode::OK);

    // The table stream reports the change; while the cache is down the consumer reports the
    // record as failed, so Lambda delivers it again.
    let event = || {
        let text = std::fs::read_to_string(
            tests::workspace_root().join("events/invalidate-cached-reads.json"),
        )
        .unwrap()
        .replace("3f1c9a7e-0b7d-4f8e-9d61-2a9c2a0c1b11", &user)
        .replace("0193a4f2-7c1e-7b3a-9f00-5e2d1c4b6a77", &id);
        lambda_runtime::LambdaEvent::new(
            serde_json::from_str(&text).unwrap(),
            lambda_runtime::Context::default(),
        )
    };
    let while_down =
        shared::streams::invalidate_cached_reads(api.state.conversations.cache(), event())
            .await
            .unwrap();
    assert_eq!(while_down.batch_item_failures.len(), 1);

    redis.restart();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let delivered_again =
        shared::streams::invalidate_cached_reads(api.state.conversations.cache(), event())
            .await
            .unwrap();
    assert!(delivered_again.batch_item_failures.is_empty());
    assert_eq!(titles(&alice.get("/conversations").await.body), ["After"]);
}

#[tokio::test]
async fn a_cache_named_but_not_located_is_found_through_elasticache() {
    let client = aws_sdk_elasticache::Client::new(&aws_config::load_from_env().await);
    let name = format!(
        "numina-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    client
        .create_replication_group()
        .replication_group_id(&name)
        .replication_group_description("the cache of a test")
        .engine("redis")
        .cache_node_type("cache.t4g.micro")
        .num_cache_clusters(1)
        .transit_encryption_enabled(true)
        .send()
        .await
        .expect("moto creates the replication group");

    let found = health_check::managed_cache::describe_cache(&client, &name)
        .await
        .unwrap();
    assert!(found.url.starts_with("rediss://"), "{}", found.url);
    assert!(!found.cluster);
    assert!(!found.status.is_empty());
    assert!(
        health_check::managed_cache::describe_cache(&client, "no-such-cache")
            .await
            .is_err()
    );
}

/// One user's loop for the run under faults: append a message, then read the list and the
/// conversation twice, checking each answer against what the user has written so far. Returns the
/// slowest request it saw.
async fn appends_and_reads_until(user: Client, id: String, stop: Arc<AtomicBool>) -> Duration {
    let mut slowest = Duration::ZERO;
    let mut written = 0usize;
    let mut timed = |started: Instant| slowest = slowest.max(started.elapsed());
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        let said = user
            .post(
                &format!("/conversations/{id}/messages"),
                json!({"role": "user", "content": format!("message {written}")}),
            )
            .await;
        timed(started);
        assert_eq!(said.status, StatusCode::CREATED, "{:?}", said.body);
        written += 1;

        // Each read twice: the second comes from the cache while it works.
        for _ in 0..2 {
            let started = Instant::now();
            let list = user.get("/conversations").await;
            timed(started);
            assert_eq!(list.status, StatusCode::OK, "{:?}", list.body);
            assert_eq!(list.body["conversations"][0]["id"], id.as_str());
            assert_eq!(list.body["conversations"][0]["messageCount"], written);

            let started = Instant::now();
            let got = user
                .get(&format!("/conversations/{id}?messageLimit=200"))
                .await;
            timed(started);
            assert_eq!(got.status, StatusCode::OK, "{:?}", got.body);
            let contents: Vec<&str> = got.body["messages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["content"].as_str().unwrap())
                .collect();
            let expected: Vec<String> = (0..written).map(|i| format!("message {i}")).collect();
            assert_eq!(contents, expected, "every message, once, in order");
        }
    }
    slowest
}

#[tokio::test]
async fn a_cache_that_hangs_stops_and_comes_back_mid_run_never_costs_a_wrong_answer_or_a_wait() {
    let mut redis = PrivateRedis::start();
    // 200 ms per cache operation; the breaker, once open, skips the cache for 1 s.
    let api = api_with_cache_at(&redis.url()).await;
    let stop = Arc::new(AtomicBool::new(false));
    let mut users = Vec::new();
    for _ in 0..3 {
        let user = api.as_user(&new_user());
        let id = user.create_conversation(Some("under faults")).await;
        users.push(tokio::spawn(appends_and_reads_until(
            user,
            id,
            stop.clone(),
        )));
    }
    let hang = Duration::from_secs(4);
    let sleep = tokio::time::sleep;

    sleep(Duration::from_secs(1)).await;
    let errors_before = count(&stats(&api).errors);
    let hits_before = count(&stats(&api).hits);
    assert!(hits_before > 0, "the cache was in use before the faults");
    redis.hang();
    sleep(hang).await;
    redis.resume();
    let errors_after_hang = count(&stats(&api).errors);
    sleep(Duration::from_secs(2)).await;
    redis.stop();
    sleep(Duration::from_secs(2)).await;
    redis.restart();
    sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);

    let mut slowest = Duration::ZERO;
    for user in users {
        slowest = slowest.max(user.await.expect("every answer was right"));
    }
    assert!(
        errors_after_hang > errors_before,
        "the hang was noticed (cache errors went from {errors_before} to {errors_after_hang})"
    );
    assert!(
        count(&stats(&api).hits) > hits_before,
        "the cache was used again once it came back"
    );
    // No request waited for the hung cache: each paid at most a few 200 ms cache timeouts
    // (then the breaker skips it), far less than the 4 s the cache hung for.
    assert!(
        slowest < hang / 2,
        "the slowest request took {slowest:?} while the cache hung for {hang:?}"
    );
}
