//! Lambda function for `shared::migration_job::list_users`: a step of the scheduled migration
//! state machine (`statemachines/migration.asl.json`).

use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use shared::metrics::observed;
use shared::migration_job::{list_users, ShardPage};
use shared::state::State;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::logging::init();
    let state = State::from_env_without_bucket().await?;
    run(service_fn(|event: LambdaEvent<ShardPage>| {
        let work = list_users(&state, event.payload);
        observed("migration-list-users", work, std::io::stdout)
    }))
    .await
}
