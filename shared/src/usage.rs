//! Per-user limits on the expensive routes (`domain::usage`), applied before their work and
//! counted in the table: a request over a limit is refused with when to try again, a
//! completion's model tokens are added to the day's count, and a user reads their own usage.

use chrono::{DateTime, Utc};

use crate::error::Error;
use crate::model::UserId;
use crate::store::{DayUsage, Store};
use domain::usage::{Limits, Metered, Refusal};

#[derive(Clone)]
pub struct Usage {
    store: Store,
    limits: Limits,
}

/// A user's usage today beside their limits.
pub struct UsageReport {
    pub today: DayUsage,
    pub limits: Limits,
    /// When the day's counts (and the token budget) start over.
    pub resets_at: DateTime<Utc>,
}

impl Usage {
    pub fn new(store: Store, limits: Limits) -> Self {
        Self { store, limits }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Counts a request of `kind` by `user`, or refuses it (`Error::RateLimited`) when they are
    /// over the kind's rate or, for a completion, out of today's model tokens.
    pub async fn admit(
        &self,
        user: &UserId,
        kind: Metered,
        now: DateTime<Utc>,
    ) -> Result<(), Error> {
        // On the heap: the handlers that call this are large futures already.
        match Box::pin(self.store.admit(user, kind, &self.limits, now)).await? {
            Ok(()) => Ok(()),
            Err(refusal) => {
                crate::metrics::rate_limited(kind.name());
                Err(match refusal {
                    Refusal::Rate {
                        retry_after_seconds,
                    } => Error::RateLimited {
                        message: format!(
                            "too many {} requests: at most {} a minute; retry after {retry_after_seconds} s",
                            kind.name(),
                            self.limits.per_minute(kind)
                        ),
                        retry_after_seconds,
                    },
                    Refusal::Tokens {
                        retry_after_seconds,
                    } => Error::RateLimited {
                        message: format!(
                            "today's {} model tokens are used; they start over at midnight UTC",
                            self.limits.daily_tokens
                        ),
                        retry_after_seconds,
                    },
                })
            }
        }
    }

    /// Adds the model tokens a completion spent to `user`'s day. A failure is logged and
    /// counted (the reply is already saved and answered): the budget then undercounts, never
    /// the user's data.
    pub async fn spend_tokens(&self, user: &UserId, tokens: u64, now: DateTime<Utc>) {
        if tokens == 0 {
            return;
        }
        crate::metrics::model_tokens(tokens);
        if let Err(error) = Box::pin(self.store.add_tokens(user, tokens, now)).await {
            tracing::error!(error = %crate::error::chain(&error), tokens, "model tokens not counted");
            crate::metrics::tokens_not_counted(tokens);
        }
    }

    /// `user`'s usage on the day of `now`, and their limits.
    pub async fn report(&self, user: &UserId, now: DateTime<Utc>) -> Result<UsageReport, Error> {
        Ok(UsageReport {
            today: self.store.usage_on(user, now).await?,
            limits: self.limits.clone(),
            resets_at: domain::usage::next_day(now),
        })
    }
}
