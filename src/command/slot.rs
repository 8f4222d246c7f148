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

/// `memchr`, but a plain loop for the short keys most are: memchr's
/// dispatch and vector setup cost more than scanning a few dozen bytes
/// (callgrind: ~50 of `hash_slot`'s ~210 instructions for a 16-byte key).
fn find(byte: u8, haystack: &[u8]) -> Option<usize> {
    if haystack.len() <= 64 {
        haystack.iter().position(|&b| b == byte)
    } else {
        memchr::memchr(byte, haystack)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Every expected value below is what Redis 7.0 `CLUSTER KEYSLOT` answers.

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
