//! Lambda function for `shared::http::share_conversation`.

use lambda_http::Error;
use shared::http::{serve, share_conversation, State};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::logging::init();
    let state = State::from_env().await?;
    serve(|request| share_conversation(&state, request)).await
}
