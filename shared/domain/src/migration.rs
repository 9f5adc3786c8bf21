//! What a migration of short-term memory records: how far each user is, and what a run did.
//! The store keeps these; the migrator in the core crate writes them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::keys;
use crate::model::{ConversationId, UserId};

/// A source item that was not migrated, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SkippedItem {
    pub key: String,
    pub reason: String,
}

/// A session conversation: its id and the span of its entries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Session {
    pub conversation_id: ConversationId,
    #[serde(with = "keys::sortable")]
    pub first: DateTime<Utc>,
    #[serde(with = "keys::sortable")]
    pub last: DateTime<Utc>,
}

/// How far a user's memory is migrated.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MigrationState {
    /// The key of the last memory entry that is done (later ones are read next time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migrated_through: Option<String>,
    /// Sessions the next entries may belong to: the latest one, and while a batch is being
    /// written, every session it writes (so a re-run assigns entries the same way even if
    /// some have expired meanwhile).
    #[serde(default)]
    pub sessions: Vec<Session>,
}

/// What a migration did for one user, or, in a dry run, would do.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserSummary {
    pub user_id: String,
    pub dry_run: bool,
    pub conversations_created: u64,
    pub messages_migrated: u64,
    /// Source messages found already in their conversation (migrated before, or saved there
    /// when they were made).
    pub messages_already_present: u64,
    /// Source messages of conversations the user has deleted since: not brought back.
    #[serde(default)]
    pub messages_of_deleted_conversations: u64,
    pub skipped: Vec<SkippedItem>,
}

impl UserSummary {
    pub fn new(user: &UserId, dry_run: bool) -> Self {
        Self {
            user_id: user.to_string(),
            dry_run,
            ..Self::default()
        }
    }
}

/// A user a run could not migrate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FailedUser {
    pub user_id: String,
    pub error: String,
}

/// The totals of one run over many users (the CLI's summary, the scheduled run's item).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunSummary {
    pub run_id: String,
    pub dry_run: bool,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub started_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    #[serde(default)]
    pub users: u64,
    #[serde(default)]
    pub users_failed: u64,
    #[serde(default)]
    pub conversations_created: u64,
    #[serde(default)]
    pub messages_migrated: u64,
    #[serde(default)]
    pub messages_already_present: u64,
    #[serde(default)]
    pub messages_skipped: u64,
    #[serde(default)]
    pub messages_of_deleted_conversations: u64,
    #[serde(default)]
    pub failed_users: Vec<FailedUser>,
}

impl RunSummary {
    pub fn started(run_id: impl Into<String>, dry_run: bool, at: DateTime<Utc>) -> Self {
        Self {
            run_id: run_id.into(),
            dry_run,
            status: "running".to_owned(),
            started_at: keys::sortable_time(at),
            ..Self::default()
        }
    }

    pub fn add_user(&mut self, user: &UserSummary) {
        self.users += 1;
        self.conversations_created += user.conversations_created;
        self.messages_migrated += user.messages_migrated;
        self.messages_already_present += user.messages_already_present;
        self.messages_skipped += user.skipped.len() as u64;
        self.messages_of_deleted_conversations += user.messages_of_deleted_conversations;
    }

    pub fn add_failure(&mut self, user: &str, error: &Error) {
        self.users_failed += 1;
        self.failed_users.push(FailedUser {
            user_id: user.to_owned(),
            error: error.to_string(),
        });
    }
}
