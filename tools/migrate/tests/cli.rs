//! The `numina-migrate` binary as an operator runs it, against the local DynamoDB server.

use std::process::{Command, Output};

use assistant::State;
use chrono::{Duration, Utc};
use domain::memory::MemoryEntry;
use shared::model::{Attachment, Role, UserId};
use shared::service::ListRequest;
use tests::{all_conversations, memory_entry, new_user, state, table_snapshot, workspace_root};

fn migrate(state: &State, args: &[&str]) -> Output {
    let output = Command::new(env!("CARGO_BIN_EXE_numina-migrate"))
        .args(args)
        .env("TABLE_NAME", &state.config.table_name)
        .output()
        .expect("run numina-migrate");
    eprintln!(
        "numina-migrate {args:?}\n--- stderr\n{}--- stdout\n{}",
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&output.stdout)
    );
    output
}

/// `numina-migrate ARGS` on `state`'s table and bucket, which must succeed; its stdout.
fn migrate_with_bucket(state: &State, args: &[&str]) -> String {
    let output = run_with_bucket(state, args);
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{output:?}");
    stdout(&output)
}

/// `numina-migrate` with `args` on `state`'s table and bucket, however it ends.
fn run_with_bucket(state: &State, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_numina-migrate"))
        .args(args)
        .env("TABLE_NAME", &state.config.table_name)
        .env(
            "ATTACHMENTS_BUCKET",
            state.config.attachments_bucket.as_deref().unwrap(),
        )
        .env("S3_FORCE_PATH_STYLE", "true")
        .output()
        .expect("run numina-migrate")
}

/// `numina-migrate --user USER --import PATH` into `state`'s table and bucket; its stdout.
fn import_for(state: &State, user: &str, path: &std::path::Path) -> String {
    migrate_with_bucket(state, &["--user", user, "--import", path.to_str().unwrap()])
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The value of one summary line, e.g. `messages migrated`.
fn summary_value(output: &Output, label: &str) -> u64 {
    stdout(output)
        .lines()
        .find_map(|line| line.trim().strip_prefix(&format!("{label}:")))
        .unwrap_or_else(|| panic!("no {label:?} line in the summary"))
        .trim()
        .parse()
        .unwrap()
}

fn dump() -> String {
    workspace_root()
        .join("tests/fixtures/mongoexport-short-term-memory.jsonl")
        .display()
        .to_string()
}

async fn titles_and_counts(state: &State, user: &str) -> Vec<(String, u64)> {
    let mut found: Vec<(String, u64)> = all_conversations(state, user)
        .await
        .into_iter()
        .map(|c| (c.title, c.message_count))
        .collect();
    found.sort();
    found
}

#[tokio::test]
async fn a_mongoexport_dump_of_the_old_system_is_imported_once() {
    let state = state().await;

    let first = migrate(&state, &["--from-file", &dump()]);
    assert!(first.status.success());
    assert_eq!(summary_value(&first, "users"), 2);
    assert_eq!(summary_value(&first, "conversations created"), 3);
    assert_eq!(summary_value(&first, "messages migrated"), 7);
    assert_eq!(summary_value(&first, "skipped"), 3);
    let report = stdout(&first);
    assert!(
        report.contains("line 7 (_id 65f1c0a2b3c4d5e6f7a80202)"),
        "{report}"
    );
    assert!(
        report.contains("line 8 (_id 65f1c0a2b3c4d5e6f7a80203)"),
        "{report}"
    );
    assert!(report.contains("line 10: not JSON"), "{report}");

    assert_eq!(
        titles_and_counts(&state, "65f1c0a2b3c4d5e6f7a8aaaa").await,
        [
            ("Remind me what we said about sourdough".to_owned(), 2),
            ("What should I pack for Lisbon in March?".to_owned(), 3),
        ]
    );
    assert_eq!(
        titles_and_counts(&state, "auth0|legacy-user-42").await,
        [("Good morning!".to_owned(), 2)]
    );

    // Times, attachments and metadata (Extended JSON numbers as plain JSON) come along.
    let user = UserId::parse("65f1c0a2b3c4d5e6f7a8aaaa").unwrap();
    let listed = state
        .conversations
        .list(&user, ListRequest::default())
        .await
        .unwrap();
    let lisbon = listed
        .items
        .iter()
        .find(|c| c.title.starts_with("What should I pack"))
        .unwrap();
    let full = state
        .conversations
        .get(&user, &lisbon.id, 10, None)
        .await
        .unwrap();
    let first_message = &full.messages[0];
    assert_eq!(
        first_message.timestamp.to_rfc3339(),
        "2024-03-13T10:00:00+00:00"
    );
    assert_eq!(
        first_message.attachments,
        [Attachment::Link(
            "https://cdn.numina.example/u/65f1/packing-list.png".into()
        )]
    );
    assert_eq!(first_message.metadata["mood"], "excited");
    assert_eq!(full.messages[1].metadata["tokens"], 17);
    assert_eq!(
        full.conversation.created_at.to_rfc3339(),
        "2024-03-13T10:00:00+00:00"
    );

    let again = migrate(&state, &["--from-file", &dump()]);
    assert!(again.status.success());
    assert_eq!(summary_value(&again, "conversations created"), 0);
    assert_eq!(summary_value(&again, "messages migrated"), 0);
    assert_eq!(summary_value(&again, "messages already there"), 7);
}

#[tokio::test]
async fn a_dry_run_of_a_dump_reports_the_same_numbers_and_writes_nothing() {
    let state = state().await;
    let before = table_snapshot(&state).await;
    let dry = migrate(&state, &["--from-file", &dump(), "--dry-run"]);
    assert!(dry.status.success());
    assert!(stdout(&dry).contains("dry run: nothing written"));
    assert_eq!(summary_value(&dry, "conversations created"), 3);
    assert_eq!(summary_value(&dry, "messages migrated"), 7);
    assert_eq!(table_snapshot(&state).await, before);
}

async fn remember(state: &State, user: &str, contents: &[&str]) {
    let at = Utc::now() - Duration::hours(3);
    let entries: Vec<MemoryEntry> = contents
        .iter()
        .enumerate()
        .map(|(i, content)| {
            let role = if i % 2 == 0 {
                Role::User
            } else {
                Role::Assistant
            };
            memory_entry(at + Duration::minutes(i as i64), role, content)
        })
        .collect();
    state
        .assistant
        .memory()
        .remember(&UserId::parse(user).unwrap(), &entries)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_full_run_finds_every_user_with_memory_reports_progress_and_a_rerun_adds_nothing() {
    let state = state().await;
    let (a, b) = (new_user(), new_user());
    remember(&state, &a, &["one", "two", "three"]).await;
    remember(&state, &b, &["hello"]).await;

    let first = migrate(&state, &[]);
    assert!(first.status.success());
    let progress = String::from_utf8_lossy(&first.stderr);
    assert!(
        progress.contains("2 users hold short-term memory"),
        "{progress}"
    );
    assert!(
        progress.contains("[1/2] ") && progress.contains("[2/2] "),
        "{progress}"
    );
    assert_eq!(summary_value(&first, "users"), 2);
    assert_eq!(summary_value(&first, "messages migrated"), 4);
    assert_eq!(titles_and_counts(&state, &a).await, [("one".to_owned(), 3)]);

    let again = migrate(&state, &[]);
    assert_eq!(summary_value(&again, "messages migrated"), 0);
    assert_eq!(summary_value(&again, "conversations created"), 0);
}

#[tokio::test]
async fn one_user_is_migrated_alone_and_a_bad_user_id_is_refused() {
    let state = state().await;
    let (a, b) = (new_user(), new_user());
    remember(&state, &a, &["mine"]).await;
    remember(&state, &b, &["theirs"]).await;

    let only_a = migrate(&state, &[&format!("--user={a}")]);
    assert!(only_a.status.success());
    assert_eq!(summary_value(&only_a, "users"), 1);
    assert_eq!(titles_and_counts(&state, &a).await.len(), 1);
    assert!(titles_and_counts(&state, &b).await.is_empty());

    let bad = migrate(&state, &["--user", "a#b"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("numina-migrate:"));
}

#[tokio::test]
async fn a_conversation_export_is_imported_with_its_long_content_and_only_once() {
    use shared::export::{ConversationExport, ExportedConversation, ExportedMessage};
    use shared::model::{ConversationId, MessageId};
    let state = state().await;
    let user = new_user();
    let id = ConversationId::generate();
    let at = Utc::now() - Duration::days(3);
    let long = "A long answer. ".repeat(4_000); // 60 KB: kept in the bucket
    let message = |content: &str, role, minutes| ExportedMessage {
        id: MessageId::generate(),
        role,
        content: content.to_owned(),
        timestamp: at + Duration::minutes(minutes),
        attachments: vec![],
        metadata: Default::default(),
        client_message_id: None,
        client_timestamp: None,
    };
    let first = message("Tell me everything", Role::User, 0);
    let export = ConversationExport {
        format_version: 1,
        exported_at: Utc::now(),
        conversation: ExportedConversation {
            id,
            title: "Tell me everything".to_owned(),
            user_title: None,
            auto_title: Some("Tell me everything".to_owned()),
            created_at: at,
            last_activity: at + Duration::minutes(1),
            updated_at: at + Duration::minutes(1),
            is_archived: false,
            tags: vec![],
            summary: None,
            message_count: 2,
        },
        // The first message listed twice: one message.
        messages: vec![first.clone(), first, message(&long, Role::Assistant, 1)],
        branches: vec![],
    };
    let path = std::env::temp_dir().join(format!("export-{id}.json"));
    std::fs::write(&path, serde_json::to_vec(&export).unwrap()).unwrap();
    let import = || import_for(&state, &user, &path);
    assert!(import().contains("created, 2 messages stored, 0 already present"));
    assert!(import().contains("already there, 0 messages stored, 2 already present"));

    let owner = UserId::parse(&user).unwrap();
    let found = state
        .conversations
        .get(&owner, &id, 10, None)
        .await
        .unwrap();
    assert_eq!(found.conversation.title, "Tell me everything");
    assert_eq!(found.conversation.message_count, 2);
    assert_eq!(found.messages.len(), 2);
    assert_eq!(found.messages[1].content, long);
    std::fs::remove_file(path).ok();
}

#[tokio::test]
async fn an_account_export_imported_elsewhere_exports_the_same() {
    use shared::model::{NewMessage, Tags, Title};
    let here = state().await;
    let user = new_user();
    let owner = UserId::parse(&user).unwrap();
    // Titled and untitled, tagged, archived, with content kept in the bucket.
    let titled = here
        .conversations
        .create(
            &owner,
            Some(Title::parse("Moving house").unwrap()),
            Tags::parse(&["home".to_owned()]).unwrap(),
            Utc::now(),
        )
        .await
        .unwrap();
    let untitled = here
        .conversations
        .create(&owner, None, Tags::default(), Utc::now())
        .await
        .unwrap();
    for (conversation, content) in [
        (&titled, "Boxes first?".to_owned()),
        (
            &titled,
            format!("A checklist: {}", "label every box. ".repeat(3_000)),
        ),
        (&untitled, "What is a good name for a cat?".to_owned()),
    ] {
        let message =
            NewMessage::parse(Role::User, content, vec![], Default::default(), None).unwrap();
        here.conversations
            .add_message(&owner, &conversation.id, message, Utc::now())
            .await
            .unwrap();
    }
    here.conversations
        .set_archived(&owner, &untitled.id, true, Utc::now())
        .await
        .unwrap();

    let (file, first) = account_jsonl(&here, &owner).await;
    assert_eq!(first.len(), 2);

    // Into another deployment's table, through the CLI: the same conversations come out.
    let elsewhere = state().await;
    let path = std::env::temp_dir().join(format!("account-{user}.jsonl"));
    std::fs::write(&path, &file).unwrap();
    let import = || import_for(&elsewhere, &user, &path);
    let imported = import();
    assert_eq!(imported.matches(": created,").count(), 2, "{imported}");
    assert_eq!(
        import().matches("0 messages stored").count(),
        2,
        "nothing twice"
    );
    let (_, second) = account_jsonl(&elsewhere, &owner).await;
    assert_eq!(second, first);
    std::fs::remove_file(path).ok();
}

/// An account export of `owner`'s conversations, written in one run: the file, and its lines
/// with their export time left out (each export has its own).
async fn account_jsonl(
    state: &State,
    owner: &UserId,
) -> (String, Vec<shared::export::ConversationExport>) {
    use shared::account_export::{ExportRequest, RunOutcome};
    let exports = &state.account_exports;
    let request = ExportRequest::parse(Default::default()).unwrap();
    let (job, _) = exports.start(owner, request, Utc::now()).await.unwrap();
    let bucket = state.attachments.as_ref().unwrap();
    let budget = std::time::Duration::from_secs(60);
    let ran = exports
        .run(bucket, owner, &job.export_id, 0, budget, Utc::now())
        .await
        .unwrap();
    assert!(matches!(ran, RunOutcome::Finished { .. }), "{ran:?}");
    let job = exports.status(owner, &job.export_id).await.unwrap();
    let object = tests::s3()
        .await
        .get_object()
        .bucket(state.config.attachments_bucket.as_deref().unwrap())
        .key(&job.files[0].key)
        .send()
        .await
        .unwrap();
    let bytes = object.body.collect().await.unwrap().into_bytes();
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    let mut lines: Vec<shared::export::ConversationExport> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    for line in &mut lines {
        line.exported_at = chrono::DateTime::UNIX_EPOCH;
    }
    (text, lines)
}

#[tokio::test]
async fn the_search_index_is_rebuilt_from_the_table_and_a_rerun_changes_nothing() {
    use shared::search::SearchQuery;
    let state = state().await;
    let user = new_user();
    let owner = UserId::parse(&user).unwrap();
    // Written with no indexer running (as before search blocks), one message too long for
    // its item, and an entry of the earlier index design left behind.
    let long = format!("Harpsichord tuning. {}", "la ".repeat(20_000));
    let conversation = tests::conversation_saying(
        &state,
        &user,
        ["The ferry timetable, please".to_owned(), long],
    )
    .await;
    let partition = shared::keys::conversation_partition(&owner, &conversation.id);
    let dynamodb = aws_sdk_dynamodb::Client::new(&aws_config::load_from_env().await);
    let s = |v: &str| aws_sdk_dynamodb::types::AttributeValue::S(v.to_owned());
    dynamodb
        .put_item()
        .table_name(&state.config.table_name)
        .item("PK", s(&partition))
        .item("SK", s("TERM#ferry"))
        .item("snippet", s("The ferry timetable, please"))
        .send()
        .await
        .unwrap();
    let search = |words: &'static str| {
        let (state, owner) = (state.clone(), owner.clone());
        async move {
            let query = SearchQuery::parse(words).unwrap();
            state
                .search
                .search(&owner, &query, 10, None)
                .await
                .unwrap()
                .hits
                .len()
        }
    };
    assert_eq!(search("ferry").await, 0, "not indexed yet");

    let reindex = || {
        let stdout = migrate_with_bucket(&state, &["--reindex-search", "--segments", "4"]);
        serde_json::from_str::<serde_json::Value>(&stdout).unwrap()
    };
    let report = reindex();
    assert_eq!(
        report,
        serde_json::json!({"segments": 4, "segmentsDone": 4, "messages": 2,
                           "legacyEntriesRemoved": 1, "blocksWritten": 1})
    );
    assert_eq!(search("ferry").await, 1);
    assert_eq!(search("harpsichord timetable").await, 1);
    let snapshot = table_snapshot(&state).await;
    assert!(!snapshot
        .iter()
        .any(|item| item["SK"].as_s().unwrap().starts_with("TERM#")));

    // Finished: a second run reads its checkpoints and changes nothing.
    assert_eq!(reindex(), report);
    assert_eq!(table_snapshot(&state).await, snapshot);

    // The checkpoints keep their segments: a run without --segments takes them, and one with
    // another number is refused (it would scan everything again beside them).
    let again = migrate_with_bucket(&state, &["--reindex-search"]);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&again).unwrap(),
        report
    );
    let other = run_with_bucket(&state, &["--reindex-search", "--segments", "8"]);
    assert_eq!(other.status.code(), Some(2), "{other:?}");
    assert!(
        String::from_utf8_lossy(&other.stderr).contains("--segments 4"),
        "{other:?}"
    );
    assert_eq!(table_snapshot(&state).await, snapshot);
}
