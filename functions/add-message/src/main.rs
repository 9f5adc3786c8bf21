//! Lambda function for `shared::http::add_message`.

use lambda_http::{run, service_fn, Error};
use shared::http::{add_message, State};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_http::tracing::init_default_subscriber();
    let state = State::from_env().await?;
    run(service_fn(|request| add_message(&state, request))).await
}
