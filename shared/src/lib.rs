//! Numina Conversations: the domain crate every Lambda function shares.
//!
//! Data flows one way: `http` (API Gateway requests and responses) → `service` (the
//! product's operations) → `store` (the single DynamoDB table, keys from `keys`).

pub mod account_export;
pub mod attachments;
pub mod aws;
pub mod cache;
pub mod config;
pub mod export;
pub mod http;
pub mod metrics;
pub mod migration;
pub mod migration_job;
pub mod search;
pub mod service;
pub mod state;
pub mod store;
pub mod streams;
pub mod sync;

// The domain crate's modules, where this crate's code and its users expect them.
pub use domain::{clock, cursor, error, keys, model};
pub use error::Error;
