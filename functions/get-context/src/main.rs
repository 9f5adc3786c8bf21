//! Lambda function for `assistant::http::get_context`.

use assistant::http::get_context;
use assistant::State;
use lambda_http::Error;
use shared::http::serve;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::logging::init();
    let state = State::from_env().await?;
    serve(|request| get_context(&state, request)).await
}
