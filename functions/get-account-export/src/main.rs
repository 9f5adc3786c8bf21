//! Lambda function for `shared::http::get_account_export`.

use lambda_http::Error;
use shared::http::{get_account_export, serve, State};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_http::tracing::init_default_subscriber();
    let state = State::from_env().await?;
    serve(|request| get_account_export(&state, request)).await
}
