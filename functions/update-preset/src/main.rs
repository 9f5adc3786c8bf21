//! Lambda function for `shared::http::update_preset`.

use lambda_http::Error;
use shared::http::{serve, update_preset, State};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::logging::init();
    let state = State::from_env_without_bucket().await?;
    serve(|request| update_preset(&state, request)).await
}
