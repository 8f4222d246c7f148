//! The stored format of a transformed value: a small versioned header, then
//! the (compressed, encrypted) body.
//!
//! ```text
//! offset  size  field
//! 0       4     magic 00 53 54 A1 ("\0ST" + 0xA1)
//! 4       1     version = 1
//! 5       1     flags: 0x01 compressed, 0x02 encrypted, 0x04 origin; other bits must be 0
//! 6       1     flags XOR 0xFF
//! -- only when encrypted --
//! 7       1     key id length L (1..=32)
//! 8       L     key id (ASCII, as in [transform_keys.keys])
//! 8+L     12    nonce (96 random bits)
//! -- only with the origin flag (encrypted list elements) --
//!         4     origin key length N (big endian)
//!         N     origin key: the list the element was written to
//! -- body --
//!         …     encrypted: ciphertext of the inner bytes, then the 16-byte GCM tag
//!               otherwise: the inner bytes
//! inner: compressed: decompressed size (u32, big endian) then an lz4 block
//!        otherwise:  the value itself
//! ```
//!
//! Why this shape:
//!
//! * **Magic.** A NUL byte followed by `ST` and a UTF-8 continuation byte:
//!   no valid UTF-8 text (JSON, numbers, …) can start with it, and binary
//!   formats rarely start with NUL. A value without the magic is *plain*:
//!   written before the rule existed, it is returned as stored. A value that
//!   happens to start with the magic is written inside an envelope with no
//!   flags (an *escape*), so it always reads back exactly.
//! * **Key id as a string**, not an index: ids survive reordering the
//!   config, and an operator can read which key a value needs.
//! * **Compression before encryption**, because ciphertext does not
//!   compress. The cost is that ciphertext length reveals compressibility;
//!   a rule that mixes attacker-chosen and secret data in one value should
//!   not compress.
//! * **Decompressed size inside the ciphertext**, so it is authenticated,
//!   and checked against the configured maximum (proto-max-bulk-len) and
//!   lz4's best possible ratio *before* allocating: a bomb is refused.
//! * **AAD** (authenticated, not stored) = every header byte (so flags, key
//!   id, nonce and origin cannot be altered) followed by a context naming
//!   where the value lives, so a ciphertext copied elsewhere fails to open:
//!   * string value: `'s'`, key name;
//!   * hash field value: `'h'`, key length (u32 BE), key name, field name —
//!     the length prefix keeps `("a\0", "b")` and `("a", "\0b")` apart, and
//!     binding the field stops values being swapped between fields;
//!   * list element: `'l'`; the key is the origin in the header. LMOVE and
//!     friends move elements between lists inside Redis, so an element is
//!     bound to the list it was written to, and a read accepts it in that
//!     list or in another list under the same rule. Copying it to a key of
//!     another rule, or to a string or hash, is detected.
//!
//!   Values that are only compressed carry no key binding: there is nothing
//!   to authenticate with.
//! * **Damage to the header itself** must not downgrade an encrypted value
//!   to one that is returned as is. The flags byte is followed by its
//!   complement, so a damaged flags byte (say, a lost "encrypted" bit) is
//!   refused; and a value with three of the four magic bytes followed by a
//!   valid version and flags is refused as damaged rather than taken for
//!   plain. (Deliberate rewriting by someone with write access to Redis is
//!   the same as planting a plain value: see the rule's `accept_plain`.)

use aes_gcm::aead::generic_array::GenericArray;
use aes_gcm::aead::rand_core::RngCore;
use aes_gcm::aead::OsRng;
use aes_gcm::AeadInPlace;
use bytes::Bytes;

use super::keyring::Keyring;
use super::rules::Rule;
use super::stats::FailureKind;

/// The first bytes of every envelope.
pub const MAGIC: [u8; 4] = [0x00, b'S', b'T', 0xA1];
/// The envelope version this build writes and reads.
pub const VERSION: u8 = 1;

const F_COMPRESSED: u8 = 0x01;
const F_ENCRYPTED: u8 = 0x02;
const F_ORIGIN: u8 = 0x04;
const KNOWN_FLAGS: u8 = F_COMPRESSED | F_ENCRYPTED | F_ORIGIN;
/// Magic, version, flags, flags complement.
const FIXED_HEADER: usize = MAGIC.len() + 3;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const SIZE_LEN: usize = 4;
/// lz4 cannot expand data by much more than 255:1 (one length byte per 255
/// bytes of match), so a declared size beyond this is a lie.
const MAX_LZ4_RATIO: usize = 256;
/// Nonces fetched from the OS per `getrandom` call.
const NONCE_BLOCK: usize = 256;
/// AADs up to this size are built on the stack.
const AAD_STACK: usize = 256;

/// Where a value lives in Redis: the additional authenticated data binds a
/// sealed value to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location<'a> {
    /// The value of a string key.
    Key(&'a [u8]),
    /// The value of one field of a hash.
    HashField {
        /// The hash.
        key: &'a [u8],
        /// The field.
        field: &'a [u8],
    },
    /// An element of a list.
    ListElement(&'a [u8]),
}

impl<'a> Location<'a> {
    /// The Redis key.
    pub fn key(&self) -> &'a [u8] {
        match *self {
            Location::Key(k) | Location::ListElement(k) | Location::HashField { key: k, .. } => k,
        }
    }

    pub(crate) fn subject(&self) -> Subject {
        Subject {
            key: show(self.key()),
            field: match self {
                Location::HashField { field, .. } => Some(show(field)),
                _ => None,
            },
        }
    }
}

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

/// The value (and field) a failure is about, printable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    key: String,
    field: Option<String>,
}

impl std::fmt::Display for Subject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "key '{}'", self.key)?;
        if let Some(field) = &self.field {
            write!(f, " field '{field}'")?;
        }
        Ok(())
    }
}

/// Why a value could not be sealed or opened. `Display` is the error reply
/// the client gets (without the leading `-`); it names the key so that an
/// operator can find the value, and never includes value bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransformError {
    /// The tag did not verify.
    #[error("ERR cannot decrypt value of {0} (authentication failed)")]
    AuthFailed(Subject),
    /// The key id is not loaded.
    #[error("ERR cannot decrypt value of {subject} (unknown key id '{id}')")]
    UnknownKeyId {
        /// Where.
        subject: Subject,
        /// The id found in the value.
        id: String,
    },
    /// The envelope ends too early.
    #[error("ERR cannot decode value of {0} (truncated envelope)")]
    Truncated(Subject),
    /// An unknown envelope version.
    #[error("ERR cannot decode value of {subject} (unsupported envelope version {version})")]
    BadVersion {
        /// Where.
        subject: Subject,
        /// The version found.
        version: u8,
    },
    /// Impossible flags or sizes.
    #[error("ERR cannot decode value of {subject} ({what})")]
    Malformed {
        /// Where.
        subject: Subject,
        /// What is wrong.
        what: &'static str,
    },
    /// lz4 data that does not decompress.
    #[error("ERR cannot decode value of {0} (decompression failed)")]
    Decompress(Subject),
    /// The declared size is above the maximum.
    #[error("ERR cannot decode value of {subject} (decompressed size {size} exceeds the limit of {max} bytes)")]
    TooLarge {
        /// Where.
        subject: Subject,
        /// The declared size.
        size: u64,
        /// The limit.
        max: usize,
    },
    /// A plain value where the rule requires encryption.
    #[error("ERR value of {subject} is not encrypted (rule '{rule}' refuses plain values)")]
    PlainRefused {
        /// Where.
        subject: Subject,
        /// The rule's pattern.
        rule: String,
    },
    /// A list element written to a list under another rule.
    #[error("ERR cannot decrypt value of {subject} (it was written to key '{origin}', which is under another rule)")]
    WrongOrigin {
        /// Where.
        subject: Subject,
        /// The list it was written to.
        origin: String,
    },
    /// Sealing failed.
    #[error("ERR cannot encrypt value of {subject} ({what})")]
    Seal {
        /// Where.
        subject: Subject,
        /// What failed.
        what: &'static str,
    },
}

impl TransformError {
    /// The metric label of this failure.
    pub fn kind(&self) -> FailureKind {
        match self {
            TransformError::AuthFailed(_) => FailureKind::AuthFailed,
            TransformError::UnknownKeyId { .. } => FailureKind::UnknownKeyId,
            TransformError::Truncated(_) => FailureKind::Truncated,
            TransformError::BadVersion { .. } => FailureKind::BadVersion,
            TransformError::Malformed { .. } => FailureKind::Malformed,
            TransformError::Decompress(_) => FailureKind::Decompress,
            TransformError::TooLarge { .. } => FailureKind::TooLarge,
            TransformError::PlainRefused { .. } => FailureKind::PlainRefused,
            TransformError::WrongOrigin { .. } => FailureKind::WrongOrigin,
            TransformError::Seal { .. } => FailureKind::Seal,
        }
    }
}

/// Bytes (a key, a field) as they appear in error messages: printable ASCII
/// kept, anything else (quotes, backslashes, control and non-ASCII bytes)
/// as `\xNN`, cut at 128 bytes so an error line stays short.
pub(crate) fn show(bytes: &[u8]) -> String {
    const LIMIT: usize = 128;
    let mut s = String::with_capacity(bytes.len().min(LIMIT) + 3);
    for &b in bytes.iter().take(LIMIT) {
        if (0x20..0x7f).contains(&b) && b != b'\'' && b != b'\\' {
            s.push(char::from(b));
        } else {
            s.push_str(&format!("\\x{b:02x}"));
        }
    }
    if bytes.len() > LIMIT {
        s.push_str("...");
    }
    s
}

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
        cipher.encrypt_in_place_detached(GenericArray::from_slice(&nonce), aad, plaintext)
    })
    .map_err(|_| seal_error("value too large to encrypt"))?;
    out.extend_from_slice(&tag);
    Ok(Bytes::from(out))
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
        cipher.decrypt_in_place_detached(
            GenericArray::from_slice(nonce),
            aad,
            &mut plaintext,
            GenericArray::from_slice(tag),
        )
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

/// True when `stored` is an envelope whose magic lost one byte: three of the
/// four magic bytes, then a valid version and flags. Without this check a
/// corrupted magic would turn an encrypted value into a "plain" one, returned
/// to the client as stored. No text, and practically no binary value, starts
/// like this (byte 3 of the magic is a UTF-8 continuation byte).
fn damaged_magic(stored: &[u8]) -> bool {
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
            OsRng.try_fill_bytes(&mut pool.buf).ok()?;
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
            OsRng.try_fill_bytes(&mut nonce).ok()?;
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

/// Calls `f` with the AAD for a value at `loc` whose header is `header`,
/// built on the stack when it is small (almost always).
fn with_aad<R>(header: &[u8], loc: Location<'_>, f: impl FnOnce(&[u8]) -> R) -> R {
    let mut prefix = [0u8; 5];
    let (prefix_len, a, b): (usize, &[u8], &[u8]) = match loc {
        Location::Key(k) => {
            prefix[0] = b's';
            (1, k, &[])
        }
        Location::HashField { key, field } => {
            prefix[0] = b'h';
            // Key names are below 4 GiB (Redis caps them at 512 MB).
            let len = u32::try_from(key.len()).unwrap_or(u32::MAX);
            prefix[1..5].copy_from_slice(&len.to_be_bytes());
            (5, key, field)
        }
        Location::ListElement(_) => {
            prefix[0] = b'l';
            (1, &[], &[])
        }
    };
    let parts: [&[u8]; 4] = [header, &prefix[..prefix_len], a, b];
    let total: usize = parts.iter().map(|p| p.len()).sum();
    if total <= AAD_STACK {
        let mut buf = [0u8; AAD_STACK];
        let mut pos = 0;
        for p in parts {
            buf[pos..pos + p.len()].copy_from_slice(p);
            pos += p.len();
        }
        f(&buf[..total])
    } else {
        f(&parts.concat())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn ring() -> Keyring {
        Keyring::from_keys([("k1", [1u8; 32]), ("k2", [2u8; 32])], Some("k2")).unwrap()
    }

    const MAX: usize = 1 << 20;

    fn json(n: usize) -> Bytes {
        let mut s = String::from("[");
        let mut i = 0;
        while s.len() < n {
            s.push_str(&format!(
                "{{\"id\":{i},\"name\":\"user{i}\",\"active\":true,\"roles\":[\"reader\",\"writer\"]}},"
            ));
            i += 1;
        }
        s.truncate(n);
        Bytes::from(s)
    }

    fn sealed(v: &Bytes, loc: Location<'_>, min: Option<usize>, key: Option<usize>) -> Bytes {
        seal_with(v, loc, min, key, &ring()).unwrap()
    }

    #[test]
    fn compress_only_round_trip_and_passthrough() {
        let r = ring();
        let v = json(1000);
        let s = sealed(&v, Location::Key(b"k"), Some(64), None);
        assert!(
            s.starts_with(&MAGIC) && s.len() < v.len() / 2,
            "{} -> {}",
            v.len(),
            s.len()
        );
        assert_eq!(s[5], F_COMPRESSED);
        let o = open(&s, Location::Key(b"k"), &r, MAX).unwrap();
        assert_eq!(
            o,
            Opened::Decoded {
                value: v.clone(),
                authenticated: false
            }
        );
        // Compress-only values are not bound to a key.
        assert_eq!(
            open(&s, Location::Key(b"other"), &r, MAX).unwrap().value(),
            &v
        );

        // Short: below min_size, returned as the same bytes.
        let short = Bytes::from_static(b"hello");
        let s = sealed(&short, Location::Key(b"k"), Some(64), None);
        assert_eq!(s.as_ptr(), short.as_ptr(), "no copy");
        assert_eq!(
            open(&s, Location::Key(b"k"), &r, MAX).unwrap(),
            Opened::Plain(short)
        );

        // Incompressible: stored as is.
        let noise: Bytes = (0..200u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        let s = sealed(&noise, Location::Key(b"k"), Some(0), None);
        assert_eq!(s, noise);
    }

    #[test]
    fn values_that_look_like_envelopes_are_escaped() {
        let r = ring();
        let mut v = MAGIC.to_vec();
        v.extend_from_slice(&[1, F_COMPRESSED, 0, 0, 0, 9, 0x90]);
        let v = Bytes::from(v);
        for min in [None, Some(0), Some(1000)] {
            let s = sealed(&v, Location::Key(b"k"), min, None);
            assert_ne!(s, v);
            assert_eq!(
                open(&s, Location::Key(b"k"), &r, MAX).unwrap().into_value(),
                v
            );
        }
    }

    #[test]
    fn encrypted_round_trips() {
        let r = ring();
        for v in [
            Bytes::new(),
            Bytes::from_static(b"x"),
            json(100),
            json(20_000),
        ] {
            for min in [None, Some(64)] {
                for loc in [
                    Location::Key(b"session:1"),
                    Location::HashField {
                        key: b"h",
                        field: b"f",
                    },
                    Location::ListElement(b"list"),
                ] {
                    let s = sealed(&v, loc, min, Some(1));
                    assert!(s.starts_with(&MAGIC));
                    assert_eq!(key_id_of(&s), Some(&b"k2"[..]));
                    if v.len() > 20 {
                        let runs: std::collections::HashSet<&[u8]> = v.windows(20).collect();
                        assert!(
                            !s.windows(20).any(|w| runs.contains(w)),
                            "no plaintext run in the stored value"
                        );
                    }
                    let o = open(&s, loc, &r, MAX).unwrap();
                    assert_eq!(
                        o,
                        Opened::Decoded {
                            value: v.clone(),
                            authenticated: true
                        }
                    );
                }
            }
        }
    }

    #[test]
    fn compression_and_encryption_together() {
        let v = json(16 * 1024);
        let s = sealed(&v, Location::Key(b"k"), Some(64), Some(0));
        assert_eq!(s[5], F_ENCRYPTED | F_COMPRESSED);
        assert!(s.len() < v.len() / 2);
        assert_eq!(
            open(&s, Location::Key(b"k"), &ring(), MAX)
                .unwrap()
                .into_value(),
            v
        );
    }

    #[test]
    fn nonces_differ() {
        let v = Bytes::from_static(b"same");
        let a = sealed(&v, Location::Key(b"k"), None, Some(0));
        let b = sealed(&v, Location::Key(b"k"), None, Some(0));
        assert_ne!(a, b);
    }

    #[test]
    fn copies_to_another_place_fail() {
        let r = ring();
        let v = Bytes::from_static(b"secret");
        let s = sealed(&v, Location::Key(b"a"), None, Some(0));
        let e = open(&s, Location::Key(b"b"), &r, MAX).unwrap_err();
        assert_eq!(
            e.to_string(),
            "ERR cannot decrypt value of key 'b' (authentication failed)"
        );
        assert_eq!(e.kind(), FailureKind::AuthFailed);
        assert!(open(
            &s,
            Location::HashField {
                key: b"a",
                field: b""
            },
            &r,
            MAX
        )
        .is_err());
        assert!(open(&s, Location::ListElement(b"a"), &r, MAX).is_err());

        let h = sealed(
            &v,
            Location::HashField {
                key: b"h",
                field: b"f1",
            },
            None,
            Some(0),
        );
        let e = open(
            &h,
            Location::HashField {
                key: b"h",
                field: b"f2",
            },
            &r,
            MAX,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "ERR cannot decrypt value of key 'h' field 'f2' (authentication failed)"
        );
        // The length prefix keeps key/field boundaries apart.
        let h = sealed(
            &v,
            Location::HashField {
                key: b"a\0",
                field: b"b",
            },
            None,
            Some(0),
        );
        assert!(open(
            &h,
            Location::HashField {
                key: b"a",
                field: b"\0b"
            },
            &r,
            MAX
        )
        .is_err());
        assert!(open(&h, Location::Key(b"a\0"), &r, MAX).is_err());

        let l = sealed(&v, Location::ListElement(b"q1"), None, Some(0));
        let e = open(&l, Location::ListElement(b"q2"), &r, MAX).unwrap_err();
        assert_eq!(e.kind(), FailureKind::WrongOrigin);
        assert!(e.to_string().contains("written to key 'q1'"), "{e}");
        let moved = open_with(&l, Location::ListElement(b"q2"), &r, MAX, &|o| o == b"q1").unwrap();
        assert_eq!(moved.value, v);
        assert_eq!(
            moved.form,
            Form::Encrypted {
                key: 0,
                rebound: true
            }
        );
        assert!(open(&l, Location::Key(b"q1"), &r, MAX).is_err());
    }

    #[test]
    fn unknown_key_and_bad_headers() {
        let v = Bytes::from_static(b"secret");
        let s = sealed(&v, Location::Key(b"k"), None, Some(0));
        let only_k2 = Keyring::from_keys([("k2", [2u8; 32])], None).unwrap();
        let e = open(&s, Location::Key(b"k"), &only_k2, MAX).unwrap_err();
        assert_eq!(
            e.to_string(),
            "ERR cannot decrypt value of key 'k' (unknown key id 'k1')"
        );

        let mut bad = s.to_vec();
        bad[4] = 9;
        let e = open(&Bytes::from(bad), Location::Key(b"k"), &ring(), MAX).unwrap_err();
        assert_eq!(e.kind(), FailureKind::BadVersion);
        assert!(e.to_string().contains("version 9"));

        let mut bad = s.to_vec();
        bad[5] |= 0x80;
        bad[6] = !bad[5];
        let e = open(&Bytes::from(bad), Location::Key(b"k"), &ring(), MAX).unwrap_err();
        assert_eq!(e.kind(), FailureKind::Malformed);

        for n in 0..s.len() {
            if n < MAGIC.len() {
                continue; // not an envelope any more: plain
            }
            let e = open(&s.slice(..n), Location::Key(b"k"), &ring(), MAX).unwrap_err();
            assert!(
                matches!(
                    e.kind(),
                    FailureKind::Truncated | FailureKind::AuthFailed | FailureKind::UnknownKeyId
                ),
                "{n}: {e}"
            );
        }
    }

    #[test]
    fn decompression_bomb_is_refused_before_allocating() {
        let r = ring();
        let zeros = Bytes::from(vec![0u8; 4 << 20]);
        let s = sealed(&zeros, Location::Key(b"k"), Some(0), None);
        assert!(s.len() < 20_000, "{}", s.len());
        // Within lz4's ratio bound: opens when the cap allows it.
        assert_eq!(
            open(&s, Location::Key(b"k"), &r, 8 << 20)
                .unwrap()
                .into_value(),
            zeros
        );
        let e = open(&s, Location::Key(b"k"), &r, 1 << 20).unwrap_err();
        assert_eq!(e.kind(), FailureKind::TooLarge);
        assert!(
            e.to_string().contains("exceeds the limit of 1048576 bytes"),
            "{e}"
        );
        // A forged size far beyond what the block can produce.
        let mut forged = MAGIC.to_vec();
        forged.extend_from_slice(&[VERSION, F_COMPRESSED, !F_COMPRESSED]);
        forged.extend_from_slice(&(500_000_000u32).to_be_bytes());
        forged.extend_from_slice(&[0x1f, 0, 1, 0, 0]);
        let e = open(&Bytes::from(forged), Location::Key(b"k"), &r, usize::MAX).unwrap_err();
        assert_eq!(e.kind(), FailureKind::Malformed);
        // A size that lies by a little: decompression fails, no garbage.
        let mut lie = s.to_vec();
        lie[FIXED_HEADER + 3] ^= 1;
        let e = open(&Bytes::from(lie), Location::Key(b"k"), &r, 8 << 20).unwrap_err();
        assert_eq!(e.kind(), FailureKind::Decompress);
    }

    #[test]
    fn show_escapes() {
        assert_eq!(show(b"session:1"), "session:1");
        assert_eq!(show(b"a'b\\c\r\n\xff"), "a\\x27b\\x5cc\\x0d\\x0a\\xff");
        assert_eq!(show(&[b'a'; 200]).len(), 131);
    }
}
