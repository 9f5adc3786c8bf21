//! Lambda function for `shared::streams::run_account_exports`, fed by its queue of the table's changes
//! (running account exports' jobs: `shared::table_changes::Worker::wants`), each message a record as the
//! stream gave it.

use lambda_runtime::{run, service_fn, Error};
use shared::metrics::observed;
use shared::state::State;
use shared::streams::run_account_exports;
use shared::table_changes::from_queue;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::logging::init();
    let state = State::from_env().await?;
    run(service_fn(|event| {
        let work = from_queue(event, |changes| run_account_exports(&state, changes));
        observed("run-account-exports", work, std::io::stdout)
    }))
    .await
}
