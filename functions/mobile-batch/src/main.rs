//! Lambda function for `shared::http::mobile_batch`.

use lambda_http::{run, service_fn, Error};
use shared::http::{mobile_batch, State};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_http::tracing::init_default_subscriber();
    let state = State::from_env().await?;
    run(service_fn(|request| mobile_batch(&state, request))).await
}
