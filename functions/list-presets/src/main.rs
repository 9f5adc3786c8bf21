//! Lambda function for `shared::http::list_presets`.

use lambda_http::Error;
use shared::http::{list_presets, serve, State};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::logging::init();
    let state = State::from_env_without_bucket().await?;
    serve(|request| list_presets(&state, request)).await
}
