//! Lambda function for `shared::http::share_with_person`.

use lambda_http::Error;
use shared::http::{serve, share_with_person, State};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::logging::init();
    let state = State::from_env_without_bucket().await?;
    serve(|request| share_with_person(&state, request)).await
}
