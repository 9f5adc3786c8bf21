//! Lambda function for `shared::http::revoke_share`.

use lambda_http::Error;
use shared::http::{revoke_share, serve, State};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::logging::init();
    let state = State::from_env_without_bucket().await?;
    serve(|request| revoke_share(&state, request)).await
}
