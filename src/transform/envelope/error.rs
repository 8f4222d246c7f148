//! [`TransformError`]: why a value could not be sealed or opened, worded as
//! the error reply the client gets, naming the key (printed by [`show`]) and
//! never the value.

use crate::transform::stats::FailureKind;

/// The value (and field) a failure is about, printable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    pub(super) key: String,
    pub(super) field: Option<String>,
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
