//! Lambda function for `shared::http::delete_conversation`.

use lambda_http::Error;
use shared::http::{delete_conversation, serve, State};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::logging::init();
    let state = State::from_env().await?;
    serve(|request| delete_conversation(&state, request)).await
}
