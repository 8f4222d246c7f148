//! `mirror` with `write = "behind"`: the client is answered once Redis has
//! the write; Postgres gets it shortly after, in batches, crash-safe.
//!
//! # How a change travels
//!
//! 1. **Capture** ([`capture`]): one Lua script (`lua/tier_behind_capture.lua`,
//!    EVALSHA on the client's own connection) applies the write *and*
//!    appends an entry to the outbox stream, atomically: a change is in
//!    both or in neither, whatever crashes. The entry carries the key's
//!    new state (value or DUMP payload, type, absolute expiry) or a
//!    delete, and a version from Redis's clock that only grows. Before
//!    writing, the script checks the outbox's byte count against
//!    `outbox_max_bytes` and refuses with `-ERR tier backlog full`.
//! 2. **Drain** ([`drain`]): every strata joins one consumer group on the
//!    stream (XREADGROUP), reads batches (`batch_rows` or `batch_ms`),
//!    keeps the newest change per key, and applies the batch in one
//!    Postgres transaction ([`apply`]) with the store's versioned upsert
//!    and tombstoned delete. Only then are the entries acknowledged and
//!    deleted, and their bytes given back (`lua/tier_behind_ack.lua`).
//!    A strata that dies leaves its read entries pending; the others
//!    claim them after `claim_idle_ms` (XAUTOCLAIM).
//! 3. **Failures**: Postgres unreachable → the batch is retried with
//!    backoff, entries wait in the outbox (and the bound pushes back on
//!    writers). A change Postgres refuses permanently (a constraint, a
//!    value out of range) goes to `strata_dead_letters` with the reason,
//!    and the rest of the batch goes on.
//!
//! Delivery is at least once; the versions make it idempotent and keep
//! each key's order, deletes included.
//!
//! Reads of write-behind keys are not re-warmed from Postgres: Redis holds
//! the newest state, and a miss cannot be told from a delete still in the
//! outbox.
//!
//! In cluster mode each hash slot has its own outbox stream, in that slot
//! ([`outbox`]): the capture stays one atomic script on the key's primary,
//! and a slot that moves takes its outbox along.

pub mod apply;
pub mod backlog;
pub mod capture;
pub mod config;
pub mod drain;
pub mod entry;
pub mod flush;
pub mod outbox;
pub mod script;
pub mod slots;
pub mod stats;

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;

use bytes::Bytes;

pub use config::BehindConfig;
pub use stats::BehindStats;

/// Write-behind's shared state: one per strata.
#[derive(Debug)]
pub struct Behind {
    config: BehindConfig,
    /// The outbox stream's key and its meta hash's (standalone, Sentinel).
    stream: Bytes,
    meta: Bytes,
    /// Cluster mode (set before the drain starts): one outbox per slot.
    cluster: AtomicBool,
    /// Cluster mode: slots captured into and not read since.
    dirty: outbox::DirtySlots,
    /// Cluster mode: the bytes every slot's outbox held at the drain's
    /// last count (the bound over the whole cluster, see `capture.rs`).
    cluster_bytes: AtomicI64,
    consumer: String,
    stats: BehindStats,
    capture: script::Script,
    ack: script::Script,
    /// FLUSHALL/FLUSHDB keeping the outboxes (`flush.rs`).
    flush_script: script::Script,
}

impl Behind {
    /// From validated config.
    pub fn new(config: &BehindConfig) -> Arc<Behind> {
        Arc::new(Behind {
            stream: Bytes::from(config.outbox_key.clone()),
            meta: Bytes::from(format!("{}:meta", config.outbox_key)),
            consumer: config.consumer_name(),
            cluster: AtomicBool::new(false),
            dirty: outbox::DirtySlots::default(),
            cluster_bytes: AtomicI64::new(0),
            config: config.clone(),
            stats: BehindStats::default(),
            capture: script::Script::new(include_str!("../../../lua/tier_behind_capture.lua")),
            ack: script::Script::new(include_str!("../../../lua/tier_behind_ack.lua")),
            flush_script: script::Script::new(include_str!("../../../lua/tier_behind_flush.lua")),
        })
    }

    /// The series (registered once at startup).
    pub fn stats(&self) -> &BehindStats {
        &self.stats
    }

    /// The config.
    pub fn config(&self) -> &BehindConfig {
        &self.config
    }

    /// Switches to one outbox per slot (cluster mode); before any write.
    pub fn set_cluster(&self, cluster: bool) {
        self.cluster.store(cluster, Ordering::Release);
    }

    /// True in cluster mode.
    pub fn is_cluster(&self) -> bool {
        self.cluster.load(Ordering::Acquire)
    }

    /// The outbox of standalone/Sentinel mode.
    pub fn single(&self) -> outbox::Outbox {
        outbox::Outbox {
            stream: self.stream.clone(),
            meta: self.meta.clone(),
        }
    }

    /// The outbox a change to `key` goes to.
    pub fn outbox_for(&self, key: &[u8]) -> outbox::Outbox {
        if self.is_cluster() {
            self.slot_outbox(crate::command::slot::hash_slot(key))
        } else {
            self.single()
        }
    }

    /// Cluster mode: the outbox of one slot.
    pub fn slot_outbox(&self, slot: u16) -> outbox::Outbox {
        outbox::of_slot(&self.config.outbox_key, slot)
    }
}
