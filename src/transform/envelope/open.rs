//! Opening: what a stored value turns out to be ([`Opened`], and for REWRAP
//! its [`Form`]), header checks, decryption, origin checks for list
//! elements, and decompression bounded before allocating.

use aes_gcm::aead::AeadInOut;
use aes_gcm::{Nonce, Tag};
use bytes::Bytes;

use super::error::{show, TransformError};
use super::header::{
    damaged_magic, FIXED_HEADER, F_COMPRESSED, F_ENCRYPTED, F_ORIGIN, KNOWN_FLAGS, MAGIC,
    NONCE_LEN, SIZE_LEN, TAG_LEN, VERSION,
};
use super::location::{with_aad, Location};
use crate::transform::keyring::Keyring;

/// lz4 cannot expand data by much more than 255:1 (one length byte per 255
/// bytes of match), so a declared size beyond this is a lie.
const MAX_LZ4_RATIO: usize = 256;

/// A value read back from Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opened {
    /// No envelope: written before a rule applied. Returned as stored.
    Plain(Bytes),
    /// An envelope, opened. `authenticated` is false for an envelope that is
    /// only compressed (or an escape): it was not encrypted, so nothing
    /// proves strata wrote it.
    Decoded {
        /// The value as the client wrote it.
        value: Bytes,
        /// True when it was encrypted and the tag verified.
        authenticated: bool,
    },
}

impl Opened {
    /// The value to return to the client.
    pub fn value(&self) -> &Bytes {
        match self {
            Opened::Plain(v) | Opened::Decoded { value: v, .. } => v,
        }
    }

    /// The value, by value.
    pub fn into_value(self) -> Bytes {
        match self {
            Opened::Plain(v) | Opened::Decoded { value: v, .. } => v,
        }
    }
}

/// How an opened value was stored; what REWRAP needs to decide whether to rewrite it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Form {
    /// No envelope.
    Plain,
    /// An envelope without encryption.
    Unencrypted,
    /// Encrypted with keyring entry `key`; `rebound` when a list element's
    /// origin is another list (moved there by LMOVE and friends).
    Encrypted { key: usize, rebound: bool },
}

/// An opened value and how it was stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Unsealed {
    pub(crate) value: Bytes,
    pub(crate) form: Form,
}

impl Unsealed {
    pub(crate) fn into_opened(self) -> Opened {
        match self.form {
            Form::Plain => Opened::Plain(self.value),
            Form::Unencrypted => Opened::Decoded {
                value: self.value,
                authenticated: false,
            },
            Form::Encrypted { .. } => Opened::Decoded {
                value: self.value,
                authenticated: true,
            },
        }
    }
}

/// Opens a stored value read from `loc`.
///
/// An encrypted list element is accepted only in the list it was written
/// to; the transforms' own reads also accept other lists of the same
/// rule, where LMOVE and friends put them.
pub fn open(
    stored: &Bytes,
    loc: Location<'_>,
    keyring: &Keyring,
    max_len: usize,
) -> Result<Opened, TransformError> {
    open_with(stored, loc, keyring, max_len, &|_| false).map(Unsealed::into_opened)
}

/// Opens a stored value; an encrypted list element whose origin is another
/// list is accepted when `origin_ok(origin)` says so (same rule).
pub(crate) fn open_with(
    stored: &Bytes,
    loc: Location<'_>,
    keyring: &Keyring,
    max_len: usize,
    origin_ok: &dyn Fn(&[u8]) -> bool,
) -> Result<Unsealed, TransformError> {
    if !stored.starts_with(&MAGIC) {
        if damaged_magic(stored) {
            return Err(TransformError::Malformed {
                subject: loc.subject(),
                what: "damaged envelope header",
            });
        }
        return Ok(Unsealed {
            value: stored.clone(),
            form: Form::Plain,
        });
    }
    let malformed = |what| TransformError::Malformed {
        subject: loc.subject(),
        what,
    };
    let truncated = || TransformError::Truncated(loc.subject());
    let (&version, &flags, &check) = match stored.get(MAGIC.len()..FIXED_HEADER) {
        Some([v, f, c]) => (v, f, c),
        _ => return Err(truncated()),
    };
    if version != VERSION {
        return Err(TransformError::BadVersion {
            subject: loc.subject(),
            version,
        });
    }
    if check != !flags {
        return Err(malformed("damaged envelope flags"));
    }
    if flags & !KNOWN_FLAGS != 0 {
        return Err(malformed("unknown envelope flags"));
    }
    if flags & F_ENCRYPTED == 0 {
        if flags & F_ORIGIN != 0 {
            return Err(malformed("origin without encryption"));
        }
        let body = stored.slice(FIXED_HEADER..);
        let value = if flags & F_COMPRESSED != 0 {
            Bytes::from(decompress(&body, loc, max_len)?)
        } else {
            body
        };
        return Ok(Unsealed {
            value,
            form: Form::Unencrypted,
        });
    }

    let mut pos = FIXED_HEADER;
    let mut take = |n: usize| -> Result<&[u8], TransformError> {
        let bytes = stored
            .get(pos..pos.saturating_add(n))
            .ok_or_else(truncated)?;
        pos += n;
        Ok(bytes)
    };
    let id_len = take(1)?.first().copied().map_or(0, usize::from);
    let id = take(id_len)?;
    let nonce = take(NONCE_LEN)?;
    let origin = if flags & F_ORIGIN != 0 {
        let len = take(SIZE_LEN)?;
        let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]);
        Some(take(len as usize)?)
    } else {
        None
    };
    let header_len = pos;
    let is_list = matches!(loc, Location::ListElement(_));
    if is_list != origin.is_some() {
        return Err(malformed(if is_list {
            "list element without its origin"
        } else {
            "list element stored outside a list"
        }));
    }
    let key = keyring
        .index_of(id)
        .ok_or_else(|| TransformError::UnknownKeyId {
            subject: loc.subject(),
            id: show(id),
        })?;
    let (_, cipher) = keyring
        .get(key)
        .ok_or_else(|| malformed("key not loaded"))?;
    let body = stored.get(header_len..).ok_or_else(truncated)?;
    if body.len() < TAG_LEN {
        return Err(truncated());
    }
    let (ciphertext, tag) = body.split_at(body.len() - TAG_LEN);
    let mut plaintext = ciphertext.to_vec();
    let header = stored.get(..header_len).ok_or_else(truncated)?;
    with_aad(header, loc, |aad| {
        let nonce = Nonce::try_from(nonce).map_err(|_| aes_gcm::Error)?;
        let tag = Tag::try_from(tag).map_err(|_| aes_gcm::Error)?;
        cipher.decrypt_inout_detached(&nonce, aad, plaintext.as_mut_slice().into(), &tag)
    })
    .map_err(|_| TransformError::AuthFailed(loc.subject()))?;
    // The origin is authenticated now; decide whether it may live here.
    let rebound = match origin {
        Some(o) if o != loc.key() => {
            if !origin_ok(o) {
                return Err(TransformError::WrongOrigin {
                    subject: loc.subject(),
                    origin: show(o),
                });
            }
            true
        }
        _ => false,
    };
    let value = if flags & F_COMPRESSED != 0 {
        Bytes::from(decompress(&plaintext, loc, max_len)?)
    } else {
        Bytes::from(plaintext)
    };
    Ok(Unsealed {
        value,
        form: Form::Encrypted { key, rebound },
    })
}

/// Decompresses `size (u32 BE) + lz4 block`, refusing a declared size above
/// `max_len` or above what lz4 can produce from the input, before allocating.
fn decompress(inner: &[u8], loc: Location<'_>, max_len: usize) -> Result<Vec<u8>, TransformError> {
    let (size, block) = match inner.split_first_chunk::<SIZE_LEN>() {
        Some((size, block)) => (u32::from_be_bytes(*size) as usize, block),
        None => return Err(TransformError::Truncated(loc.subject())),
    };
    if size > max_len {
        return Err(TransformError::TooLarge {
            subject: loc.subject(),
            size: size as u64,
            max: max_len,
        });
    }
    if size > block.len().saturating_mul(MAX_LZ4_RATIO).saturating_add(64) {
        return Err(TransformError::Malformed {
            subject: loc.subject(),
            what: "declared size impossible for its compressed length",
        });
    }
    let mut out = vec![0u8; size];
    match lz4_flex::block::decompress_into(block, &mut out) {
        Ok(n) if n == size => Ok(out),
        _ => Err(TransformError::Decompress(loc.subject())),
    }
}
