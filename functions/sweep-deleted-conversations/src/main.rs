//! Lambda function for `shared::purge::sweep_deleted_conversations`, run on a schedule: it
//! purges again each delete past the sweep's grace and answers what it did.

use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use shared::metrics::observed;
use shared::purge::sweep_deleted_conversations;
use shared::state::State;
use shared::streams::{time_left, DEADLINE_MARGIN};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::logging::init();
    let state = State::from_env().await?;
    run(service_fn(|event: LambdaEvent<serde_json::Value>| {
        let deadline = std::time::Instant::now()
            + time_left(event.context.deadline).saturating_sub(DEADLINE_MARGIN);
        let work = sweep_deleted_conversations(&state, deadline);
        observed("sweep-deleted-conversations", work, std::io::stdout)
    }))
    .await
}
