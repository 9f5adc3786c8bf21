//! IAM, proven rather than assumed: moto enforces no IAM, so a call a function's role does
//! not allow works here and fails in AWS (a failed completion's release once needed a
//! `dynamodb:DeleteItem` no role granted). Each function's handler runs its event from
//! `events/` (and the paths the events do not reach: a failed completion, a purge) against a
//! proxy that records every AWS call as the IAM action AWS authorizes it by; every action
//! must be granted by that function's own policies in `template.yaml`.

use std::collections::{BTreeMap, BTreeSet};

use assistant::State;
use chrono::Utc;
use lambda_runtime::LambdaEvent;
use local::Endpoint;
use shared::model::UserId;
use tests::recording::RecordingProxy;
use tests::{conversation_saying, new_user, workspace_root, ChatBehaviour, ChatServer};

const EVENT_USER: &str = "3f1c9a7e-0b7d-4f8e-9d61-2a9c2a0c1b11";
const EVENT_CONVERSATION: &str = "0193a4f2-7c1e-7b3a-9f00-5e2d1c4b6a77";
const EVENT_EXPORT: &str = "0193a4f2-7c1e-7b3a-9f00-5e2d1c4b6a79";

/// The actions each function's policies allow, by binary.
fn granted() -> BTreeMap<String, BTreeSet<String>> {
    let text = std::fs::read_to_string(workspace_root().join("template.yaml")).unwrap();
    let document: serde_norway::Value = serde_norway::from_str(&text).unwrap();
    let mut granted = BTreeMap::new();
    for resource in document["Resources"].as_mapping().unwrap().values() {
        if resource["Type"].as_str() != Some("AWS::Serverless::Function") {
            continue;
        }
        let binary = resource["Metadata"]["BuildProperties"]["Binary"]
            .as_str()
            .unwrap()
            .to_owned();
        let mut actions = BTreeSet::new();
        for policy in resource["Properties"]["Policies"]
            .as_sequence()
            .into_iter()
            .flatten()
        {
            for statement in policy["Statement"].as_sequence().into_iter().flatten() {
                assert_eq!(statement["Effect"].as_str(), Some("Allow"), "{binary}");
                let listed: Vec<String> = match &statement["Action"] {
                    serde_norway::Value::String(action) => vec![action.clone()],
                    serde_norway::Value::Sequence(list) => list
                        .iter()
                        .map(|a| a.as_str().unwrap().to_owned())
                        .collect(),
                    other => panic!("{binary}: an Action of {other:?}"),
                };
                let folders = bucket_folders(&statement["Resource"]);
                for action in listed {
                    actions.insert(action.clone());
                    // The bucket's objects are granted by folder.
                    actions.extend(folders.iter().map(|folder| format!("{action} {folder}")));
                }
            }
        }
        granted.insert(binary, actions);
    }
    granted
}

/// The folders of the attachments bucket a statement's resources name (`users/*`; `*` for
/// every object), as `${AttachmentsBucket.Arn}/<folder>` does.
fn bucket_folders(resource: &serde_norway::Value) -> Vec<String> {
    match resource {
        serde_norway::Value::Sequence(list) => list.iter().flat_map(bucket_folders).collect(),
        serde_norway::Value::Tagged(tagged) => tagged
            .value
            .as_str()
            .and_then(|text| text.strip_prefix("${AttachmentsBucket.Arn}/"))
            .map(|folder| vec![folder.to_owned()])
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// A state whose AWS calls go through `proxy`, configured with `overrides`.
async fn state_recorded(proxy: &RecordingProxy, overrides: &[(&str, &str)]) -> State {
    tests::state_through(proxy.endpoint(), overrides).await
}

async fn recording_proxy() -> RecordingProxy {
    RecordingProxy::start(&std::env::var("AWS_ENDPOINT_URL").unwrap()).await
}

/// Fails with every action `binary` called that its role does not allow; lists the granted
/// actions none of its runs called (on stderr: the paths the runs do not reach may need them).
fn assert_allowed(called: &BTreeMap<String, BTreeSet<String>>) {
    let granted = granted();
    let mut refused = Vec::new();
    for (binary, actions) in called {
        let allowed = granted
            .get(binary)
            .unwrap_or_else(|| panic!("{binary} is not in the template"));
        // An object's action is allowed in its folder, or on every object (`*`).
        let is_allowed = |action: &String| {
            allowed.contains(action)
                || action
                    .split_once(' ')
                    .is_some_and(|(name, _)| allowed.contains(&format!("{name} *")))
        };
        refused.extend(
            actions
                .iter()
                .filter(|action| !is_allowed(action))
                .map(|action| format!("{binary}: {action}")),
        );
        let unused: Vec<_> = allowed.difference(actions).collect();
        if !unused.is_empty() {
            eprintln!("{binary}: granted, not called by these runs: {unused:?}");
        }
    }
    assert!(refused.is_empty(), "called without a grant: {refused:#?}");
}

#[tokio::test]
async fn every_http_function_calls_only_what_its_role_allows() {
    let proxy = recording_proxy().await;
    let cursor_secret = tests::cursor_secret().await;
    let mut files: Vec<_> = std::fs::read_dir(workspace_root().join("events"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    let mut called: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for path in files {
        let binary = path.file_stem().unwrap().to_str().unwrap().to_owned();
        let Some(endpoint) = Endpoint::for_binary(&binary) else {
            continue;
        };
        // Each function a cold start of its own: the cursor keys are read by the first
        // request that pages.
        let state = state_recorded(&proxy, &[("CURSOR_SECRET_ARN", &cursor_secret)]).await;
        let user = new_user();
        let conversation = conversation_saying(
            &state,
            &user,
            [
                "what to pack for Lisbon".to_owned(),
                "and for Porto?".to_owned(),
            ],
        )
        .await;
        if endpoint == Endpoint::SearchConversations {
            // Indexed, and too long for its item: a hit reads the message's content from S3.
            let found = conversation_saying(
                &state,
                &user,
                [format!("The ferry timetable. {}", "Lisbon ".repeat(8_000))],
            )
            .await;
            let owner = UserId::parse(&user).unwrap();
            let store = state.conversations.store();
            let (messages, _) = store
                .messages_oldest_first(&owner, &found.id, None, 10)
                .await
                .unwrap();
            shared::search::index_messages(store, &owner, &found.id, &messages)
                .await
                .unwrap();
        }
        let first_message = match endpoint {
            // An edit of a message with a parent: its transaction checks the parent is there.
            Endpoint::EditMessage => Box::pin(state.conversations.get(
                &UserId::parse(&user).unwrap(),
                &conversation.id,
                2,
                None,
            ))
            .await
            .unwrap()
            .messages[1]
                .id
                .to_string(),
            _ => tests::first_message_of(&state, &user, &conversation.id).await,
        };
        let mut text = std::fs::read_to_string(&path)
            .unwrap()
            .replace(EVENT_USER, &user)
            .replace(EVENT_CONVERSATION, &conversation.id.to_string())
            .replace(tests::EVENT_MESSAGE, &first_message);
        // On the heap: this test's future holds every step's.
        text = Box::pin(tests::with_placeholders(
            &state,
            text,
            &user,
            &conversation.id,
        ))
        .await;
        if endpoint == Endpoint::GetAccountExport {
            let request = shared::account_export::ExportRequest::parse(Default::default()).unwrap();
            let (job, _) = state
                .account_exports
                .start(&UserId::parse(&user).unwrap(), request, Utc::now())
                .await
                .unwrap();
            text = text.replace(EVENT_EXPORT, &job.export_id.to_string());
        }
        if endpoint == Endpoint::GetContext {
            // Started with a preset: its settings are read beside it.
            let owner = UserId::parse(&user).unwrap();
            let preset = Box::pin(state.presets.create(
                &owner,
                None,
                domain::preset::PresetFields {
                    name: "Brief".to_owned(),
                    instructions: "Be brief.".to_owned(),
                    model: None,
                    max_tokens: None,
                    temperature: None,
                    default_tags: Vec::new(),
                    starter_prompts: Vec::new(),
                },
                Utc::now(),
            ))
            .await
            .unwrap();
            Box::pin(state.conversations.apply_preset(
                &owner,
                &conversation.id,
                &preset.id,
                Utc::now(),
            ))
            .await
            .unwrap();
        }
        if endpoint == Endpoint::ShareConversation {
            // The event's link shows files: it copies them under its own prefix.
            tests::say_with_a_file(&state, &user, &conversation.id).await;
        }
        if endpoint == Endpoint::DeleteConversation {
            // A delete takes back the grants of it (a transaction each).
            let person = UserId::parse(&new_user()).unwrap();
            state
                .sharing
                .share_with(
                    &UserId::parse(&user).unwrap(),
                    &conversation.id,
                    &person,
                    Utc::now(),
                )
                .await
                .unwrap();
            // A delete reaches the conversation's exports too.
            state
                .exports
                .export_conversation(
                    state.attachments.as_ref().unwrap(),
                    &UserId::parse(&user).unwrap(),
                    &conversation.id,
                    shared::export::ExportFormat::Json,
                    Utc::now(),
                )
                .await
                .unwrap();
        }
        proxy.take(); // the setup's calls are not the function's
        let request = lambda_http::request::from_str(&text).unwrap();
        let response = endpoint.call(&state, request).await;
        assert!(
            response.status().as_u16() < 500,
            "{binary}: {}",
            response.status()
        );
        called.entry(binary).or_default().extend(proxy.take());
    }
    assert_eq!(called.len(), 39, "every HTTP function ran");
    assert!(
        called["search-conversations"].contains("s3:GetObject users/*"),
        "a hit's long message is read from the bucket: {:?}",
        called["search-conversations"]
    );
    assert!(
        called["mobile-sync"].contains("secretsmanager:GetSecretValue"),
        "a sync reads the keys to sign its cursor: {:?}",
        called["mobile-sync"]
    );
    // The streaming Function URL runs the completion's handler: its role needs the same.
    let completion = called["completion"].clone();
    called.insert("completion-stream".to_owned(), completion);
    assert_allowed(&called);
}

#[tokio::test]
async fn a_failed_completion_a_purge_and_a_sweep_call_only_what_their_roles_allow() {
    let server = ChatServer::start(ChatBehaviour::FailFirst).await;
    let proxy = recording_proxy().await;
    let clock = std::sync::Arc::new(shared::clock::ManualClock::at(Utc::now()));
    let state = tests::state_through_with_clock(
        proxy.endpoint(),
        &[
            ("MODEL_PROVIDER", "openai"),
            ("OPENAI_BASE_URL", &server.base_url),
            ("MODEL_ID", "test-model"),
        ],
        clock.clone(),
    )
    .await;
    let user = new_user();
    let conversation = conversation_saying(&state, &user, ["hello".to_owned()]).await;
    let mut called: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();

    // The model fails: the request id is released for an immediate retry (a DeleteItem).
    proxy.take();
    let text = std::fs::read_to_string(workspace_root().join("events/completion.json"))
        .unwrap()
        .replace(EVENT_USER, &user)
        .replace(EVENT_CONVERSATION, &conversation.id.to_string());
    let response = Endpoint::Complete
        .call(&state, lambda_http::request::from_str(&text).unwrap())
        .await;
    assert_eq!(response.status().as_u16(), 502);
    let failed = proxy.take();
    assert!(
        failed.contains(&"dynamodb:DeleteItem".to_owned()),
        "{failed:?}"
    );
    called
        .entry("completion".into())
        .or_default()
        .extend(failed.clone());
    called
        .entry("completion-stream".into())
        .or_default()
        .extend(failed);

    // A delete that left everything to the purge worker, then the worker's stream event;
    // the user's account export, unfinished (a second conversation is still to write), is
    // withdrawn with it.
    conversation_saying(&state, &user, ["still to export".to_owned()]).await;
    let owner = UserId::parse(&user).unwrap();
    // A link with a file of its own, which goes with it.
    tests::say_with_a_file(&state, &user, &conversation.id).await;
    let link = state
        .sharing
        .share(
            &owner,
            &conversation.id,
            domain::share::ShareOptions {
                include_attachments: true,
                ..Default::default()
            },
            Utc::now(),
        )
        .await
        .unwrap();
    let bucket = state.attachments.as_ref().unwrap();
    let request = shared::account_export::ExportRequest::parse(Default::default()).unwrap();
    let (export, _) = state
        .account_exports
        .start(&owner, request, Utc::now())
        .await
        .unwrap();
    state
        .account_exports
        .run(
            bucket,
            &owner,
            &export.export_id,
            0,
            std::time::Duration::ZERO,
            Utc::now(),
        )
        .await
        .unwrap();
    state
        .conversations
        .delete(
            &owner,
            &conversation.id,
            Utc::now(),
            std::time::Duration::ZERO,
        )
        .await
        .unwrap();
    proxy.take();
    let text =
        std::fs::read_to_string(workspace_root().join("events/purge-deleted-conversations.json"))
            .unwrap()
            .replace(EVENT_USER, &user)
            .replace(EVENT_CONVERSATION, &conversation.id.to_string());
    let purge = |event: String| {
        let mut context = lambda_runtime::Context::default();
        context.deadline = (Utc::now().timestamp_millis() + 60_000) as u64;
        let state = &state;
        async move {
            let purged = shared::table_changes::from_queue(
                LambdaEvent::new(serde_json::from_str(&event).unwrap(), context),
                |changes| shared::streams::purge_deleted_conversations(state, changes),
            )
            .await
            .unwrap();
            assert!(purged.batch_item_failures.is_empty());
        }
    };
    purge(text.clone()).await;
    // The conversation's purge removed its link's item: the worker hears of that too.
    let link_removed = text
        .replace(
            &format!("USER#{user}#CONV#{}", conversation.id),
            &format!("SHARE#{}", link.token),
        )
        .replace(r#"\"SK\":{\"S\":\"META\"}"#, r#"\"SK\":{\"S\":\"LINK\"}"#);
    assert!(link_removed.contains("LINK"), "{link_removed}");
    purge(link_removed).await;
    let purge_calls = proxy.take();
    assert!(
        purge_calls.contains(&"s3:DeleteObject shares/*".to_owned()),
        "{purge_calls:?}"
    );
    called
        .entry("purge-deleted-conversations".into())
        .or_default()
        .extend(purge_calls);

    // An hour later, the sweep checks the delete.
    clock.advance(shared::purge::SWEEP_GRACE + chrono::Duration::minutes(1));
    let swept = shared::purge::sweep_deleted_conversations(
        &state,
        std::time::Instant::now() + std::time::Duration::from_secs(60),
    )
    .await
    .unwrap();
    assert_eq!(swept.finished, 1);
    called
        .entry("sweep-deleted-conversations".into())
        .or_default()
        .extend(proxy.take());
    assert_allowed(&called);
}

#[tokio::test]
async fn the_dispatcher_calls_only_what_its_role_allows() {
    use shared::table_changes::{Dispatcher, Worker};
    let proxy = recording_proxy().await;
    let direct = aws_sdk_sqs::Client::new(&aws_config::load_from_env().await);
    let recorded = aws_sdk_sqs::Client::new(
        &aws_config::from_env()
            .endpoint_url(proxy.endpoint())
            .load()
            .await,
    );
    let mut queues = std::collections::BTreeMap::new();
    for worker in Worker::ALL {
        let name = format!(
            "iam-{}-{}.fifo",
            worker.binary(),
            uuid::Uuid::new_v4().simple()
        );
        let url = direct
            .create_queue()
            .queue_name(&name)
            .attributes(aws_sdk_sqs::types::QueueAttributeName::FifoQueue, "true")
            .send()
            .await
            .unwrap()
            .queue_url
            .unwrap();
        queues.insert(worker, url);
    }
    let dispatcher = Dispatcher::new(recorded, queues);
    let text = std::fs::read_to_string(workspace_root().join("events/dispatch-table-changes.json"))
        .unwrap();
    let response = dispatcher
        .dispatch(LambdaEvent::new(
            serde_json::from_str(&text).unwrap(),
            lambda_runtime::Context::default(),
        ))
        .await
        .unwrap();
    assert!(response.batch_item_failures.is_empty());
    let called = proxy.take();
    assert_eq!(
        called,
        vec!["sqs:SendMessage"; 5],
        "one batch to each queue"
    );
    assert_allowed(&BTreeMap::from([(
        "dispatch-table-changes".to_owned(),
        called.into_iter().collect(),
    )]));
}

#[tokio::test]
async fn the_queue_functions_call_only_what_their_roles_allow() {
    use shared::table_changes::from_queue;
    let server = ChatServer::start(ChatBehaviour::Answer).await;
    let proxy = recording_proxy().await;
    let state = state_recorded(
        &proxy,
        &[
            ("MODEL_PROVIDER", "openai"),
            ("OPENAI_BASE_URL", &server.base_url),
            ("MODEL_ID", "test-model"),
        ],
    )
    .await;
    let context = || {
        let mut context = lambda_runtime::Context::default();
        context.deadline = (Utc::now().timestamp_millis() + 60_000) as u64;
        context
    };
    let event = |binary: &str, user: &str, conversation: &str, export: &str| {
        let text = std::fs::read_to_string(workspace_root().join(format!("events/{binary}.json")))
            .unwrap()
            .replace(EVENT_USER, user)
            .replace(EVENT_CONVERSATION, conversation)
            .replace(EVENT_EXPORT, export);
        LambdaEvent::new(serde_json::from_str(&text).unwrap(), context())
    };
    let mut called: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();

    // The indexer, on a new message of a conversation that exists.
    let user = new_user();
    let conversation = conversation_saying(&state, &user, ["the last ferry".to_owned()]).await;
    let id = conversation.id.to_string();
    proxy.take();
    let indexed = from_queue(event("index-for-search", &user, &id, ""), |changes| {
        shared::streams::index_for_search(&state, changes)
    })
    .await
    .unwrap();
    assert!(indexed.batch_item_failures.is_empty());
    called.insert(
        "index-for-search".into(),
        proxy.take().into_iter().collect(),
    );

    // The summarizer, on a conversation past the threshold (20 by default).
    let many = conversation_saying(&state, &user, (0..20).map(|n| format!("line {n}"))).await;
    proxy.take();
    let summarized = from_queue(
        event("summarize-conversations", &user, &many.id.to_string(), ""),
        |changes| assistant::streams::summarize_conversations(&state, changes),
    )
    .await
    .unwrap();
    assert!(summarized.batch_item_failures.is_empty());
    let summarizer = proxy.take();
    // Its own item with slot keys on (PutItem), else the conversation's (UpdateItem).
    assert!(
        summarizer.contains(&"dynamodb:PutItem".to_owned())
            || summarizer.contains(&"dynamodb:UpdateItem".to_owned()),
        "{summarizer:?}"
    );
    called.insert(
        "summarize-conversations".into(),
        summarizer.into_iter().collect(),
    );

    // The account exporter, on a new export: one run writes it.
    let request = shared::account_export::ExportRequest::parse(Default::default()).unwrap();
    let (job, _) = state
        .account_exports
        .start(&UserId::parse(&user).unwrap(), request, Utc::now())
        .await
        .unwrap();
    proxy.take();
    let exported = from_queue(
        event("run-account-exports", &user, "", &job.export_id.to_string()),
        |changes| shared::streams::run_account_exports(&state, changes),
    )
    .await
    .unwrap();
    assert!(exported.batch_item_failures.is_empty());
    let exporter = proxy.take();
    assert!(
        exporter.iter().any(|a| a.starts_with("s3:PutObject")),
        "{exporter:?}"
    );
    called.insert("run-account-exports".into(), exporter.into_iter().collect());

    // The held-memory migration, on an entry kept only in short-term memory.
    let held_user = new_user();
    let mut entry = tests::memory_entry(
        Utc::now() - chrono::Duration::minutes(1),
        shared::model::Role::Assistant,
        "kept only here",
    );
    entry.conversation_id = Some(conversation.id);
    entry.held = true;
    state
        .assistant
        .memory()
        .remember(&UserId::parse(&held_user).unwrap(), &[entry])
        .await
        .unwrap();
    proxy.take();
    let moved = from_queue(
        event("migrate-held-memory", &held_user, &id, ""),
        |changes| assistant::streams::migrate_held_memory(&state, changes),
    )
    .await
    .unwrap();
    assert!(moved.batch_item_failures.is_empty());
    let migrator = proxy.take();
    assert!(
        migrator.contains(&"dynamodb:UpdateItem".to_owned()),
        "{migrator:?}"
    );
    called.insert("migrate-held-memory".into(), migrator.into_iter().collect());

    assert_allowed(&called);
}

#[tokio::test]
async fn the_migration_steps_call_only_what_their_roles_allow() {
    use shared::migration_job::{self, FinishInput, ShardPage, StartInput, UserStep};
    let proxy = recording_proxy().await;
    let state = state_recorded(&proxy, &[]).await;
    let user = new_user();
    let at = Utc::now() - chrono::Duration::hours(2);
    let entries: Vec<_> = (0..4)
        .map(|i| {
            tests::memory_entry(
                at + chrono::Duration::minutes(i),
                shared::model::Role::User,
                &format!("said {i}"),
            )
        })
        .collect();
    state
        .assistant
        .memory()
        .remember(&UserId::parse(&user).unwrap(), &entries)
        .await
        .unwrap();
    let event = |binary: &str| -> serde_json::Value {
        let text = std::fs::read_to_string(workspace_root().join(format!("events/{binary}.json")))
            .unwrap()
            .replace(EVENT_USER, &user)
            .replace("\"dryRun\": true", "\"dryRun\": false");
        serde_json::from_str(&text).unwrap()
    };
    let mut called: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    proxy.take();
    let start: StartInput = serde_json::from_value(event("migration-start-run")).unwrap();
    migration_job::start_run(&state, start).await.unwrap();
    called.insert(
        "migration-start-run".into(),
        proxy.take().into_iter().collect(),
    );
    let page: ShardPage = serde_json::from_value(event("migration-list-users")).unwrap();
    migration_job::list_users(&state, page).await.unwrap();
    called.insert(
        "migration-list-users".into(),
        proxy.take().into_iter().collect(),
    );
    let step: UserStep = serde_json::from_value(event("migration-migrate-user")).unwrap();
    migration_job::migrate_user(&state, step).await.unwrap();
    let migrated = proxy.take();
    assert!(
        migrated
            .iter()
            .any(|a| a == "dynamodb:TransactWriteItems" || a == "dynamodb:PutItem"),
        "{migrated:?}"
    );
    called.insert(
        "migration-migrate-user".into(),
        migrated.into_iter().collect(),
    );
    let finish: FinishInput = serde_json::from_value(event("migration-finish-run")).unwrap();
    migration_job::finish_run(&state, finish).await.unwrap();
    called.insert(
        "migration-finish-run".into(),
        proxy.take().into_iter().collect(),
    );
    assert_allowed(&called);
}

/// The test itself: a role without an action its function calls is found.
#[test]
fn a_call_without_a_grant_is_found() {
    let called = BTreeMap::from([(
        "get-usage".to_owned(),
        BTreeSet::from(["dynamodb:DeleteItem".to_owned()]),
    )]);
    let found = std::panic::catch_unwind(|| assert_allowed(&called));
    assert!(found.is_err());
}

/// An object's action is granted in its folder only.
#[test]
fn a_call_outside_the_granted_folder_is_found() {
    let allowed = BTreeMap::from([(
        "purge-deleted-conversations".to_owned(),
        BTreeSet::from(["s3:DeleteObject users/*".to_owned()]),
    )]);
    assert_allowed(&allowed);
    let elsewhere = BTreeMap::from([(
        "purge-deleted-conversations".to_owned(),
        BTreeSet::from(["s3:DeleteObject elsewhere/*".to_owned()]),
    )]);
    assert!(std::panic::catch_unwind(|| assert_allowed(&elsewhere)).is_err());
}
