//! The bottom of the workspace: what every other crate speaks, with no AWS, Lambda or HTTP
//! dependency.
//!
//! - `model`: ids (parsed, never raw strings), roles, messages, conversations, their limits;
//! - `keys`: the single table's key design, every partition and sort key built by name;
//! - `cursor`: signed, user-scoped pagination cursors;
//! - `memory`: a message of short-term memory;
//! - `usage`: per-user limits on the expensive routes, their windows and the daily budget;
//! - `preset`: a user's presets, the operator's templates, and what a conversation keeps of one;
//! - `share`: read-only links to a snapshot of a conversation, and their tokens;
//! - `clock`: the time of a request, injectable for tests;
//! - `error`: the one error type, mapped to HTTP in one place by the Lambda glue.

pub mod clock;
pub mod cursor;
pub mod error;
pub mod export;
pub mod keys;
pub mod memory;
pub mod migration;
pub mod model;
pub mod preset;
pub mod search;
pub mod share;
pub mod tree;
pub mod usage;

pub use error::Error;
pub mod upload;
