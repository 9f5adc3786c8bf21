//! The index from a token's bytes to its rank, shared by the build script that lays it out and
//! the lookup that reads it (one definition, so the two cannot disagree). Each slot holds a
//! rank in its low 18 bits and 14 bits of the bytes' hash above them, so a probe that meets
//! another token's slot moves on without reading that token's bytes.

/// Slots in the index (a power of two): o200k_base's 199,998 tokens fill about three quarters.
pub const INDEX_SLOTS: usize = 1 << 18;
/// A slot no token holds.
pub const EMPTY_SLOT: u32 = u32::MAX;
const RANK_BITS: u32 = 18;
const RANK_MASK: u32 = (1 << RANK_BITS) - 1;

/// FNV-1a of `bytes`.
fn hash(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// Where a lookup of `bytes` starts probing, and the fingerprint its slot carries.
pub fn probe_start(bytes: &[u8]) -> (usize, u32) {
    let hash = hash(bytes);
    let fingerprint = (hash >> 50) as u32; // the top 14 bits
    ((hash as usize) & (INDEX_SLOTS - 1), fingerprint)
}

/// The slot for the token of `rank` whose bytes have `fingerprint` (the build script's).
#[allow(dead_code)]
pub fn slot(rank: u32, fingerprint: u32) -> u32 {
    assert!(rank < RANK_MASK, "a rank fits below the fingerprint");
    (fingerprint << RANK_BITS) | rank
}

/// The rank a slot holds if its fingerprint is `fingerprint` (the lookup's).
#[allow(dead_code)]
pub fn rank_if(slot: u32, fingerprint: u32) -> Option<u32> {
    (slot >> RANK_BITS == fingerprint).then_some(slot & RANK_MASK)
}
