//! Per-user limits on the routes that cost the most to answer: a request rate for each kind of
//! such route, and a daily budget of model tokens. What the limits are and how their windows
//! fall is decided here; the store keeps each user's counts, one item per user and day.

use chrono::{DateTime, Duration, DurationRound, Utc};

/// The routes a user's rate is counted on, each kind with its own limit per minute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metered {
    /// `POST /completion`, through the HTTP API or the streaming Function URL: a model call.
    Completion,
    /// `GET /search`: up to several queries of the term index.
    Search,
    /// `GET /conversations/{id}/export` and `POST /exports`: whole conversations written out.
    Export,
    /// `POST /mobile/batch`: up to 100 operations.
    Batch,
    /// `POST /conversations/migrate`: a user's short-term memory moved into conversations.
    Migration,
}

impl Metered {
    pub const ALL: [Metered; 5] = [
        Self::Completion,
        Self::Search,
        Self::Export,
        Self::Batch,
        Self::Migration,
    ];

    /// The name in the usage report, the store's attribute names and the configuration.
    pub fn name(self) -> &'static str {
        match self {
            Self::Completion => "completion",
            Self::Search => "search",
            Self::Export => "export",
            Self::Batch => "batch",
            Self::Migration => "migration",
        }
    }

    /// The variable that sets this kind's limit per minute.
    pub fn variable(self) -> &'static str {
        match self {
            Self::Completion => "LIMIT_COMPLETIONS_PER_MINUTE",
            Self::Search => "LIMIT_SEARCHES_PER_MINUTE",
            Self::Export => "LIMIT_EXPORTS_PER_MINUTE",
            Self::Batch => "LIMIT_BATCHES_PER_MINUTE",
            Self::Migration => "LIMIT_MIGRATIONS_PER_MINUTE",
        }
    }

    /// The limit per minute when the configuration sets none: several times what a person
    /// using the app does, far below what one client in a loop can send.
    pub fn default_per_minute(self) -> u32 {
        match self {
            Self::Completion => 20,
            Self::Search => 60,
            Self::Export => 10,
            Self::Batch => 30,
            Self::Migration => 5,
        }
    }

    /// Whether requests of this kind call the model, and so spend the daily token budget.
    pub fn spends_tokens(self) -> bool {
        self == Self::Completion
    }
}

/// The variable that sets the daily budget of model tokens per user.
pub const DAILY_TOKENS_VARIABLE: &str = "LIMIT_DAILY_MODEL_TOKENS";
/// The daily budget of model tokens (prompt and context in, reply out) per user when the
/// configuration sets none: a few hundred ordinary exchanges.
pub const DEFAULT_DAILY_TOKENS: u64 = 200_000;

/// Every user's limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    per_minute: [u32; Metered::ALL.len()],
    /// Model tokens a user may spend in a UTC day; a completion is admitted while any remain
    /// (so the last one of a day may go over by its reply).
    pub daily_tokens: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            per_minute: Metered::ALL.map(Metered::default_per_minute),
            daily_tokens: DEFAULT_DAILY_TOKENS,
        }
    }
}

impl Limits {
    pub fn per_minute(&self, kind: Metered) -> u32 {
        self.per_minute[Self::slot(kind)]
    }

    pub fn with_per_minute(mut self, kind: Metered, limit: u32) -> Self {
        self.per_minute[Self::slot(kind)] = limit;
        self
    }

    pub fn with_daily_tokens(self, daily_tokens: u64) -> Self {
        Self {
            daily_tokens,
            ..self
        }
    }

    fn slot(kind: Metered) -> usize {
        Metered::ALL
            .iter()
            .position(|k| *k == kind)
            .expect("ALL lists every kind")
    }
}

/// Why a request was refused, and when the same request will be admitted again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The kind's limit for this minute is reached.
    Rate { retry_after_seconds: u64 },
    /// Today's model tokens are spent.
    Tokens { retry_after_seconds: u64 },
}

/// The UTC day a request counts in, as the store keys it (`2026-12-03`).
pub fn day_of(now: DateTime<Utc>) -> String {
    now.format("%Y-%m-%d").to_string()
}

/// The minute a request counts in, as whole minutes since the epoch.
pub fn window_of(now: DateTime<Utc>) -> i64 {
    now.timestamp().div_euclid(60)
}

/// Whole seconds (at least one) until the next minute's window opens.
pub fn seconds_to_next_window(now: DateTime<Utc>) -> u64 {
    seconds_to_window_end(now, window_of(now))
}

/// Seconds from `now` to the end of minute `window` (one already begun by another clock).
pub fn seconds_to_window_end(now: DateTime<Utc>, window: i64) -> u64 {
    seconds_until(now, (window + 1) * 60 * 1000)
}

/// When the next UTC day starts.
pub fn next_day(now: DateTime<Utc>) -> DateTime<Utc> {
    now.duration_trunc(Duration::days(1)).unwrap_or(now) + Duration::days(1)
}

/// Whole seconds (at least one) until the next UTC day, when the token budget starts over.
pub fn seconds_to_next_day(now: DateTime<Utc>) -> u64 {
    seconds_until(now, next_day(now).timestamp_millis())
}

/// How long a day's counts are kept (its TTL): a week after the day, for support to read.
pub fn usage_expires_at(now: DateTime<Utc>) -> DateTime<Utc> {
    next_day(now) + Duration::days(7)
}

fn seconds_until(now: DateTime<Utc>, epoch_millis: i64) -> u64 {
    let millis = (epoch_millis - now.timestamp_millis()).max(1);
    (millis as u64).div_ceil(1000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(h: u32, m: u32, s: u32, ms: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 3, h, m, s).unwrap() + Duration::milliseconds(ms as i64)
    }

    #[test]
    fn a_refused_request_waits_until_the_next_minute_at_least_a_second() {
        assert_eq!(seconds_to_next_window(at(10, 0, 0, 0)), 60);
        assert_eq!(seconds_to_next_window(at(10, 0, 59, 1)), 1);
        assert_eq!(seconds_to_next_window(at(10, 0, 30, 500)), 30);
        assert_eq!(
            window_of(at(10, 0, 59, 999)) + 1,
            window_of(at(10, 1, 0, 0))
        );
    }

    #[test]
    fn the_token_budget_starts_over_at_midnight_utc() {
        assert_eq!(seconds_to_next_day(at(23, 59, 30, 0)), 30);
        assert_eq!(seconds_to_next_day(at(0, 0, 0, 0)), 86_400);
        assert_eq!(day_of(at(23, 59, 59, 999)), "2026-12-03");
        assert_eq!(
            next_day(at(12, 0, 0, 0)),
            Utc.with_ymd_and_hms(2026, 12, 4, 0, 0, 0).unwrap()
        );
    }

    #[test]
    fn each_kind_has_its_own_limit_and_only_completions_spend_tokens() {
        let limits = Limits::default().with_per_minute(Metered::Search, 3);
        assert_eq!(limits.per_minute(Metered::Search), 3);
        assert_eq!(limits.per_minute(Metered::Completion), 20);
        let spending: Vec<_> = Metered::ALL
            .into_iter()
            .filter(|k| k.spends_tokens())
            .collect();
        assert_eq!(spending, [Metered::Completion]);
    }
}
