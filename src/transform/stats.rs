//! Counters for the transform layer, for the metrics registry to export.
//!
//! Plain atomics, updated with `Relaxed` ordering: each counter is an
//! independent tally and nobody reads two of them as a consistent pair. The
//! struct lives behind an `Arc` owned by whoever builds the transforms, so a
//! config reload can build new rules without resetting the counters.

use std::sync::atomic::{AtomicU64, Ordering};

/// Why a value could not be transformed. Each kind is a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureKind {
    /// The GCM tag did not verify: tampered, truncated in the middle, or
    /// copied from another key.
    AuthFailed,
    /// The value names a key id that is not loaded.
    UnknownKeyId,
    /// The envelope ends before its header or tag does.
    Truncated,
    /// An envelope version this build does not know.
    BadVersion,
    /// An envelope with impossible flags or sizes.
    Malformed,
    /// lz4 data that does not decompress to its declared size.
    Decompress,
    /// A declared decompressed size above the configured maximum (a bomb).
    TooLarge,
    /// A plain value under a rule with `accept_plain = false`.
    PlainRefused,
    /// A list element bound to a key under another rule.
    WrongOrigin,
    /// Sealing failed (the OS random source failed).
    Seal,
}

impl FailureKind {
    /// Every kind, in a fixed order.
    pub const ALL: [FailureKind; 10] = [
        FailureKind::AuthFailed,
        FailureKind::UnknownKeyId,
        FailureKind::Truncated,
        FailureKind::BadVersion,
        FailureKind::Malformed,
        FailureKind::Decompress,
        FailureKind::TooLarge,
        FailureKind::PlainRefused,
        FailureKind::WrongOrigin,
        FailureKind::Seal,
    ];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::AuthFailed => "auth_failed",
            FailureKind::UnknownKeyId => "unknown_key_id",
            FailureKind::Truncated => "truncated",
            FailureKind::BadVersion => "bad_version",
            FailureKind::Malformed => "malformed",
            FailureKind::Decompress => "decompress",
            FailureKind::TooLarge => "too_large",
            FailureKind::PlainRefused => "plain_refused",
            FailureKind::WrongOrigin => "wrong_origin",
            FailureKind::Seal => "seal",
        }
    }

    fn slot(self) -> usize {
        self as usize
    }
}

/// Transform counters. Read them with [`TransformStats::snapshot`].
#[derive(Debug, Default)]
pub struct TransformStats {
    sealed_values: AtomicU64,
    sealed_bytes_in: AtomicU64,
    sealed_bytes_out: AtomicU64,
    encryptions: AtomicU64,
    opened_values: AtomicU64,
    opened_bytes_in: AtomicU64,
    opened_bytes_out: AtomicU64,
    plain_values: AtomicU64,
    refused_commands: AtomicU64,
    failures: [AtomicU64; FailureKind::ALL.len()],
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Values written under a rule.
    pub sealed_values: u64,
    /// Their size as the client sent them.
    pub sealed_bytes_in: u64,
    /// Their size as stored in Redis. `sealed_bytes_in / sealed_bytes_out`
    /// is the compression ratio (encryption adds a fixed overhead).
    pub sealed_bytes_out: u64,
    /// Values encrypted. Random 96-bit nonces stay safe for about 2^32
    /// encryptions per key: rotate keys well before that.
    pub encryptions: u64,
    /// Values read under a rule.
    pub opened_values: u64,
    /// Their size as stored.
    pub opened_bytes_in: u64,
    /// Their size as returned to the client.
    pub opened_bytes_out: u64,
    /// Values without an envelope read under an encrypting rule (written
    /// before the rule existed): what `PROXY REWRAP` still has to migrate.
    pub plain_values: u64,
    /// Commands refused because they would break on a transformed key.
    pub refused_commands: u64,
    /// Failures, indexed like [`FailureKind::ALL`].
    pub failures: [u64; FailureKind::ALL.len()],
}

impl StatsSnapshot {
    /// Failures of one kind.
    pub fn failures(&self, kind: FailureKind) -> u64 {
        self.failures[kind.slot()]
    }
}

impl TransformStats {
    /// Fresh counters.
    pub fn new() -> TransformStats {
        TransformStats::default()
    }

    pub(crate) fn sealed(&self, before: usize, after: usize, encrypted: bool) {
        self.sealed_values.fetch_add(1, Ordering::Relaxed);
        self.sealed_bytes_in
            .fetch_add(before as u64, Ordering::Relaxed);
        self.sealed_bytes_out
            .fetch_add(after as u64, Ordering::Relaxed);
        if encrypted {
            self.encryptions.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn opened(&self, stored: usize, plain: usize) {
        self.opened_values.fetch_add(1, Ordering::Relaxed);
        self.opened_bytes_in
            .fetch_add(stored as u64, Ordering::Relaxed);
        self.opened_bytes_out
            .fetch_add(plain as u64, Ordering::Relaxed);
    }

    pub(crate) fn plain_value(&self) {
        self.plain_values.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn refused(&self) {
        self.refused_commands.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn failed(&self, kind: FailureKind) {
        self.failures[kind.slot()].fetch_add(1, Ordering::Relaxed);
    }

    /// Failures of one kind so far.
    pub fn failures(&self, kind: FailureKind) -> u64 {
        self.failures[kind.slot()].load(Ordering::Relaxed)
    }

    /// All counters.
    pub fn snapshot(&self) -> StatsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut failures = [0; FailureKind::ALL.len()];
        for (out, c) in failures.iter_mut().zip(&self.failures) {
            *out = get(c);
        }
        StatsSnapshot {
            sealed_values: get(&self.sealed_values),
            sealed_bytes_in: get(&self.sealed_bytes_in),
            sealed_bytes_out: get(&self.sealed_bytes_out),
            encryptions: get(&self.encryptions),
            opened_values: get(&self.opened_values),
            opened_bytes_in: get(&self.opened_bytes_in),
            opened_bytes_out: get(&self.opened_bytes_out),
            plain_values: get(&self.plain_values),
            refused_commands: get(&self.refused_commands),
            failures,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_have_distinct_slots_and_labels() {
        for (i, k) in FailureKind::ALL.iter().enumerate() {
            assert_eq!(k.slot(), i);
        }
        let mut labels: Vec<_> = FailureKind::ALL.iter().map(|k| k.as_str()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), FailureKind::ALL.len());
    }

    #[test]
    fn counts() {
        let s = TransformStats::new();
        s.sealed(100, 40, true);
        s.opened(40, 100);
        s.failed(FailureKind::AuthFailed);
        s.plain_value();
        s.refused();
        let snap = s.snapshot();
        assert_eq!(
            (
                snap.sealed_bytes_in,
                snap.sealed_bytes_out,
                snap.encryptions
            ),
            (100, 40, 1)
        );
        assert_eq!((snap.opened_bytes_in, snap.opened_bytes_out), (40, 100));
        assert_eq!(snap.failures(FailureKind::AuthFailed), 1);
        assert_eq!(s.failures(FailureKind::Decompress), 0);
        assert_eq!((snap.plain_values, snap.refused_commands), (1, 1));
    }
}
