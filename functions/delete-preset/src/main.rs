//! Lambda function for `shared::http::delete_preset`.

use lambda_http::Error;
use shared::http::{delete_preset, serve, State};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::logging::init();
    let state = State::from_env_without_bucket().await?;
    serve(|request| delete_preset(&state, request)).await
}
