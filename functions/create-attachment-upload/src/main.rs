//! Lambda function for `shared::http::create_attachment_upload`.

use lambda_http::{run, service_fn, Error};
use shared::http::{create_attachment_upload, State};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_http::tracing::init_default_subscriber();
    let state = State::from_env().await?;
    run(service_fn(|request| {
        create_attachment_upload(&state, request)
    }))
    .await
}
