//! Lambda function for `shared::http::migrate_conversations`.

use lambda_http::Error;
use shared::http::{migrate_conversations, serve, State};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::logging::init();
    let state = State::from_env().await?;
    serve(|request| migrate_conversations(&state, request)).await
}
