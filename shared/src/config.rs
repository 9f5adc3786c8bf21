//! Configuration from the environment, read and checked once at cold start.

use std::time::Duration;

use crate::cache::CacheSettings;
use crate::error::Error;
use crate::store::ItemShape;
use domain::usage::{Limits, Metered, DAILY_TOKENS_VARIABLE};

/// The shortest cursor-signing secret accepted.
use crate::cursor_keys::{CursorKeySource, MIN_SECRET_BYTES};
/// How long a delete request spends removing messages before leaving the rest to the purge
/// worker; well inside the function's timeout.
const DEFAULT_PURGE_BUDGET: Duration = Duration::from_secs(3);
const DEFAULT_ATTACHMENT_MAX_BYTES: u64 = 25 * 1024 * 1024;
const DEFAULT_CACHE_TIMEOUT: Duration = Duration::from_millis(50);
const DEFAULT_CACHE_BREAKER: Duration = Duration::from_secs(30);
const DEFAULT_SYNC_SETTLE_SECONDS: u64 = 60;
const DEFAULT_BATCH_RECORD_DAYS: i64 = 7;
/// How long each of the health check's checks may take.
const DEFAULT_HEALTH_CHECK_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub struct Config {
    /// `TABLE_NAME`: the single table.
    pub table_name: String,
    /// What signs pagination cursors: `CURSOR_SECRET_ARN` (a Secrets Manager secret, whose
    /// rotation needs no redeploy) or else `CURSOR_SECRET` (at least 32 bytes).
    pub cursor_keys: CursorKeySource,
    /// `DELETE_PURGE_BUDGET_MS`: time a delete spends purging messages in the request.
    pub delete_purge_budget: Duration,
    /// `MIGRATION_SESSION_GAP_MINUTES`: inactivity after which migrated entries without a
    /// conversation start a new one (default 30).
    pub migration_session_gap: chrono::Duration,
    /// The cache, when `CACHE_URL` is set: `CACHE_CLUSTER` (`true` for cluster mode),
    /// `CACHE_TIMEOUT_MS` (default 50) and `CACHE_BREAKER_SECONDS` (default 30).
    pub cache: Option<CacheSettings>,
    /// `ATTACHMENTS_BUCKET`: the S3 bucket of attachments (attachments are off without it).
    pub attachments_bucket: Option<String>,
    /// `ATTACHMENT_MAX_BYTES`: the largest file an upload may declare (default 25 MiB).
    pub attachment_max_bytes: u64,
    /// `S3_FORCE_PATH_STYLE=true`: path-style S3 URLs (local S3 servers).
    pub s3_force_path_style: bool,
    /// `LEAN_ITEMS=true`: conversation and message items written with their ids only in
    /// their keys, which the releases before issue 18 cannot read (docs/operations.md, "Lean
    /// items"); unset or `false`: the full shape every release reads.
    pub item_shape: ItemShape,
    /// `COMPRESS_TEXT=true`: message content and summaries written deflated when that makes
    /// them smaller, which the releases before it cannot read (docs/operations.md, "Deflated
    /// text"); unset or `false`: always as text.
    pub compress_text: bool,
    /// `SLOT_KEYS=true`: messages appended by slot, without a transaction (4 write units, not
    /// 12), which the releases before it cannot read (docs/operations.md, "Slot keys"); unset
    /// or `false`: appended in a transaction under time keys.
    pub slot_keys: bool,
    /// `CACHE_NAME`: the ElastiCache cache, for the health function (`health-check`), which
    /// reports its status and finds it at cold start when `CACHE_URL` is not set. Every other
    /// function needs `CACHE_URL`.
    pub cache_name: Option<String>,
    pub cache_timeout: Duration,
    pub cache_breaker_open_for: Duration,
    /// `TOMBSTONE_RETENTION_DAYS`: how long deletions stay in the change log a sync reads
    /// (default 30); an older sync cursor must sync from scratch.
    pub tombstone_retention: chrono::Duration,
    /// `SYNC_SETTLE_SECONDS`: how far back each sync round looks again, for writes stamped
    /// before they became visible (default 60; above the longest write's duration).
    pub sync_settle: chrono::Duration,
    /// `BATCH_RECORD_DAYS`: how long a batch operation's result is kept for replays (default 7).
    pub batch_record_retention: chrono::Duration,
    /// `BATCH_TIME_BUDGET_MS`: how long a batch starts operations for (default 20000, within
    /// the function's 29 s); the rest are answered `not_run`.
    pub batch_time_budget: Duration,
    /// `HEALTH_CHECK_TIMEOUT_MS`: how long each health check may take (default 1000).
    pub health_check_timeout: Duration,
    /// `METRICS_NAMESPACE`: the CloudWatch namespace of the metrics (default
    /// `NuminaConversations`; the template gives each stack its own).
    pub metrics_namespace: String,
    /// Conversations one run of an account export writes at most.
    pub export_conversations_per_run: usize,
    /// The wait before an account export's first attempt after a failed one.
    pub export_retry_base: Duration,
    /// Attempts the DynamoDB client makes of each call (the first and its retries) before a
    /// throttled or unreachable table is a 503.
    pub store_max_attempts: u32,
    /// Every user's limits on the expensive routes: `LIMIT_<KIND>S_PER_MINUTE` for each kind
    /// (`domain::usage::Metered::variable`) and `LIMIT_DAILY_MODEL_TOKENS`.
    pub limits: Limits,
    /// The models a preset may name: `ALLOWED_MODELS` and `MODEL_ID` (what a completion may
    /// use; a preset without a model uses the default, whatever it is).
    pub preset_models: Vec<String>,
    /// `PRESET_TEMPLATES`: the operator's presets every user sees and can copy (a JSON list
    /// of presets, each with a slug `id`; none by default), checked here.
    pub preset_templates: Vec<domain::preset::PresetTemplate>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("table_name", &self.table_name)
            .field("cursor_keys", &self.cursor_keys)
            .field("delete_purge_budget", &self.delete_purge_budget)
            .finish()
    }
}

/// Attempts of each DynamoDB call: with the backoff below, a call gives up within about 2 s
/// of throttling, well inside the API's 29 s.
pub const DEFAULT_STORE_MAX_ATTEMPTS: u64 = 4;

/// A switch of the stack's configuration: `true`, or `false` (also when unset or empty, as
/// a template parameter left blank arrives); anything else is refused.
pub fn switch(name: &str, value: Option<&str>) -> Result<bool, Error> {
    match value.map(str::trim) {
        None | Some("") | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(_) => Err(Error::Config(format!("{name} must be true or false"))),
    }
}

/// The positive whole number variable `name` holds, `default` when it is not set.
pub fn positive_number(
    lookup: &impl Fn(&str) -> Option<String>,
    name: &str,
    default: u64,
) -> Result<u64, Error> {
    match lookup(name) {
        None => Ok(default),
        Some(raw) => raw
            .parse::<u64>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| Error::Config(format!("{name} must be a positive whole number"))),
    }
}

impl Config {
    pub fn from_env() -> Result<Self, Error> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads configuration through `lookup`, so tests need not touch the process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let required = |name: &str| {
            lookup(name)
                .filter(|v| !v.trim().is_empty())
                .ok_or_else(|| Error::Config(format!("{name} must be set")))
        };
        let cursor_keys = match lookup("CURSOR_SECRET_ARN").filter(|v| !v.trim().is_empty()) {
            Some(arn) => CursorKeySource::Stored(arn),
            None => {
                let secret = required("CURSOR_SECRET")
                    .map_err(|_| {
                        Error::Config("CURSOR_SECRET_ARN or CURSOR_SECRET must be set".into())
                    })?
                    .into_bytes();
                if secret.len() < MIN_SECRET_BYTES {
                    return Err(Error::Config(format!(
                        "CURSOR_SECRET must be at least {MIN_SECRET_BYTES} bytes"
                    )));
                }
                CursorKeySource::Fixed(secret)
            }
        };
        let delete_purge_budget = match lookup("DELETE_PURGE_BUDGET_MS") {
            None => DEFAULT_PURGE_BUDGET,
            Some(ms) => ms.parse().map(Duration::from_millis).map_err(|_| {
                Error::Config("DELETE_PURGE_BUDGET_MS must be a whole number".into())
            })?,
        };
        let session_gap_minutes = match lookup("MIGRATION_SESSION_GAP_MINUTES") {
            None => crate::migration::DEFAULT_SESSION_GAP_MINUTES,
            Some(minutes) => minutes
                .parse()
                .ok()
                .filter(|m| (1..=24 * 60).contains(m))
                .ok_or_else(|| {
                    Error::Config("MIGRATION_SESSION_GAP_MINUTES must be from 1 to 1440".into())
                })?,
        };
        let table_name = required("TABLE_NAME")?;
        let number = |name: &str, default: u64| positive_number(&lookup, name, default);
        let cache_timeout = Duration::from_millis(number(
            "CACHE_TIMEOUT_MS",
            DEFAULT_CACHE_TIMEOUT.as_millis() as u64,
        )?);
        let cache_breaker_open_for = Duration::from_secs(number(
            "CACHE_BREAKER_SECONDS",
            DEFAULT_CACHE_BREAKER.as_secs(),
        )?);
        let cluster = match lookup("CACHE_CLUSTER").as_deref() {
            None | Some("false") | Some("") => false,
            Some("true") => true,
            Some(_) => return Err(Error::Config("CACHE_CLUSTER must be true or false".into())),
        };
        let cache = lookup("CACHE_URL")
            .filter(|u| !u.trim().is_empty())
            .map(|url| CacheSettings {
                url,
                cluster,
                timeout: cache_timeout,
                breaker_open_for: cache_breaker_open_for,
                namespace: table_name.clone(),
            });
        let attachment_max_bytes = number("ATTACHMENT_MAX_BYTES", DEFAULT_ATTACHMENT_MAX_BYTES)?;
        let item_shape = match switch("LEAN_ITEMS", lookup("LEAN_ITEMS").as_deref())? {
            false => ItemShape::Full,
            true => ItemShape::Lean,
        };
        let compress_text = switch("COMPRESS_TEXT", lookup("COMPRESS_TEXT").as_deref())?;
        let slot_keys = switch("SLOT_KEYS", lookup("SLOT_KEYS").as_deref())?;
        let days = |name: &str, default: i64| {
            number(name, default as u64).and_then(|d| {
                i64::try_from(d)
                    .ok()
                    .filter(|d| *d <= 3650)
                    .map(chrono::Duration::days)
                    .ok_or_else(|| Error::Config(format!("{name} must be at most 3650")))
            })
        };
        let tombstone_retention = days(
            "TOMBSTONE_RETENTION_DAYS",
            crate::service::DEFAULT_TOMBSTONE_RETENTION_DAYS,
        )?;
        let batch_record_retention = days("BATCH_RECORD_DAYS", DEFAULT_BATCH_RECORD_DAYS)?;
        let sync_settle = chrono::Duration::seconds(
            number("SYNC_SETTLE_SECONDS", DEFAULT_SYNC_SETTLE_SECONDS)?.min(3600) as i64,
        );
        let health_check_timeout = Duration::from_millis(number(
            "HEALTH_CHECK_TIMEOUT_MS",
            DEFAULT_HEALTH_CHECK_TIMEOUT.as_millis() as u64,
        )?);
        let batch_time_budget = Duration::from_millis(match lookup("BATCH_TIME_BUDGET_MS") {
            Some(raw) if raw == "0" => 0,
            _ => number("BATCH_TIME_BUDGET_MS", 20_000)?,
        });
        if batch_record_retention >= tombstone_retention {
            return Err(Error::Config(
                "BATCH_RECORD_DAYS must be less than TOMBSTONE_RETENTION_DAYS: a replayed \
                 create must still find its conversation's tombstone"
                    .into(),
            ));
        }
        let export_conversations_per_run = number(
            "EXPORT_CONVERSATIONS_PER_RUN",
            crate::account_export::CONVERSATIONS_PER_RUN as u64,
        )?
        .min(10_000) as usize;
        let store_max_attempts =
            number("DYNAMODB_MAX_ATTEMPTS", DEFAULT_STORE_MAX_ATTEMPTS)?.min(10) as u32;
        let export_retry_base = Duration::from_millis(number(
            "EXPORT_RETRY_BASE_MS",
            crate::account_export::DEFAULT_RETRY_BASE.as_millis() as u64,
        )?);
        let mut limits = Limits::default().with_daily_tokens(number(
            DAILY_TOKENS_VARIABLE,
            domain::usage::DEFAULT_DAILY_TOKENS,
        )?);
        for kind in Metered::ALL {
            let per_minute = number(kind.variable(), u64::from(kind.default_per_minute()))?;
            let per_minute = u32::try_from(per_minute)
                .map_err(|_| Error::Config(format!("{} is too large", kind.variable())))?;
            limits = limits.with_per_minute(kind, per_minute);
        }
        let mut preset_models: Vec<String> = lookup("ALLOWED_MODELS")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .map(str::to_owned)
            .collect();
        if let Some(model) = lookup("MODEL_ID").filter(|m| !m.trim().is_empty()) {
            if !preset_models.contains(&model) {
                preset_models.push(model);
            }
        }
        let preset_templates = match lookup("PRESET_TEMPLATES").filter(|t| !t.trim().is_empty()) {
            Some(json) => domain::preset::PresetTemplate::parse_all(&json, &preset_models)?,
            None => Vec::new(),
        };
        Ok(Self {
            preset_models,
            preset_templates,
            limits,
            export_retry_base,
            store_max_attempts,
            export_conversations_per_run,
            metrics_namespace: lookup("METRICS_NAMESPACE")
                .filter(|n| !n.trim().is_empty())
                .unwrap_or_else(|| crate::metrics::NAMESPACE.to_owned()),
            batch_time_budget,
            health_check_timeout,
            tombstone_retention,
            batch_record_retention,
            sync_settle,
            attachments_bucket: lookup("ATTACHMENTS_BUCKET").filter(|b| !b.trim().is_empty()),
            attachment_max_bytes,
            s3_force_path_style: lookup("S3_FORCE_PATH_STYLE").as_deref() == Some("true"),
            item_shape,
            compress_text,
            slot_keys,
            cache,
            cache_name: lookup("CACHE_NAME").filter(|n| !n.trim().is_empty()),
            cache_timeout,
            cache_breaker_open_for,
            migration_session_gap: chrono::Duration::minutes(session_gap_minutes),
            table_name,
            cursor_keys,
            delete_purge_budget,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| vars.get(name).cloned()
    }

    #[test]
    fn a_missing_table_name_is_named_in_the_error() {
        let err = Config::from_lookup(lookup(&[("CURSOR_SECRET", &"s".repeat(32))])).unwrap_err();
        assert!(err.to_string().contains("TABLE_NAME"));
    }

    #[test]
    fn limits_have_defaults_and_each_can_be_set() {
        let base = [
            ("TABLE_NAME", "t"),
            ("CURSOR_SECRET", "s".repeat(32).leak() as &str),
        ];
        let config = Config::from_lookup(lookup(&base)).unwrap();
        assert_eq!(config.limits, Limits::default());
        let config = Config::from_lookup(lookup(
            &[
                &base[..],
                &[
                    ("LIMIT_SEARCHES_PER_MINUTE", "7"),
                    ("LIMIT_DAILY_MODEL_TOKENS", "900"),
                ],
            ]
            .concat(),
        ))
        .unwrap();
        assert_eq!(config.limits.per_minute(Metered::Search), 7);
        assert_eq!(config.limits.daily_tokens, 900);
        let zero = [&base[..], &[("LIMIT_COMPLETIONS_PER_MINUTE", "0")]].concat();
        let err = Config::from_lookup(lookup(&zero)).unwrap_err();
        assert!(err.to_string().contains("LIMIT_COMPLETIONS_PER_MINUTE"));
    }

    #[test]
    fn a_short_cursor_secret_is_refused() {
        let err = Config::from_lookup(lookup(&[("TABLE_NAME", "t"), ("CURSOR_SECRET", "short")]))
            .unwrap_err();
        assert!(err.to_string().contains("CURSOR_SECRET"));
    }

    #[test]
    fn a_secret_arn_is_preferred_to_a_fixed_secret() {
        let arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:cursor-AbCdEf";
        let config = Config::from_lookup(lookup(&[
            ("TABLE_NAME", "t"),
            ("CURSOR_SECRET_ARN", arn),
            ("CURSOR_SECRET", "short"),
        ]))
        .unwrap();
        assert_eq!(config.cursor_keys, CursorKeySource::Stored(arn.to_owned()));
        let err = Config::from_lookup(lookup(&[("TABLE_NAME", "t")])).unwrap_err();
        assert!(err
            .to_string()
            .contains("CURSOR_SECRET_ARN or CURSOR_SECRET"));
    }
}
