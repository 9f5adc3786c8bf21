//! The scheduled migration's state machine: its definition checked against the template, and
//! executions driven from the definition file (tests/src/asl.rs) with each Lambda task
//! calling the handler its function runs, against the local DynamoDB server.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use assistant::State;
use chrono::{Duration, Utc};
use domain::memory::MemoryEntry;
use serde_json::{json, Value};
use shared::keys;
use shared::migration::RunSummary;
use shared::migration_job::{self, FinishInput, ShardPage, StartInput, UserStep};
use shared::model::{Role, UserId};
use tests::asl::{Failure, Interpreter, Invoke, Target};
use tests::{
    all_conversations, memory_entry, new_user, state, table_snapshot, template, workspace_root,
};

const STATE_MACHINE: &str = "MigrationStateMachine";

fn definition() -> Value {
    let machine = template().state_machine(STATE_MACHINE).unwrap();
    let text = std::fs::read_to_string(workspace_root().join(&machine.definition_uri))
        .expect("the definition file the template names");
    serde_json::from_str(&text).expect("the definition is JSON")
}

/// Every `States` map of the definition, nested ones included, with where it sits.
fn state_maps(machine: &Value, at: &str, out: &mut Vec<(String, Value)>) {
    out.push((at.to_owned(), machine.clone()));
    for (name, state) in machine["States"].as_object().unwrap() {
        if let Some(processor) = state.get("ItemProcessor") {
            state_maps(processor, &format!("{at}/{name}"), out);
        }
    }
}

fn placeholders(value: &Value, out: &mut BTreeSet<String>) {
    match value {
        Value::String(s) => {
            let mut rest = s.as_str();
            while let Some(start) = rest.find("${") {
                let end = rest[start..].find('}').unwrap() + start;
                out.insert(rest[start + 2..end].to_owned());
                rest = &rest[end..];
            }
        }
        Value::Array(items) => items.iter().for_each(|v| placeholders(v, out)),
        Value::Object(fields) => fields.values().for_each(|v| placeholders(v, out)),
        _ => {}
    }
}

#[test]
fn the_definition_resolves_every_transition_and_names_only_what_the_template_declares() {
    let template = template();
    let machine = template.state_machine(STATE_MACHINE).unwrap();
    let definition = definition();
    let binaries: BTreeSet<String> = std::fs::read_dir(workspace_root().join("functions"))
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();

    let mut used = BTreeSet::new();
    placeholders(&definition, &mut used);
    let declared: BTreeSet<String> = machine.substitutions.keys().cloned().collect();
    assert_eq!(
        used, declared,
        "every placeholder is substituted, and every substitution used"
    );

    let mut maps = Vec::new();
    state_maps(&definition, "", &mut maps);
    for (at, machine_part) in &maps {
        let states = machine_part["States"].as_object().unwrap();
        let start = machine_part["StartAt"].as_str().unwrap();
        assert!(states.contains_key(start), "{at}: StartAt {start}");
        let mut reachable = BTreeSet::from([start.to_owned()]);
        for (name, state) in states {
            let kind = state["Type"].as_str().unwrap();
            let mut targets: Vec<&str> = Vec::new();
            targets.extend(state["Next"].as_str());
            targets.extend(state["Default"].as_str());
            for rule in state["Choices"].as_array().into_iter().flatten() {
                targets.extend(rule["Next"].as_str());
            }
            for catcher in state["Catch"].as_array().into_iter().flatten() {
                targets.extend(catcher["Next"].as_str());
            }
            for target in &targets {
                assert!(
                    states.contains_key(*target),
                    "{at}/{name}: {target} is not a state"
                );
                reachable.insert((*target).to_owned());
            }
            let terminal = state["End"] == json!(true) || matches!(kind, "Succeed" | "Fail");
            assert!(
                terminal || !targets.is_empty(),
                "{at}/{name} neither ends nor goes on"
            );
            if kind == "Map" {
                assert!(
                    state["MaxConcurrency"].as_u64().is_some_and(|n| n > 0),
                    "{at}/{name}: concurrency must be bounded"
                );
            }
            if kind != "Task" {
                continue;
            }
            let retry = state["Retry"].as_array().map_or(0, Vec::len);
            assert!(retry > 0, "{at}/{name} has no Retry");
            for retrier in state["Retry"].as_array().unwrap() {
                assert!(
                    retrier["BackoffRate"].as_f64().unwrap_or(1.0) > 1.0,
                    "{at}/{name}: backoff"
                );
            }
            match state["Resource"].as_str().unwrap() {
                "arn:aws:states:::lambda:invoke" => {
                    let placeholder = state["Parameters"]["FunctionName"].as_str().unwrap();
                    let key = placeholder.trim_start_matches("${").trim_end_matches('}');
                    let resource = &machine.substitutions[key];
                    let binary = template
                        .binary_of(resource)
                        .unwrap()
                        .unwrap_or_else(|| panic!("{at}/{name}: {resource} is not a function"));
                    assert!(
                        binaries.contains(&binary),
                        "{at}/{name}: no functions/{binary}"
                    );
                    if binary == "migration-migrate-user" {
                        assert!(
                            state["Catch"].as_array().is_some_and(|c| !c.is_empty()),
                            "{at}/{name}: a user that fails must be caught"
                        );
                    }
                }
                "arn:aws:states:::dynamodb:updateItem" => {
                    let placeholder = state["Parameters"]["TableName"].as_str().unwrap();
                    let key = placeholder.trim_start_matches("${").trim_end_matches('}');
                    assert_eq!(machine.substitutions[key], local::template::TABLE_RESOURCE);
                }
                other => panic!("{at}/{name}: unexpected resource {other}"),
            }
        }
        let all: BTreeSet<String> = states.keys().cloned().collect();
        assert_eq!(reachable, all, "{at}: every state is reachable");
    }
}

/// Runs the definition; Lambda tasks call the handlers, `fail_user`'s migration always fails.
struct Run {
    result: Result<Value, Failure>,
    trace: Vec<String>,
    attempts_for_failing_user: usize,
}

async fn execute(state: &State, name: &str, input: Value, fail_user: Option<&str>) -> Run {
    let template = template();
    let machine = template.state_machine(STATE_MACHINE).unwrap();
    let targets: BTreeMap<String, Target> = machine
        .substitutions
        .iter()
        .map(|(key, resource)| {
            let target = match template.binary_of(resource).unwrap() {
                Some(binary) => Target::Function(binary),
                None => Target::Table(state.config.table_name.clone()),
            };
            (key.clone(), target)
        })
        .collect();
    let attempts = Arc::new(AtomicUsize::new(0));
    let handlers = state.clone();
    let failing = fail_user.map(str::to_owned);
    let counter = Arc::clone(&attempts);
    let invoke: Box<Invoke> = Box::new(move |binary: String, payload: Value| {
        let state = handlers.clone();
        let failing = failing.clone();
        let counter = Arc::clone(&counter);
        Box::pin(async move {
            if binary == "migration-migrate-user"
                && payload["userId"].as_str() == failing.as_deref()
            {
                counter.fetch_add(1, Ordering::SeqCst);
                return Err(Failure::new(
                    "Internal",
                    "injected: the store is down for this user",
                ));
            }
            invoke_handler(&state, &binary, payload).await
        })
    });
    let sdk = aws_config::load_from_env().await;
    let interpreter = Interpreter::new(
        definition(),
        targets,
        invoke.as_ref(),
        aws_sdk_dynamodb::Client::new(&sdk),
    );
    let result = interpreter.run(name, input).await;
    let trace = interpreter.trace.lock().unwrap().clone();
    Run {
        result,
        trace,
        attempts_for_failing_user: attempts.load(Ordering::SeqCst),
    }
}

/// What the function with this binary does with this payload, as Lambda would report it.
async fn invoke_handler(state: &State, binary: &str, payload: Value) -> Result<Value, Failure> {
    fn input<T: serde::de::DeserializeOwned>(payload: Value) -> Result<T, Failure> {
        serde_json::from_value(payload).map_err(|e| Failure::new("Lambda.Unknown", e.to_string()))
    }
    fn reply<T: serde::Serialize>(result: Result<T, shared::Error>) -> Result<Value, Failure> {
        result
            .map(|out| serde_json::to_value(out).unwrap())
            .map_err(|e| Failure::new(e.kind(), shared::error::chain(&e)))
    }
    match binary {
        "migration-start-run" => {
            reply(migration_job::start_run(state, input::<StartInput>(payload)?).await)
        }
        "migration-list-users" => {
            reply(migration_job::list_users(state, input::<ShardPage>(payload)?).await)
        }
        "migration-migrate-user" => {
            reply(migration_job::migrate_user(state, input::<UserStep>(payload)?).await)
        }
        "migration-finish-run" => {
            reply(migration_job::finish_run(state, input::<FinishInput>(payload)?).await)
        }
        other => Err(Failure::new("Lambda.ResourceNotFoundException", other)),
    }
}

async fn remember(state: &State, user: &str, count: usize) {
    let at = Utc::now() - Duration::hours(2);
    let entries: Vec<MemoryEntry> = (0..count)
        .map(|i| {
            let role = if i % 2 == 0 {
                Role::User
            } else {
                Role::Assistant
            };
            memory_entry(
                at + Duration::minutes(i as i64),
                role,
                &format!("{user} said {i}"),
            )
        })
        .collect();
    state
        .assistant
        .memory()
        .remember(&UserId::parse(user).unwrap(), &entries)
        .await
        .unwrap();
}

async fn message_count(state: &State, user: &str) -> u64 {
    all_conversations(state, user)
        .await
        .iter()
        .map(|c| c.message_count)
        .sum()
}

fn summary_of(run: &Run) -> RunSummary {
    serde_json::from_value(run.result.clone().expect("the execution succeeds")).unwrap()
}

#[tokio::test]
async fn a_scheduled_run_migrates_every_user_with_memory_and_records_its_summary() {
    let state = state().await;
    let users = [new_user(), new_user(), new_user()];
    for (i, user) in users.iter().enumerate() {
        remember(&state, user, i + 1).await;
    }

    let run = execute(&state, "scheduled-1", json!({}), None).await;
    let summary = summary_of(&run);
    assert_eq!(summary.status, "finished");
    assert!(!summary.dry_run);
    assert_eq!((summary.users, summary.users_failed), (3, 0));
    assert_eq!(summary.messages_migrated, 6);
    assert_eq!(summary.conversations_created, 3);
    for (i, user) in users.iter().enumerate() {
        assert_eq!(message_count(&state, user).await, i as u64 + 1);
    }
    // Every shard was listed, each user migrated once, and the run's item is what it returned.
    let count = |name: &str| run.trace.iter().filter(|s| *s == name).count();
    assert_eq!(count("ListUsers"), keys::MEMORY_SHARDS as usize);
    assert_eq!(count("MigrateUser"), 3);
    let stored = state
        .migrator
        .store()
        .run_summary("scheduled-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored, summary);

    // The next day's run finds the same users (their memory has not expired) and adds nothing.
    let again = summary_of(&execute(&state, "scheduled-2", json!({}), None).await);
    assert_eq!((again.users, again.messages_migrated), (3, 0));
}

#[tokio::test]
async fn a_dry_run_reports_the_real_numbers_and_writes_only_its_run_record() {
    let state = state().await;
    let (a, b) = (new_user(), new_user());
    remember(&state, &a, 2).await;
    remember(&state, &b, 3).await;
    let outside_run_records =
        |items: Vec<std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>>| {
            items
                .into_iter()
                // The run's records: its summary and users, and the latest-run pointer.
                .filter(|item| !item["PK"].as_s().unwrap().starts_with("MIGRATION_RUN"))
                .collect::<Vec<_>>()
        };
    let before = outside_run_records(table_snapshot(&state).await);

    let dry = summary_of(&execute(&state, "dry-1", json!({"dryRun": true}), None).await);
    assert!(dry.dry_run);
    assert_eq!(
        (dry.users, dry.messages_migrated, dry.conversations_created),
        (2, 5, 2)
    );
    assert_eq!(outside_run_records(table_snapshot(&state).await), before);

    let real = summary_of(&execute(&state, "real-1", json!({}), None).await);
    assert_eq!(
        (
            real.users,
            real.messages_migrated,
            real.conversations_created
        ),
        (dry.users, dry.messages_migrated, dry.conversations_created)
    );
}

#[tokio::test]
async fn a_user_that_keeps_failing_is_retried_then_recorded_and_the_run_goes_on() {
    let state = state().await;
    let (ok, failing) = (new_user(), new_user());
    remember(&state, &ok, 2).await;
    remember(&state, &failing, 2).await;

    let run = execute(&state, "with-failure", json!({}), Some(&failing)).await;
    let summary = summary_of(&run);
    assert_eq!((summary.users, summary.users_failed), (1, 1));
    assert_eq!(summary.failed_users.len(), 1);
    assert_eq!(summary.failed_users[0].user_id, failing);
    assert_eq!(summary.failed_users[0].error, "Internal");
    assert_eq!(message_count(&state, &ok).await, 2);
    assert_eq!(message_count(&state, &failing).await, 0);
    // The first attempt and every retry the definition allows for an `Internal` error.
    let allowed: u64 = definition()["States"]["EachShard"]["ItemProcessor"]["States"]["EachUser"]
        ["ItemProcessor"]["States"]["MigrateUser"]["Retry"][0]["MaxAttempts"]
        .as_u64()
        .unwrap();
    assert_eq!(run.attempts_for_failing_user as u64, 1 + allowed);
    assert!(run.trace.contains(&"RecordUserFailure".to_owned()));
}

#[tokio::test]
async fn a_run_started_for_one_user_migrates_only_that_user() {
    let state = state().await;
    let (chosen, other) = (new_user(), new_user());
    remember(&state, &chosen, 2).await;
    remember(&state, &other, 2).await;

    let run = execute(&state, "one-user", json!({"userId": chosen}), None).await;
    let summary = summary_of(&run);
    assert_eq!((summary.users, summary.messages_migrated), (1, 2));
    assert!(!run.trace.contains(&"ListUsers".to_owned()));
    assert_eq!(message_count(&state, &chosen).await, 2);
    assert_eq!(message_count(&state, &other).await, 0);
}

#[tokio::test]
async fn bad_run_input_fails_at_the_start_without_retries() {
    let state = state().await;
    for input in [
        json!({"dryRun": "yes"}),
        json!({"userId": "a#b"}),
        json!({"users": []}),
    ] {
        let run = execute(&state, "bad", input.clone(), None).await;
        let failure = run.result.expect_err("the execution fails");
        assert_eq!(failure.error, "Invalid", "{input}");
        assert_eq!(run.trace, ["StartRun"], "{input}");
    }
}

#[tokio::test]
async fn every_user_of_a_shard_is_listed_once_across_pages() {
    let state = state().await;
    let shard = keys::memory_shard_key(0);
    let mut users = Vec::new();
    while users.len() < 5 {
        let user = new_user();
        if keys::memory_shard(&UserId::parse(&user).unwrap()) == shard {
            remember(&state, &user, 1).await;
            users.push(UserId::parse(&user).unwrap());
        }
    }
    let mut listed = Vec::new();
    let mut after = None;
    loop {
        let (page, next) = state
            .migrator
            .store()
            .users_with_memory(0, 2, after.as_deref())
            .await
            .unwrap();
        assert!(page.len() <= 2);
        listed.extend(page);
        match next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    listed.sort();
    users.sort();
    assert_eq!(listed, users);
}
