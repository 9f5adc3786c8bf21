//! The keys that sign pagination cursors (`domain::cursor`): a fixed secret
//! (`CURSOR_SECRET`: the local stack, tests), or the versions of a Secrets Manager secret
//! (`CURSOR_SECRET_ARN`: in AWS), so the secret rotates without a redeploy.
//!
//! From Secrets Manager, a function reads the secret's `AWSCURRENT` version (which signs) and
//! its `AWSPREVIOUS` one (which still verifies), each named by its version id, on the first
//! request that pages, not at cold start (most requests never do). It reads them again when
//! they are an hour old, and when a cursor names a key it does not hold (a function started
//! after a rotation signed it), at most once a minute. So after `put-secret-value` every
//! cursor keeps working: new instances sign with the new key and still accept the old one,
//! and old instances learn the new key from the first cursor that names it. A cursor
//! outlives one rotation, not two (docs/operations.md).

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_secretsmanager::Client;
use tokio::sync::RwLock;

use crate::cursor::{CursorKey, CursorSigner, Position};
use crate::error::Error;

/// How long keys read from Secrets Manager are used before they are read again.
pub const KEYS_MAX_AGE: Duration = Duration::from_secs(60 * 60);

/// The least time between two reads prompted by cursors naming an unknown key (anyone can
/// send one).
const UNKNOWN_KEY_READ_INTERVAL: Duration = Duration::from_secs(60);

/// The fewest bytes a signing secret may have.
pub const MIN_SECRET_BYTES: usize = 32;

/// Where the cursor keys come from (the configuration).
#[derive(Clone, PartialEq, Eq)]
pub enum CursorKeySource {
    /// `CURSOR_SECRET`: one key, never rotated without a restart.
    Fixed(Vec<u8>),
    /// `CURSOR_SECRET_ARN`: the secret's current and previous versions.
    Stored(String),
}

impl std::fmt::Debug for CursorKeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Fixed(_) => f.write_str("Fixed(<redacted>)"),
            Self::Stored(arn) => f.debug_tuple("Stored").field(arn).finish(),
        }
    }
}

/// Signs and checks cursors with the configured keys.
#[derive(Clone)]
pub struct Cursors(Arc<Keys>);

enum Keys {
    Fixed(CursorSigner),
    Stored {
        secrets: Client,
        secret_id: String,
        read: RwLock<Option<Read>>,
        unknown_key_interval: Duration,
    },
}

#[derive(Clone)]
struct Read {
    signer: CursorSigner,
    /// When the keys were last read, or a read last failed: both limits count from it.
    at: Instant,
}

impl Cursors {
    /// Cursors signed with one fixed secret.
    pub fn fixed(secret: &[u8]) -> Self {
        Self(Arc::new(Keys::Fixed(CursorSigner::new(secret))))
    }

    /// Cursors signed with the versions of the secret `secret_id`, read through `secrets`.
    pub fn stored(secrets: Client, secret_id: impl Into<String>) -> Self {
        Self(Arc::new(Keys::Stored {
            secrets,
            secret_id: secret_id.into(),
            read: RwLock::new(None),
            unknown_key_interval: UNKNOWN_KEY_READ_INTERVAL,
        }))
    }

    /// These cursors, reading the keys again for a cursor naming an unknown key at most once
    /// every `interval` (a minute unless set: tests shorten it). Only before first use.
    pub fn with_unknown_key_interval(mut self, interval: Duration) -> Self {
        if let Some(Keys::Stored {
            unknown_key_interval,
            ..
        }) = Arc::get_mut(&mut self.0)
        {
            *unknown_key_interval = interval;
        }
        self
    }

    /// The cursors `source` configures; a stored secret is read through `sdk`'s settings.
    pub fn from_source(source: &CursorKeySource, sdk: &aws_config::SdkConfig) -> Self {
        match source {
            CursorKeySource::Fixed(secret) => Self::fixed(secret),
            CursorKeySource::Stored(arn) => Self::stored(Client::new(sdk), arn.clone()),
        }
    }

    pub async fn encode(&self, scope: &str, position: Position) -> Result<String, Error> {
        Ok(self.signer(None).await?.encode(scope, position))
    }

    /// The position in `cursor`, if it is genuine and was issued for `scope`.
    pub async fn decode(&self, scope: &str, cursor: &str) -> Result<Position, Error> {
        self.signer(Some(cursor)).await?.decode(scope, cursor)
    }

    /// Whether `cursor` names a key these cursors do not hold (after reading them again if
    /// that is due): one signed with a key rotated out since, or an invented one.
    pub async fn names_retired_key(&self, cursor: &str) -> bool {
        match self.signer(Some(cursor)).await {
            Ok(signer) => signer.names_unknown_key(cursor),
            Err(_) => false,
        }
    }

    /// The keys to use for `cursor` (or for signing), read first if they are due.
    async fn signer(&self, cursor: Option<&str>) -> Result<CursorSigner, Error> {
        let (secrets, secret_id, read, unknown_key_interval) = match &*self.0 {
            Keys::Fixed(signer) => return Ok(signer.clone()),
            Keys::Stored {
                secrets,
                secret_id,
                read,
                unknown_key_interval,
            } => (secrets, secret_id, read, *unknown_key_interval),
        };
        let due = |held: &Option<Read>| match held {
            None => true,
            Some(held) => {
                held.at.elapsed() >= KEYS_MAX_AGE
                    || (cursor.is_some_and(|c| held.signer.names_unknown_key(c))
                        && held.at.elapsed() >= unknown_key_interval)
            }
        };
        {
            let held = read.read().await;
            if !due(&held) {
                if let Some(held) = held.as_ref() {
                    return Ok(held.signer.clone());
                }
            }
        }
        let mut held = read.write().await;
        // Another request may have read them while this one waited.
        if !due(&held) {
            if let Some(held) = held.as_ref() {
                return Ok(held.signer.clone());
            }
        }
        match read_keys(secrets, secret_id).await {
            Ok(signer) => {
                *held = Some(Read {
                    signer: signer.clone(),
                    at: Instant::now(),
                });
                Ok(signer)
            }
            // Keys read before go on serving; a read is tried again after either interval
            // (an hour, or a minute for a cursor naming an unknown key).
            Err(error) => match held.as_mut() {
                Some(held) => {
                    tracing::warn!(error = %crate::error::chain(&error), "could not read the cursor keys again; the ones read before go on");
                    held.at = Instant::now();
                    Ok(held.signer.clone())
                }
                None => Err(error),
            },
        }
    }
}

/// The secret's current version (signing) and its previous one, if any (verifying).
async fn read_keys(secrets: &Client, secret_id: &str) -> Result<CursorSigner, Error> {
    let (current, previous) = tokio::join!(
        version(secrets, secret_id, "AWSCURRENT"),
        version(secrets, secret_id, "AWSPREVIOUS")
    );
    let current = current?.ok_or_else(|| {
        Error::Config(format!(
            "the cursor secret {secret_id} has no current version"
        ))
    })?;
    Ok(CursorSigner::with_keys(
        current,
        previous?.into_iter().collect(),
    ))
}

async fn version(
    secrets: &Client,
    secret_id: &str,
    stage: &str,
) -> Result<Option<CursorKey>, Error> {
    let output = match secrets
        .get_secret_value()
        .secret_id(secret_id)
        .version_stage(stage)
        .send()
        .await
    {
        Ok(output) => output,
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_resource_not_found_exception()) =>
        {
            return Ok(None)
        }
        Err(e) => return Err(Error::Unavailable(Box::new(e))),
    };
    let secret = match (output.secret_string, output.secret_binary) {
        (Some(text), _) => text.into_bytes(),
        (None, Some(bytes)) => bytes.into_inner(),
        (None, None) => Vec::new(),
    };
    if secret.len() < MIN_SECRET_BYTES {
        return Err(Error::Config(format!(
            "the cursor secret's {stage} version must be at least {MIN_SECRET_BYTES} bytes"
        )));
    }
    // The version id's first group names the key in each cursor: short, and two versions
    // sharing it only means both are tried.
    let version = output.version_id.unwrap_or_default();
    let id = version.split('-').next().unwrap_or_default().to_owned();
    Ok(Some(CursorKey { id, secret }))
}
