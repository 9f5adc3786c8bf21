//! What the health function builds at cold start: the conversations' services
//! (`shared::state::State`, which this derefs to) and, when `CACHE_NAME` is configured,
//! ElastiCache's client to report the cache's status (and to find the cache when no
//! `CACHE_URL` is given).

use std::ops::Deref;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use domain::error::Error;
use shared::cache::CacheSettings;
use shared::config::Config;

use crate::check::HealthReport;
use crate::managed_cache::describe_cache;

#[derive(Clone)]
pub struct State {
    pub core: shared::state::State,
    /// ElastiCache and the cache's name there, when `CACHE_NAME` is configured.
    pub managed_cache: Option<(aws_sdk_elasticache::Client, String)>,
    /// The last report and when its checks ran: answered again for a few seconds.
    pub last_report: Arc<Mutex<Option<(Instant, HealthReport)>>>,
}

impl Deref for State {
    type Target = shared::state::State;

    fn deref(&self) -> &Self::Target {
        &self.core
    }
}

impl State {
    pub async fn from_env() -> Result<Self, Error> {
        let mut config = Config::from_env()?;
        let sdk = shared::aws::sdk_config_from_env();
        let managed_cache = config
            .cache_name
            .clone()
            .map(|name| (aws_sdk_elasticache::Client::new(&sdk), name));
        if let (None, Some((client, name))) = (&config.cache, &managed_cache) {
            // A cache named but not located: ask ElastiCache once, at cold start. A cache
            // that cannot be found leaves the function running without one.
            match describe_cache(client, name).await {
                Ok(found) => {
                    config.cache = Some(CacheSettings {
                        url: found.url,
                        cluster: found.cluster,
                        timeout: config.cache_timeout,
                        breaker_open_for: config.cache_breaker_open_for,
                        namespace: config.table_name.clone(),
                    })
                }
                Err(error) => {
                    tracing::error!(error = %error, "cache {name} not found; running without it")
                }
            }
        }
        Ok(Self {
            core: shared::state::State::new(config, &sdk),
            managed_cache,
            last_report: Arc::default(),
        })
    }

    /// The health check over `core`, without ElastiCache (the local API and the tests).
    pub fn over(core: shared::state::State) -> Self {
        Self {
            core,
            managed_cache: None,
            last_report: Arc::default(),
        }
    }
}
