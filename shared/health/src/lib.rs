//! The service's health (`GET /health`): whether the table, the bucket and the cache answer
//! (ElastiCache's own status too, when the cache is named) and how the last migration run
//! went. The only crate that links ElastiCache's SDK.
//!
//! - `check`: the checks, each bounded by its own timeout, run at once;
//! - `managed_cache`: the cache as ElastiCache describes it;
//! - `http`, `state`: the endpoint and what its function builds at cold start.

pub mod check;
pub mod http;
pub mod managed_cache;
pub mod state;

pub use state::State;
