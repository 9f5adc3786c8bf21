//! Lambda function for `assistant::streams::summarize_conversations`, fed by its queue of the table's changes
//! (changed conversations: `shared::table_changes::Worker::wants`), each message a record as the
//! stream gave it.

use assistant::streams::summarize_conversations;
use assistant::State;
use lambda_runtime::{run, service_fn, Error};
use shared::metrics::observed;
use shared::table_changes::from_queue;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::logging::init();
    let state = State::from_env().await?;
    run(service_fn(|event| {
        let work = from_queue(event, |changes| summarize_conversations(&state, changes));
        observed("summarize-conversations", work, std::io::stdout)
    }))
    .await
}
