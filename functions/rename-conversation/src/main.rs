//! Lambda function for `shared::http::rename_conversation`.

use lambda_http::Error;
use shared::http::{rename_conversation, serve, State};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::logging::init();
    let state = State::from_env_without_bucket().await?;
    serve(|request| rename_conversation(&state, request)).await
}
