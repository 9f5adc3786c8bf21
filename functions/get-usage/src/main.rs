//! Lambda function for `shared::http::get_usage` (GET /usage).

use lambda_http::Error;
use shared::http::{get_usage, serve, State};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::logging::init();
    let state = State::from_env_without_bucket().await?;
    serve(|request| get_usage(&state, request)).await
}
