//! Lambda function for `shared::http::create_conversation`.

use lambda_http::Error;
use shared::http::{create_conversation, serve, State};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_http::tracing::init_default_subscriber();
    let state = State::from_env().await?;
    serve(|request| create_conversation(&state, request)).await
}
