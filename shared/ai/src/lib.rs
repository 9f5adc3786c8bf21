//! The model side of the assistant, on the domain crate only:
//!
//! - `provider`: the `ModelProvider` trait and its implementations (Bedrock's Converse API,
//!   any OpenAI-compatible chat-completions endpoint, and `LocalModel`, the deterministic
//!   stand-in the tests and the local API use);
//! - `tokenizer`: counting tokens (o200k_base, over tables laid out at build time);
//! - `context`: the choice of the most recent whole messages within a token budget.

pub mod context;
pub mod provider;
pub mod tokenizer;
