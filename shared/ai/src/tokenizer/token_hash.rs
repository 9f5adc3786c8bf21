//! Where a token's bytes sit in the index: FNV-1a, shared by the build script that lays the
//! index out and the lookup that reads it (one definition, so the two cannot disagree).

/// Slots in the index (a power of two): o200k_base's 199,998 tokens fill about three quarters.
pub const INDEX_SLOTS: usize = 1 << 18;

/// The slot a lookup of `bytes` starts probing at.
pub fn first_slot(bytes: &[u8]) -> usize {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (hash as usize) & (INDEX_SLOTS - 1)
}
