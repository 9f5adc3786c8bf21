//! Lambda function for `shared::http::decline_shared_with_me`.

use lambda_http::Error;
use shared::http::{decline_shared_with_me, serve, State};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::logging::init();
    let state = State::from_env_without_bucket().await?;
    serve(|request| decline_shared_with_me(&state, request)).await
}
