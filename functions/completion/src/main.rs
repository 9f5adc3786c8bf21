//! Lambda function for `assistant::http::complete` (POST /completion).

use assistant::http::complete;
use assistant::State;
use lambda_http::Error;
use shared::http::serve;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::logging::init();
    let state = State::from_env().await?;
    serve(|request| complete(&state, request)).await
}
