//! Where a change's outbox entry goes.
//!
//! Standalone and Sentinel: one stream (`outbox_key`) and its meta hash.
//!
//! Cluster: one stream *per hash slot*, `<outbox_key>:{T}` (meta
//! `<outbox_key>:{T}:meta`), where `T` is a short tag that hashes to that
//! slot. The capture script names the user's key, the stream and the meta
//! hash, all three in the key's slot, so it runs on the key's primary and
//! stays atomic as in standalone mode. And because a slot's outbox lives
//! *in* the slot:
//!
//! * a key's changes always go to one stream: the drain reads them in the
//!   order Redis applied them, and the versions (from the slot's meta hash,
//!   which only grows) order them whatever the node's clock;
//! * a slot that moves (resharding) takes its outbox, its consumer group
//!   and its pending entries along with its keys (MIGRATE moves every key of
//!   the slot); the drain follows MOVED/ASK like any routed command;
//! * a failover promotes a replica that has the outbox as far as it has
//!   the keys (Redis's replication; the same caveat as standalone).
//!
//! The drain learns which of the 16384 streams hold entries from two
//! sources: the slots this strata captured into ([`DirtySlots`], marked
//! after each capture: no delay for its own writes) and a periodic pass
//! (`drain.rs`) that asks every primary for the length of each slot's
//! stream (other stratas' changes, a restart, entries left pending).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use bytes::Bytes;

use crate::command::slot::{hash_slot, SLOT_COUNT};

/// One outbox: its stream and its meta hash (the byte count and the last
/// version given).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outbox {
    /// The stream key.
    pub stream: Bytes,
    /// The meta hash key.
    pub meta: Bytes,
}

/// For each slot, a short tag that hashes to it (decimal numbers, the
/// first found per slot). Computed once, ~200,000 CRCs.
fn tags() -> &'static [Bytes] {
    static TAGS: OnceLock<Vec<Bytes>> = OnceLock::new();
    TAGS.get_or_init(|| {
        let mut tags: Vec<Option<Bytes>> = vec![None; usize::from(SLOT_COUNT)];
        let mut missing = usize::from(SLOT_COUNT);
        let mut n: u64 = 0;
        while missing > 0 {
            let s = n.to_string();
            let slot = usize::from(hash_slot(s.as_bytes()));
            if tags[slot].is_none() {
                tags[slot] = Some(Bytes::from(s));
                missing -= 1;
            }
            n += 1;
        }
        tags.into_iter().map(Option::unwrap_or_default).collect()
    })
}

/// The outbox of one slot in cluster mode.
pub fn of_slot(base: &str, slot: u16) -> Outbox {
    let tag = &tags()[usize::from(slot % SLOT_COUNT)];
    let tag = String::from_utf8_lossy(tag);
    Outbox {
        stream: Bytes::from(format!("{base}:{{{tag}}}")),
        meta: Bytes::from(format!("{base}:{{{tag}}}:meta")),
    }
}

/// Slots whose outbox may hold entries this strata has not read yet: one
/// bit per slot, set after a capture, taken (cleared) by the drain before
/// it reads, so a capture that lands after the read sets it again.
#[derive(Debug)]
pub struct DirtySlots {
    words: Vec<AtomicU64>,
}

impl Default for DirtySlots {
    fn default() -> Self {
        DirtySlots {
            words: (0..usize::from(SLOT_COUNT) / 64)
                .map(|_| AtomicU64::new(0))
                .collect(),
        }
    }
}

impl DirtySlots {
    /// Marks a slot.
    pub fn mark(&self, slot: u16) {
        let slot = usize::from(slot % SLOT_COUNT);
        self.words[slot / 64].fetch_or(1 << (slot % 64), Ordering::AcqRel);
    }

    /// Takes every marked slot (clearing them), in slot order.
    pub fn take(&self) -> Vec<u16> {
        let mut out = Vec::new();
        for (w, word) in self.words.iter().enumerate() {
            if word.load(Ordering::Acquire) == 0 {
                continue;
            }
            let mut bits = word.swap(0, Ordering::AcqRel);
            while bits != 0 {
                let b = bits.trailing_zeros() as usize;
                bits &= bits - 1;
                out.push(u16::try_from(w * 64 + b).unwrap_or(0));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_slot_has_an_outbox_in_that_slot() {
        for slot in [0u16, 1, 5461, 12182, 16383] {
            let o = of_slot("strata:outbox", slot);
            assert_eq!(hash_slot(&o.stream), slot);
            assert_eq!(hash_slot(&o.meta), slot);
        }
        assert!(tags().iter().all(|t| !t.is_empty()));
        assert!(tags().iter().all(|t| t.len() <= 6));
    }

    #[test]
    fn dirty_slots_are_taken_once() {
        let d = DirtySlots::default();
        d.mark(3);
        d.mark(16383);
        d.mark(3);
        d.mark(64);
        assert_eq!(d.take(), vec![3, 64, 16383]);
        assert!(d.take().is_empty());
    }
}
