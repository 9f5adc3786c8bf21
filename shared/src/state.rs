//! What every function needs, built once per cold start and shared by every invocation.

use aws_sdk_dynamodb::Client;
use chrono::{DateTime, SubsecRound, Utc};

use crate::config::Config;
use crate::cursor::CursorSigner;
use crate::error::Error;
use crate::service::Conversations;
use crate::store::Store;

/// What every handler needs, built once per cold start.
#[derive(Clone)]
pub struct State {
    pub conversations: Conversations,
    pub config: Config,
}

impl State {
    /// Reads the configuration and builds the SDK clients from the environment (in AWS, the
    /// function's role and region; locally, `AWS_ENDPOINT_URL` points at the local servers).
    pub async fn from_env() -> Result<Self, Error> {
        let config = Config::from_env()?;
        let sdk = aws_config::load_from_env().await;
        Ok(Self::new(config, Client::new(&sdk)))
    }

    pub fn new(config: Config, dynamodb: Client) -> Self {
        let store = Store::new(dynamodb, config.table_name.clone());
        let conversations = Conversations::new(store, CursorSigner::new(&config.cursor_secret));
        Self {
            conversations,
            config,
        }
    }

    /// The time of this request, at the precision the store keeps.
    pub fn now(&self) -> DateTime<Utc> {
        Utc::now().trunc_subsecs(6)
    }
}
