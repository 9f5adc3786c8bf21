//! What every AWS call shares: the SDK's configuration, read from Lambda's environment, and
//! errors described in a few words for health reports and logs.

use aws_config::environment::EnvironmentVariableCredentialsProvider;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode, TlsContext, TrustStore};
use aws_smithy_runtime_api::client::http::SharedHttpClient;

/// The roots AWS's service endpoints chain to: Amazon Trust Services' five (Amazon Root CA
/// 1 to 4, Starfield Services Root Certificate Authority - G2), the set Amazon Trust Services
/// recommends to anyone keeping their own trust store.
pub const AWS_TRUST_ROOTS: &[u8] = include_bytes!("../certs/amazon-trust-services.pem");

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
        ))
        .http_client(https_client());
    if let Some(sleep) = aws_smithy_async::rt::sleep::default_async_sleep() {
        config = config.sleep_impl(sleep);
    }
    if let Some(url) = variable("AWS_ENDPOINT_URL") {
        config = config.endpoint_url(url);
    }
    config.build()
}

/// The SDK's own HTTPS client (hyper, rustls on aws-lc) trusting only [`AWS_TRUST_ROOTS`].
/// The SDK's default trusts the platform's store, which it reads and parses from disk when
/// the first client is built: every certificate file of `/etc/ssl/certs`, about half of what
/// a function's cold start spent beyond a bare Lambda runtime. Every client built from one
/// configuration shares this one (and its connection pool).
pub fn https_client() -> SharedHttpClient {
    let trust = TlsContext::builder()
        .with_trust_store(TrustStore::empty().with_pem_certificate(AWS_TRUST_ROOTS))
        .build()
        .expect("a trust store of PEM certificates only");
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc))
        .tls_context(trust)
        .build_https()
}

/// An SDK error in a few words (the store's, shared by every AWS call).
pub use store::describe_sdk_error;

#[cfg(test)]
mod tests {
    use rustls::pki_types::{pem::PemObject, CertificateDer};

    use super::*;

    fn certificates(pem: &[u8]) -> Vec<CertificateDer<'static>> {
        CertificateDer::pem_slice_iter(pem)
            .collect::<Result<_, _>>()
            .expect("PEM certificates")
    }

    #[test]
    fn the_trust_store_holds_the_five_amazon_trust_services_roots_as_the_platform_ships_them() {
        let roots = certificates(AWS_TRUST_ROOTS);
        assert_eq!(roots.len(), 5);
        let mut store = rustls::RootCertStore::empty();
        assert_eq!(store.add_parsable_certificates(roots.clone()), (5, 0));
        // Where the platform has Debian's copies (this machine, CI), they are the same bytes.
        for (root, name) in roots.iter().zip([
            "Amazon_Root_CA_1",
            "Amazon_Root_CA_2",
            "Amazon_Root_CA_3",
            "Amazon_Root_CA_4",
            "Starfield_Services_Root_Certificate_Authority_-_G2",
        ]) {
            if let Ok(pem) = std::fs::read(format!("/etc/ssl/certs/{name}.pem")) {
                assert_eq!(certificates(&pem), vec![root.clone()], "{name}");
            }
        }
    }

    #[tokio::test]
    async fn a_client_built_from_the_configuration_builds_its_tls_connector_from_that_store() {
        // Building a client builds its connector (the SDK validates the base configuration):
        // a trust store it could not read would panic here.
        let sdk = sdk_config_from_env();
        let _client = aws_sdk_dynamodb::Client::new(&sdk);
    }
}
