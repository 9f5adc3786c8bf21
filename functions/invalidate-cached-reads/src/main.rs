//! Lambda function for `shared::streams::invalidate_cached_reads`, fed by the table's stream:
//! bumps the cache generation of each user whose conversations changed. It touches only the
//! cache, so it builds only the cache's client: no DynamoDB or S3 client.

use lambda_runtime::{run, service_fn, Error};
use shared::cache::Cache;
use shared::config::Config;
use shared::metrics::observed;
use shared::streams::invalidate_cached_reads;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::logging::init();
    let config = Config::from_env()?;
    shared::metrics::install(&config.metrics_namespace);
    let cache = Cache::configured(config.cache);
    run(service_fn(|event| {
        let work = invalidate_cached_reads(&cache, event);
        observed("invalidate-cached-reads", work, std::io::stdout)
    }))
    .await
}
