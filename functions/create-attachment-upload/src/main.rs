//! Lambda function for `shared::http::create_attachment_upload`.

use lambda_http::Error;
use shared::http::{create_attachment_upload, serve, State};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::logging::init();
    let state = State::from_env().await?;
    serve(|request| create_attachment_upload(&state, request)).await
}
