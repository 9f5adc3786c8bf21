//! Short-term memory as the old system left it, for trying the migration locally and for its
//! benchmark: each user a few sessions of alternating prompts and replies, an hour apart.

use assistant::memory::{MemoryEntry, ShortTermMemory};
use chrono::{DateTime, Duration, Utc};
use shared::model::{MessageId, Metadata, Role, UserId};

/// Messages per session; the next session starts 40 minutes after it ends.
const SESSION_MESSAGES: usize = 20;

/// The entries of one user: `messages` of them, 30 seconds apart in sessions of 20, the
/// newest ten minutes before `now` (up to about 500 messages fit in the last day).
pub fn memory_entries(messages: usize, now: DateTime<Utc>) -> Vec<MemoryEntry> {
    let span = |n: usize| {
        Duration::seconds(n as i64 * 30) + Duration::minutes((n / SESSION_MESSAGES) as i64 * 40)
    };
    let start = now - Duration::minutes(10) - span(messages.saturating_sub(1));
    (0..messages)
        .map(|i| {
            let session = i / SESSION_MESSAGES;
            let timestamp = start + span(i);
            let role = if i % 2 == 0 {
                Role::User
            } else {
                Role::Assistant
            };
            MemoryEntry {
                id: MessageId::generate(),
                role,
                content: match role {
                    Role::User => {
                        format!("Question {i}: what should I know about topic {session}?")
                    }
                    _ => format!("Answer {i}: here is what matters about topic {session}. ")
                        .repeat(4),
                },
                timestamp,
                conversation_id: None,
                attachments: Vec::new(),
                metadata: Metadata::from([("seeded".to_owned(), serde_json::json!(true))]),
                expires_at: timestamp + Duration::hours(24),
                token_count: None,
                held: false,
                slot: None,
            }
        })
        .collect()
}

/// Writes `messages` entries of short-term memory for each user.
pub async fn short_term_memory(
    memory: &ShortTermMemory,
    users: &[UserId],
    messages: usize,
    now: DateTime<Utc>,
) -> Result<(), shared::Error> {
    for user in users {
        memory
            .remember(user, &memory_entries(messages, now))
            .await?;
    }
    Ok(())
}
