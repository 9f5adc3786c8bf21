//! `GET /health`.

use std::time::{Duration, Instant};

use lambda_http::http::{header, StatusCode};
use lambda_http::Request;
use shared::http::{json, HandlerResult};

use crate::check::{Health, HealthReport};
use crate::state::State;

/// How long a report is answered again before the checks run anew: `/health` needs no token,
/// so calls to it cannot make the function call the table, the bucket and ElastiCache per
/// request.
pub const REPORT_REUSED_FOR: Duration = Duration::from_secs(15);

/// `GET /health` (no token): whether the table, the bucket and the cache answer and how the
/// last migration run went; 200 when all is well, 503 naming what is not. No user data. A
/// report is reused for [`REPORT_REUSED_FOR`], its `Age` header saying how old it is.
pub async fn health(state: &State, _request: Request) -> HandlerResult {
    let (report, age) = match recent_report(state) {
        Some(recent) => recent,
        None => {
            let report = Health {
                store: state.conversations.store(),
                bucket: state.attachments.as_ref(),
                cache: state.conversations.cache(),
                managed_cache: state
                    .managed_cache
                    .as_ref()
                    .map(|(client, name)| (client, name.as_str())),
                timeout: state.config.health_check_timeout,
                now: state.now(),
            }
            .check()
            .await;
            *state.last_report.lock().unwrap_or_else(|e| e.into_inner()) =
                Some((Instant::now(), report.clone()));
            (report, Duration::ZERO)
        }
    };
    let status = if report.failed.is_empty() {
        StatusCode::OK
    } else {
        tracing::warn!(failed = ?report.failed, "unhealthy");
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut response = json(status, &report);
    let headers = response.headers_mut();
    headers.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    headers.insert(header::AGE, header::HeaderValue::from(age.as_secs()));
    Ok(response)
}

/// The last report and its age, if its checks ran within [`REPORT_REUSED_FOR`].
fn recent_report(state: &State) -> Option<(HealthReport, Duration)> {
    let last = state.last_report.lock().unwrap_or_else(|e| e.into_inner());
    let (checked_at, report) = last.as_ref()?;
    let age = checked_at.elapsed();
    (age < REPORT_REUSED_FOR).then(|| (report.clone(), age))
}
