//! Lambda function for `shared::http::export_conversation`.

use lambda_http::Error;
use shared::http::{export_conversation, serve, State};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::logging::init();
    let state = State::from_env().await?;
    serve(|request| export_conversation(&state, request)).await
}
