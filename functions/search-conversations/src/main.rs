//! Lambda function for `shared::http::search_conversations`.

use lambda_http::Error;
use shared::http::{search_conversations, serve, State};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::logging::init();
    let state = State::from_env().await?;
    serve(|request| search_conversations(&state, request)).await
}
