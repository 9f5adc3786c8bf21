//! Every function's handler, run as its Lambda binary runs it, writes valid CloudWatch EMF
//! documents with the metrics the dashboard and alarms use, and its logs carry the request's
//! route and id and a hash of the caller, never what they wrote.
//!
//! One test in its own binary: metrics go to the process's one recorder and logs to its one
//! subscriber.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use assistant::State;
use chrono::Utc;
use lambda_runtime::LambdaEvent;
use local::Endpoint;
use serde_json::Value;
use shared::metrics::{names, NAMESPACE};
use shared::model::UserId;
use tests::{conversation_saying, new_user, state, workspace_root};

const EVENT_USER: &str = "3f1c9a7e-0b7d-4f8e-9d61-2a9c2a0c1b11";
const EVENT_CONVERSATION: &str = "0193a4f2-7c1e-7b3a-9f00-5e2d1c4b6a77";
const EVENT_EXPORT: &str = "0193a4f2-7c1e-7b3a-9f00-5e2d1c4b6a79";
const EVENT_CONTENT: &str = "What should I pack for Lisbon in May?";

/// Log lines, shared with the subscriber.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// The metric names (with their dimensions) of EMF documents, checking each is valid: a
/// timestamp, our namespace, every dimension and metric present as a member of the document.
fn emf_metrics(output: &[u8]) -> BTreeSet<(String, BTreeMap<String, String>)> {
    let mut found = BTreeSet::new();
    for line in String::from_utf8_lossy(output).lines() {
        let document: Value = serde_json::from_str(line).unwrap_or_else(|_| panic!("{line}"));
        let aws = &document["_aws"];
        assert!(aws["Timestamp"].is_u64(), "{line}");
        let directives = aws["CloudWatchMetrics"].as_array().expect("directives");
        for directive in directives {
            assert_eq!(directive["Namespace"], NAMESPACE, "{line}");
            let mut dimensions = BTreeMap::new();
            for set in directive["Dimensions"].as_array().unwrap() {
                for name in set.as_array().unwrap() {
                    let name = name.as_str().unwrap();
                    let value = document[name]
                        .as_str()
                        .unwrap_or_else(|| panic!("dimension {name} has no string value: {line}"));
                    dimensions.insert(name.to_owned(), value.to_owned());
                }
            }
            for metric in directive["Metrics"].as_array().unwrap() {
                let name = metric["Name"].as_str().unwrap();
                let value = &document[name];
                let numeric = value.is_number()
                    || value
                        .as_array()
                        .is_some_and(|values| values.iter().all(Value::is_number));
                assert!(numeric, "metric {name} has no numeric value: {line}");
                found.insert((name.to_owned(), dimensions.clone()));
            }
        }
    }
    found
}

fn has(found: &BTreeSet<(String, BTreeMap<String, String>)>, name: &str) -> bool {
    found.iter().any(|(n, _)| n == name)
}

fn with(dimension: &str, value: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(dimension.to_owned(), value.to_owned())])
}

async fn conversation_of(state: &State, user: &str, secret: &str) -> String {
    conversation_saying(state, user, [secret.to_owned()])
        .await
        .id
        .to_string()
}

/// The domain metrics each endpoint records, besides every endpoint's requests and latency.
fn expected_for(binary: &str) -> &'static [&'static str] {
    match binary {
        "create-conversation" => &[names::CONVERSATIONS_CREATED],
        "add-message" | "edit-message" => &[names::MESSAGES_ADDED, names::MESSAGE_BYTES],
        "completion" => &[names::MESSAGES_ADDED],
        "get-conversation" | "list-conversations" => &[names::CACHE_MISSES],
        "mobile-batch" => &[names::BATCH_OPERATIONS, names::CONVERSATIONS_CREATED],
        "start-account-export" => &[names::ACCOUNT_EXPORTS],
        _ => &[],
    }
}

#[test]
fn every_function_writes_valid_emf_and_logs_nothing_the_user_wrote() {
    let logs = Logs::default();
    let writer = logs.clone();
    tracing_subscriber::fmt()
        .json()
        .with_current_span(true)
        .with_span_list(true)
        .with_writer(move || writer.clone())
        .with_max_level(tracing::Level::INFO)
        .init();
    // Every handler's future in one test nests deeply: a stack as large as Lambda's.
    std::thread::Builder::new()
        .stack_size(64 * 1024 * 1024)
        .spawn(move || {
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(run_every_function(logs))
        })
        .unwrap()
        .join()
        .unwrap();
}

async fn run_every_function(logs: Logs) {
    let state = state().await;
    let secret = format!("SECRET-CONTENT-{}", uuid::Uuid::new_v4());
    let mut files: Vec<_> = std::fs::read_dir(workspace_root().join("events"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();

    let mut users = Vec::new();
    let mut http_functions = 0;
    for path in &files {
        let binary = path.file_stem().unwrap().to_str().unwrap();
        let Some(endpoint) = Endpoint::for_binary(binary) else {
            continue;
        };
        http_functions += 1;
        let user = new_user();
        let conversation = conversation_of(&state, &user, &secret).await;
        users.push(user.clone());
        let first_message = tests::first_message_of(
            &state,
            &user,
            &shared::model::ConversationId::parse(&conversation).unwrap(),
        )
        .await;
        let text = std::fs::read_to_string(path)
            .unwrap()
            .replace(EVENT_USER, &user)
            .replace(EVENT_CONVERSATION, &conversation)
            .replace(tests::EVENT_MESSAGE, &first_message)
            .replace(EVENT_CONTENT, &secret);
        // On the heap: this test's future holds every step's.
        let text = Box::pin(tests::with_placeholders(
            &state,
            text,
            &user,
            &shared::model::ConversationId::parse(&conversation).unwrap(),
        ))
        .await;
        let route = serde_json::from_str::<Value>(&text).unwrap()["routeKey"]
            .as_str()
            .unwrap()
            .to_owned();
        let request = lambda_http::request::from_str(&text).unwrap();
        let mut emf = Vec::new();
        let response = endpoint.call_observed(&state, request, || &mut emf).await;
        assert!(response.status().as_u16() < 500, "{binary}");
        let found = emf_metrics(&emf);
        for name in [names::REQUESTS, names::LATENCY] {
            assert!(
                found.contains(&(name.to_owned(), with("Endpoint", &route))),
                "{binary}: {name} for {route} in {found:?}"
            );
        }
        for name in expected_for(binary) {
            assert!(has(&found, name), "{binary}: {name} in {found:?}");
        }
    }
    assert_eq!(http_functions, 39);

    // The functions on the table's stream and the migration's steps.
    let user = new_user();
    let conversation = conversation_of(&state, &user, &secret).await;
    users.push(user.clone());
    let owner = UserId::parse(&user).unwrap();
    let id = shared::model::ConversationId::parse(&conversation).unwrap();
    state
        .conversations
        .delete(&owner, &id, Utc::now(), std::time::Duration::ZERO)
        .await
        .unwrap();
    let event_of = |name: &str| -> Value {
        let text = std::fs::read_to_string(workspace_root().join(format!("events/{name}.json")))
            .unwrap()
            .replace(EVENT_USER, &user)
            .replace(EVENT_CONVERSATION, &conversation);
        serde_json::from_str(&text).unwrap()
    };
    let context = || {
        let mut context = lambda_runtime::Context::default();
        context.deadline = (Utc::now().timestamp_millis() + 60_000) as u64;
        context
    };
    // The search indexer, on a new message of a conversation that still exists.
    let indexed_user = new_user();
    let indexed = conversation_of(&state, &indexed_user, &secret).await;
    users.push(indexed_user.clone());
    let text = std::fs::read_to_string(workspace_root().join("events/index-for-search.json"))
        .unwrap()
        .replace(EVENT_USER, &indexed_user)
        .replace(EVENT_CONVERSATION, &indexed);
    let mut emf = Vec::new();
    let work = shared::table_changes::from_queue(
        LambdaEvent::new(serde_json::from_str(&text).unwrap(), context()),
        |changes| shared::streams::index_for_search(&state, changes),
    );
    shared::metrics::observed("index-for-search", work, || &mut emf)
        .await
        .unwrap();
    let found = emf_metrics(&emf);
    assert!(has(&found, names::MESSAGES_INDEXED), "{found:?}");
    assert!(has(&found, names::SEARCH_BLOCKS_WRITTEN), "{found:?}");

    // The summarizer, on a conversation past the threshold (20 by default).
    let summarized_user = new_user();
    let summarized = tests::conversation_saying(
        &state,
        &summarized_user,
        (0..20).map(|n| format!("{secret} {n}")),
    )
    .await;
    users.push(summarized_user.clone());
    let text =
        std::fs::read_to_string(workspace_root().join("events/summarize-conversations.json"))
            .unwrap()
            .replace(EVENT_USER, &summarized_user)
            .replace(EVENT_CONVERSATION, &summarized.id.to_string());
    let mut emf = Vec::new();
    let work = shared::table_changes::from_queue(
        LambdaEvent::new(serde_json::from_str(&text).unwrap(), context()),
        |changes| assistant::streams::summarize_conversations(&state, changes),
    );
    shared::metrics::observed("summarize-conversations", work, || &mut emf)
        .await
        .unwrap();
    assert!(has(&emf_metrics(&emf), names::SUMMARIES_WRITTEN));

    // The account exporter, on a new export of a user with a conversation: one run does it.
    let exporting_user = new_user();
    conversation_of(&state, &exporting_user, &secret).await;
    users.push(exporting_user.clone());
    let request = shared::account_export::ExportRequest::parse(Default::default()).unwrap();
    let (job, _) = state
        .account_exports
        .start(
            &UserId::parse(&exporting_user).unwrap(),
            request,
            Utc::now(),
        )
        .await
        .unwrap();
    let text = std::fs::read_to_string(workspace_root().join("events/run-account-exports.json"))
        .unwrap()
        .replace(EVENT_USER, &exporting_user)
        .replace(EVENT_EXPORT, &job.export_id.to_string());
    let mut emf = Vec::new();
    let work = shared::table_changes::from_queue(
        LambdaEvent::new(serde_json::from_str(&text).unwrap(), context()),
        |changes| shared::streams::run_account_exports(&state, changes),
    );
    shared::metrics::observed("run-account-exports", work, || &mut emf)
        .await
        .unwrap();
    assert!(
        emf_metrics(&emf).contains(&(
            names::ACCOUNT_EXPORTS.to_owned(),
            with("Outcome", "Finished")
        )),
        "{:?}",
        emf_metrics(&emf)
    );

    let mut emf = Vec::new();
    let work = shared::table_changes::from_queue(
        LambdaEvent::new(
            serde_json::from_value(event_of("purge-deleted-conversations")).unwrap(),
            context(),
        ),
        |changes| shared::streams::purge_deleted_conversations(&state, changes),
    );
    shared::metrics::observed("purge-deleted-conversations", work, || &mut emf)
        .await
        .unwrap();
    let found = emf_metrics(&emf);
    assert!(found.contains(&(
        names::INVOCATIONS.to_owned(),
        with("Function", "purge-deleted-conversations")
    )));
    assert!(has(&found, names::CONVERSATIONS_PURGED), "{found:?}");

    let mut emf = Vec::new();
    let work = shared::streams::invalidate_cached_reads(
        state.conversations.cache(),
        LambdaEvent::new(
            serde_json::from_value(event_of("invalidate-cached-reads")).unwrap(),
            context(),
        ),
    );
    shared::metrics::observed("invalidate-cached-reads", work, || &mut emf)
        .await
        .unwrap();
    assert!(has(&emf_metrics(&emf), names::CACHE_INVALIDATIONS));

    let mut emf = Vec::new();
    let plan = shared::metrics::observed(
        "migration-start-run",
        shared::migration_job::start_run(
            &state,
            serde_json::from_value(event_of("migration-start-run")).unwrap(),
        ),
        || &mut emf,
    )
    .await
    .unwrap();
    let plan = serde_json::to_value(plan).unwrap();
    let run_id = plan["runId"].as_str().unwrap().to_owned();
    let mut page = event_of("migration-list-users");
    page["runId"] = run_id.clone().into();
    shared::metrics::observed(
        "migration-list-users",
        shared::migration_job::list_users(&state, serde_json::from_value(page).unwrap()),
        || &mut emf,
    )
    .await
    .unwrap();
    let mut step = event_of("migration-migrate-user");
    step["runId"] = run_id.clone().into();
    shared::metrics::observed(
        "migration-migrate-user",
        shared::migration_job::migrate_user(&state, serde_json::from_value(step).unwrap()),
        || &mut emf,
    )
    .await
    .unwrap();
    let mut finish = event_of("migration-finish-run");
    finish["runId"] = run_id.into();
    shared::metrics::observed(
        "migration-finish-run",
        shared::migration_job::finish_run(&state, serde_json::from_value(finish).unwrap()),
        || &mut emf,
    )
    .await
    .unwrap();
    let found = emf_metrics(&emf);
    for function in [
        "migration-start-run",
        "migration-list-users",
        "migration-migrate-user",
        "migration-finish-run",
    ] {
        assert!(
            found.contains(&(names::INVOCATIONS.to_owned(), with("Function", function))),
            "{function}"
        );
    }
    assert!(found.contains(&(names::MIGRATION_USERS.to_owned(), with("Mode", "DryRun"))));

    let mut emf = Vec::new();
    let streamed_in = conversation_of(&state, &user, &secret).await;
    let completion = std::fs::read_to_string(workspace_root().join("events/completion.json"))
        .unwrap()
        .replace(EVENT_USER, &user)
        .replace(EVENT_CONVERSATION, &streamed_in)
        .replace(EVENT_CONTENT, &secret);
    let request = lambda_http::request::from_str(&completion).unwrap();
    let work = assistant::http::complete_streaming(&state, None, request);
    let response = shared::metrics::observed("completion-stream", work, || &mut emf)
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    assert!(emf_metrics(&emf).contains(&(
        names::INVOCATIONS.to_owned(),
        with("Function", "completion-stream")
    )));

    // The logs: JSON lines, requests in their span with the route and API Gateway's request
    // id, the caller only as a hash, and nothing the users wrote or who they are.
    let text = logs.text();
    assert!(!text.is_empty(), "the handlers log");
    for line in text.lines() {
        serde_json::from_str::<Value>(line).unwrap_or_else(|_| panic!("not JSON: {line}"));
    }
    assert!(
        !text.contains(&secret),
        "message content or a prompt was logged"
    );
    for user in &users {
        assert!(!text.contains(user.as_str()), "a user id was logged");
    }
    assert!(
        !text.contains("X-Amz-Signature"),
        "a presigned URL was logged"
    );
    // One line per request says how it was answered, in the request's span. The first
    // event is add-message's (the files are read in name order).
    let hashed = UserId::parse(&users[0]).unwrap().log_hash();
    let answered: Vec<Value> = text
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .filter(|line| line["fields"]["message"] == "answered")
        .collect();
    assert_eq!(answered.len(), 39, "one line per request");
    let first = &answered[0];
    assert_eq!(
        first["span"]["endpoint"],
        "POST /conversations/{id}/messages"
    );
    assert_eq!(first["span"]["requestId"], "JKJaXmPLvHcESHA=");
    assert_eq!(first["span"]["user"], hashed.as_str());
    assert_eq!(first["fields"]["status"], 201);
    assert!(first["fields"]["latencyMs"].is_u64());
}
