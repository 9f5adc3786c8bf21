//! Lambda function for `shared::http::mobile_sync`.

use lambda_http::Error;
use shared::http::{mobile_sync, serve, State};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_http::tracing::init_default_subscriber();
    let state = State::from_env().await?;
    serve(|request| mobile_sync(&state, request)).await
}
