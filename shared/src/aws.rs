//! What every AWS call shares: the SDK's configuration, read from Lambda's environment, and
//! errors described in a few words for health reports and logs.

use aws_config::environment::EnvironmentVariableCredentialsProvider;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::SharedCredentialsProvider;

/// The SDK's configuration from the variables Lambda sets (the role's credentials in
/// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN`; `AWS_REGION`) and
/// `AWS_ENDPOINT_URL` where one is given (the local servers). Unlike `aws_config`'s default
/// loader it neither builds nor links the default credential and region chains (profile
/// files, SSO, STS, IMDS, container credentials): nothing to look up at cold start, less to
/// load.
pub fn sdk_config_from_env() -> SdkConfig {
    let variable = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let mut config = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(
            variable("AWS_REGION")
                .or_else(|| variable("AWS_DEFAULT_REGION"))
                .map(Region::new),
        )
        .credentials_provider(SharedCredentialsProvider::new(
            EnvironmentVariableCredentialsProvider::new(),
        ));
    if let Some(sleep) = aws_smithy_async::rt::sleep::default_async_sleep() {
        config = config.sleep_impl(sleep);
    }
    if let Some(url) = variable("AWS_ENDPOINT_URL") {
        config = config.endpoint_url(url);
    }
    config.build()
}

/// An SDK error in a few words (the store's, shared by every AWS call).
pub use store::describe_sdk_error;
