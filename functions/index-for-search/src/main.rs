//! Lambda function for `shared::streams::index_for_search`, fed by the table's stream (new
//! messages and conversation items only, by the template's event filter).

use lambda_runtime::{run, service_fn, Error};
use shared::metrics::observed;
use shared::state::State;
use shared::streams::index_for_search;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::logging::init();
    let state = State::from_env().await?;
    run(service_fn(|event| {
        let work = index_for_search(&state, event);
        observed("index-for-search", work, std::io::stdout)
    }))
    .await
}
