//! The S3 client, built the first time it is used. Most requests never reach S3 (it holds
//! message content too large for an item, uploaded files and exports), and building an SDK
//! client is most of a function's cold start (its endpoint rules, and a TLS connector that
//! loads the root certificates), so a function pays for it on the request that needs it.

use std::ops::Deref;
use std::sync::{Arc, OnceLock};

/// An S3 client built from `config` on first use, then shared by every clone.
#[derive(Clone, Debug)]
pub struct LazyS3 {
    config: aws_sdk_s3::Config,
    client: Arc<OnceLock<aws_sdk_s3::Client>>,
}

impl LazyS3 {
    pub fn new(config: aws_sdk_s3::Config) -> Self {
        Self {
            config,
            client: Arc::new(OnceLock::new()),
        }
    }

    /// Whether the client has been built (it is built by the first call through it).
    pub fn is_built(&self) -> bool {
        self.client.get().is_some()
    }
}

impl Deref for LazyS3 {
    type Target = aws_sdk_s3::Client;

    fn deref(&self) -> &aws_sdk_s3::Client {
        self.client
            .get_or_init(|| aws_sdk_s3::Client::from_conf(self.config.clone()))
    }
}

/// A client already built (tools and tests that have one).
impl From<aws_sdk_s3::Client> for LazyS3 {
    fn from(client: aws_sdk_s3::Client) -> Self {
        Self {
            config: client.config().clone(),
            client: Arc::new(OnceLock::from(client)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_is_built_on_first_use_and_shared_by_clones() {
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new("eu-west-1"))
            .build();
        let s3 = LazyS3::new(config);
        let clone = s3.clone();
        assert!(!s3.is_built());
        assert_eq!(
            clone.config().region().map(|r| r.as_ref()),
            Some("eu-west-1")
        );
        assert!(s3.is_built(), "a clone built it for both");
    }
}
