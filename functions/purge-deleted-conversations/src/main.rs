//! Lambda function for `shared::streams::purge_deleted_conversations`, fed by the table's
//! stream (removals of conversation items only, by the template's event filter).

use lambda_runtime::{run, service_fn, Error};
use shared::metrics::observed;
use shared::state::State;
use shared::streams::purge_deleted_conversations;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::logging::init();
    let state = State::from_env().await?;
    run(service_fn(|event| {
        let work = purge_deleted_conversations(&state, event);
        observed("purge-deleted-conversations", work, std::io::stdout)
    }))
    .await
}
