//! Lambda function for `shared::http::switch_branch`.

use lambda_http::Error;
use shared::http::{serve, switch_branch, State};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::logging::init();
    let state = State::from_env().await?;
    serve(|request| switch_branch(&state, request)).await
}
