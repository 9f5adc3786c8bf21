//! Lambda function for `shared::streams::run_account_exports`, fed by the table's stream
//! (running account exports' jobs only, by the template's event filter).

use lambda_runtime::{run, service_fn, Error};
use shared::metrics::observed;
use shared::state::State;
use shared::streams::run_account_exports;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::logging::init();
    let state = State::from_env().await?;
    run(service_fn(|event| {
        let work = run_account_exports(&state, event);
        observed("run-account-exports", work, std::io::stdout)
    }))
    .await
}
