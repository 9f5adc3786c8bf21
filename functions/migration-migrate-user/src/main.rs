//! Lambda function for `shared::migration_job::migrate_user`: a step of the scheduled migration
//! state machine (`statemachines/migration.asl.json`).

use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use shared::metrics::observed;
use shared::migration_job::{migrate_user, UserStep};
use shared::state::State;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::logging::init();
    let state = State::from_env().await?;
    run(service_fn(|event: LambdaEvent<UserStep>| {
        let work = migrate_user(&state, event.payload);
        observed("migration-migrate-user", work, std::io::stdout)
    }))
    .await
}
