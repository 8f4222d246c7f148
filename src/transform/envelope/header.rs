//! The envelope header: magic, version and flag bits, the sizes of its
//! fields, and the checks that read a header without opening the value.

/// The first bytes of every envelope.
pub const MAGIC: [u8; 4] = [0x00, b'S', b'T', 0xA1];
/// The envelope version this build writes and reads.
pub const VERSION: u8 = 1;

pub(super) const F_COMPRESSED: u8 = 0x01;
pub(super) const F_ENCRYPTED: u8 = 0x02;
pub(super) const F_ORIGIN: u8 = 0x04;
pub(super) const KNOWN_FLAGS: u8 = F_COMPRESSED | F_ENCRYPTED | F_ORIGIN;
/// Magic, version, flags, flags complement.
pub(super) const FIXED_HEADER: usize = MAGIC.len() + 3;
pub(super) const NONCE_LEN: usize = 12;
pub(super) const TAG_LEN: usize = 16;
pub(super) const SIZE_LEN: usize = 4;

/// True when `stored` is an envelope whose magic lost one byte: three of the
/// four magic bytes, then a valid version and flags. Without this check a
/// corrupted magic would turn an encrypted value into a "plain" one, returned
/// to the client as stored. No text, and practically no binary value, starts
/// like this (byte 3 of the magic is a UTF-8 continuation byte).
pub(super) fn damaged_magic(stored: &[u8]) -> bool {
    let Some(head) = stored.get(..FIXED_HEADER) else {
        return false;
    };
    let same = head.iter().zip(MAGIC).filter(|(a, b)| **a == *b).count();
    same == MAGIC.len() - 1
        && head[4] == VERSION
        && head[5] & !KNOWN_FLAGS == 0
        && head[6] == !head[5]
}

/// The id of the key a stored value is encrypted with, if it is encrypted.
/// Reads the header only; nothing is verified.
pub fn key_id_of(stored: &[u8]) -> Option<&[u8]> {
    if !stored.starts_with(&MAGIC) || stored.get(5)? & F_ENCRYPTED == 0 {
        return None;
    }
    let len = usize::from(*stored.get(FIXED_HEADER)?);
    stored.get(FIXED_HEADER + 1..FIXED_HEADER + 1 + len)
}
