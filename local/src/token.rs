//! Bearer tokens for the local API: HS256 JWTs signed with a local secret, checked the way
//! API Gateway's JWT authorizer checks Cognito's (signature, issuer, audience, expiry).

use std::collections::HashMap;

use chrono::Utc;
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{json, Map, Value};

pub const ISSUER: &str = "numina-local";
pub const AUDIENCE: &str = "numina-mobile";
/// The documented default signing secret of the local API (never used in AWS).
pub const DEFAULT_SECRET: &str = "numina-local-development-secret";
/// The scope the API's authorizer requires (`AuthorizationScopes` in `template.yaml`): what
/// Cognito puts in its access tokens, and never in an ID token.
pub const ACCESS_SCOPE: &str = "aws.cognito.signin.user.admin";

#[derive(Clone)]
pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl Tokens {
    pub fn new(secret: &str) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "sub", "iss", "aud"]);
        Self {
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            validation,
        }
    }

    /// A token for `user`, valid for `seconds`.
    pub fn mint(&self, user: &str, seconds: i64) -> String {
        let now = Utc::now().timestamp();
        let claims = json!({
            "sub": user,
            "iss": ISSUER,
            "aud": AUDIENCE,
            "iat": now,
            "exp": now + seconds,
            "token_use": "access",
            "scope": ACCESS_SCOPE,
        });
        encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing of a JSON object cannot fail")
    }

    /// The claims of a valid token, as strings (as API Gateway passes them to the function).
    /// The claims of a valid access token (signed, unexpired, ours, with the API's scope), as
    /// API Gateway's JWT authorizer passes them on; `None` for anything else.
    pub fn verify(&self, token: &str) -> Option<HashMap<String, String>> {
        let data = decode::<Map<String, Value>>(token, &self.decoding, &self.validation).ok()?;
        let scopes = data
            .claims
            .get("scope")
            .and_then(Value::as_str)
            .unwrap_or("");
        if !scopes.split_whitespace().any(|scope| scope == ACCESS_SCOPE) {
            return None;
        }
        Some(
            data.claims
                .into_iter()
                .map(|(name, value)| match value {
                    Value::String(text) => (name, text),
                    other => (name, other.to_string()),
                })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minted_token_verifies_and_carries_the_subject() {
        let tokens = Tokens::new("secret");
        let claims = tokens.verify(&tokens.mint("alice", 60)).unwrap();
        assert_eq!(claims["sub"], "alice");
    }

    #[test]
    fn expired_or_foreign_tokens_are_refused() {
        let tokens = Tokens::new("secret");
        assert!(tokens.verify(&tokens.mint("alice", -3600)).is_none());
        assert!(Tokens::new("other")
            .verify(&tokens.mint("alice", 60))
            .is_none());
        assert!(tokens.verify("not.a.token").is_none());
    }

    #[test]
    fn a_token_without_the_apis_scope_is_refused_as_an_id_token_is() {
        let tokens = Tokens::new("secret");
        let now = Utc::now().timestamp();
        let id_token = encode(
            &Header::new(Algorithm::HS256),
            &json!({
                "sub": "alice", "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 60,
                "token_use": "id",
            }),
            &EncodingKey::from_secret(b"secret"),
        )
        .unwrap();
        assert!(tokens.verify(&id_token).is_none());
    }
}
