//! Lambda function for `shared::http::unshare_with_person`.

use lambda_http::Error;
use shared::http::{serve, unshare_with_person, State};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::logging::init();
    let state = State::from_env_without_bucket().await?;
    serve(|request| unshare_with_person(&state, request)).await
}
