//! Lambda function for `shared::http::get_conversation`.

use lambda_http::Error;
use shared::http::{get_conversation, serve, State};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::logging::init();
    let state = State::from_env().await?;
    serve(|request| get_conversation(&state, request)).await
}
