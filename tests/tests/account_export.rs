//! Account exports: every conversation of the caller, to files, in bounded runs that the
//! table's stream chains (fed here by the local poller, as Lambda feeds `run-account-exports`
//! in AWS); a run that stopped half way is done again from the last checkpoint; an export that
//! keeps failing says so; only ever the caller's own.

use std::collections::BTreeSet;
use std::time::Duration;

use assistant::State;
use chrono::Utc;
use reqwest::StatusCode;
use serde_json::{json, Value};
use shared::account_export::{AccountExports, ExportRequest, RunOutcome, MAX_FAILED_RUNS};
use shared::export::{ConversationExport, Exports};
use shared::model::UserId;
use shared::store::{ContentObjects, ExportStatus, Store};
use tests::{new_user, Client, Fault, FaultyWrites, LocalApi};

use local::{StreamConsumer, StreamPoller};

/// The local API whose exports write `per_run` conversations a run, the exporter fed from
/// the stream.
async fn api_with_exporter(per_run: &str) -> (LocalApi, StreamPoller) {
    tests::api_feeding(
        StreamConsumer::RunAccountExports,
        &[
            ("EXPORT_CONVERSATIONS_PER_RUN", per_run),
            ("EXPORT_RETRY_BASE_MS", "10"),
        ],
    )
    .await
}

/// Feeds the stream to the exporter until the export is no longer running; returns it and
/// how many polls that took.
async fn until_finished(poller: &mut StreamPoller, client: &Client, id: &str) -> (Value, usize) {
    for polls in 1..=40 {
        poller.poll_once().await.expect("the stream is readable");
        let reply = client.get(&format!("/exports/{id}")).await;
        assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
        if reply.body["status"] != "running" {
            return (reply.body, polls);
        }
    }
    panic!("the export did not finish");
}

async fn download(url: &str) -> String {
    let response = reqwest::get(url).await.expect("the link answers");
    assert_eq!(response.status(), StatusCode::OK);
    response.text().await.unwrap()
}

fn conversations_in(jsonl: &str) -> Vec<ConversationExport> {
    jsonl
        .lines()
        .map(|line| serde_json::from_str(line).expect("each line is a conversation's export"))
        .collect()
}

/// The user's conversation ids, archived ones too, from the listing.
async fn listed_ids(client: &Client) -> BTreeSet<String> {
    let listed = client
        .get("/conversations?includeArchived=true&limit=100")
        .await;
    listed.body["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn an_account_export_holds_every_conversation_once_written_in_bounded_runs() {
    let (api, mut poller) = api_with_exporter("3").await;
    let user = new_user();
    let alice = api.as_user(&user);
    let mut titles = Vec::new();
    for n in 1..=9 {
        let title = format!("Plan number {n}");
        let id = alice.create_conversation(Some(&title)).await;
        alice.say(&id, &format!("First note of plan {n}")).await;
        alice.say(&id, &format!("Second note of plan {n}")).await;
        match n {
            4 => {
                alice
                    .put(
                        &format!("/conversations/{id}/archive"),
                        json!({"archived": true}),
                    )
                    .await;
                titles.push(title);
            }
            7 => {
                alice.delete(&format!("/conversations/{id}")).await;
            }
            _ => titles.push(title),
        }
    }
    let bob = api.as_user(&new_user());
    let bobs = bob.create_conversation(Some("Bob's surprise party")).await;
    bob.say(&bobs, "Do not tell Alice").await;

    let request = json!({"formats": ["markdown", "json"], "clientExportId": "settings-1"});
    let started = alice.post("/exports", request.clone()).await;
    assert_eq!(started.status, StatusCode::ACCEPTED, "{:?}", started.body);
    assert_eq!(started.body["status"], "running");
    assert_eq!(started.body["formats"], json!(["json", "markdown"]));
    let id = started.body["id"].as_str().unwrap().to_owned();
    // The app retries the start: the same export, not a second one.
    let retried = alice.post("/exports", request).await;
    assert_eq!(retried.status, StatusCode::ACCEPTED);
    assert_eq!(retried.body["id"], id.as_str());
    // One export at a time: a new start while it runs answers the running one.
    let another = alice.post("/exports", json!({})).await;
    assert_eq!(another.status, StatusCode::ACCEPTED);
    assert_eq!(another.body["id"], id.as_str());

    let (done, polls) = until_finished(&mut poller, &alice, &id).await;
    assert_eq!(done["status"], "done", "{done:?}");
    assert!(polls >= 3, "8 conversations, 3 a run: {polls} polls");
    assert_eq!(done["conversationsExported"], 8);
    assert_eq!(done["messagesExported"], 16);
    let files = done["files"].as_array().unwrap();
    assert_eq!(files.len(), 2);
    assert_eq!(files[0]["format"], "json");
    assert_eq!(files[1]["format"], "markdown");

    let jsonl = download(files[0]["downloadUrl"].as_str().unwrap()).await;
    assert_eq!(jsonl.len() as u64, files[0]["bytes"].as_u64().unwrap());
    let exported = conversations_in(&jsonl);
    let ids: Vec<String> = exported
        .iter()
        .map(|c| c.conversation.id.to_string())
        .collect();
    let unique: BTreeSet<String> = ids.iter().cloned().collect();
    assert_eq!(ids.len(), unique.len(), "each conversation once");
    assert_eq!(
        unique,
        listed_ids(&alice).await,
        "every conversation, archived too"
    );
    for conversation in &exported {
        assert_eq!(conversation.messages.len(), 2);
        assert!(conversation.messages[0]
            .content
            .starts_with("First note of plan"));
    }
    assert!(exported.iter().any(|c| c.conversation.is_archived));
    assert!(!jsonl.contains("Bob's surprise party") && !jsonl.contains("Do not tell Alice"));

    let markdown = download(files[1]["downloadUrl"].as_str().unwrap()).await;
    for title in &titles {
        assert!(markdown.contains(&format!("# {title}\n")), "{title}");
    }
    assert!(
        !markdown.contains("Plan number 7"),
        "deleted before the export"
    );
    assert!(!markdown.contains("Bob's"));

    // Nobody else learns of it: the same answer as for an export that does not exist.
    let someone_elses = bob.get(&format!("/exports/{id}")).await;
    let missing = bob.get(&format!("/exports/{}", uuid::Uuid::now_v7())).await;
    assert_eq!(someone_elses.status, StatusCode::NOT_FOUND);
    assert_eq!(someone_elses.body, missing.body);
    assert_eq!(someone_elses.error_code(), "not_found");
    // Bob's own export holds only his conversation.
    let his = bob.post("/exports", json!({})).await;
    let his_id = his.body["id"].as_str().unwrap().to_owned();
    assert_ne!(his_id, id);
    let (his_done, _) = until_finished(&mut poller, &bob, &his_id).await;
    assert_eq!(his_done["conversationsExported"], 1);
    let his_file = download(his_done["files"][0]["downloadUrl"].as_str().unwrap()).await;
    assert_eq!(conversations_in(&his_file).len(), 1);
    assert!(!his_file.contains("Plan number"));
}

#[tokio::test]
async fn bad_export_requests_are_refused_and_start_nothing() {
    let (api, mut poller) = api_with_exporter("500").await;
    let user = new_user();
    let alice = api.as_user(&user);
    for bad in [
        json!({"formats": ["csv"]}),
        json!({"formats": []}),
        json!({"formats": ["json", "json"]}),
        json!({"formats": "json"}),
        json!({"clientExportId": ""}),
        json!({"clientExportId": "x".repeat(129)}),
        json!({"format": "json"}),
    ] {
        let reply = alice.post("/exports", bad.clone()).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(reply.error_code(), "invalid_request", "{bad}");
    }
    let not_an_id = alice.get("/exports/not-an-id").await;
    assert_eq!(not_an_id.status, StatusCode::BAD_REQUEST);
    assert_eq!(not_an_id.error_code(), "invalid_request");
    let anonymous = api
        .anonymous()
        .get("/exports/0193a4f2-7c1e-7b3a-9f00-5e2d1c4b6a79")
        .await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    // Nothing was started: the user's export partition is empty.
    poller.poll_once().await.unwrap();
    let partition = shared::keys::export_partition(&UserId::parse(&user).unwrap());
    let found = aws_sdk_dynamodb::Client::new(&aws_config::load_from_env().await)
        .query()
        .table_name(&api.state.config.table_name)
        .key_condition_expression("PK = :pk")
        .expression_attribute_values(":pk", aws_sdk_dynamodb::types::AttributeValue::S(partition))
        .consistent_read(true)
        .send()
        .await
        .unwrap();
    assert_eq!(found.count, 0);
}

/// A large export's runs: parts of 8 MiB, and the bytes short of a part carried from run to
/// run in their own objects.
async fn long_conversations(state: &State, user: &str) {
    let owner = UserId::parse(user).unwrap();
    for n in 0..3 {
        let conversation = state
            .conversations
            .create(
                &owner,
                Some(shared::model::Title::parse(&format!("Long {n}")).unwrap()),
                Default::default(),
                Utc::now(),
            )
            .await
            .unwrap();
        for m in 0..15 {
            let content = format!("{n}/{m} {}", "journal ".repeat(38_000)); // ~300 KB, in S3
            let message = shared::model::NewMessage::parse(
                shared::model::Role::User,
                content,
                vec![],
                Default::default(),
                None,
            )
            .unwrap();
            state
                .conversations
                .add_message(&owner, &conversation.id, message, Utc::now())
                .await
                .unwrap();
        }
    }
}

async fn jsonl_of(
    state: &State,
    exports: &AccountExports,
    user: &UserId,
    id: &uuid::Uuid,
) -> String {
    let job = exports.status(user, id).await.unwrap();
    assert_eq!(job.status, ExportStatus::Done);
    let bucket = state.attachments.as_ref().unwrap();
    let downloads = exports.downloads(bucket, &job, Utc::now()).await.unwrap();
    download(&downloads[0].download_url).await
}

/// The lines with their export time left out (each export has its own).
fn comparable(jsonl: &str) -> Vec<ConversationExport> {
    conversations_in(jsonl)
        .into_iter()
        .map(|mut c| {
            c.exported_at = chrono::DateTime::UNIX_EPOCH;
            c
        })
        .collect()
}

#[tokio::test]
async fn a_run_that_stopped_half_way_is_done_again_from_the_last_checkpoint() {
    let (api, _poller) = api_with_exporter("1").await;
    let state = &api.state;
    let user = new_user();
    let owner = UserId::parse(&user).unwrap();
    long_conversations(state, &user).await;
    let bucket = state.attachments.as_ref().unwrap();
    let exports = &state.account_exports;
    let start = |client: &str| ExportRequest {
        formats: vec![shared::export::ExportFormat::Json],
        client_export_id: Some(client.to_owned()),
    };
    let budget = Duration::from_secs(600);

    // One conversation a run: the first run keeps its 4.5 MB as a carry.
    let (job, _) = exports
        .start(&owner, start("interrupted"), Utc::now())
        .await
        .unwrap();
    let id = job.export_id;
    let first = exports
        .run(bucket, &owner, &id, 0, budget, Utc::now())
        .await
        .unwrap();
    assert_eq!(first, RunOutcome::Continued { conversations: 1 });
    let checkpoint = exports.status(&owner, &id).await.unwrap();
    assert_eq!(checkpoint.uploads[0].parts.len(), 0);
    assert!(checkpoint.uploads[0].carry.is_some());

    // The second run writes its first 8 MiB part and its own carry, then stops before it can
    // record them (the function was stopped: its checkpoint write never reaches the table).
    let crashing_store = Store::new(
        // Its first write (the attempt's count) goes through; the checkpoint does not.
        FaultyWrites::client(2, Fault::BeforeSending).await,
        &state.config.table_name,
    )
    .with_content_objects(ContentObjects::new(
        tests::s3().await,
        state.config.attachments_bucket.as_deref().unwrap(),
    ));
    let crashing = AccountExports::new(crashing_store.clone(), Exports::new(crashing_store), 1);
    let stopped = crashing
        .run(bucket, &owner, &id, 1, budget, Utc::now())
        .await;
    assert!(stopped.is_err());
    let after_crash = exports.status(&owner, &id).await.unwrap();
    assert_eq!(after_crash.failures, 1, "the attempt was counted");
    assert_eq!(
        (after_crash.chunk, &after_crash.cursor, &after_crash.uploads),
        (checkpoint.chunk, &checkpoint.cursor, &checkpoint.uploads),
        "no progress recorded"
    );

    // Done again from the checkpoint: the same part number is written again.
    let again = exports
        .run(bucket, &owner, &id, 1, budget, Utc::now())
        .await
        .unwrap();
    assert_eq!(again, RunOutcome::Continued { conversations: 2 });
    let second = exports.status(&owner, &id).await.unwrap();
    assert_eq!(second.uploads[0].parts.len(), 1, "one 8 MiB part");
    assert_eq!(second.failures, 0, "a recorded run clears the count");
    // A record of an earlier run delivered again changes nothing.
    let stale = exports
        .run(bucket, &owner, &id, 1, budget, Utc::now())
        .await
        .unwrap();
    assert_eq!(stale, RunOutcome::Nothing);
    let last = exports
        .run(bucket, &owner, &id, 2, budget, Utc::now())
        .await
        .unwrap();
    assert_eq!(last, RunOutcome::Finished { conversations: 3 });
    let interrupted = jsonl_of(state, exports, &owner, &id).await;
    assert!(
        interrupted.len() > 12 * 1024 * 1024,
        "{} bytes",
        interrupted.len()
    );

    // The same as an export written in one run.
    let whole = AccountExports::new(
        state.conversations.store().clone(),
        state.exports.clone(),
        100,
    );
    let (job, _) = whole
        .start(&owner, start("whole"), Utc::now())
        .await
        .unwrap();
    let done = whole
        .run(bucket, &owner, &job.export_id, 0, budget, Utc::now())
        .await
        .unwrap();
    assert_eq!(done, RunOutcome::Finished { conversations: 3 });
    let uninterrupted = jsonl_of(state, &whole, &owner, &job.export_id).await;
    assert_eq!(comparable(&interrupted), comparable(&uninterrupted));
    let lines = comparable(&interrupted);
    assert_eq!(lines.len(), 3);
    assert!(lines.iter().all(|c| c.messages.len() == 15));
}

#[tokio::test]
async fn an_export_that_keeps_failing_ends_failed_with_its_reason() {
    let (api, mut poller) = api_with_exporter("1").await;
    let user = new_user();
    let alice = api.as_user(&user);
    for n in 0..2 {
        let id = alice.create_conversation(Some(&format!("Note {n}"))).await;
        alice.say(&id, "something to export").await;
    }
    let started = alice.post("/exports", json!({})).await;
    let id = started.body["id"].as_str().unwrap().to_owned();
    poller.poll_once().await.unwrap();
    // The file's upload is gone (given up behind the export's back): every run now fails.
    let owner = UserId::parse(&user).unwrap();
    let job = api
        .state
        .account_exports
        .status(&owner, &id.parse().unwrap())
        .await
        .unwrap();
    assert_eq!(job.chunk, 1);
    let upload = &job.uploads[0];
    tests::s3()
        .await
        .abort_multipart_upload()
        .bucket(api.state.config.attachments_bucket.as_deref().unwrap())
        .key(&upload.key)
        .upload_id(&upload.upload_id)
        .send()
        .await
        .unwrap();

    let (failed, polls) = until_finished(&mut poller, &alice, &id).await;
    assert_eq!(failed["status"], "failed", "{failed:?}");
    assert!(
        polls >= MAX_FAILED_RUNS as usize,
        "each failed run was tried again: {polls}"
    );
    assert!(failed["error"]
        .as_str()
        .unwrap()
        .contains("start a new one"));
    assert_eq!(failed["files"], json!([]));
    // A new export works.
    let retry = alice.post("/exports", json!({})).await;
    let retry_id = retry.body["id"].as_str().unwrap().to_owned();
    let (done, _) = until_finished(&mut poller, &alice, &retry_id).await;
    assert_eq!(done["status"], "done");
    assert_eq!(done["conversationsExported"], 2);
}
