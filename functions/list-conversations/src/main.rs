//! Lambda function for `shared::http::list_conversations`.

use lambda_http::{run, service_fn, Error};
use shared::http::{list_conversations, State};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_http::tracing::init_default_subscriber();
    let state = State::from_env().await?;
    run(service_fn(|request| list_conversations(&state, request))).await
}
