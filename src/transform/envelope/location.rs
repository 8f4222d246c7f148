//! [`Location`]: where a value lives in Redis, and the AAD that binds a
//! sealed value to it, so a ciphertext copied elsewhere fails to open.

use super::error::{show, Subject};

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

/// Calls `f` with the AAD for a value at `loc` whose header is `header`,
/// built on the stack when it is small (almost always).
pub(super) fn with_aad<R>(header: &[u8], loc: Location<'_>, f: impl FnOnce(&[u8]) -> R) -> R {
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
