//! Lambda function for `assistant::presets::update_preset`.

use assistant::presets::update_preset;
use assistant::State;
use lambda_http::Error;
use shared::http::serve;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::logging::init();
    let state = State::from_env_without_bucket().await?;
    serve(|request| update_preset(&state, request)).await
}
