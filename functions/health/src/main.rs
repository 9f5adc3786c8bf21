//! Lambda function for `health_check::http::health`.

use health_check::http::health;
use health_check::State;
use lambda_http::Error;
use shared::http::serve;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::logging::init();
    let state = State::from_env().await?;
    serve(|request| health(&state, request)).await
}
