//! Opaque pagination cursors. A cursor carries the store's position and the scope it was
//! issued for (the caller and the query), signed with HMAC-SHA256, so a client can neither
//! forge one nor replay one from another user or another query.

use std::collections::BTreeMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::error::Error;

type HmacSha256 = Hmac<Sha256>;

/// A position in a query: the key attributes of the last item seen, all strings in our design.
pub type Position = BTreeMap<String, String>;

/// Signs and checks cursors with the deployment's secret.
#[derive(Clone)]
pub struct CursorSigner {
    key: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct Payload {
    /// The scope: who asked and for which query.
    s: String,
    /// The position.
    p: Position,
}

impl CursorSigner {
    pub fn new(secret: &[u8]) -> Self {
        Self {
            key: secret.to_vec(),
        }
    }

    fn mac(&self) -> HmacSha256 {
        HmacSha256::new_from_slice(&self.key).expect("HMAC accepts keys of any length")
    }

    pub fn encode(&self, scope: &str, position: Position) -> String {
        let payload = Payload {
            s: scope.to_owned(),
            p: position,
        };
        let json = serde_json::to_vec(&payload).expect("a map of strings always serializes");
        let body = URL_SAFE_NO_PAD.encode(json);
        let mut mac = self.mac();
        mac.update(body.as_bytes());
        let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{body}.{signature}")
    }

    /// The position in `cursor`, if it is genuine and was issued for `scope`.
    pub fn decode(&self, scope: &str, cursor: &str) -> Result<Position, Error> {
        let invalid = || Error::invalid("cursor is not valid for this request");
        let (body, signature) = cursor.split_once('.').ok_or_else(invalid)?;
        let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|_| invalid())?;
        let mut mac = self.mac();
        mac.update(body.as_bytes());
        mac.verify_slice(&signature).map_err(|_| invalid())?;
        let json = URL_SAFE_NO_PAD.decode(body).map_err(|_| invalid())?;
        let payload: Payload = serde_json::from_slice(&json).map_err(|_| invalid())?;
        if payload.s != scope {
            return Err(invalid());
        }
        Ok(payload.p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn position() -> Position {
        Position::from([("PK".to_owned(), "USER#alice#CONV#1".to_owned())])
    }

    #[test]
    fn a_cursor_round_trips_within_its_scope() {
        let signer = CursorSigner::new(b"secret");
        let cursor = signer.encode("alice/list", position());
        assert_eq!(signer.decode("alice/list", &cursor).unwrap(), position());
    }

    #[test]
    fn a_cursor_from_another_scope_is_rejected() {
        let signer = CursorSigner::new(b"secret");
        let cursor = signer.encode("alice/list", position());
        assert!(signer.decode("mallory/list", &cursor).is_err());
    }

    proptest::proptest! {
        /// Anything sent as a cursor is refused or decoded, never a panic.
        #[test]
        fn any_string_as_a_cursor_never_panics(cursor in "\\PC{0,300}", scope in "\\PC{0,40}") {
            let _ = CursorSigner::new(b"secret").decode(&scope, &cursor);
        }

        /// Even a payload carrying a genuine signature (what only the server can make) is
        /// refused unless it is a cursor's, never a panic.
        #[test]
        fn signed_garbage_never_panics(payload in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let signer = CursorSigner::new(b"secret");
            let body = URL_SAFE_NO_PAD.encode(&payload);
            let mut mac = signer.mac();
            mac.update(body.as_bytes());
            let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
            let _ = signer.decode("alice/list", &format!("{body}.{signature}"));
        }
    }

    #[test]
    fn a_tampered_cursor_is_rejected() {
        let signer = CursorSigner::new(b"secret");
        let cursor = signer.encode("alice/list", position());
        let (_, signature) = cursor.split_once('.').unwrap();
        let forged_body =
            URL_SAFE_NO_PAD.encode(br#"{"s":"alice/list","p":{"PK":"USER#bob#CONV#1"}}"#);
        assert!(signer
            .decode("alice/list", &format!("{forged_body}.{signature}"))
            .is_err());
        assert!(signer.decode("alice/list", "garbage").is_err());
        assert!(CursorSigner::new(b"other")
            .decode("alice/list", &cursor)
            .is_err());
    }
}
