//! Lays out o200k_base's vocabulary as three flat tables the tokenizer reads in place
//! (src/tokenizer.rs): every token's bytes in rank order, where each token ends (u32, little
//! endian), and an open-addressing index from a token's bytes to its rank (u32 per slot,
//! `u32::MAX` empty). The vocabulary comes from tiktoken-rs, whose tables this replaces at
//! run time.

#[path = "src/tokenizer/token_hash.rs"]
mod token_hash;

use std::path::Path;

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-changed=src/tokenizer/token_hash.rs");
    let encoding = tiktoken_rs::o200k_base().expect("tiktoken-rs's o200k_base");
    let mut bytes = Vec::new();
    let mut ends = Vec::new();
    let mut index = vec![u32::MAX; token_hash::INDEX_SLOTS];
    // Ranks are 0, 1, 2, … up to the first special token: decode each until none is left.
    for rank in 0u32.. {
        let Ok(token) = encoding.decode_bytes(&[rank]) else {
            break;
        };
        if token.starts_with(b"<|") && token.ends_with(b"|>") {
            break;
        }
        bytes.extend_from_slice(&token);
        ends.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        let mut slot = token_hash::first_slot(&token);
        while index[slot] != u32::MAX {
            slot = (slot + 1) % token_hash::INDEX_SLOTS;
        }
        index[slot] = rank;
    }
    let tokens = ends.len() / 4;
    assert!(
        (199_000..token_hash::INDEX_SLOTS * 9 / 10).contains(&tokens),
        "o200k_base has {tokens} tokens"
    );
    let out = std::env::var("OUT_DIR").expect("OUT_DIR");
    let out = Path::new(&out);
    std::fs::write(out.join("o200k_base.bytes"), bytes).expect("write");
    std::fs::write(out.join("o200k_base.ends"), ends).expect("write");
    let index: Vec<u8> = index.iter().flat_map(|rank| rank.to_le_bytes()).collect();
    std::fs::write(out.join("o200k_base.index"), index).expect("write");
}
