//! The local runner: the API on localhost against local servers, for development and tests.

pub mod gateway;
pub mod seed;
pub mod streams;
pub mod table;
pub mod template;
pub mod token;

pub use gateway::{Endpoint, Gateway, StreamingUrl};
pub use streams::{StreamConsumer, StreamPoller};
pub use template::Template;
pub use token::Tokens;
