//! Lambda function for `assistant::presets::list_presets`.

use assistant::presets::list_presets;
use assistant::State;
use lambda_http::Error;
use shared::http::serve;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::logging::init();
    let state = State::from_env_without_bucket().await?;
    serve(|request| list_presets(&state, request)).await
}
