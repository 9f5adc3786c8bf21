//! Lambda function for `shared::http::get_shared_with_me`.

use lambda_http::Error;
use shared::http::{get_shared_with_me, serve, State};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::logging::init();
    let state = State::from_env().await?;
    serve(|request| get_shared_with_me(&state, request)).await
}
