//! Lambda function for `shared::http::add_message`.

use lambda_http::Error;
use shared::http::{add_message, serve, State};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::logging::init();
    let state = State::from_env().await?;
    serve(|request| add_message(&state, request)).await
}
