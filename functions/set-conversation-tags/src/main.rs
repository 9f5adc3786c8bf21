//! Lambda function for `shared::http::set_conversation_tags`.

use lambda_http::Error;
use shared::http::{serve, set_conversation_tags, State};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::logging::init();
    let state = State::from_env_without_bucket().await?;
    serve(|request| set_conversation_tags(&state, request)).await
}
