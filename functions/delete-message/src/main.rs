//! Lambda function for `shared::http::delete_message`.

use lambda_http::Error;
use shared::http::{delete_message, serve, State};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::logging::init();
    let state = State::from_env().await?;
    serve(|request| delete_message(&state, request)).await
}
