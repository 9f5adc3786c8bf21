//! Lays out o200k_base's vocabulary as three flat tables the tokenizer reads in place
//! (src/tokenizer.rs): every token's bytes in rank order, where each token ends (u32, little
//! endian), and an open-addressing index from a token's bytes to its rank (u32 per slot:
//! src/tokenizer/token_hash.rs). The vocabulary comes from tiktoken-rs, whose tables this
//! replaces at run time.

#[path = "src/tokenizer/token_hash.rs"]
mod token_hash;

use std::path::Path;

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-changed=src/tokenizer/token_hash.rs");
    let encoding = tiktoken_rs::o200k_base().expect("tiktoken-rs's o200k_base");
    let mut bytes = Vec::new();
    let mut ends = Vec::new();
    let mut index = vec![token_hash::EMPTY_SLOT; token_hash::INDEX_SLOTS];
    // Ranks are 0, 1, 2, … up to the special tokens; the encoding has exactly this many.
    const TOKENS: u32 = 199_998;
    for rank in 0..TOKENS {
        let token = encoding
            .decode_bytes(&[rank])
            .unwrap_or_else(|_| panic!("o200k_base has no token of rank {rank}"));
        bytes.extend_from_slice(&token);
        ends.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        let (mut at, fingerprint) = token_hash::probe_start(&token);
        while index[at] != token_hash::EMPTY_SLOT {
            at = (at + 1) % token_hash::INDEX_SLOTS;
        }
        index[at] = token_hash::slot(rank, fingerprint);
    }
    // Past the last ordinary token come only special ones (`<|endoftext|>`, …), if anything.
    if let Ok(next) = encoding.decode_bytes(&[TOKENS]) {
        assert!(
            next.starts_with(b"<|") && next.ends_with(b"|>"),
            "o200k_base has more than {TOKENS} ordinary tokens"
        );
    }
    let out = std::env::var("OUT_DIR").expect("OUT_DIR");
    let out = Path::new(&out);
    std::fs::write(out.join("o200k_base.bytes"), bytes).expect("write");
    std::fs::write(out.join("o200k_base.ends"), ends).expect("write");
    let index: Vec<u8> = index.iter().flat_map(|rank| rank.to_le_bytes()).collect();
    std::fs::write(out.join("o200k_base.index"), index).expect("write");
}
