//! Numina Conversations: the domain crate every Lambda function shares.
//!
//! Data flows one way: `http` (API Gateway requests and responses) → `service` (the
//! product's operations) → `store` (the single DynamoDB table, keys from `keys`).

pub mod account_export;
pub mod assistant;
pub mod attachments;
pub mod auth;
pub mod cache;
pub mod config;
pub mod context;
pub mod export;
pub mod health;
pub mod http;
pub mod memory;
pub mod metrics;
pub mod migration;
pub mod migration_job;
pub mod provider;
pub mod search;
pub mod service;
pub mod state;
pub mod store;
pub mod streams;
pub mod summaries;
pub mod sync;

// The domain crate's modules, where this crate's code and its users expect them.
pub use domain::{clock, cursor, error, keys, model};
pub use error::Error;
