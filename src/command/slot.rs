//! Redis Cluster hash slots.
//!
//! strata must compute exactly the slot Redis Cluster computes, or it sends a
//! key to a node that answers `-MOVED`: CRC16/XMODEM of the key (or of its hash
//! tag) modulo [`SLOT_COUNT`], as in the Redis Cluster specification.

/// Number of hash slots in a Redis Cluster.
pub const SLOT_COUNT: u16 = 16384;

/// The hash slot of `key`.
///
/// Hash-tag rule (Redis `keyHashSlot`): if the key contains a `{`, and a `}`
/// somewhere after that first `{`, and at least one byte lies between them,
/// only those bytes are hashed. Otherwise the whole key is hashed. This lets
/// clients force related keys into one slot (`{user1000}.following` and
/// `{user1000}.followers`) so multi-key commands work in a cluster.
pub fn hash_slot(key: &[u8]) -> u16 {
    crc16::State::<crc16::XMODEM>::calculate(hash_tag(key)) & (SLOT_COUNT - 1)
}

/// The part of `key` that is hashed: the non-empty hash tag, or the whole key.
fn hash_tag(key: &[u8]) -> &[u8] {
    let Some(open) = find(b'{', key) else {
        return key;
    };
    let rest = &key[open + 1..];
    match find(b'}', rest) {
        // `{}`: an empty tag does not count; the whole key is hashed.
        Some(0) | None => key,
        Some(close) => &rest[..close],
    }
}

/// `memchr` for long keys; for the short keys most are, eight bytes at a
/// time in a register. memchr's setup (runtime dispatch, or its portable
/// searcher's constructor) cost ~50-100 instructions for a 16-byte key,
/// as much as the CRC itself (callgrind, docs/PERFORMANCE.md).
fn find(byte: u8, haystack: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    if haystack.len() > 64 {
        return memchr::memchr(byte, haystack);
    }
    let pattern = ONES * u64::from(byte);
    let mut words = haystack.chunks_exact(8);
    let mut at = 0;
    for word in &mut words {
        let mut w = [0u8; 8];
        w.copy_from_slice(word);
        // A zero byte in `x` is `byte` in the key; the lowest flagged
        // byte is always a true one (only bytes above it can be false).
        let x = u64::from_le_bytes(w) ^ pattern;
        let zero = x.wrapping_sub(ONES) & !x & HIGHS;
        if zero != 0 {
            return Some(at + (zero.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    words
        .remainder()
        .iter()
        .position(|&b| b == byte)
        .map(|i| at + i)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Every expected value below is what Redis 7.0 `CLUSTER KEYSLOT` answers.

    #[test]
    fn find_agrees_with_memchr() {
        let keys: [&[u8]; 9] = [
            b"",
            b"{",
            b"abcdefg{",
            b"abcdefgh{",
            b"{{{{{{{{{",
            b"key:000000012345",
            b"\x7b\xfb\x7a{",
            b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa{",
            b"\x00\xff\x80\x7f}{",
        ];
        for key in keys {
            for byte in [b'{', b'}', 0, 0xff] {
                assert_eq!(find(byte, key), memchr::memchr(byte, key), "{key:?} {byte}");
            }
        }
    }

    #[test]
    fn known_values() {
        assert_eq!(hash_slot(b"foo"), 12182);
        assert_eq!(hash_slot(b"bar"), 5061);
        assert_eq!(hash_slot(b"somekey"), 11058);
        assert_eq!(hash_slot(b"123456789"), 12739);
        assert_eq!(hash_slot(b""), 0);
    }

    #[test]
    fn hash_tags_group_keys() {
        assert_eq!(hash_slot(b"{user1000}.following"), 3443);
        assert_eq!(hash_slot(b"{user1000}.followers"), 3443);
        assert_eq!(hash_slot(b"user1000"), 3443);
    }

    #[test]
    fn only_first_tag_counts() {
        // First `{`, then the first `}` after it.
        assert_eq!(hash_slot(b"foo{bar}{zap}"), 5061);
        assert_eq!(hash_slot(b"foo{{bar}}zap"), 4015);
        assert_eq!(hash_slot(b"{bar"), 4015);
    }

    #[test]
    fn empty_or_unclosed_tag_hashes_whole_key() {
        // `{}` comes first, so the whole key is hashed even though `{bar}` follows.
        assert_eq!(hash_slot(b"foo{}{bar}"), 8363);
        assert_eq!(hash_slot(b"{}"), 15257);
        assert_eq!(hash_slot(b"foo{bar"), 15278);
        assert_eq!(hash_slot(b"foo}bar{"), 11073);
    }

    #[test]
    fn slots_are_in_range() {
        for i in 0..10_000u32 {
            assert!(hash_slot(format!("key:{i}").as_bytes()) < SLOT_COUNT);
        }
    }
}
