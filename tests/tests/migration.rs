//! The migration of short-term memory into conversations, against the local DynamoDB server:
//! grouping, what is preserved, the dry run, re-runs, bad items, and runs killed part way
//! (at every write in turn, and again and again at random writes until one run finishes).

use std::collections::BTreeMap;

use assistant::service::CompletionRequest;
use assistant::State;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Duration, DurationRound, Utc};
use domain::memory::MemoryEntry;
use serde_json::json;
use shared::keys;
use shared::migration::{MigrationOptions, Migrator, UserSummary};
use shared::model::{Attachment, ConversationId, MessageId, Metadata, Role, Tags, Title, UserId};
use shared::store::Store;
use tests::{
    all_conversations, memory_entry, new_user, state, table_snapshot, Fault, FaultyWrites,
};

/// A moment two hours ago, to the millisecond, so every entry is settled and unexpired.
fn start() -> DateTime<Utc> {
    (Utc::now() - Duration::hours(2))
        .duration_trunc(Duration::milliseconds(1))
        .unwrap()
}

fn entry(
    at: DateTime<Utc>,
    minute: i64,
    role: Role,
    content: &str,
    conversation: Option<ConversationId>,
) -> MemoryEntry {
    MemoryEntry {
        conversation_id: conversation,
        ..memory_entry(at + Duration::minutes(minute), role, content)
    }
}

async fn remember(state: &State, user: &UserId, entries: &[MemoryEntry]) {
    state
        .assistant
        .memory()
        .remember(user, entries)
        .await
        .expect("remember");
}

/// Two sessions without a conversation (an hour apart), and two entries naming a conversation
/// that does not exist yet.
fn mixed_memory(at: DateTime<Utc>, named: ConversationId) -> Vec<MemoryEntry> {
    let mut with_extras = entry(at, 0, Role::User, "Plan my trip to Lisbon", None);
    with_extras.attachments = vec![Attachment::Link("s3://photos/lisbon.jpg".into())];
    with_extras.metadata = Metadata::from([("mood".into(), json!("excited"))]);
    vec![
        with_extras,
        entry(at, 1, Role::Assistant, "Here is a plan", None),
        entry(at, 5, Role::User, "And restaurants?", None),
        entry(at, 70, Role::User, "Recipe for bread", None),
        entry(at, 71, Role::Assistant, "Flour, water, salt", None),
        entry(at, 20, Role::User, "Named one", Some(named)),
        entry(at, 21, Role::Assistant, "Named reply", Some(named)),
    ]
}

/// Every conversation of the user with all its messages: (title, count, messages), by id.
type Migrated =
    BTreeMap<ConversationId, (String, u64, Vec<(MessageId, Role, String, DateTime<Utc>)>)>;

/// Every conversation of the user with all its messages, as [`Migrated`].
async fn conversations_of(state: &State, user: &UserId) -> Migrated {
    let listed = all_conversations(state, user.as_str()).await;
    let mut all = BTreeMap::new();
    for conversation in listed {
        let full = state
            .conversations
            .get(user, &conversation.id, 200, None)
            .await
            .expect("get");
        let messages = full
            .messages
            .iter()
            .map(|m| (m.id, m.role, m.content.clone(), m.timestamp))
            .collect();
        all.insert(
            conversation.id,
            (conversation.title, conversation.message_count, messages),
        );
    }
    all
}

fn totals(summary: &UserSummary) -> (u64, u64, u64) {
    (
        summary.conversations_created,
        summary.messages_migrated,
        summary.messages_already_present,
    )
}

#[tokio::test]
async fn memory_becomes_conversations_by_named_conversation_and_by_session() {
    let state = state().await;
    let user = UserId::parse(&new_user()).unwrap();
    let at = start();
    let named = ConversationId::generate();
    let memory = mixed_memory(at, named);
    remember(&state, &user, &memory).await;

    let summary = state
        .migrator
        .migrate_memory(&user, false, Utc::now())
        .await
        .unwrap();
    assert_eq!(totals(&summary), (3, 7, 0));
    assert!(summary.skipped.is_empty());

    let conversations = conversations_of(&state, &user).await;
    assert_eq!(conversations.len(), 3);
    let (title, count, messages) = &conversations[&named];
    assert_eq!((title.as_str(), *count), ("Named one", 2));
    assert_eq!(messages.len(), 2);

    let trip = conversations
        .values()
        .find(|(title, _, _)| title == "Plan my trip to Lisbon")
        .expect("the first session is titled from its first user message");
    let expected: Vec<_> = memory[..3]
        .iter()
        .map(|e| (e.id, e.role, e.content.clone(), e.timestamp))
        .collect();
    assert_eq!(
        trip.2, expected,
        "ids, roles, contents, times and order kept"
    );
    assert_eq!(trip.1, 3);
    assert!(conversations
        .values()
        .any(|(title, count, _)| title == "Recipe for bread" && *count == 2));

    // Attachments and metadata come along, and the conversation spans its messages.
    let trip_id = *conversations
        .iter()
        .find(|(_, (title, _, _))| title == "Plan my trip to Lisbon")
        .unwrap()
        .0;
    let full = state
        .conversations
        .get(&user, &trip_id, 10, None)
        .await
        .unwrap();
    assert_eq!(full.messages[0].attachments, memory[0].attachments);
    assert_eq!(full.messages[0].metadata, memory[0].metadata);
    assert_eq!(full.conversation.created_at, memory[0].timestamp);
    assert_eq!(full.conversation.last_activity, memory[2].timestamp);
}

#[tokio::test]
async fn a_conversation_that_exists_gets_the_entries_and_keeps_its_later_activity() {
    let state = state().await;
    let user = UserId::parse(&new_user()).unwrap();
    let existing = state
        .conversations
        .create(
            &user,
            Some(Title::parse("Mine").unwrap()),
            Tags::default(),
            state.now(),
        )
        .await
        .unwrap();
    let at = start();
    remember(
        &state,
        &user,
        &[entry(
            at,
            0,
            Role::User,
            "kept only in memory",
            Some(existing.id),
        )],
    )
    .await;

    let summary = state
        .migrator
        .migrate_memory(&user, false, Utc::now())
        .await
        .unwrap();
    assert_eq!(totals(&summary), (0, 1, 0));
    let after = state
        .conversations
        .get(&user, &existing.id, 10, None)
        .await
        .unwrap();
    assert_eq!(after.conversation.title, "Mine");
    assert_eq!(after.conversation.message_count, 1);
    assert_eq!(after.conversation.last_activity, existing.last_activity);
}

#[tokio::test]
async fn exchanges_already_saved_to_their_conversation_are_found_there_not_copied() {
    let state = state().await;
    let user = UserId::parse(&new_user()).unwrap();
    let conversation = state
        .conversations
        .create(&user, None, Tags::default(), Utc::now())
        .await
        .unwrap();
    let request = CompletionRequest::parse(
        "Hello there".into(),
        Some(&conversation.id.to_string()),
        None,
        None,
        None,
    )
    .unwrap();
    state
        .assistant
        .complete(&user, request, Utc::now() - Duration::minutes(10))
        .await
        .unwrap();
    let before = conversations_of(&state, &user).await;

    let summary = state
        .migrator
        .migrate_memory(&user, false, Utc::now())
        .await
        .unwrap();
    assert_eq!(totals(&summary), (0, 0, 2));
    assert_eq!(conversations_of(&state, &user).await, before);
}

#[tokio::test]
async fn a_dry_run_reports_what_the_real_run_then_does_and_changes_nothing() {
    let state = state().await;
    let user = UserId::parse(&new_user()).unwrap();
    let at = start();
    remember(&state, &user, &mixed_memory(at, ConversationId::generate())).await;
    let before = table_snapshot(&state).await;

    let dry = state
        .migrator
        .migrate_memory(&user, true, Utc::now())
        .await
        .unwrap();
    assert_eq!(
        table_snapshot(&state).await,
        before,
        "a dry run writes nothing"
    );
    assert!(dry.dry_run);
    assert_eq!(totals(&dry), (3, 7, 0));

    let real = state
        .migrator
        .migrate_memory(&user, false, Utc::now())
        .await
        .unwrap();
    assert_eq!(
        UserSummary {
            dry_run: true,
            ..real
        },
        dry
    );
}

#[tokio::test]
async fn a_second_run_migrates_nothing_and_a_later_one_only_what_is_new() {
    let state = state().await;
    let user = UserId::parse(&new_user()).unwrap();
    let at = start();
    remember(&state, &user, &[entry(at, 0, Role::User, "first", None)]).await;
    let first = state
        .migrator
        .migrate_memory(&user, false, Utc::now())
        .await
        .unwrap();
    assert_eq!(totals(&first), (1, 1, 0));

    let again = state
        .migrator
        .migrate_memory(&user, false, Utc::now())
        .await
        .unwrap();
    assert_eq!(totals(&again), (0, 0, 0));

    // Within the session gap of the last run's session: the same conversation continues.
    remember(
        &state,
        &user,
        &[entry(at, 20, Role::Assistant, "later", None)],
    )
    .await;
    let later = state
        .migrator
        .migrate_memory(&user, false, Utc::now())
        .await
        .unwrap();
    assert_eq!(totals(&later), (0, 1, 0));
    let conversations = conversations_of(&state, &user).await;
    assert_eq!(conversations.len(), 1);
    assert_eq!(conversations.values().next().unwrap().1, 2);
}

#[tokio::test]
async fn an_unreadable_or_oversized_item_is_skipped_and_reported_and_the_rest_migrate() {
    let state = state().await;
    let user = UserId::parse(&new_user()).unwrap();
    let at = start();
    remember(
        &state,
        &user,
        &[
            entry(at, 0, Role::User, "good one", None),
            entry(at, 3, Role::Assistant, "good two", None),
        ],
    )
    .await;
    // Over a message's metadata limit (an item DynamoDB holds, but no message may carry).
    let mut oversized = entry(at, 1, Role::User, "x", None);
    oversized.metadata = Metadata::from([(
        "notes".to_owned(),
        json!("x".repeat(shared::model::MAX_METADATA_BYTES + 10)),
    )]);
    remember(&state, &user, std::slice::from_ref(&oversized)).await;
    let unreadable_key = keys::memory_sort_key(at + Duration::minutes(2), &MessageId::generate());
    let client = aws_sdk_dynamodb::Client::new(&aws_config::load_from_env().await);
    client
        .put_item()
        .table_name(&state.config.table_name)
        .item("PK", AttributeValue::S(keys::memory_partition(&user)))
        .item("SK", AttributeValue::S(unreadable_key.clone()))
        .item("role", AttributeValue::S("wizard".into()))
        .send()
        .await
        .unwrap();

    let summary = state
        .migrator
        .migrate_memory(&user, false, Utc::now())
        .await
        .unwrap();
    assert_eq!(totals(&summary), (1, 2, 0));
    let mut skipped: Vec<String> = summary.skipped.iter().map(|s| s.key.clone()).collect();
    skipped.sort();
    let mut expected = vec![
        unreadable_key,
        keys::memory_sort_key(oversized.timestamp, &oversized.id),
    ];
    expected.sort();
    assert_eq!(skipped, expected);
    assert!(summary.skipped.iter().all(|s| !s.reason.is_empty()));
}

#[tokio::test]
async fn a_migration_reads_and_writes_only_its_own_users_data() {
    let state = state().await;
    let alice = UserId::parse(&new_user()).unwrap();
    let bob = UserId::parse(&new_user()).unwrap();
    let at = start();
    remember(
        &state,
        &alice,
        &mixed_memory(at, ConversationId::generate()),
    )
    .await;

    let bobs = state
        .migrator
        .migrate_memory(&bob, false, Utc::now())
        .await
        .unwrap();
    assert_eq!(totals(&bobs), (0, 0, 0));
    assert!(conversations_of(&state, &alice).await.is_empty());
    assert!(conversations_of(&state, &bob).await.is_empty());

    let alices = state
        .migrator
        .migrate_memory(&alice, false, Utc::now())
        .await
        .unwrap();
    assert_eq!(alices.messages_migrated, 7);
    assert!(conversations_of(&state, &bob).await.is_empty());
}

/// Options that make many small writes, so a crash can land between any two of them.
fn small_writes() -> MigrationOptions {
    MigrationOptions {
        transaction_items: 3,
        concurrency: 2,
        source_batch: 4,
        ..MigrationOptions::default()
    }
}

/// The outcome of an uninterrupted run of `memory`, on a table of its own, and how many
/// writes it made.
async fn uninterrupted_run(user: &UserId, memory: &[MemoryEntry]) -> (usize, Migrated) {
    let reference = state().await;
    remember(&reference, user, memory).await;
    let (counting, writes) = FaultyWrites::counting().await;
    Migrator::new(
        Store::new(counting, &reference.config.table_name),
        small_writes(),
    )
    .migrate_memory(user, false, Utc::now())
    .await
    .unwrap();
    let writes = writes.load(std::sync::atomic::Ordering::SeqCst);
    (writes, conversations_of(&reference, user).await)
}

#[tokio::test]
async fn a_run_killed_at_any_write_and_run_again_ends_with_exactly_the_source() {
    let user = UserId::parse(&new_user()).unwrap();
    let at = start();
    let memory = mixed_memory(at, ConversationId::generate());

    let (writes, expected) = uninterrupted_run(&user, &memory).await;
    assert!(writes > 10, "small writes make many calls: {writes}");
    assert_eq!(
        expected.values().map(|c| c.2.len()).sum::<usize>(),
        memory.len()
    );

    for fault in [Fault::BeforeSending, Fault::AnswerLost] {
        for kill_at in 1..=writes {
            let state = state().await;
            remember(&state, &user, &memory).await;
            let table = state.config.table_name.clone();
            let crashing = Migrator::new(
                Store::new(FaultyWrites::client(kill_at, fault).await, &table),
                small_writes(),
            );
            let crashed = crashing.migrate_memory(&user, false, Utc::now()).await;
            assert!(
                crashed.is_err(),
                "the run should have been killed at write {kill_at} ({fault:?})"
            );

            Migrator::new(state.conversations.store().clone(), small_writes())
                .migrate_memory(&user, false, Utc::now())
                .await
                .unwrap();
            assert_eq!(
                conversations_of(&state, &user).await,
                expected,
                "killed at write {kill_at} ({fault:?}), then run again"
            );
        }
    }
}

/// Memory of many sessions (four entries each, two hours apart) and a named conversation.
fn long_memory(at: DateTime<Utc>, named: ConversationId) -> Vec<MemoryEntry> {
    let mut memory = mixed_memory(at, named);
    for session in 0..8 {
        let minute = 200 + session * 120;
        for (offset, role) in [Role::User, Role::Assistant, Role::User, Role::Assistant]
            .into_iter()
            .enumerate()
        {
            memory.push(entry(
                at,
                minute + offset as i64,
                role,
                &format!("session {session}, turn {offset}"),
                None,
            ));
        }
    }
    memory
}

#[tokio::test]
async fn a_run_killed_again_and_again_at_random_writes_ends_with_exactly_the_source() {
    use rand::{Rng, SeedableRng};

    let user = UserId::parse(&new_user()).unwrap();
    let at = start();
    let memory = long_memory(at, ConversationId::generate());
    let (writes, expected) = uninterrupted_run(&user, &memory).await;

    // Each sequence kills run after run at a random write of its own (before the write is
    // sent, or after it was applied with its answer lost) until one run gets to the end. The
    // seed is in every failure message, to replay a sequence.
    let seed: u64 = rand::random();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    for sequence in 0..4 {
        let state = state().await;
        remember(&state, &user, &memory).await;
        let table = state.config.table_name.clone();
        let mut kills = Vec::new();
        loop {
            assert!(kills.len() < 100, "seed {seed}: never finished: {kills:?}");
            let kill_at = rng.random_range(1..=writes + writes / 4);
            let fault = if rng.random_bool(0.5) {
                Fault::BeforeSending
            } else {
                Fault::AnswerLost
            };
            let run = Migrator::new(
                Store::new(FaultyWrites::client(kill_at, fault).await, &table),
                small_writes(),
            )
            .migrate_memory(&user, false, Utc::now())
            .await;
            if run.is_ok() {
                break;
            }
            kills.push((kill_at, fault));
        }
        let migrated = conversations_of(&state, &user).await;
        assert_eq!(
            migrated, expected,
            "seed {seed}, sequence {sequence}: killed at {kills:?}, then done"
        );
        // Counts equal the source; no message twice.
        let messages: Vec<_> = migrated.values().flat_map(|c| &c.2).collect();
        assert_eq!(messages.len(), memory.len(), "seed {seed}");
        for (title, count, messages) in migrated.values() {
            assert_eq!(*count as usize, messages.len(), "seed {seed}: {title}");
        }
        let ids: std::collections::BTreeSet<_> = messages.iter().map(|m| m.0).collect();
        assert_eq!(ids.len(), memory.len(), "seed {seed}: a message twice");
    }
}

#[tokio::test]
async fn entries_read_again_after_a_run_go_back_to_the_sessions_they_went_to() {
    let state = state().await;
    let user = UserId::parse(&new_user()).unwrap();
    // Two short sessions within the last few minutes, which the next run reads again (a late
    // writer could still add an entry between them).
    let now = Utc::now()
        .duration_trunc(Duration::milliseconds(1))
        .unwrap();
    remember(
        &state,
        &user,
        &[
            entry(now, -4, Role::User, "first session", None),
            entry(now, -1, Role::User, "second session", None),
        ],
    )
    .await;
    let migrator = Migrator::new(
        state.conversations.store().clone(),
        MigrationOptions {
            session_gap: Duration::minutes(1),
            ..MigrationOptions::default()
        },
    );
    let first = migrator.migrate_memory(&user, false, now).await.unwrap();
    assert_eq!(totals(&first), (2, 2, 0));

    let again = migrator.migrate_memory(&user, false, now).await.unwrap();
    assert_eq!(
        totals(&again),
        (0, 0, 2),
        "read again, found where they went"
    );
    assert_eq!(conversations_of(&state, &user).await.len(), 2);
}

#[tokio::test]
async fn a_conversation_the_user_deleted_is_not_brought_back_by_what_memory_still_holds() {
    let state = state().await;
    let user = UserId::parse(&new_user()).unwrap();
    let conversation = state
        .conversations
        .create(
            &user,
            Some(Title::parse("Deleted").unwrap()),
            Tags::default(),
            Utc::now(),
        )
        .await
        .unwrap();
    state
        .conversations
        .delete(
            &user,
            &conversation.id,
            Utc::now(),
            std::time::Duration::from_secs(3),
        )
        .await
        .unwrap();
    // A delete forgets the memory it finds (tests/deletion.rs); these entries land after it,
    // as those of a completion still running when the conversation was deleted would.
    let at = start();
    remember(
        &state,
        &user,
        &[
            entry(
                at,
                0,
                Role::User,
                "About the deleted one",
                Some(conversation.id),
            ),
            entry(at, 1, Role::Assistant, "Reply", Some(conversation.id)),
        ],
    )
    .await;

    let summary = state
        .migrator
        .migrate_memory(&user, false, Utc::now())
        .await
        .unwrap();
    assert_eq!(summary.conversations_created, 0);
    assert_eq!(summary.messages_migrated, 0);
    assert_eq!(summary.messages_of_deleted_conversations, 2);
    assert!(all_conversations(&state, user.as_str()).await.is_empty());
}

#[tokio::test]
async fn a_counted_entry_keeps_its_token_count_in_its_conversation() {
    let state = state().await;
    let user = UserId::parse(&new_user()).unwrap();
    let named = ConversationId::generate();
    let mut counted = entry(start(), 0, Role::Assistant, "A counted reply", Some(named));
    counted.token_count = Some(shared::model::TokenCount::new("o200k_base", 4));
    let uncounted = entry(start(), 1, Role::User, "An uncounted question", Some(named));
    remember(&state, &user, &[counted.clone(), uncounted.clone()]).await;

    state
        .migrator
        .migrate_memory(&user, false, Utc::now())
        .await
        .unwrap();
    let window = state
        .conversations
        .store()
        .conversation_window(&user, &named, 10, None)
        .await
        .unwrap();
    let count_of = |id: MessageId| {
        window
            .messages_newest_first
            .iter()
            .find(|m| m.id == id)
            .map(|m| m.token_count.clone())
            .expect("migrated")
    };
    assert_eq!(count_of(counted.id), counted.token_count);
    assert_eq!(count_of(uncounted.id), None);
}
