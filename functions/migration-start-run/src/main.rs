//! Lambda function for `shared::migration_job::start_run`: a step of the scheduled migration
//! state machine (`statemachines/migration.asl.json`).

use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use shared::metrics::observed;
use shared::migration_job::{start_run, StartInput};
use shared::state::State;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::logging::init();
    let state = State::from_env_without_bucket().await?;
    run(service_fn(|event: LambdaEvent<StartInput>| {
        let work = start_run(&state, event.payload);
        observed("migration-start-run", work, std::io::stdout)
    }))
    .await
}
