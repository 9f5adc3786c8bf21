//! Lambda function for `shared::http::health`.

use lambda_http::{run, service_fn, Error};
use shared::http::{health, State};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_http::tracing::init_default_subscriber();
    let state = State::from_env().await?;
    run(service_fn(|request| health(&state, request))).await
}
