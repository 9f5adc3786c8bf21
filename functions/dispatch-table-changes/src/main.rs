//! Lambda function for `shared::table_changes::Dispatcher`, fed by the table's stream (the
//! changes some background function acts on, by the template's event filter): sends each to
//! the queue of each function it concerns. It only sends to queues, so it builds only the
//! queues' client.

use lambda_runtime::{run, service_fn, Error};
use shared::config::Config;
use shared::metrics::observed;
use shared::table_changes::Dispatcher;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::logging::init();
    let config = Config::from_env()?;
    shared::metrics::install(&config.metrics_namespace);
    let sqs = aws_sdk_sqs::Client::new(&shared::aws::sdk_config_from_env());
    let dispatcher = Dispatcher::from_env(sqs)?;
    run(service_fn(|event| {
        let work = dispatcher.dispatch(event);
        observed("dispatch-table-changes", work, std::io::stdout)
    }))
    .await
}
