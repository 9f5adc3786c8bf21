//! Lambda function for `shared::http::create_preset`.

use lambda_http::Error;
use shared::http::{create_preset, serve, State};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::logging::init();
    let state = State::from_env_without_bucket().await?;
    serve(|request| create_preset(&state, request)).await
}
