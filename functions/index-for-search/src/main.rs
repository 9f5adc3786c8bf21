//! Lambda function for `shared::streams::index_for_search`, fed by its queue of the table's changes
//! (new messages, and conversations created or changed: `shared::table_changes::Worker::wants`), each message a record as the
//! stream gave it.

use lambda_runtime::{run, service_fn, Error};
use shared::metrics::observed;
use shared::state::State;
use shared::streams::index_for_search;
use shared::table_changes::from_queue;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::logging::init();
    let state = State::from_env().await?;
    run(service_fn(|event| {
        let work = from_queue(event, |changes| index_for_search(&state, changes));
        observed("index-for-search", work, std::io::stdout)
    }))
    .await
}
