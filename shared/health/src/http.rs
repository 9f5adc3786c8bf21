//! `GET /health`.

use lambda_http::http::{header, StatusCode};
use lambda_http::Request;
use shared::http::{json, HandlerResult};

use crate::check::Health;
use crate::state::State;

/// `GET /health` (no token): whether the table, the bucket and the cache answer and how the
/// last migration run went; 200 when all is well, 503 naming what is not. No user data.
pub async fn health(state: &State, _request: Request) -> HandlerResult {
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
    let status = if report.failed.is_empty() {
        StatusCode::OK
    } else {
        tracing::warn!(failed = ?report.failed, "unhealthy");
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut response = json(status, &report);
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    Ok(response)
}
