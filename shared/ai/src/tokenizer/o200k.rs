//! o200k_base over its build-time tables: split the text into pieces by the encoding's
//! pattern, then count each piece's tokens by merging its bytes pair by pair, the pair whose
//! merge has the lowest rank first (leftmost on a tie), as tiktoken does.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::LazyLock;

use fancy_regex::Regex;

use super::token_hash::{probe_start, rank_if, EMPTY_SLOT, INDEX_SLOTS};

pub const ENCODING: &str = "o200k_base";

/// The encoding's pre-tokenizing pattern (tiktoken's `O200K_BASE_PAT_STR`; a test holds the
/// two equal).
pub(super) const PATTERN: &str = concat!(
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    "|",
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    "|",
    r"\p{N}{1,3}",
    "|",
    r" ?[^\s\p{L}\p{N}]+[\r\n/]*",
    "|",
    r"\s*[\r\n]+",
    "|",
    r"\s+(?!\S)",
    "|",
    r"\s+",
);

/// Every token's bytes, in rank order.
static TOKEN_BYTES: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/o200k_base.bytes"));
/// Where each token's bytes end in `TOKEN_BYTES` (u32, little endian, by rank).
static TOKEN_ENDS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/o200k_base.ends"));
/// A token's rank by its bytes: open addressing from `probe_start`, a u32 per slot (a rank and
/// a fingerprint of the token's bytes).
static INDEX: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/o200k_base.index"));

type Rank = u32;
const NO_RANK: Rank = Rank::MAX;

static PIECES: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(PATTERN).expect("o200k_base's pattern compiles"));

/// The `i`th u32 of a table (`NO_RANK` past its end).
fn entry(table: &[u8], i: usize) -> u32 {
    table
        .get(4 * i..4 * i + 4)
        .and_then(|bytes| bytes.try_into().ok())
        .map_or(NO_RANK, u32::from_le_bytes)
}

/// How many tokens the encoding has.
#[cfg(test)]
fn vocabulary_size() -> usize {
    TOKEN_ENDS.len() / 4
}

/// The bytes of the token of `rank`.
pub(super) fn token(rank: Rank) -> &'static [u8] {
    let rank = rank as usize;
    let start = if rank == 0 {
        0
    } else {
        entry(TOKEN_ENDS, rank - 1) as usize
    };
    TOKEN_BYTES
        .get(start..entry(TOKEN_ENDS, rank) as usize)
        .unwrap_or_default()
}

/// The rank of the token whose bytes are `bytes`, if one is.
pub(super) fn rank_of(bytes: &[u8]) -> Option<Rank> {
    let (mut slot, fingerprint) = probe_start(bytes);
    loop {
        match entry(INDEX, slot) {
            EMPTY_SLOT => return None,
            held => {
                if let Some(rank) = rank_if(held, fingerprint) {
                    if token(rank) == bytes {
                        return Some(rank);
                    }
                }
                slot = (slot + 1) & (INDEX_SLOTS - 1);
            }
        }
    }
}

/// Tokens in `text` (special tokens' text counted as ordinary text, as tiktoken's
/// `encode_ordinary` does).
pub fn count(text: &str) -> usize {
    let mut tokens = 0;
    let mut counted_to = 0;
    for piece in PIECES.find_iter(text) {
        match piece {
            Ok(piece) => {
                tokens += piece_tokens(piece.as_str().as_bytes());
                counted_to = piece.end();
            }
            // The pattern's engine gave up (its backtracking limit): a token per byte of
            // what is left, never fewer tokens than the text has.
            Err(_) => return tokens + text.len() - counted_to,
        }
    }
    tokens
}

fn piece_tokens(piece: &[u8]) -> usize {
    match piece.len() {
        0 | 1 => piece.len(), // every single byte is a token
        _ if rank_of(piece).is_some() => 1,
        _ => merged_parts(piece),
    }
}

/// How many parts `piece` ends as: it starts as one part per byte, and while two
/// neighbouring parts together are a token, the pair of lowest rank (leftmost among equals)
/// becomes one part. A heap of candidate pairs keeps this O(n log n) in the piece's length.
fn merged_parts(piece: &[u8]) -> usize {
    let n = piece.len();
    // Parts are named by the byte they start at; `next[i]` is where part `i` ends.
    let mut next: Vec<usize> = (1..=n).collect();
    let mut previous: Vec<Option<usize>> = (0..n).map(|i| i.checked_sub(1)).collect();
    let pair_rank = |next: &[usize], i: usize| -> Rank {
        match next[i] {
            j if j < n => rank_of(&piece[i..next[j]]).unwrap_or(NO_RANK),
            _ => NO_RANK,
        }
    };
    let mut pair: Vec<Rank> = (0..n).map(|i| pair_rank(&next, i)).collect();
    let mut candidates: BinaryHeap<Reverse<(Rank, usize)>> = pair
        .iter()
        .enumerate()
        .filter(|(_, &rank)| rank != NO_RANK)
        .map(|(i, &rank)| Reverse((rank, i)))
        .collect();
    let mut parts = n;
    while let Some(Reverse((rank, i))) = candidates.pop() {
        if pair[i] != rank {
            continue; // the pair changed since it was queued
        }
        let absorbed = next[i];
        next[i] = next[absorbed];
        if next[i] < n {
            previous[next[i]] = Some(i);
        }
        pair[absorbed] = NO_RANK;
        parts -= 1;
        for changed in [Some(i), previous[i]].into_iter().flatten() {
            pair[changed] = pair_rank(&next, changed);
            if pair[changed] != NO_RANK {
                candidates.push(Reverse((pair[changed], changed)));
            }
        }
    }
    parts
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn tiktoken(text: &str) -> usize {
        tiktoken_rs::o200k_base_singleton()
            .encode_ordinary(text)
            .len()
    }

    #[test]
    fn the_pattern_is_tiktokens() {
        assert_eq!(PATTERN, tiktoken_rs::O200K_BASE_PAT_STR);
    }

    #[test]
    fn every_token_is_tiktokens_and_found_by_its_bytes() {
        let tiktoken = tiktoken_rs::o200k_base_singleton();
        assert_eq!(vocabulary_size(), 199_998);
        for rank in 0..vocabulary_size() as Rank {
            assert_eq!(
                token(rank),
                tiktoken.decode_bytes(&[rank]).unwrap(),
                "rank {rank}"
            );
            assert_eq!(rank_of(token(rank)), Some(rank), "rank {rank}");
        }
        assert_eq!(rank_of(b"not a token of any encoding at all"), None);
    }

    #[test]
    fn counts_as_tiktoken_counts() {
        let long_symbols = "=-".repeat(3_000);
        let samples = [
            "",
            "hello world",
            "Numina keeps every conversation, counted once.",
            "I'm sure they'll say we've DONE it; you'd agree? THEY'RE here.",
            "   leading and trailing spaces   \n\n\tand tabs\r\n",
            "1234567890 3.14159 1e-9 0x1F 1,000,000",
            "fn main() {\n    println!(\"{}\", a.b::<T>()?);\n}\n",
            "日本語のテキストと中文文本와 한국어 텍스트",
            "Emoji 🚀🧪👩🏽‍💻 and combining é vs é, ﬁ ligatures",
            "<|endoftext|> is ordinary text here",
            "https://example.com/path?query=value&other=1#frag",
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            &long_symbols,
            "Ελληνικά, русский текст, עברית, العربية, हिन्दी",
        ];
        for text in samples {
            assert_eq!(count(text), tiktoken(text), "{text:?}");
        }
    }

    proptest! {
        #[test]
        fn any_text_counts_as_tiktoken_counts(text in any::<String>()) {
            prop_assert_eq!(count(&text), tiktoken(&text));
        }

        #[test]
        fn any_words_count_as_tiktoken_counts(
            words in proptest::collection::vec("[A-Za-z']{1,12}|[0-9]{1,6}|[ .,!?\n]{1,3}", 0..60)
        ) {
            let text = words.concat();
            prop_assert_eq!(count(&text), tiktoken(&text));
        }
    }
}
