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

mod error;
mod header;
mod location;
mod open;
mod seal;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests;

pub(crate) use error::show;
pub use error::{Subject, TransformError};
pub use header::{key_id_of, MAGIC, VERSION};
pub use location::Location;
pub use open::{open, Opened};
pub(crate) use open::{open_with, Form};
pub use seal::seal;
#[cfg(test)]
pub(crate) use seal::seal_with;
