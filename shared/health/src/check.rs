//! The service's health: whether the table, the bucket and the cache answer, and how the last
//! migration run went. Holds no user data, so it is safe to expose without a token; each check
//! is bounded by its own timeout and they run at once, so a health check never hangs.

use std::future::Future;
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use shared::attachments::Attachments;
use shared::cache::Cache;
use shared::migration::RunSummary;
use shared::store::Store;

use crate::managed_cache::describe_cache;

/// What every check found.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthReport {
    /// `ok`, or `unhealthy` when any check failed (named in `failed`).
    pub status: &'static str,
    pub failed: Vec<&'static str>,
    pub checks: Checks,
}

#[derive(Debug, Clone, Serialize)]
pub struct Checks {
    pub table: Check,
    pub bucket: Check,
    pub cache: Check,
    pub migration: Check,
}

/// One dependency's check.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Check {
    pub ok: bool,
    /// False when the dependency is not configured (then the check passes).
    pub configured: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    /// The dependency's own status (the table's, the cache's, the migration run's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Why it failed, in a few words (never internals).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_run: Option<LastRun>,
}

/// The latest migration run, as the health check reports it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LastRun {
    pub run_id: String,
    pub status: String,
    pub dry_run: bool,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub users: u64,
    pub users_failed: u64,
}

impl Check {
    fn not_configured() -> Self {
        Self {
            ok: true,
            configured: false,
            latency_ms: None,
            status: None,
            error: None,
            last_run: None,
        }
    }

    fn passed(latency: Duration) -> Self {
        Self {
            ok: true,
            configured: true,
            latency_ms: Some(u64::try_from(latency.as_millis()).unwrap_or(u64::MAX)),
            status: None,
            error: None,
            last_run: None,
        }
    }

    fn failed(latency: Duration, error: impl Into<String>) -> Self {
        Self {
            ok: false,
            error: Some(error.into()),
            ..Self::passed(latency)
        }
    }
}

/// A migration run is stuck when it has been running this long.
const STUCK_RUN: chrono::Duration = chrono::Duration::hours(24);

/// What the health check looks at.
pub struct Health<'a> {
    pub store: &'a Store,
    pub bucket: Option<&'a Attachments>,
    pub cache: &'a Cache,
    /// The ElastiCache cache by name, when configured: its status is reported too.
    pub managed_cache: Option<(&'a aws_sdk_elasticache::Client, &'a str)>,
    pub timeout: Duration,
    pub now: chrono::DateTime<chrono::Utc>,
}

impl Health<'_> {
    pub async fn check(&self) -> HealthReport {
        let (table, bucket, cache, migration) =
            tokio::join!(self.table(), self.bucket(), self.cache(), self.migration());
        let checks = Checks {
            table,
            bucket,
            cache,
            migration,
        };
        let failed: Vec<&'static str> = [
            ("table", &checks.table),
            ("bucket", &checks.bucket),
            ("cache", &checks.cache),
            ("migration", &checks.migration),
        ]
        .into_iter()
        .filter(|(_, check)| !check.ok)
        .map(|(name, _)| name)
        .collect();
        HealthReport {
            status: if failed.is_empty() { "ok" } else { "unhealthy" },
            failed,
            checks,
        }
    }

    /// Runs `probe` within the timeout: its check, timed.
    async fn timed<T, F>(&self, probe: F) -> (Duration, Result<T, String>)
    where
        F: Future<Output = Result<T, String>>,
    {
        let started = Instant::now();
        let outcome = match tokio::time::timeout(self.timeout, probe).await {
            Ok(outcome) => outcome,
            Err(_) => Err("timed out".to_owned()),
        };
        (started.elapsed(), outcome)
    }

    async fn table(&self) -> Check {
        let (latency, status) = self.timed(self.store.table_status()).await;
        match status {
            Ok(status) if status == "ACTIVE" || status == "UPDATING" => Check {
                status: Some(status),
                ..Check::passed(latency)
            },
            Ok(status) => Check {
                status: Some(status.clone()),
                ..Check::failed(latency, format!("the table is {status}"))
            },
            Err(error) => Check::failed(latency, error),
        }
    }

    async fn bucket(&self) -> Check {
        let Some(attachments) = self.bucket else {
            return Check::not_configured();
        };
        match self.timed(attachments.check_bucket()).await {
            (latency, Ok(())) => Check::passed(latency),
            (latency, Err(error)) => Check::failed(latency, error),
        }
    }

    async fn cache(&self) -> Check {
        let ping = async {
            match self.cache.ping(self.timeout).await {
                None => Ok(None),
                Some(result) => result.map(Some),
            }
        };
        let managed = async {
            match self.managed_cache {
                None => None,
                Some((client, name)) => Some(
                    tokio::time::timeout(self.timeout, describe_cache(client, name))
                        .await
                        .map_err(|_| "timed out".to_owned())
                        .and_then(|described| {
                            described
                                .map(|d| d.status)
                                .map_err(|_| "ElastiCache does not describe it".to_owned())
                        }),
                ),
            }
        };
        let ((latency, pinged), status) = tokio::join!(self.timed(ping), managed);
        let status_ok = |s: &str| s == "available" || s == "modifying";
        match (pinged, status) {
            (Ok(None), None) => Check::not_configured(),
            (Err(error), status) => Check {
                status: status.and_then(Result::ok),
                ..Check::failed(latency, error)
            },
            (Ok(_), Some(Err(error))) => Check::failed(latency, error),
            (Ok(_), Some(Ok(status))) if !status_ok(&status) => Check {
                status: Some(status.clone()),
                ..Check::failed(latency, format!("the cache is {status}"))
            },
            (Ok(_), status) => Check {
                status: status.and_then(Result::ok),
                ..Check::passed(latency)
            },
        }
    }

    async fn migration(&self) -> Check {
        let probe = async {
            self.store
                .latest_run()
                .await
                .map_err(|_| "could not read the latest run".to_owned())
        };
        let (latency, found) = self.timed(probe).await;
        let run = match found {
            Ok(Some(run)) => run,
            Ok(None) => {
                return Check {
                    status: Some("none yet".to_owned()),
                    ..Check::passed(latency)
                }
            }
            Err(error) => return Check::failed(latency, error),
        };
        let problem = migration_problem(&run, self.now);
        let check = match problem {
            None => Check::passed(latency),
            Some(problem) => Check::failed(latency, problem),
        };
        Check {
            status: Some(run.status.clone()),
            last_run: Some(LastRun {
                run_id: run.run_id,
                status: run.status,
                dry_run: run.dry_run,
                started_at: run.started_at,
                finished_at: run.finished_at,
                users: run.users,
                users_failed: run.users_failed,
            }),
            ..check
        }
    }
}

/// What is wrong with the latest run, if anything: users it could not migrate, or a run that
/// has not finished in a day.
fn migration_problem(run: &RunSummary, now: chrono::DateTime<chrono::Utc>) -> Option<String> {
    if run.users_failed > 0 {
        return Some(format!(
            "the last run could not migrate {} user(s)",
            run.users_failed
        ));
    }
    let started = domain::keys::changed_at_time(&run.started_at);
    if run.finished_at.is_none() && started.is_some_and(|s| now - s > STUCK_RUN) {
        return Some("the last run has been running for over a day".to_owned());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, Utc};

    fn run(started: chrono::DateTime<Utc>, finished: bool, failed: u64) -> RunSummary {
        RunSummary {
            run_id: "r".into(),
            status: if finished { "finished" } else { "running" }.into(),
            started_at: domain::keys::sortable_time(started),
            finished_at: finished.then(|| domain::keys::sortable_time(started)),
            users_failed: failed,
            ..RunSummary::default()
        }
    }

    #[test]
    fn a_run_is_a_problem_when_users_failed_or_it_never_finished() {
        let now = Utc::now();
        assert_eq!(migration_problem(&run(now, true, 0), now), None);
        assert!(migration_problem(&run(now, true, 2), now).is_some());
        assert_eq!(
            migration_problem(&run(now - Duration::hours(1), false, 0), now),
            None
        );
        assert!(migration_problem(&run(now - Duration::hours(25), false, 0), now).is_some());
    }
}
