//! Lambda function for `assistant::http::complete_streaming`: `/completion` through a Function
//! URL in response-streaming mode, verifying Cognito access tokens itself.

// The streaming runtime nests the handler future deeply.
#![recursion_limit = "256"]

use assistant::auth::JwtVerifier;
use assistant::http::complete_streaming;
use assistant::State;
use lambda_http::{run_with_streaming_response, service_fn, Error};
use shared::metrics::observed;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::logging::init();
    let state = State::from_env().await?;
    let verifier = JwtVerifier::from_env().await?;
    run_with_streaming_response(service_fn(|request| {
        let work = complete_streaming(&state, Some(&verifier), request);
        observed("completion-stream", work, std::io::stdout)
    }))
    .await
}
