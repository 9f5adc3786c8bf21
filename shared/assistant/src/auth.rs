//! Verifying Cognito access tokens inside a function, for the one entry point that API
//! Gateway's JWT authorizer does not front: the streaming Function URL. It checks what the
//! authorizer checks: the signature against the user pool's published keys, the issuer, the
//! expiry, that it is an access token, and that it was issued to our app client.

use std::collections::HashMap;

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use domain::error::Error;
use domain::model::UserId;

/// Checks bearer tokens against one user pool and app client.
pub struct JwtVerifier {
    keys: HashMap<String, DecodingKey>,
    validation: Validation,
    client_id: String,
}

#[derive(Deserialize)]
struct AccessClaims {
    sub: String,
    token_use: String,
    client_id: String,
}

impl JwtVerifier {
    /// Builds a verifier from the pool's key set (as served at `<issuer>/.well-known/jwks.json`).
    pub fn new(issuer: &str, client_id: &str, keys: &JwkSet) -> Result<Self, Error> {
        let keys = keys
            .keys
            .iter()
            .filter_map(|jwk| {
                let kid = jwk.common.key_id.clone()?;
                DecodingKey::from_jwk(jwk).ok().map(|key| (kid, key))
            })
            .collect::<HashMap<_, _>>();
        if keys.is_empty() {
            return Err(Error::Config(
                "the user pool's key set has no usable keys".into(),
            ));
        }
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_issuer(&[issuer]);
        // Cognito access tokens carry `client_id` rather than `aud`; checked below.
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        Ok(Self {
            keys,
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

    /// Fetches the pool's key set once, at cold start.
    pub async fn fetch(issuer: &str, client_id: &str) -> Result<Self, Error> {
        ai::provider::install_tls_provider();
        let url = format!("{}/.well-known/jwks.json", issuer.trim_end_matches('/'));
        let keys: JwkSet = reqwest::get(&url)
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| Error::Config(format!("cannot fetch {url}: {e}")))?
            .json()
            .await
            .map_err(|e| Error::Config(format!("unreadable key set at {url}: {e}")))?;
        Self::new(issuer, client_id, &keys)
    }

    /// The user a bearer token (`Authorization` header value) was issued to.
    pub fn verify(&self, authorization: &str) -> Result<UserId, Error> {
        let token = authorization
            .strip_prefix("Bearer ")
            .or_else(|| authorization.strip_prefix("bearer "))
            .unwrap_or(authorization);
        let kid = decode_header(token)
            .ok()
            .and_then(|header| header.kid)
            .ok_or(Error::Unauthenticated)?;
        let key = self.keys.get(&kid).ok_or(Error::Unauthenticated)?;
        let claims = decode::<AccessClaims>(token, key, &self.validation)
            .map_err(|_| Error::Unauthenticated)?
            .claims;
        if claims.token_use != "access" || claims.client_id != self.client_id {
            return Err(Error::Unauthenticated);
        }
        UserId::parse(&claims.sub)
    }
}
