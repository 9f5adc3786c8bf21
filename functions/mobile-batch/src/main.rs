//! Lambda function for `shared::http::mobile_batch`.

use lambda_http::Error;
use shared::http::{mobile_batch, serve, State};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_http::tracing::init_default_subscriber();
    let state = State::from_env().await?;
    serve(|request| mobile_batch(&state, request)).await
}
