//! Lambda function for `shared::http::read_shared`.

use lambda_http::Error;
use shared::http::{read_shared, serve, State};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::logging::init();
    let state = State::from_env().await?;
    serve(|request| read_shared(&state, request)).await
}
