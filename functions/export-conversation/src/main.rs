//! Lambda function for `shared::http::export_conversation`.

use lambda_http::Error;
use shared::http::{export_conversation, serve, State};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_http::tracing::init_default_subscriber();
    let state = State::from_env().await?;
    serve(|request| export_conversation(&state, request)).await
}
