//! The steps of the scheduled migration state machine (`statemachines/migration.asl.json`),
//! one handler per Lambda function. Each step's input and output is the small JSON the
//! definition passes along; every step can be retried, and repeating one changes nothing.

use chrono::Duration;
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::keys::MEMORY_SHARDS;
use crate::metrics;
use crate::migration::RunSummary;
use crate::model::UserId;
use crate::state::State;

/// Users one `ListUsers` step hands to the per-user Map (their results stay far below the
/// state machine's 256 KB payload limit).
pub const USERS_PER_PAGE: usize = 100;
/// How long each user's record of a run is kept (the run's totals stay).
const RUN_USER_RECORD_DAYS: i64 = 90;

/// What starts a run: `{}` on the schedule; by hand also `{"dryRun": true}` and/or
/// `{"userId": "…"}`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RunRequest {
    #[serde(default)]
    pub dry_run: bool,
    #[serde(default)]
    pub user_id: Option<String>,
}

/// `StartRun`'s input: the execution's input and name (the run's id).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StartInput {
    #[serde(default)]
    pub input: serde_json::Value,
    pub run_id: String,
}

/// One page of one shard's users still to list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShardPage {
    pub run_id: String,
    pub dry_run: bool,
    pub shard: u32,
    /// Where the listing continues: an opaque position (null on the first page and after
    /// the last).
    pub after: Option<String>,
    /// The users of the page just listed.
    #[serde(default)]
    pub users: Vec<String>,
}

/// `StartRun`'s output: either one user, or every shard to list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunPlan {
    pub run_id: String,
    pub dry_run: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    pub shards: Vec<ShardPage>,
}

/// `MigrateUser`'s input.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserStep {
    pub run_id: String,
    pub dry_run: bool,
    pub user_id: String,
}

/// `MigrateUser`'s output (kept small: the Map collects one per user).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserStepResult {
    pub user_id: String,
    pub messages_migrated: u64,
}

/// `FinishRun`'s input.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FinishInput {
    pub run_id: String,
}

/// `StartRun`: checks the request, records the run's start, and plans its work.
pub async fn start_run(state: &State, input: StartInput) -> Result<RunPlan, Error> {
    let request: RunRequest = match input.input {
        serde_json::Value::Null => RunRequest::default(),
        value => {
            serde_json::from_value(value).map_err(|e| Error::invalid(format!("run input: {e}")))?
        }
    };
    let user = request
        .user_id
        .as_deref()
        .map(|id| {
            UserId::parse(id).map_err(|_| Error::invalid(format!("userId {id:?} is not a user id")))
        })
        .transpose()?;
    let summary = RunSummary::started(&input.run_id, request.dry_run, state.now());
    state.migrator.store().start_run(&summary).await?;
    let shards = match user {
        Some(_) => Vec::new(),
        None => (0..MEMORY_SHARDS)
            .map(|shard| ShardPage {
                run_id: input.run_id.clone(),
                dry_run: request.dry_run,
                shard,
                after: None,
                users: Vec::new(),
            })
            .collect(),
    };
    Ok(RunPlan {
        run_id: input.run_id,
        dry_run: request.dry_run,
        user_id: user.map(|u| u.to_string()),
        shards,
    })
}

/// `ListUsers`: the next page of one shard's users with short-term memory.
pub async fn list_users(state: &State, page: ShardPage) -> Result<ShardPage, Error> {
    if page.shard >= MEMORY_SHARDS {
        return Err(Error::invalid(format!("no shard {}", page.shard)));
    }
    let (users, next) = state
        .migrator
        .store()
        .users_with_memory(page.shard, USERS_PER_PAGE, page.after.as_deref())
        .await?;
    Ok(ShardPage {
        users: users.iter().map(ToString::to_string).collect(),
        after: next,
        ..page
    })
}

/// `MigrateUser`: migrates one user and counts them in the run (once, however often the
/// step is retried).
pub async fn migrate_user(state: &State, step: UserStep) -> Result<UserStepResult, Error> {
    let user = UserId::parse(&step.user_id)?;
    let now = state.now();
    let summary = state
        .migrator
        .migrate_memory(&user, step.dry_run, now)
        .await?;
    state
        .migrator
        .store()
        .count_user_in_run(
            &step.run_id,
            &summary,
            now + Duration::days(RUN_USER_RECORD_DAYS),
        )
        .await?;
    Ok(UserStepResult {
        user_id: step.user_id,
        messages_migrated: summary.messages_migrated,
    })
}

/// `FinishRun`: marks the run finished, publishes its totals as metrics, returns its summary.
pub async fn finish_run(state: &State, input: FinishInput) -> Result<RunSummary, Error> {
    let summary = state
        .migrator
        .store()
        .finish_run(&input.run_id, state.now())
        .await?;
    metrics::migration_run(&summary);
    Ok(summary)
}
