//! Lambda function for `shared::http::edit_message`.

use lambda_http::Error;
use shared::http::{edit_message, serve, State};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::logging::init();
    let state = State::from_env().await?;
    serve(|request| edit_message(&state, request)).await
}
