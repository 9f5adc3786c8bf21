//! Lambda function for `shared::http::complete` (POST /completion).

use lambda_http::Error;
use shared::http::{complete, serve, State};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_http::tracing::init_default_subscriber();
    let state = State::from_env().await?;
    serve(|request| complete(&state, request)).await
}
