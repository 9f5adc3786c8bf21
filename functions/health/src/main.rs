//! Lambda function for `shared::http::health`.

use lambda_http::Error;
use shared::http::{health, serve, State};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_http::tracing::init_default_subscriber();
    let state = State::from_env().await?;
    serve(|request| health(&state, request)).await
}
