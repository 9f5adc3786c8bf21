//! The assistant: context for a model and `/completion`, on top of the conversations.
//!
//! - `service`: the context of a conversation (or of short-term memory) within a token
//!   budget, and completions: the prompt saved, the model asked (through `ai`'s providers),
//!   the reply saved, a retried request answered from its record;
//! - `memory`: short-term memory, the last day of a user's exchanges;
//! - `summaries`: a conversation's running summary, brought forward off the request path
//!   (`streams`, on the table's stream);
//! - `http`, `wire`: the context and completion endpoints; `auth`: the streaming Function
//!   URL's own check of Cognito access tokens;
//! - `config`, `state`: the model's configuration and what a function builds at cold start.

pub mod auth;
pub mod config;
pub mod http;
pub mod memory;
#[cfg(test)]
mod no_panics;
pub mod service;
pub mod state;
pub mod streams;
pub mod summaries;
pub mod wire;

pub use state::State;
