//! Write-behind's series, `strata_tier_behind_*`: prometheus-client
//! handles (atomics) registered once at startup, updated by the capture
//! and the drain.
//!
//! | series | type |
//! |---|---|
//! | `strata_tier_behind_captured_total` | counter: write commands captured (Redis + outbox, atomically) |
//! | `strata_tier_behind_backlog_full_total` | counter: writes refused with `-ERR tier backlog full` |
//! | `strata_tier_behind_drained_total` | counter: outbox changes applied to Postgres and acknowledged (the drain rate is its `rate()`) |
//! | `strata_tier_behind_coalesced_total` | counter: changes superseded by a newer one of the same key in their batch |
//! | `strata_tier_behind_batches_total` | counter: batches committed |
//! | `strata_tier_behind_dead_letters_total` | counter: changes Postgres refused permanently (in `strata_dead_letters`) |
//! | `strata_tier_behind_retries_total` | counter: batches retried because Postgres did not answer |
//! | `strata_tier_behind_claimed_total` | counter: changes taken over from another (crashed) strata |
//! | `strata_tier_behind_backlog_bytes` | gauge: bytes the outbox holds (what the bound counts) |
//! | `strata_tier_behind_backlog_entries` | gauge: changes in the outbox (XLEN) |
//! | `strata_tier_behind_oldest_pending_seconds` | gauge: how long the oldest change in the outbox has waited for Postgres (0 when empty) |
//! | `strata_tier_behind_lag_seconds` | histogram: from capture to Postgres commit, per change (p99 from its buckets) |

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Lag buckets, seconds.
const LAG_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The handles (cheap to clone: each is an `Arc`).
#[derive(Debug, Clone)]
pub struct BehindStats {
    pub captured: Counter,
    pub backlog_full: Counter,
    pub drained: Counter,
    pub coalesced: Counter,
    pub batches: Counter,
    pub dead_letters: Counter,
    pub retries: Counter,
    pub claimed: Counter,
    pub backlog_bytes: Gauge,
    pub backlog_entries: Gauge,
    pub oldest_pending: Gauge<f64, std::sync::atomic::AtomicU64>,
    pub lag: Histogram,
}

impl Default for BehindStats {
    fn default() -> Self {
        BehindStats {
            captured: Counter::default(),
            backlog_full: Counter::default(),
            drained: Counter::default(),
            coalesced: Counter::default(),
            batches: Counter::default(),
            dead_letters: Counter::default(),
            retries: Counter::default(),
            claimed: Counter::default(),
            backlog_bytes: Gauge::default(),
            backlog_entries: Gauge::default(),
            oldest_pending: Gauge::default(),
            lag: Histogram::new(LAG_BUCKETS),
        }
    }
}

impl BehindStats {
    /// Registers the series under `strata_tier_behind_*`.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("tier_behind");
        r.register(
            "captured",
            "Write commands captured with their outbox entry",
            self.captured.clone(),
        );
        r.register(
            "backlog_full",
            "Writes refused because the outbox was full",
            self.backlog_full.clone(),
        );
        r.register(
            "drained",
            "Outbox changes applied to Postgres and acknowledged",
            self.drained.clone(),
        );
        r.register(
            "coalesced",
            "Changes superseded by a newer change of the same key in their batch",
            self.coalesced.clone(),
        );
        r.register("batches", "Batches committed", self.batches.clone());
        r.register(
            "dead_letters",
            "Changes Postgres refused permanently (strata_dead_letters)",
            self.dead_letters.clone(),
        );
        r.register(
            "retries",
            "Batches retried because Postgres did not answer",
            self.retries.clone(),
        );
        r.register(
            "claimed",
            "Changes taken over from another strata's pending list",
            self.claimed.clone(),
        );
        r.register(
            "backlog_bytes",
            "Bytes held by the outbox (what outbox_max_bytes bounds)",
            self.backlog_bytes.clone(),
        );
        r.register(
            "backlog_entries",
            "Changes in the outbox stream",
            self.backlog_entries.clone(),
        );
        r.register(
            "oldest_pending_seconds",
            "How long the oldest change in the outbox has waited for Postgres",
            self.oldest_pending.clone(),
        );
        r.register(
            "lag_seconds",
            "Time from capture in Redis to commit in Postgres, per change",
            self.lag.clone(),
        );
    }
}
