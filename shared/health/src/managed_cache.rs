//! The cache by its ElastiCache name (`CACHE_NAME`): where to connect, found at cold start
//! when no `CACHE_URL` is configured, and its status for the health check. Only the health
//! function asks ElastiCache; every other function is given `CACHE_URL` by the template.

use domain::error::{chain, Error};

/// A cache as ElastiCache describes it: where to connect, and its status (for health checks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheDescription {
    pub url: String,
    pub cluster: bool,
    pub status: String,
}

/// Finds the cache named `name`: an ElastiCache Serverless cache (TLS, cluster mode), or else
/// a replication group. Used at cold start when only `CACHE_NAME` is configured.
pub async fn describe_cache(
    client: &aws_sdk_elasticache::Client,
    name: &str,
) -> Result<CacheDescription, Error> {
    match client
        .describe_serverless_caches()
        .serverless_cache_name(name)
        .send()
        .await
    {
        Ok(output) => {
            if let Some(cache) = output.serverless_caches().first() {
                return serverless_description(cache);
            }
        }
        // Not a serverless cache (or a region or endpoint without them): try a group.
        Err(error) => {
            tracing::debug!(error = %chain(&error), "no serverless cache {name}")
        }
    }
    let output = client
        .describe_replication_groups()
        .replication_group_id(name)
        .send()
        .await
        .map_err(|e| Error::Config(format!("CACHE_NAME {name}: {}", chain(&e))))?;
    let group = output
        .replication_groups()
        .first()
        .ok_or_else(|| Error::Config(format!("CACHE_NAME {name}: no such cache")))?;
    replication_group_description(group)
}

fn url(tls: bool, endpoint: Option<&aws_sdk_elasticache::types::Endpoint>) -> Option<String> {
    let endpoint = endpoint?;
    let scheme = if tls { "rediss" } else { "redis" };
    Some(format!(
        "{scheme}://{}:{}",
        endpoint.address()?,
        endpoint.port().unwrap_or(6379)
    ))
}

fn serverless_description(
    cache: &aws_sdk_elasticache::types::ServerlessCache,
) -> Result<CacheDescription, Error> {
    Ok(CacheDescription {
        url: url(true, cache.endpoint())
            .ok_or_else(|| Error::Config("the serverless cache has no endpoint yet".into()))?,
        cluster: true,
        status: cache.status().unwrap_or("unknown").to_owned(),
    })
}

fn replication_group_description(
    group: &aws_sdk_elasticache::types::ReplicationGroup,
) -> Result<CacheDescription, Error> {
    let tls = group.transit_encryption_enabled().unwrap_or(false);
    let cluster = group.cluster_enabled().unwrap_or(false);
    let endpoint = if cluster {
        group.configuration_endpoint()
    } else {
        group
            .node_groups()
            .first()
            .and_then(|n| n.primary_endpoint())
    };
    Ok(CacheDescription {
        url: url(tls, endpoint)
            .ok_or_else(|| Error::Config("the replication group has no endpoint yet".into()))?,
        cluster,
        status: group.status().unwrap_or("unknown").to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_elasticache::types::{Endpoint, ServerlessCache};

    #[test]
    fn a_serverless_cache_is_reached_over_tls_in_cluster_mode() {
        let cache = ServerlessCache::builder()
            .serverless_cache_name("numina-cache")
            .status("available")
            .endpoint(
                Endpoint::builder()
                    .address("numina-cache-abc123.serverless.euw1.cache.amazonaws.com")
                    .port(6379)
                    .build(),
            )
            .build();
        assert_eq!(
            serverless_description(&cache).unwrap(),
            CacheDescription {
                url: "rediss://numina-cache-abc123.serverless.euw1.cache.amazonaws.com:6379".into(),
                cluster: true,
                status: "available".into(),
            }
        );
        let creating = ServerlessCache::builder().status("creating").build();
        assert!(serverless_description(&creating).is_err());
    }
}
