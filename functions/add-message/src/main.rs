//! Lambda function for `shared::http::add_message`.

use lambda_http::Error;
use shared::http::{add_message, serve, State};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_http::tracing::init_default_subscriber();
    let state = State::from_env().await?;
    serve(|request| add_message(&state, request)).await
}
