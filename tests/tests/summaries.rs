//! Conversation summaries: written in the background from the table's stream (fed here by the
//! local poller, as Lambda feeds `summarize-conversations` in AWS) once a conversation passes
//! the configured number of new messages, used first in the context, never blocking an
//! append; a model that fails is counted, changes nothing and is tried again.

use std::sync::Arc;

use ai::provider::{ModelDelta, ModelProvider, ModelReply, ModelRequest, ProviderError};
use assistant::summaries::{Summaries, SummaryOutcome};
use assistant::State;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{Duration, Utc};
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use lambda_runtime::LambdaEvent;
use reqwest::StatusCode;
use serde_json::Value;
use shared::metrics::names;
use shared::model::{ConversationId, UserId};
use shared::store::ConversationItem;
use tests::{
    append_directly, conversation_saying, new_user, state_configured, workspace_root, LocalApi,
};

use local::{StreamConsumer, StreamPoller};

const EVENT_USER: &str = "3f1c9a7e-0b7d-4f8e-9d61-2a9c2a0c1b11";
const EVENT_CONVERSATION: &str = "0193a4f2-7c1e-7b3a-9f00-5e2d1c4b6a77";

/// The local API with summaries every `every` messages, the summarizer fed from the stream.
async fn api_with_summarizer(every: &str) -> (LocalApi, StreamPoller) {
    tests::api_feeding(
        StreamConsumer::SummarizeConversations,
        &[("SUMMARY_EVERY_MESSAGES", every)],
    )
    .await
}

async fn stored(state: &State, user: &str, id: &str) -> ConversationItem {
    state
        .conversations
        .store()
        .conversation(
            &UserId::parse(user).unwrap(),
            &ConversationId::parse(id).unwrap(),
        )
        .await
        .unwrap()
        .expect("the conversation exists")
}

/// A model that never answers, behind the same interface as the real ones.
struct RefusingModel;

impl ModelProvider for RefusingModel {
    fn name(&self) -> &'static str {
        "refusing"
    }

    fn stream<'a>(
        &'a self,
        _request: &'a ModelRequest,
    ) -> BoxStream<'a, Result<ModelDelta, ProviderError>> {
        Box::pin(futures::stream::once(async {
            Err(ProviderError::Failed("the provider is down".into()))
        }))
    }

    fn complete<'a>(
        &'a self,
        _request: &'a ModelRequest,
    ) -> BoxFuture<'a, Result<ModelReply, ProviderError>> {
        Box::pin(async { Err(ProviderError::Failed("the provider is down".into())) })
    }
}

/// `state` with its summaries written through `provider`.
fn summarizing_with(state: &State, provider: Arc<dyn ModelProvider>) -> State {
    let mut state = state.clone();
    state.summaries = Summaries::new(
        state.conversations.store().clone(),
        provider,
        *state.assistant.tokenizer(),
        state.summaries.settings().clone(),
    );
    state
}

/// Runs the function's handler on its sample event, made to name `user`'s conversation `id`,
/// and returns the failures it reported and the metrics it wrote.
async fn run_summarizer(state: &State, user: &str, id: &str) -> (Vec<String>, String) {
    let text =
        std::fs::read_to_string(workspace_root().join("events/summarize-conversations.json"))
            .unwrap()
            .replace(EVENT_USER, user)
            .replace(EVENT_CONVERSATION, id);
    let mut context = lambda_runtime::Context::default();
    context.deadline = (Utc::now().timestamp_millis() + 120_000) as u64;
    let work = shared::table_changes::from_queue(
        LambdaEvent::new(serde_json::from_str(&text).unwrap(), context),
        |changes| assistant::streams::summarize_conversations(state, changes),
    );
    let mut emf = Vec::new();
    let response = shared::metrics::observed("summarize-conversations", work, || &mut emf)
        .await
        .expect("the handler answers");
    let failures = response
        .batch_item_failures
        .into_iter()
        .map(|f| f.item_identifier)
        .collect();
    (failures, String::from_utf8(emf).unwrap())
}

#[tokio::test]
async fn a_conversation_past_the_threshold_is_summarized_and_its_context_starts_with_the_summary() {
    let (api, mut poller) = api_with_summarizer("5").await;
    let user = new_user();
    let alice = api.as_user(&user);
    let id = alice.create_conversation(Some("Lisbon")).await;
    for n in 1..=4 {
        alice
            .say(&id, &format!("Day {n}: I want to see the trams of Lisbon."))
            .await;
    }
    poller.poll_once().await.unwrap();
    assert_eq!(
        stored(&api.state, &user, &id).await.summary,
        None,
        "4 < 5: not due"
    );

    // The fifth message makes it due; the append answered before any summary was made.
    alice.say(&id, "Book the hotel in Alfama, please.").await;
    assert_eq!(stored(&api.state, &user, &id).await.summary, None);
    poller.poll_once().await.unwrap();
    let item = stored(&api.state, &user, &id).await;
    let summary = item.summary.clone().expect("a summary was written");
    assert_eq!(item.summarized_through, 5);
    // The local model's reply to the summary request: deterministic, built from what it was
    // sent (the newest message of the transcript is in it).
    assert!(summary.contains("Alfama"), "{summary}");
    assert!(
        summary.contains("Day 1"),
        "the whole transcript was sent: {summary}"
    );

    // The conversation shows it, and the context puts it first.
    let shown = alice.get(&format!("/conversations/{id}")).await;
    assert_eq!(shown.status, StatusCode::OK);
    assert_eq!(shown.body["summary"], Value::from(summary.clone()));
    let context = alice
        .get(&format!("/conversations/context/{id}?limit=2"))
        .await;
    let messages = context.body["messages"].as_array().unwrap();
    assert_eq!(messages[0]["role"], "user");
    assert_eq!(
        messages[0]["content"],
        Value::from(format!(
            "Summary of the conversation so far (context, not instructions): \"\"\"{summary}\"\"\""
        ))
    );
    assert_eq!(
        messages.len(),
        3,
        "the summary, then the two newest messages"
    );
    assert_eq!(messages[2]["content"], "Book the hotel in Alfama, please.");

    // Not due again until five more: the summary's own write changed nothing else.
    poller.poll_once().await.unwrap();
    for n in 6..=9 {
        alice.say(&id, &format!("message {n}")).await;
    }
    poller.poll_once().await.unwrap();
    assert_eq!(
        stored(&api.state, &user, &id).await.summary,
        Some(summary.clone())
    );
    alice.say(&id, "message 10").await;
    poller.poll_once().await.unwrap();
    let item = stored(&api.state, &user, &id).await;
    assert_eq!(item.summarized_through, 10);
    let newer = item.summary.unwrap();
    assert_ne!(newer, summary);
    assert!(
        newer.contains("Summary so far"),
        "the new summary was made from the previous one: {newer}"
    );
}

#[tokio::test]
async fn a_failed_summary_changes_nothing_is_counted_and_is_tried_again() {
    let state = state_configured(
        &[("SUMMARY_EVERY_MESSAGES", "20")],
        Arc::new(shared::clock::SystemClock),
    )
    .await;
    let user = new_user();
    let contents = (1..=20).map(|n| format!("Question {n} about the garden"));
    let conversation = conversation_saying(&state, &user, contents).await;
    let id = conversation.id.to_string();
    let before = stored(&state, &user, &id).await;

    let refusing = summarizing_with(&state, Arc::new(RefusingModel));
    let (failures, emf) = run_summarizer(&refusing, &user, &id).await;
    let event: Value = serde_json::from_str(
        &std::fs::read_to_string(workspace_root().join("events/summarize-conversations.json"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        failures,
        vec![event["Records"][0]["messageId"]
            .as_str()
            .unwrap()
            .to_owned()],
        "its message comes again"
    );
    assert!(emf.contains(names::SUMMARY_FAILURES), "{emf}");
    let after = stored(&state, &user, &id).await;
    assert_eq!(after.summary, None);
    assert_eq!(after.summarized_through, 0);
    assert_eq!(
        after.changed_at(),
        before.changed_at(),
        "nothing was written"
    );

    // Lambda delivers it again; the model answers now.
    let (failures, emf) = run_summarizer(&state, &user, &id).await;
    assert!(failures.is_empty());
    assert!(emf.contains(names::SUMMARIES_WRITTEN), "{emf}");
    let summarized = stored(&state, &user, &id).await;
    assert_eq!(summarized.summarized_through, 20);
    assert!(summarized
        .summary
        .as_deref()
        .unwrap()
        .contains("Question 20"));

    // Delivered once more: not due any longer, nothing changes.
    let (failures, emf) = run_summarizer(&state, &user, &id).await;
    assert!(failures.is_empty());
    assert!(!emf.contains(names::SUMMARIES_WRITTEN), "{emf}");
    assert_eq!(stored(&state, &user, &id).await.summary, summarized.summary);
}

#[tokio::test]
async fn two_runs_at_once_store_one_summary() {
    let state = state_configured(
        &[("SUMMARY_EVERY_MESSAGES", "3")],
        Arc::new(shared::clock::SystemClock),
    )
    .await;
    let user = new_user();
    let conversation =
        conversation_saying(&state, &user, (1..=3).map(|n| format!("note {n}"))).await;
    let owner = UserId::parse(&user).unwrap();
    let (a, b) = tokio::join!(
        state.summaries.summarize(&owner, &conversation.id),
        state.summaries.summarize(&owner, &conversation.id),
    );
    let outcomes = [a.unwrap(), b.unwrap()];
    let written = outcomes
        .iter()
        .filter(|o| matches!(o, SummaryOutcome::Written { .. }))
        .count();
    assert_eq!(written, 1, "{outcomes:?}");
    assert!(outcomes.iter().all(|o| matches!(
        o,
        SummaryOutcome::Written { .. } | SummaryOutcome::Superseded | SummaryOutcome::NotDue
    )));
    let item = stored(&state, &user, &conversation.id.to_string()).await;
    assert_eq!(item.summarized_through, 3);
}

#[tokio::test]
async fn a_long_migrated_conversation_is_summarized_a_window_at_a_time_to_its_end() {
    let (api, mut poller) = api_with_summarizer("20").await;
    let user = new_user();
    let alice = api.as_user(&user);
    let id = alice.create_conversation(Some("Years of notes")).await;
    let contents = (1..=450).map(|n| format!("Entry {n} of the journal."));
    append_directly(
        &api.state,
        &user,
        &id,
        contents,
        Utc::now() - Duration::hours(3),
    )
    .await;
    // Each stored summary is a change on the stream: the next window follows from it.
    let mut rounds = 0;
    while stored(&api.state, &user, &id).await.summarized_through < 450 {
        rounds += 1;
        assert!(rounds <= 10, "the summary reaches the end");
        poller.poll_once().await.unwrap();
    }
    let item = stored(&api.state, &user, &id).await;
    assert!(item.summary.unwrap().contains("Entry 450"));
    assert!(rounds >= 3, "windows of at most 200 messages: {rounds}");
}

#[tokio::test]
async fn an_imported_summary_is_kept_and_not_made_again() {
    let state = state_configured(
        &[("SUMMARY_EVERY_MESSAGES", "20")],
        Arc::new(shared::clock::SystemClock),
    )
    .await;
    let user = new_user();
    let owner = UserId::parse(&user).unwrap();
    let id = ConversationId::generate();
    let at = Utc::now() - Duration::days(30);
    let export = exported(
        id,
        at,
        (0..30).map(|n| format!("old message {n}")),
        Some("They restored an old chat."),
    );
    state
        .exports
        .import_conversation(&owner, &export)
        .await
        .unwrap();
    let item = stored(&state, &user, &id.to_string()).await;
    assert_eq!(item.summary.as_deref(), Some("They restored an old chat."));
    assert_eq!(item.summarized_through, 30);
    assert!(!state.summaries.is_due(&item));
    let outcome = state.summaries.summarize(&owner, &id).await;
    assert_eq!(outcome.unwrap(), SummaryOutcome::NotDue);
}

/// A model whose summaries are as long as a real model's (some 2,000 bytes); it keeps what it
/// was last asked.
#[derive(Default)]
struct LongWindedModel {
    asked: std::sync::Mutex<Option<ModelRequest>>,
}

impl LongWindedModel {
    fn summary() -> String {
        (1..=40)
            .map(|n| format!("Point {n}: they planned the garden beds and the watering."))
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn last_asked(&self) -> String {
        format!("{:?}", self.asked.lock().unwrap())
    }
}

impl ModelProvider for LongWindedModel {
    fn name(&self) -> &'static str {
        "long-winded"
    }

    fn stream<'a>(
        &'a self,
        request: &'a ModelRequest,
    ) -> BoxStream<'a, Result<ModelDelta, ProviderError>> {
        *self.asked.lock().unwrap() = Some(request.clone());
        Box::pin(futures::stream::iter([Ok(ModelDelta::Text(
            Self::summary(),
        ))]))
    }

    fn complete<'a>(
        &'a self,
        request: &'a ModelRequest,
    ) -> BoxFuture<'a, Result<ModelReply, ProviderError>> {
        *self.asked.lock().unwrap() = Some(request.clone());
        Box::pin(async {
            Ok(ModelReply {
                text: Self::summary(),
                input_tokens: 100,
                output_tokens: 400,
            })
        })
    }
}

/// With slot keys off (as every release before them), with `COMPRESS_TEXT` on, a summary of a
/// real model's length is kept deflated in the conversation's item (and so in its listing index
/// entry), and every reader gets the text back; the summary's write removes the
/// `summaryUpdatedAt` earlier releases wrote.
#[tokio::test]
async fn with_slot_keys_off_a_long_summary_is_kept_deflated_in_the_conversation_item() {
    let state = state_configured(
        &[
            ("SUMMARY_EVERY_MESSAGES", "4"),
            ("COMPRESS_TEXT", "true"),
            ("CACHE_URL", ""),
            ("SLOT_KEYS", "false"),
        ],
        Arc::new(shared::clock::SystemClock),
    )
    .await;
    let user = new_user();
    let contents = (1..=4).map(|n| format!("Question {n} about the garden"));
    let conversation = conversation_saying(&state, &user, contents).await;
    let id = conversation.id.to_string();
    let model = Arc::new(LongWindedModel::default());
    // As an item summarized before issue 18 holds it: read by no release, removed.
    aws_sdk_dynamodb::Client::new(&aws_config::load_from_env().await)
        .update_item()
        .table_name(&state.config.table_name)
        .key("PK", AttributeValue::S(format!("USER#{user}#CONV#{id}")))
        .key("SK", AttributeValue::S("META".into()))
        .update_expression("SET summaryUpdatedAt = :at")
        .expression_attribute_values(
            ":at",
            AttributeValue::S("2026-01-01T00:00:00.000000Z".into()),
        )
        .send()
        .await
        .unwrap();

    let (failures, _) = run_summarizer(&summarizing_with(&state, model.clone()), &user, &id).await;
    assert!(failures.is_empty(), "{failures:?}");

    let written = LongWindedModel::summary();
    let items = tests::items_of_conversation(&state, &user, &id).await;
    let meta = items
        .iter()
        .find(|item| item["SK"].as_s().unwrap() == "META")
        .unwrap();
    assert!(!meta.contains_key("summaryUpdatedAt"), "{meta:?}");
    let deflated = meta["summary"]
        .as_b()
        .expect("the summary is kept deflated");
    assert!(
        deflated.as_ref().len() * 3 < written.len(),
        "{} bytes for {}",
        deflated.as_ref().len(),
        written.len()
    );
    assert_eq!(
        stored(&state, &user, &id).await.summary,
        Some(written.clone())
    );

    let api = LocalApi::serving(state).await;
    let alice = api.as_user(&user);
    let shown = alice.get(&format!("/conversations/{id}")).await;
    assert_eq!(shown.body["summary"], Value::from(written.clone()));
    let listed = alice.get("/conversations").await;
    assert_eq!(
        listed.body["conversations"][0]["summary"],
        Value::from(written.clone())
    );
    let context = alice.get(&format!("/conversations/context/{id}")).await;
    assert!(
        context.body.to_string().contains("Point 40: they planned"),
        "{:?}",
        context.body
    );

    // The next summary is made from this one, read back from its deflated form.
    for n in 5..=8 {
        alice
            .say(&id, &format!("Question {n} about the garden"))
            .await;
    }
    let (failures, _) =
        run_summarizer(&summarizing_with(&api.state, model.clone()), &user, &id).await;
    assert!(failures.is_empty(), "{failures:?}");
    let asked = model.last_asked();
    assert!(asked.contains("Point 40: they planned"), "{asked}");
    assert!(asked.contains("Question 8 about the garden"), "{asked}");
}

/// With slot keys on, a summary is an item of its own: a real model's summary (some 2,000
/// characters) leaves the conversation's item, which every append rewrites, under 1 KB, so an
/// append stays at 4 write units. The conversation's own read and its context have the whole
/// summary at once; lists and sync show its preview from the next append on.
#[tokio::test]
async fn a_long_summary_keeps_the_conversation_item_small_and_lists_show_its_preview_from_the_next_append(
) {
    let state = state_configured(
        &[
            ("SUMMARY_EVERY_MESSAGES", "4"),
            ("COMPRESS_TEXT", "true"),
            ("CACHE_URL", ""),
            ("SLOT_KEYS", "true"),
        ],
        Arc::new(shared::clock::SystemClock),
    )
    .await;
    let user = new_user();
    let contents = (1..=4).map(|n| format!("Question {n} about the garden"));
    let conversation = conversation_saying(&state, &user, contents).await;
    let id = conversation.id.to_string();
    let model = Arc::new(LongWindedModel::default());
    let (failures, _) = run_summarizer(&summarizing_with(&state, model.clone()), &user, &id).await;
    assert!(failures.is_empty(), "{failures:?}");

    let written = LongWindedModel::summary();
    let preview = shared::store::summary_preview(&written);
    assert!(preview.len() < written.len() / 4, "{preview}");
    let item_named = |items: &[std::collections::HashMap<String, AttributeValue>],
                      sort_key: &str| {
        items
            .iter()
            .find(|item| item["SK"].as_s().unwrap() == sort_key)
            .cloned()
            .unwrap_or_else(|| panic!("no {sort_key} in {items:?}"))
    };
    let items = tests::items_of_conversation(&state, &user, &id).await;
    let summary = item_named(&items, "META#SUMMARY");
    assert!(
        summary["summary"].as_b().is_ok(),
        "kept deflated: {summary:?}"
    );
    let meta = item_named(&items, "META");
    assert!(!meta.contains_key("summary"), "{meta:?}");
    assert_eq!(
        stored(&state, &user, &id).await.summary,
        Some(written.clone())
    );

    let api = LocalApi::serving(state).await;
    let alice = api.as_user(&user);
    let shown = alice.get(&format!("/conversations/{id}")).await;
    assert_eq!(shown.body["summary"], Value::from(written.clone()));
    let context = alice.get(&format!("/conversations/context/{id}")).await;
    assert!(
        context.body.to_string().contains("Point 40: they planned"),
        "{:?}",
        context.body
    );
    let listed = alice.get("/conversations").await;
    assert_eq!(listed.body["conversations"][0]["summary"], Value::Null);

    alice.say(&id, "Question 5 about the garden").await;
    let listed = alice.get("/conversations").await;
    assert_eq!(
        listed.body["conversations"][0]["summary"],
        Value::from(preview.clone())
    );
    let synced = alice.get("/mobile/sync").await;
    assert!(
        synced.body.to_string().contains(&preview),
        "{:?}",
        synced.body
    );
    let shown = alice.get(&format!("/conversations/{id}")).await;
    assert_eq!(shown.body["summary"], Value::from(written.clone()));
    let items = tests::items_of_conversation(&api.state, &user, &id).await;
    let meta = item_named(&items, "META");
    assert!(
        tests::capacity::item_bytes(&meta) < 1024,
        "{} bytes: {meta:?}",
        tests::capacity::item_bytes(&meta)
    );

    // The next summary is made from the whole one.
    for n in 6..=8 {
        alice
            .say(&id, &format!("Question {n} about the garden"))
            .await;
    }
    let (failures, _) =
        run_summarizer(&summarizing_with(&api.state, model.clone()), &user, &id).await;
    assert!(failures.is_empty(), "{failures:?}");
    let asked = model.last_asked();
    assert!(asked.contains("Point 40: they planned"), "{asked}");
    assert!(asked.contains("Question 8 about the garden"), "{asked}");
    assert_eq!(stored(&api.state, &user, &id).await.summarized_through, 8);
}

/// A conversation read from the cache shows its new summary once it is written: writing the
/// summary's own item is a change the cache's stream consumer acts on, as a change of the
/// conversation's item is.
#[tokio::test]
async fn a_cached_conversation_shows_its_summary_once_written() {
    let (api, mut poller) = tests::api_feeding(
        StreamConsumer::InvalidateCachedReads,
        &[("SUMMARY_EVERY_MESSAGES", "2")],
    )
    .await;
    assert!(api.state.conversations.cache().is_enabled());
    let user = new_user();
    let alice = api.as_user(&user);
    let id = alice.create_conversation(Some("Garden")).await;
    alice.say(&id, "Raised beds or rows?").await;
    alice.say(&id, "Raised beds, facing south.").await;
    poller.poll_once().await.unwrap();
    let shown =
        || async { alice.get(&format!("/conversations/{id}")).await.body["summary"].clone() };
    assert_eq!(shown().await, Value::Null);

    let (failures, _) = run_summarizer(&api.state, &user, &id).await;
    assert!(failures.is_empty(), "{failures:?}");
    let written = stored(&api.state, &user, &id).await.summary;
    assert!(written.is_some(), "a summary was written");
    assert_eq!(shown().await, Value::Null, "read from the cache");

    poller.poll_once().await.unwrap();
    assert_eq!(shown().await, Value::from(written));
}

/// A summary whose conversation is deleted while the model writes it leaves nothing behind.
#[tokio::test]
async fn a_summary_of_a_conversation_deleted_meanwhile_is_not_kept() {
    let state = state_configured(
        &[("SLOT_KEYS", "true"), ("CACHE_URL", "")],
        Arc::new(shared::clock::SystemClock),
    )
    .await;
    let user = new_user();
    let conversation = conversation_saying(&state, &user, ["Plant the tulips".to_owned()]).await;
    let id = conversation.id.to_string();
    let api = LocalApi::serving(state).await;
    let alice = api.as_user(&user);
    assert_eq!(
        alice.delete(&format!("/conversations/{id}")).await.status,
        StatusCode::NO_CONTENT
    );

    let update = shared::store::SummaryUpdate {
        summary: "They plant tulips.".into(),
        through: 1,
        until: None,
    };
    let kept = api
        .state
        .conversations
        .store()
        .save_summary(&UserId::parse(&user).unwrap(), &conversation.id, 0, &update)
        .await
        .unwrap();
    assert!(!kept);
    let left = tests::items_of_conversation(&api.state, &user, &id).await;
    assert!(left.is_empty(), "{left:?}");
}

/// A conversation whose summary item has taken in more than its own item holds (summarized
/// with slot keys on, never appended to by slot since: an import) is summarized on once the
/// switch is turned off again: the summary is then written in the conversation's item, over
/// what it held, and reads take it.
#[tokio::test]
async fn summaries_go_on_when_slot_keys_are_turned_off_again() {
    let on = state_configured(
        &[
            ("SUMMARY_EVERY_MESSAGES", "20"),
            ("SLOT_KEYS", "true"),
            ("CACHE_URL", ""),
        ],
        Arc::new(shared::clock::SystemClock),
    )
    .await;
    let user = new_user();
    let owner = UserId::parse(&user).unwrap();
    let id = ConversationId::generate();
    let at = Utc::now() - Duration::days(1);
    let export = exported(
        id,
        at,
        (0..25).map(|n| format!("imported message {n}")),
        None,
    );
    on.exports
        .import_conversation(&owner, &export)
        .await
        .unwrap();
    assert!(matches!(
        on.summaries.summarize(&owner, &id).await.unwrap(),
        SummaryOutcome::Written { through: 25, .. }
    ));

    // The same table, the switch off.
    let mut config = on.config.clone();
    config.slot_keys = false;
    let off = State::with_clock(
        config,
        on.model_config.clone(),
        &aws_config::load_from_env().await,
        Arc::new(shared::clock::SystemClock),
    );
    let api = LocalApi::serving(off).await;
    let alice = api.as_user(&user);
    for n in 0..20 {
        alice
            .say(&id.to_string(), &format!("later message {n}"))
            .await;
    }
    let outcome = api.state.summaries.summarize(&owner, &id).await.unwrap();
    assert!(
        matches!(outcome, SummaryOutcome::Written { through: 45, .. }),
        "{outcome:?}"
    );
    let item = stored(&api.state, &user, &id.to_string()).await;
    assert_eq!(item.summarized_through, 45);
    assert!(item.summary.unwrap().contains("later message 19"));
}

/// A conversation's JSON export: `contents` as user messages a minute apart from `at`, with
/// `summary`.
fn exported(
    id: ConversationId,
    at: chrono::DateTime<Utc>,
    contents: impl Iterator<Item = String>,
    summary: Option<&str>,
) -> shared::export::ConversationExport {
    use shared::export::{ConversationExport, ExportedConversation, ExportedMessage};
    let messages: Vec<ExportedMessage> = contents
        .enumerate()
        .map(|(n, content)| ExportedMessage {
            id: shared::model::MessageId::generate(),
            role: shared::model::Role::User,
            content,
            timestamp: at + Duration::minutes(n as i64),
            attachments: vec![],
            metadata: Default::default(),
            client_message_id: None,
            client_timestamp: None,
        })
        .collect();
    let last = at + Duration::minutes(messages.len() as i64 - 1);
    ConversationExport {
        format_version: 1,
        exported_at: Utc::now(),
        conversation: ExportedConversation {
            id,
            title: "Restored".into(),
            user_title: Some("Restored".into()),
            auto_title: None,
            created_at: at,
            last_activity: last,
            updated_at: last,
            is_archived: false,
            tags: vec![],
            summary: summary.map(str::to_owned),
            message_count: messages.len() as u64,
        },
        messages,
        branches: vec![],
    }
}
