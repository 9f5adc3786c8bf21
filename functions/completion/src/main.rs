//! Lambda function for `shared::http::complete` (POST /completion).

use lambda_http::{run, service_fn, Error};
use shared::http::{complete, State};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_http::tracing::init_default_subscriber();
    let state = State::from_env().await?;
    run(service_fn(|request| complete(&state, request))).await
}
