//! Sharing a conversation as a read-only link (docs/sharing.md): a snapshot of the active
//! branch up to one message, read by anyone who holds the link's token, revoked by its owner.
//!
//! The token is the link's only secret and its only name: 192 random bits, so it is never
//! guessed, and it names no user and no conversation.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::model::{ConversationId, MessageId};

/// Random bytes in a token: 192 bits, written as 32 characters of URL-safe base64.
const TOKEN_BYTES: usize = 24;
const TOKEN_CHARS: usize = 32;
/// The longest a link may live; without an expiry it lives until revoked.
pub const MAX_SHARE_DAYS: i64 = 365;

/// A share link's token: what its URL carries and its key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ShareToken(String);

impl ShareToken {
    /// A new token from the system's secure random source.
    pub fn generate() -> Self {
        use base64::Engine;
        use rand::RngCore;
        let mut bytes = [0u8; TOKEN_BYTES];
        rand::rng().fill_bytes(&mut bytes);
        Self(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
    }

    /// A token as a client names it. Anything else names no link: the caller answers as for
    /// a link that does not exist (`Error::ShareNotFound`), whoever asks.
    pub fn parse(raw: &str) -> Result<Self, Error> {
        let valid = raw.len() == TOKEN_CHARS
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if valid {
            Ok(Self(raw.to_owned()))
        } else {
            Err(Error::ShareNotFound)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ShareToken {
    type Error = Error;
    fn try_from(value: String) -> Result<Self, Error> {
        Self::parse(&value)
    }
}

impl From<ShareToken> for String {
    fn from(value: ShareToken) -> Self {
        value.0
    }
}

impl std::fmt::Display for ShareToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What the owner chooses when sharing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShareOptions {
    /// The message the snapshot ends at (on the active branch); `None`: the newest there.
    pub up_to: Option<MessageId>,
    /// When the link stops answering; `None`: never (until revoked).
    pub expires_at: Option<DateTime<Utc>>,
    /// Whether readers see each message's `metadata`.
    pub include_metadata: bool,
    /// Whether readers see its attachments (files through short-lived download URLs).
    pub include_attachments: bool,
}

impl ShareOptions {
    /// Checks the expiry against `now`: in the future, and within `MAX_SHARE_DAYS`.
    pub fn checked(self, now: DateTime<Utc>) -> Result<Self, Error> {
        if let Some(at) = self.expires_at {
            if at <= now {
                return Err(Error::invalid("expiresAt must be in the future"));
            }
            if at > now + chrono::Duration::days(MAX_SHARE_DAYS) {
                return Err(Error::invalid(format!(
                    "expiresAt must be within {MAX_SHARE_DAYS} days"
                )));
            }
        }
        Ok(self)
    }
}

/// A link as its owner sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShareLink {
    pub token: ShareToken,
    pub conversation_id: ConversationId,
    /// The last message the link shows.
    pub up_to: MessageId,
    /// The conversation's title when it was shared (what readers see).
    pub title: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub include_metadata: bool,
    pub include_attachments: bool,
}

impl ShareLink {
    /// Whether it still answers at `now`.
    pub fn is_live(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_none_or(|at| at > now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_random_and_url_safe() {
        let (a, b) = (ShareToken::generate(), ShareToken::generate());
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), TOKEN_CHARS);
        assert_eq!(ShareToken::parse(a.as_str()).unwrap(), a);
    }

    #[test]
    fn anything_but_a_token_names_no_link() {
        for raw in [
            "",
            "short",
            &"a".repeat(33),
            &format!("{}#", "a".repeat(31)),
        ] {
            assert!(matches!(ShareToken::parse(raw), Err(Error::ShareNotFound)));
        }
    }

    #[test]
    fn an_expiry_is_in_the_future_and_within_a_year() {
        let now = Utc::now();
        let with = |days: i64| ShareOptions {
            expires_at: Some(now + chrono::Duration::days(days)),
            ..ShareOptions::default()
        };
        assert!(with(1).checked(now).is_ok());
        assert!(with(0).checked(now).is_err());
        assert!(with(-1).checked(now).is_err());
        assert!(with(MAX_SHARE_DAYS + 1).checked(now).is_err());
        assert!(ShareOptions::default().checked(now).is_ok());
    }
}
