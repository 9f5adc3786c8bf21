//! Lambda function for `shared::http::continue_shared`.

use lambda_http::Error;
use shared::http::{continue_shared, serve, State};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::logging::init();
    let state = State::from_env().await?;
    serve(|request| continue_shared(&state, request)).await
}
