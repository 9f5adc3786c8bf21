//! Lambda function for `shared::http::list_people`.

use lambda_http::Error;
use shared::http::{list_people, serve, State};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::logging::init();
    let state = State::from_env_without_bucket().await?;
    serve(|request| list_people(&state, request)).await
}
