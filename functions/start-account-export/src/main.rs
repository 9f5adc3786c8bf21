//! Lambda function for `shared::http::start_account_export`.

use lambda_http::Error;
use shared::http::{serve, start_account_export, State};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::logging::init();
    let state = State::from_env_without_bucket().await?;
    serve(|request| start_account_export(&state, request)).await
}
