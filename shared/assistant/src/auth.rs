//! Verifying Cognito access tokens inside a function, for the one entry point that API
//! Gateway's JWT authorizer does not front: the streaming Function URL. It checks what the
//! authorizer checks: the signature against the user pool's published keys, the issuer, the
//! expiry, that it is an access token, and that it was issued to our app client.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use domain::error::Error;
use domain::model::UserId;

/// How long fetching the pool's key set may take.
pub const KEY_FETCH_TIMEOUT: Duration = Duration::from_secs(3);
/// A token signed with a key the verifier does not hold makes it fetch the key set again (the
/// pool rotated its keys), at most this often: unknown key ids cannot make it fetch per request.
pub const KEY_REFRESH_INTERVAL: Duration = Duration::from_secs(60);

/// Checks bearer tokens against one user pool and app client.
pub struct JwtVerifier {
    keys: RwLock<Keys>,
    /// Where the keys come from, when they were fetched (and can be fetched again).
    source: Option<KeySource>,
    /// One refresh at a time.
    refreshing: tokio::sync::Mutex<()>,
    refresh_interval: Duration,
    validation: Validation,
    client_id: String,
}

struct Keys {
    by_id: HashMap<String, DecodingKey>,
    fetched_at: Instant,
}

struct KeySource {
    url: String,
    http: reqwest::Client,
}

#[derive(Deserialize)]
struct AccessClaims {
    sub: String,
    token_use: String,
    client_id: String,
}

impl JwtVerifier {
    /// Builds a verifier from the pool's key set (as served at `<issuer>/.well-known/jwks.json`),
    /// kept as given.
    pub fn new(issuer: &str, client_id: &str, keys: &JwkSet) -> Result<Self, Error> {
        Self::build(issuer, client_id, keys, None)
    }

    fn build(
        issuer: &str,
        client_id: &str,
        keys: &JwkSet,
        source: Option<KeySource>,
    ) -> Result<Self, Error> {
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_issuer(&[issuer]);
        // Cognito access tokens carry `client_id` rather than `aud`; checked below.
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        Ok(Self {
            keys: RwLock::new(Keys {
                by_id: usable_keys(keys)?,
                fetched_at: Instant::now(),
            }),
            source,
            refreshing: tokio::sync::Mutex::new(()),
            refresh_interval: KEY_REFRESH_INTERVAL,
            validation,
            client_id: client_id.to_owned(),
        })
    }

    /// Reads `COGNITO_ISSUER` (`https://cognito-idp.<region>.amazonaws.com/<pool id>`) and
    /// `COGNITO_CLIENT_ID`, and fetches the pool's keys.
    pub async fn from_env() -> Result<Self, Error> {
        let required = |name: &str| {
            std::env::var(name)
                .ok()
                .filter(|v| !v.trim().is_empty())
                .ok_or_else(|| Error::Config(format!("{name} must be set")))
        };
        Self::fetch(
            &required("COGNITO_ISSUER")?,
            &required("COGNITO_CLIENT_ID")?,
        )
        .await
    }

    /// Fetches the pool's key set (at cold start), within [`KEY_FETCH_TIMEOUT`]; fetched
    /// again when a token names a key it does not hold (see [`KEY_REFRESH_INTERVAL`]).
    pub async fn fetch(issuer: &str, client_id: &str) -> Result<Self, Error> {
        ai::provider::install_tls_provider();
        let source = KeySource {
            url: format!("{}/.well-known/jwks.json", issuer.trim_end_matches('/')),
            http: reqwest::Client::builder()
                .timeout(KEY_FETCH_TIMEOUT)
                .build()
                .map_err(|e| Error::Config(format!("cannot build the key set's client: {e}")))?,
        };
        let keys = source.key_set().await?;
        Self::build(issuer, client_id, &keys, Some(source))
    }

    /// Fetches the keys again on an unknown key at most every `interval` (instead of
    /// [`KEY_REFRESH_INTERVAL`]).
    pub fn refreshing_at_most_every(mut self, interval: Duration) -> Self {
        self.refresh_interval = interval;
        self
    }

    /// The user a bearer token (`Authorization` header value) was issued to.
    pub async fn verify(&self, authorization: &str) -> Result<UserId, Error> {
        let token = authorization
            .strip_prefix("Bearer ")
            .or_else(|| authorization.strip_prefix("bearer "))
            .unwrap_or(authorization);
        let kid = decode_header(token)
            .ok()
            .and_then(|header| header.kid)
            .ok_or(Error::Unauthenticated)?;
        if !self.holds(&kid) {
            self.refresh().await;
        }
        let claims = {
            let keys = self.keys.read().unwrap_or_else(|e| e.into_inner());
            let key = keys.by_id.get(&kid).ok_or(Error::Unauthenticated)?;
            decode::<AccessClaims>(token, key, &self.validation)
                .map_err(|_| Error::Unauthenticated)?
                .claims
        };
        if claims.token_use != "access" || claims.client_id != self.client_id {
            return Err(Error::Unauthenticated);
        }
        UserId::parse(&claims.sub)
    }

    fn holds(&self, kid: &str) -> bool {
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner());
        keys.by_id.contains_key(kid)
    }

    /// Fetches the key set again, unless it was fetched within the refresh interval; keeps
    /// the keys it holds when the fetch fails.
    async fn refresh(&self) {
        let Some(source) = &self.source else { return };
        let _one_at_a_time = self.refreshing.lock().await;
        let fetched_at = self
            .keys
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .fetched_at;
        if fetched_at.elapsed() < self.refresh_interval {
            return;
        }
        let fetched = source.key_set().await.and_then(|keys| usable_keys(&keys));
        let mut keys = self.keys.write().unwrap_or_else(|e| e.into_inner());
        keys.fetched_at = Instant::now();
        match fetched {
            Ok(by_id) => keys.by_id = by_id,
            Err(error) => tracing::warn!(error = %error, "the user pool's keys were not refreshed"),
        }
    }
}

impl KeySource {
    async fn key_set(&self) -> Result<JwkSet, Error> {
        let url = &self.url;
        self.http
            .get(url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| Error::Config(format!("cannot fetch {url}: {e}")))?
            .json()
            .await
            .map_err(|e| Error::Config(format!("unreadable key set at {url}: {e}")))
    }
}

/// The keys of a set that can verify tokens, by key id; none is a configuration error.
fn usable_keys(keys: &JwkSet) -> Result<HashMap<String, DecodingKey>, Error> {
    let usable = keys
        .keys
        .iter()
        .filter_map(|jwk| {
            let kid = jwk.common.key_id.clone()?;
            DecodingKey::from_jwk(jwk).ok().map(|key| (kid, key))
        })
        .collect::<HashMap<_, _>>();
    if usable.is_empty() {
        return Err(Error::Config(
            "the user pool's key set has no usable keys".into(),
        ));
    }
    Ok(usable)
}
