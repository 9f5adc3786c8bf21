//! Counting tokens in o200k_base, the byte-pair encoding of OpenAI's GPT-4o family (and a
//! close enough measure of other models' budgets): the same counts as tiktoken, over tables
//! laid out at build time (build.rs) that sit in the binary's read-only data. Nothing is
//! parsed or allocated at cold start, and a process touches only the pages its lookups
//! read, where tiktoken builds about 45 MiB of hash maps on first use.

mod o200k;
mod token_hash;

use std::str::FromStr;

use domain::error::Error;
use domain::model::TokenCount;

/// Tokens a chat format spends on each message besides its content (role and separators).
pub const TOKENS_PER_MESSAGE: usize = 3;

/// The byte-pair encodings a deployment can count tokens with (`TOKENIZER`): one, so that a
/// function carries one table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenizerKind {
    /// GPT-4o family and later.
    O200kBase,
}

impl TokenizerKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::O200kBase => o200k::ENCODING,
        }
    }
}

impl FromStr for TokenizerKind {
    type Err = Error;

    fn from_str(name: &str) -> Result<Self, Error> {
        match name {
            o200k::ENCODING => Ok(Self::O200kBase),
            other => Err(Error::Config(format!(
                "TOKENIZER must be o200k_base (the one encoding counted), not {other:?}"
            ))),
        }
    }
}

/// Counts tokens.
#[derive(Debug, Clone, Copy)]
pub struct Tokenizer {
    kind: TokenizerKind,
}

impl Tokenizer {
    pub fn new(kind: TokenizerKind) -> Self {
        Self { kind }
    }

    pub fn kind(&self) -> TokenizerKind {
        self.kind
    }

    pub fn count(&self, text: &str) -> usize {
        match self.kind {
            TokenizerKind::O200kBase => o200k::count(text),
        }
    }

    /// `text`'s count, to store beside it so it is never counted again.
    pub fn token_count(&self, text: &str) -> TokenCount {
        TokenCount::new(self.kind.name(), self.count(text))
    }

    /// What one message costs in a chat request.
    pub fn message_cost(&self, content: &str) -> usize {
        self.count(content) + TOKENS_PER_MESSAGE
    }

    /// What a message costs given the count stored with it: that count when it was made
    /// with this encoding, else counted now.
    pub fn cost_with_stored(&self, content: &str, stored: Option<&TokenCount>) -> usize {
        match stored.and_then(|count| count.in_encoding(self.kind.name())) {
            Some(tokens) => tokens + TOKENS_PER_MESSAGE,
            None => self.message_cost(content),
        }
    }
}
