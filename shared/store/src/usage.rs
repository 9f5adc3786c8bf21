//! A user's usage of the limited routes: one item per user and UTC day, counted atomically by
//! conditional updates, so concurrent requests on any number of functions never pass a limit
//! together. For each kind of route (`domain::usage::Metered`) the item holds the minute its
//! window counts (`<kind>Window`), the requests in it (`<kind>InWindow`) and today's total
//! (`<kind>Requests`); beside them today's model tokens (`tokens`).

use std::collections::BTreeMap;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};

use super::{is_conditional_check_failure, item_key, store_error, Item, Store};
use domain::error::Error;
use domain::keys;
use domain::model::UserId;
use domain::usage::{self, Limits, Metered, Refusal};

const TOKENS: &str = "tokens";

/// What a user used on one day.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DayUsage {
    /// Requests admitted today, by kind of route (`Metered::name`).
    pub requests: BTreeMap<&'static str, u64>,
    /// Model tokens spent today.
    pub tokens: u64,
}

/// One request's attempt at a user's counts.
struct Attempt<'a> {
    user: &'a UserId,
    kind: Metered,
    day: String,
    window: i64,
    per_minute: u32,
    token_budget: Option<u64>,
    expires_at: i64,
}

impl Store {
    /// Counts a request of `kind` by `user` at `now` if their limits admit it: fewer than the
    /// kind's limit in this minute and, for a kind that spends tokens, some of today's
    /// budget left. Refused, nothing is counted.
    pub async fn admit(
        &self,
        user: &UserId,
        kind: Metered,
        limits: &Limits,
        now: DateTime<Utc>,
    ) -> Result<Result<(), Refusal>, Error> {
        let mut attempt = Attempt {
            user,
            kind,
            day: usage::day_of(now),
            window: usage::window_of(now),
            per_minute: limits.per_minute(kind),
            token_budget: kind.spends_tokens().then_some(limits.daily_tokens),
            expires_at: usage::usage_expires_at(now).timestamp(),
        };
        // Usually the first update counts the request. A new minute takes a second one (the
        // window moves on), and a race with another request moving it a third.
        for _ in 0..3 {
            if self.count_in_window(&attempt).await? || self.open_window(&attempt).await? {
                return Ok(Ok(()));
            }
            let today = self.read_usage(user, &attempt.day, true).await?;
            if let (Some(budget), Some(today)) = (attempt.token_budget, &today) {
                if number(today, TOKENS) >= budget {
                    return Ok(Err(Refusal::Tokens {
                        retry_after_seconds: usage::seconds_to_next_day(now),
                    }));
                }
            }
            let window = today
                .as_ref()
                .map_or(0, |item| number(item, &attribute(kind, "Window")));
            let in_window = today.as_ref().is_some_and(|item| {
                window == attempt.window as u64
                    && number(item, &attribute(kind, "InWindow")) >= u64::from(attempt.per_minute)
            });
            if in_window {
                return Ok(Err(Refusal::Rate {
                    retry_after_seconds: usage::seconds_to_window_end(now, attempt.window),
                }));
            }
            // Another request, a moment later by its clock, already opened the next minute:
            // this one counts in it.
            if window > attempt.window as u64 {
                attempt.window = window as i64;
            }
        }
        Err(Error::Unavailable(
            "usage counts kept changing under this request".into(),
        ))
    }

    /// Adds `tokens` a completion spent to `user`'s count for the day of `now`.
    pub async fn add_tokens(
        &self,
        user: &UserId,
        tokens: u64,
        now: DateTime<Utc>,
    ) -> Result<(), Error> {
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(usage_key(user, &usage::day_of(now))))
            .update_expression("SET expiresAt = :expires ADD #tokens :tokens")
            .expression_attribute_names("#tokens", TOKENS)
            .expression_attribute_values(":tokens", AttributeValue::N(tokens.to_string()))
            .expression_attribute_values(
                ":expires",
                AttributeValue::N(usage::usage_expires_at(now).timestamp().to_string()),
            )
            .send()
            .await
            .map_err(|e| store_error("count model tokens", e))?;
        Ok(())
    }

    /// What `user` used on the day of `now`.
    pub async fn usage_on(&self, user: &UserId, now: DateTime<Utc>) -> Result<DayUsage, Error> {
        let item = self
            .read_usage(user, &usage::day_of(now), false)
            .await?
            .unwrap_or_default();
        Ok(DayUsage {
            requests: Metered::ALL
                .iter()
                .map(|kind| (kind.name(), number(&item, &attribute(*kind, "Requests"))))
                .collect(),
            tokens: number(&item, TOKENS),
        })
    }

    /// Counts the request in the current window, if that is the window the item counts and
    /// it has room.
    async fn count_in_window(&self, attempt: &Attempt<'_>) -> Result<bool, Error> {
        self.update_counts(
            attempt,
            "SET expiresAt = :expires ADD #inWindow :one, #requests :one",
            "#window = :window AND #inWindow < :perMinute",
        )
        .await
    }

    /// Starts the current window with this request, if the item counts an earlier one.
    async fn open_window(&self, attempt: &Attempt<'_>) -> Result<bool, Error> {
        self.update_counts(
            attempt,
            "SET expiresAt = :expires, #window = :window, #inWindow = :one ADD #requests :one",
            "(attribute_not_exists(#window) OR #window < :window) AND :one <= :perMinute",
        )
        .await
    }

    /// One conditional update of the counts, with the token budget's condition added for a
    /// kind that spends tokens; false if a condition failed.
    async fn update_counts(
        &self,
        attempt: &Attempt<'_>,
        update: &str,
        window_condition: &str,
    ) -> Result<bool, Error> {
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(usage_key(attempt.user, &attempt.day)))
            .update_expression(update)
            .expression_attribute_names("#window", attribute(attempt.kind, "Window"))
            .expression_attribute_names("#inWindow", attribute(attempt.kind, "InWindow"))
            .expression_attribute_names("#requests", attribute(attempt.kind, "Requests"))
            .expression_attribute_values(":window", AttributeValue::N(attempt.window.to_string()))
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .expression_attribute_values(
                ":perMinute",
                AttributeValue::N(attempt.per_minute.to_string()),
            )
            .expression_attribute_values(
                ":expires",
                AttributeValue::N(attempt.expires_at.to_string()),
            );
        let condition = match attempt.token_budget {
            Some(budget) => {
                request = request
                    .expression_attribute_names("#tokens", TOKENS)
                    .expression_attribute_values(":budget", AttributeValue::N(budget.to_string()));
                format!(
                    "({window_condition}) AND (attribute_not_exists(#tokens) OR #tokens < :budget)"
                )
            }
            None => window_condition.to_owned(),
        };
        match request.condition_expression(condition).send().await {
            Ok(_) => Ok(true),
            Err(e) if is_conditional_check_failure(&e) => Ok(false),
            Err(e) => Err(store_error("count a limited request", e)),
        }
    }

    async fn read_usage(
        &self,
        user: &UserId,
        day: &str,
        consistent: bool,
    ) -> Result<Option<Item>, Error> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(usage_key(user, day)))
            .consistent_read(consistent)
            .send()
            .await
            .map_err(|e| store_error("read usage", e))?;
        Ok(output.item)
    }
}

fn usage_key(user: &UserId, day: &str) -> Item {
    item_key(&keys::usage_partition(user), &keys::usage_sort_key(day))
}

/// The attribute of `kind`'s count named by `suffix` (`completionWindow`, …).
fn attribute(kind: Metered, suffix: &str) -> String {
    format!("{}{suffix}", kind.name())
}

/// A whole number attribute of `item`, 0 when absent or not a number.
fn number(item: &Item, name: &str) -> u64 {
    item.get(name)
        .and_then(|value| value.as_n().ok())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}
