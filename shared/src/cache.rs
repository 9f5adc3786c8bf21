//! Cache-aside over Redis or Valkey (ElastiCache Serverless speaks both, over TLS, in cluster
//! mode). The cache is an optimisation, never a dependency:
//!
//! - every operation is bounded by a short timeout; a failure or timeout opens a circuit
//!   breaker, and for a while after that the cache is not tried at all (reads go to the
//!   store, writes skip the cache), so a cache outage costs one timeout per instance, not one
//!   per request;
//! - the connection is made lazily, once per cold start, and reused; a cache that is down at
//!   cold start does not fail the function.
//!
//! Freshness: every key of a user's cached reads contains the user's *generation*, one small
//! value per user that every write of theirs replaces with a fresh random one after the store
//! has the write (never a count: counts start again when the cache loses its data).
//! One write thus makes every cached page of the user unreachable at once, and a read that
//! raced with the write can only ever have cached under the old generation.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, FromRedisValue, RedisResult};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::OnceCell;
use tokio::time::Instant;

use crate::model::UserId;

/// How long a user's generation counter lives without writes (far beyond any cached entry).
const GENERATION_TTL_SECONDS: i64 = 24 * 3600;

/// Where the cache is and how much it may cost a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheSettings {
    /// `redis://host:port` or `rediss://host:port` (TLS).
    pub url: String,
    /// Cluster mode (ElastiCache Serverless, cluster-mode replication groups).
    pub cluster: bool,
    /// The longest one cache operation may take before the request goes on without it.
    pub timeout: Duration,
    /// How long the cache is left alone after it failed.
    pub breaker_open_for: Duration,
    /// Separates caches of different tables (stacks, tests) sharing one server.
    pub namespace: String,
}

/// Counts of cache use since the cold start (the metrics issue publishes them).
#[derive(Debug, Default)]
pub struct CacheStats {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub errors: AtomicU64,
    /// Operations skipped because the breaker was open.
    pub skipped: AtomicU64,
}

/// The cache could not be reached (or its breaker is open).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the cache is unavailable")]
pub struct CacheUnavailable;

/// What is cached, and for how long (the specification's lifetimes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cached {
    /// A page of a user's conversation list: 5 minutes.
    ConversationList,
    /// A conversation with a window of its history: 5 minutes.
    Conversation,
    /// Mobile sync data: 2 minutes.
    SyncData,
}

impl Cached {
    fn ttl_seconds(self) -> u64 {
        match self {
            Self::ConversationList | Self::Conversation => 300,
            Self::SyncData => 120,
        }
    }

    fn tag(self) -> &'static str {
        match self {
            Self::ConversationList => "list",
            Self::Conversation => "conv",
            Self::SyncData => "sync",
        }
    }
}

#[derive(Clone)]
enum Connection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Connection {
    async fn query<T: FromRedisValue>(&self, command: &Cmd) -> RedisResult<T> {
        match self {
            Self::Single(connection) => command.query_async(&mut connection.clone()).await,
            Self::Cluster(connection) => command.query_async(&mut connection.clone()).await,
        }
    }
}

struct Inner {
    settings: CacheSettings,
    client: Client,
    connection: OnceCell<Connection>,
    /// Milliseconds since `epoch` until which the breaker is open.
    open_until_ms: AtomicI64,
    epoch: Instant,
    stats: CacheStats,
    /// The generation keys of users whose write this instance could not make known to the
    /// cache (it was unreachable, or the breaker open). Until one of their bumps succeeds,
    /// this instance reads none of their cached entries: what it cached before that write
    /// would otherwise be served again once the cache is back (the stream consumer bumps the
    /// generation for every instance, a moment later).
    owed_bumps: std::sync::Mutex<std::collections::HashSet<String>>,
}

// One per cold start, behind an Arc: the size difference does not matter.
#[allow(clippy::large_enum_variant)]
enum Client {
    Single(redis::Client),
    Cluster(redis::cluster::ClusterClient),
}

/// The cache, or none (then every read goes to the store).
#[derive(Clone, Default)]
pub struct Cache {
    inner: Option<Arc<Inner>>,
}

impl Cache {
    /// No cache: reads always go to the store.
    pub fn disabled() -> Self {
        Self::default()
    }

    /// The configured cache (`CACHE_URL`), or none when there is none or it cannot be used:
    /// a function always runs, the cache only makes it faster.
    pub fn configured(settings: Option<CacheSettings>) -> Self {
        settings
            .map(Self::new)
            .transpose()
            .unwrap_or_else(|error| {
                tracing::error!(error = %error, "cache not usable; running without it");
                None
            })
            .unwrap_or_default()
    }

    /// A cache at `settings.url`; nothing is connected until the first use.
    pub fn new(settings: CacheSettings) -> Result<Self, crate::Error> {
        let config_error = |e: redis::RedisError| crate::Error::Config(format!("CACHE_URL: {e}"));
        let client = if settings.cluster {
            Client::Cluster(
                redis::cluster::ClusterClientBuilder::new(vec![settings.url.as_str()])
                    .connection_timeout(settings.timeout)
                    .response_timeout(settings.timeout)
                    .retries(0)
                    .build()
                    .map_err(config_error)?,
            )
        } else {
            Client::Single(redis::Client::open(settings.url.as_str()).map_err(config_error)?)
        };
        Ok(Self {
            inner: Some(Arc::new(Inner {
                settings,
                client,
                connection: OnceCell::new(),
                open_until_ms: AtomicI64::new(0),
                epoch: Instant::now(),
                stats: CacheStats::default(),
                owed_bumps: Default::default(),
            })),
        })
    }

    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// Whether the cache answers a PING within `timeout` (health checks: past the breaker,
    /// which it neither consults nor trips). `None` without a cache.
    pub async fn ping(&self, timeout: std::time::Duration) -> Option<Result<(), String>> {
        let inner = self.inner.as_ref()?;
        let attempt = async {
            inner
                .connection()
                .await?
                .query::<String>(&redis::cmd("PING"))
                .await
        };
        Some(match tokio::time::timeout(timeout, attempt).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(error)) => Err(format!("unreachable ({})", error.category())),
            Err(_) => Err("timed out".to_owned()),
        })
    }

    pub fn stats(&self) -> Option<&CacheStats> {
        self.inner.as_ref().map(|inner| &inner.stats)
    }

    /// The user's current generation, or `None` when the cache cannot be used now (or this
    /// instance still owes it a bump for one of the user's writes, and cannot pay it now).
    pub async fn generation(&self, user: &UserId) -> Option<u64> {
        let inner = self.inner.as_ref()?;
        if inner.owes_bump(user) && self.try_invalidate_user(user).await.is_err() {
            return None;
        }
        // The current generation, or (none yet, or the cache lost it) a fresh one, set in the
        // same command: an absent generation is never read as a value it had before.
        let fresh = fresh_generation();
        let current: Option<u64> = inner
            .run(
                redis::cmd("SET")
                    .arg(inner.generation_key(user))
                    .arg(fresh)
                    .arg("NX")
                    .arg("GET")
                    .arg("EX")
                    .arg(GENERATION_TTL_SECONDS),
            )
            .await?;
        Some(current.unwrap_or(fresh))
    }

    /// Makes every cached read of the user unreachable. Called after each of their writes;
    /// if the cache cannot be reached, the table stream's consumer does it again
    /// (`streams::invalidate_cached_reads`), retrying until it can.
    pub async fn invalidate_user(&self, user: &UserId) {
        if self.try_invalidate_user(user).await.is_err() {
            tracing::warn!(user = %user.log_hash(), "cache generation not bumped now; the stream consumer will");
        }
    }

    /// Like [`Cache::invalidate_user`], saying whether it could (trivially so without a cache).
    pub async fn try_invalidate_user(&self, user: &UserId) -> Result<(), CacheUnavailable> {
        let Some(inner) = self.inner.as_ref() else {
            return Ok(());
        };
        let key = inner.generation_key(user);
        // A new generation is a fresh random value, not the next number: a cache that lost
        // its data (a restart, a failover) would start counting again, and an entry cached
        // under an old number by a read in flight across the loss would become current again.
        let fresh = fresh_generation();
        let bumped: Option<()> = inner
            .run(
                redis::cmd("SET")
                    .arg(&key)
                    .arg(fresh)
                    .arg("EX")
                    .arg(GENERATION_TTL_SECONDS),
            )
            .await;
        let mut owed = inner.owed_bumps.lock().unwrap_or_else(|e| e.into_inner());
        match bumped {
            Some(_) => {
                owed.remove(&key);
                Ok(())
            }
            None => {
                owed.insert(key);
                Err(CacheUnavailable)
            }
        }
    }

    /// A cached value of the user's, under their `generation`.
    pub async fn get<T: DeserializeOwned>(
        &self,
        user: &UserId,
        generation: u64,
        kind: Cached,
        request: &str,
    ) -> Option<T> {
        let inner = self.inner.as_ref()?;
        let key = inner.entry_key(user, generation, kind, request);
        let raw: Option<Vec<u8>> = inner.run(redis::cmd("GET").arg(&key)).await?;
        let value = raw.and_then(|bytes| serde_json::from_slice(&bytes).ok());
        crate::metrics::cache_lookup(value.is_some());
        let counter = if value.is_some() {
            &inner.stats.hits
        } else {
            &inner.stats.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        value
    }

    /// Caches a value of the user's under their `generation`, for the kind's lifetime.
    pub async fn put<T: Serialize>(
        &self,
        user: &UserId,
        generation: u64,
        kind: Cached,
        request: &str,
        value: &T,
    ) {
        let Some(inner) = self.inner.as_ref() else {
            return;
        };
        let Ok(bytes) = serde_json::to_vec(value) else {
            return;
        };
        let key = inner.entry_key(user, generation, kind, request);
        let _: Option<()> = inner
            .run(
                redis::cmd("SET")
                    .arg(&key)
                    .arg(bytes)
                    .arg("EX")
                    .arg(kind.ttl_seconds()),
            )
            .await;
    }
}

/// A generation no user has had: random, never a count.
fn fresh_generation() -> u64 {
    uuid::Uuid::new_v4().as_u64_pair().0
}

impl Inner {
    fn owes_bump(&self, user: &UserId) -> bool {
        let owed = self.owed_bumps.lock().unwrap_or_else(|e| e.into_inner());
        !owed.is_empty() && owed.contains(&self.generation_key(user))
    }

    /// `numina:<namespace>:{<user>}:…`: the braces make all of a user's keys one hash slot.
    fn generation_key(&self, user: &UserId) -> String {
        format!("numina:{}:{{{user}}}:gen", self.settings.namespace)
    }

    fn entry_key(&self, user: &UserId, generation: u64, kind: Cached, request: &str) -> String {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(request.as_bytes());
        let hash: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
        format!(
            "numina:{}:{{{user}}}:g{generation}:{}:{hash}",
            self.settings.namespace,
            kind.tag()
        )
    }

    fn now_ms(&self) -> i64 {
        i64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(i64::MAX)
    }

    fn breaker_open(&self) -> bool {
        self.now_ms() < self.open_until_ms.load(Ordering::Relaxed)
    }

    fn trip(&self) {
        crate::metrics::cache_error();
        self.stats.errors.fetch_add(1, Ordering::Relaxed);
        let until = self.now_ms()
            + i64::try_from(self.settings.breaker_open_for.as_millis()).unwrap_or(i64::MAX / 2);
        self.open_until_ms.store(until, Ordering::Relaxed);
    }

    async fn connection(&self) -> RedisResult<Connection> {
        self.connection
            .get_or_try_init(|| async {
                Ok(match &self.client {
                    Client::Single(client) => {
                        let config = redis::aio::ConnectionManagerConfig::new()
                            .set_connection_timeout(Some(self.settings.timeout))
                            .set_response_timeout(Some(self.settings.timeout))
                            .set_number_of_retries(1);
                        Connection::Single(ConnectionManager::new_lazy_with_config(
                            client.clone(),
                            config,
                        )?)
                    }
                    Client::Cluster(client) => {
                        Connection::Cluster(client.get_async_connection().await?)
                    }
                })
            })
            .await
            .cloned()
    }

    /// Runs one command within the timeout; `None` (and the breaker opens) if the cache is
    /// unusable, or `None` at once while the breaker is open.
    async fn run<T: FromRedisValue>(&self, command: &Cmd) -> Option<T> {
        if self.breaker_open() {
            self.stats.skipped.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let attempt = async { self.connection().await?.query::<T>(command).await };
        match tokio::time::timeout(self.settings.timeout, attempt).await {
            Ok(Ok(value)) => Some(value),
            Ok(Err(error)) => {
                tracing::warn!(error = %error, "cache unavailable; going on without it");
                self.trip();
                None
            }
            Err(_) => {
                tracing::warn!("cache timed out; going on without it");
                self.trip();
                None
            }
        }
    }
}
