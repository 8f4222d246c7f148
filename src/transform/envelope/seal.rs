//! Sealing: compression, encryption with a fresh random nonce, and escaping
//! values that would otherwise read back as envelopes.

use aes_gcm::aead::AeadInOut;
use bytes::Bytes;

use super::error::TransformError;
use super::header::{
    damaged_magic, FIXED_HEADER, F_COMPRESSED, F_ENCRYPTED, F_ORIGIN, MAGIC, NONCE_LEN, SIZE_LEN,
    TAG_LEN, VERSION,
};
use super::location::{with_aad, Location};
use crate::transform::keyring::Keyring;
use crate::transform::rules::Rule;

/// Nonces fetched from the OS per `getrandom` call.
const NONCE_BLOCK: usize = 256;

/// Seals `value` as `rule` says, for storage at `loc`.
///
/// Without encryption the result is deterministic, and a value that is short
/// or does not compress comes back as the same `Bytes` (no copy); with
/// encryption every call draws a fresh nonce.
pub fn seal(
    value: &Bytes,
    loc: Location<'_>,
    rule: &Rule,
    keyring: &Keyring,
) -> Result<Bytes, TransformError> {
    seal_with(value, loc, rule.min_size(), rule.write_key(), keyring)
}

/// [`seal`] with the rule's settings spelled out: compress values of at
/// least `compress_min` bytes, encrypt with keyring entry `key`.
pub(crate) fn seal_with(
    value: &Bytes,
    loc: Location<'_>,
    compress_min: Option<usize>,
    key: Option<usize>,
    keyring: &Keyring,
) -> Result<Bytes, TransformError> {
    let compress =
        compress_min.is_some_and(|min| value.len() >= min) && u32::try_from(value.len()).is_ok();
    let Some(key) = key else {
        if compress {
            let mut out =
                Vec::with_capacity(FIXED_HEADER + SIZE_LEN + max_compressed_len(value.len()));
            out.extend_from_slice(&MAGIC);
            out.extend_from_slice(&[VERSION, F_COMPRESSED, !F_COMPRESSED]);
            if compress_into(&mut out, value) {
                return Ok(Bytes::from(out));
            }
        }
        // A value that would read back as an envelope (or as a damaged one)
        // is wrapped in an envelope with no flags, so it reads back exactly.
        if value.starts_with(&MAGIC) || damaged_magic(value) {
            let mut out = Vec::with_capacity(FIXED_HEADER + value.len());
            out.extend_from_slice(&MAGIC);
            out.extend_from_slice(&[VERSION, 0, !0]);
            out.extend_from_slice(value);
            return Ok(Bytes::from(out));
        }
        return Ok(value.clone());
    };

    let seal_error = |what| TransformError::Seal {
        subject: loc.subject(),
        what,
    };
    let (id, cipher) = keyring
        .get(key)
        .ok_or_else(|| seal_error("key not loaded"))?;
    let id_len = u8::try_from(id.len()).map_err(|_| seal_error("key id too long"))?;
    let nonce = random_nonce().ok_or_else(|| seal_error("the OS random source failed"))?;
    let origin = match loc {
        Location::ListElement(k) => Some(k),
        _ => None,
    };
    let origin_len = match origin {
        Some(k) => Some(u32::try_from(k.len()).map_err(|_| seal_error("key name too long"))?),
        None => None,
    };
    let header_len =
        FIXED_HEADER + 1 + id.len() + NONCE_LEN + origin.map_or(0, |k| SIZE_LEN + k.len());
    let body_cap = if compress {
        SIZE_LEN + max_compressed_len(value.len())
    } else {
        value.len()
    };
    let mut out = Vec::with_capacity(header_len + body_cap.max(value.len()) + TAG_LEN);
    let mut flags = F_ENCRYPTED;
    if origin.is_some() {
        flags |= F_ORIGIN;
    }
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&[VERSION, flags, !flags, id_len]);
    out.extend_from_slice(id.as_bytes());
    out.extend_from_slice(&nonce);
    if let (Some(k), Some(n)) = (origin, origin_len) {
        out.extend_from_slice(&n.to_be_bytes());
        out.extend_from_slice(k);
    }
    let body = out.len();
    if compress && compress_into(&mut out, value) {
        flags |= F_COMPRESSED;
        out[5] = flags;
        out[6] = !flags;
    } else {
        out.extend_from_slice(value);
    }
    let (header, plaintext) = out.split_at_mut(body);
    let tag = with_aad(header, loc, |aad| {
        cipher.encrypt_inout_detached(&nonce.into(), aad, plaintext.into())
    })
    .map_err(|_| seal_error("value too large to encrypt"))?;
    out.extend_from_slice(&tag);
    Ok(Bytes::from(out))
}

/// Nonces drawn from the OS per thread, a block at a time: one `getrandom`
/// call costs about as much as encrypting a 1 KiB value, and a block serves
/// [`NONCE_BLOCK`] values. Every nonce is still 96 fresh bits from the OS
/// generator, used once. Random (not counter) nonces are what make it safe
/// for many sidecars to share one key without coordinating; the birthday
/// bound asks for a key rotation well before 2^32 encryptions per key.
///
/// A forked child would inherit the block and could repeat its parent's
/// nonces; strata never forks.
fn random_nonce() -> Option<[u8; NONCE_LEN]> {
    use std::cell::RefCell;

    struct Pool {
        buf: [u8; NONCE_LEN * NONCE_BLOCK],
        used: usize,
    }

    thread_local! {
        static POOL: RefCell<Pool> = const {
            RefCell::new(Pool { buf: [0; NONCE_LEN * NONCE_BLOCK], used: NONCE_LEN * NONCE_BLOCK })
        };
    }

    let from_pool = POOL.try_with(|pool| {
        let mut pool = pool.try_borrow_mut().ok()?;
        if pool.used + NONCE_LEN > pool.buf.len() {
            getrandom::fill(&mut pool.buf).ok()?;
            pool.used = 0;
        }
        let start = pool.used;
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(pool.buf.get(start..start + NONCE_LEN)?);
        pool.used += NONCE_LEN;
        Some(nonce)
    });
    match from_pool {
        Ok(Some(nonce)) => Some(nonce),
        // Thread teardown, or the OS refused a whole block: ask for one nonce.
        _ => {
            let mut nonce = [0u8; NONCE_LEN];
            getrandom::fill(&mut nonce).ok()?;
            Some(nonce)
        }
    }
}

fn max_compressed_len(len: usize) -> usize {
    lz4_flex::block::get_maximum_output_size(len)
}

/// Appends `size (u32 BE) + lz4 block of value` to `out` when that is
/// shorter than `value`; otherwise leaves `out` as it was and returns false.
fn compress_into(out: &mut Vec<u8>, value: &[u8]) -> bool {
    let Ok(size) = u32::try_from(value.len()) else {
        return false;
    };
    let start = out.len();
    out.resize(start + SIZE_LEN + max_compressed_len(value.len()), 0);
    let Some(dest) = out.get_mut(start + SIZE_LEN..) else {
        out.truncate(start);
        return false;
    };
    match lz4_flex::block::compress_into(value, dest) {
        Ok(n) if SIZE_LEN + n < value.len() => {
            out[start..start + SIZE_LEN].copy_from_slice(&size.to_be_bytes());
            out.truncate(start + SIZE_LEN + n);
            true
        }
        _ => {
            out.truncate(start);
            false
        }
    }
}
