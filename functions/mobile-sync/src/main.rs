//! Lambda function for `shared::http::mobile_sync`.

use lambda_http::Error;
use shared::http::{mobile_sync, serve, State};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::logging::init();
    let state = State::from_env().await?;
    serve(|request| mobile_sync(&state, request)).await
}
