//! Lambda function for `assistant::streams::summarize_conversations`, fed by the table's
//! stream (conversation items changed, by the template's event filter).

use assistant::streams::summarize_conversations;
use assistant::State;
use lambda_runtime::{run, service_fn, Error};
use shared::metrics::observed;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::logging::init();
    let state = State::from_env().await?;
    run(service_fn(|event| {
        let work = summarize_conversations(&state, event);
        observed("summarize-conversations", work, std::io::stdout)
    }))
    .await
}
