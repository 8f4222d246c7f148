//! Tier counters: plain atomics on the data path, exported at scrape time
//! (`telemetry/metrics/tier.rs`).

use std::sync::atomic::{AtomicU64, Ordering};

/// What the tiers did since start.
#[derive(Debug, Default)]
pub struct TierStats {
    /// Read-through lookups sent to Postgres (one per miss, however many
    /// clients missed the key at once).
    pub fetches: AtomicU64,
    /// Keys a lookup found in Postgres and re-warmed into Redis.
    pub hits: AtomicU64,
    /// Keys a lookup did not find (in neither tier).
    pub misses: AtomicU64,
    /// Write-through commands committed in Postgres and applied in Redis.
    pub writes: AtomicU64,
    /// Write-through commands refused because Postgres failed (nothing applied).
    pub write_failures: AtomicU64,
    /// Write-through commands whose Postgres commit may or may not have happened.
    pub write_ambiguous: AtomicU64,
    /// Changes committed in Postgres that Redis did not take (the key was invalidated).
    pub redis_apply_failures: AtomicU64,
    /// Expired rows swept from Postgres.
    pub swept: AtomicU64,
    /// Commands refused on mirrored keys (not supported there yet).
    pub refused: AtomicU64,
    /// 1 while Postgres answers (the last statement or probe succeeded).
    pub postgres_up: AtomicU64,
}

impl TierStats {
    /// Adds one to a counter.
    #[inline]
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
