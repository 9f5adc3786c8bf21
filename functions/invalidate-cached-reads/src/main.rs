//! Lambda function for `shared::streams::invalidate_cached_reads`, fed by the table's stream:
//! bumps the cache generation of each user whose conversations changed.

use lambda_runtime::{run, service_fn, Error};
use shared::metrics::observed;
use shared::state::State;
use shared::streams::invalidate_cached_reads;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let state = State::from_env().await?;
    run(service_fn(|event| {
        let work = invalidate_cached_reads(&state, event);
        observed("invalidate-cached-reads", work, std::io::stdout)
    }))
    .await
}
