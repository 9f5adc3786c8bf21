//! Lambda function for `shared::streams::purge_deleted_conversations`, fed by its queue of the table's changes
//! (deleted conversations: `shared::table_changes::Worker::wants`), each message a record as the
//! stream gave it.

use lambda_runtime::{run, service_fn, Error};
use shared::metrics::observed;
use shared::state::State;
use shared::streams::purge_deleted_conversations;
use shared::table_changes::from_queue;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::logging::init();
    let state = State::from_env().await?;
    run(service_fn(|event| {
        let work = from_queue(event, |changes| {
            purge_deleted_conversations(&state, changes)
        });
        observed("purge-deleted-conversations", work, std::io::stdout)
    }))
    .await
}
