//! Numina Conversations' core: the product's operations over the store, and the Lambda glue
//! every HTTP and stream function shares.
//!
//! Data flows one way: `http` (API Gateway requests and responses) → the features (`service`
//! for conversations and messages, `sync`, `search`, `export`, `account_export`,
//! `migration`) → the `store` crate (the single DynamoDB table, keys from `domain::keys`).

pub mod account_export;
pub mod attachments;
pub mod aws;
pub mod cache;
pub mod config;
pub mod cursor_keys;
pub mod export;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod migration;
pub mod migration_job;
pub mod presets;
pub mod purge;
pub mod search;
pub mod search_backfill;
pub mod service;
pub mod sharing;
pub mod state;
pub mod streams;
pub mod sync;
pub mod table_changes;
pub mod usage;

// The domain crate's modules, where this crate's code and its users expect them.
pub use domain::{clock, cursor, error, keys, model};
// The store crate, where this crate's modules and its users reach it.
pub use error::Error;
pub use store;
