//! Opaque pagination cursors. A cursor carries the store's position and the scope it was
//! issued for (the caller and the query), signed with HMAC-SHA256, so a client can neither
//! forge one nor replay one from another user or another query.
//!
//! A cursor names the key that signed it (`<payload>.<signature>.<key id>`), so that during
//! a rotation of the signing secret the cursors signed with the previous key still verify.
//! A cursor without a key id (issued before keys had ids) is checked against every key.

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

/// One signing key and the id cursors name it by.
#[derive(Clone)]
pub struct CursorKey {
    pub id: String,
    pub secret: Vec<u8>,
}

/// Signs cursors with the current key and checks them with the current or an earlier one.
#[derive(Clone)]
pub struct CursorSigner {
    current: CursorKey,
    earlier: Vec<CursorKey>,
}

#[derive(Serialize, Deserialize)]
struct Payload {
    /// The scope: who asked and for which query.
    s: String,
    /// The position.
    p: Position,
}

fn mac(secret: &[u8]) -> HmacSha256 {
    HmacSha256::new_from_slice(secret).expect("HMAC accepts keys of any length")
}

impl CursorSigner {
    /// A signer with one key (a fixed secret: the local stack, tests); its cursors name no key.
    pub fn new(secret: &[u8]) -> Self {
        Self::with_keys(
            CursorKey {
                id: String::new(),
                secret: secret.to_vec(),
            },
            Vec::new(),
        )
    }

    /// A signer that signs with `current` and also accepts cursors signed with `earlier`.
    pub fn with_keys(current: CursorKey, earlier: Vec<CursorKey>) -> Self {
        Self { current, earlier }
    }

    /// Whether a cursor names a key this signer does not hold (one newer than its keys:
    /// its holder may want to read the keys again).
    pub fn names_unknown_key(&self, cursor: &str) -> bool {
        match cursor.splitn(3, '.').nth(2) {
            Some(id) => self.keys().all(|key| key.id != id),
            None => false,
        }
    }

    fn keys(&self) -> impl Iterator<Item = &CursorKey> {
        std::iter::once(&self.current).chain(&self.earlier)
    }

    pub fn encode(&self, scope: &str, position: Position) -> String {
        let payload = Payload {
            s: scope.to_owned(),
            p: position,
        };
        let json = serde_json::to_vec(&payload).expect("a map of strings always serializes");
        let body = URL_SAFE_NO_PAD.encode(json);
        let mut mac = mac(&self.current.secret);
        mac.update(body.as_bytes());
        let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        match self.current.id.as_str() {
            "" => format!("{body}.{signature}"),
            id => format!("{body}.{signature}.{id}"),
        }
    }

    /// The position in `cursor`, if it is genuine and was issued for `scope`.
    pub fn decode(&self, scope: &str, cursor: &str) -> Result<Position, Error> {
        let invalid = || Error::invalid("cursor is not valid for this request");
        let mut parts = cursor.splitn(3, '.');
        let (Some(body), Some(signature)) = (parts.next(), parts.next()) else {
            return Err(invalid());
        };
        let named = parts.next();
        let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|_| invalid())?;
        let genuine = self
            .keys()
            .filter(|key| named.is_none_or(|id| key.id == id))
            .any(|key| {
                let mut mac = mac(&key.secret);
                mac.update(body.as_bytes());
                mac.verify_slice(&signature).is_ok()
            });
        if !genuine {
            return Err(invalid());
        }
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
            let mut mac = mac(b"secret");
            mac.update(body.as_bytes());
            let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
            let _ = signer.decode("alice/list", &format!("{body}.{signature}"));
        }
    }

    fn key(id: &str, secret: &str) -> CursorKey {
        CursorKey {
            id: id.to_owned(),
            secret: secret.as_bytes().to_vec(),
        }
    }

    #[test]
    fn during_a_rotation_cursors_of_the_previous_key_still_verify() {
        let before = CursorSigner::with_keys(key("v1", "first"), vec![]);
        let during = CursorSigner::with_keys(key("v2", "second"), vec![key("v1", "first")]);
        let after = CursorSigner::with_keys(key("v3", "third"), vec![key("v2", "second")]);
        let old = before.encode("alice/list", position());
        let new = during.encode("alice/list", position());
        assert!(new.ends_with(".v2"));
        assert_eq!(during.decode("alice/list", &old).unwrap(), position());
        assert_eq!(after.decode("alice/list", &new).unwrap(), position());
        assert!(
            after.decode("alice/list", &old).is_err(),
            "two rotations on"
        );
        assert!(before.names_unknown_key(&new));
        assert!(!during.names_unknown_key(&old));
    }

    #[test]
    fn a_cursor_names_the_key_it_claims_and_no_other_verifies_it() {
        let signer = CursorSigner::with_keys(key("v2", "second"), vec![key("v1", "first")]);
        let cursor = signer.encode("alice/list", position());
        let renamed = format!("{}.v1", cursor.strip_suffix(".v2").unwrap());
        assert!(signer.decode("alice/list", &renamed).is_err());
        // Without a key id (a cursor issued before keys had ids), any key may verify it.
        let unnamed = cursor.strip_suffix(".v2").unwrap();
        assert_eq!(signer.decode("alice/list", unnamed).unwrap(), position());
        let legacy = CursorSigner::new(b"first").encode("alice/list", position());
        assert_eq!(signer.decode("alice/list", &legacy).unwrap(), position());
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
