//! The `strata_tier_*` series: the Postgres tier counters, read from
//! `TierStats` at scrape time (recording them costs the data path one
//! relaxed atomic add).
//!
//! | series | type |
//! |---|---|
//! | `strata_tier_readthrough_fetches_total` | counter: Postgres lookups for keys Redis lacked (one per miss, however many clients missed) |
//! | `strata_tier_readthrough_hits_total` | counter: keys found in Postgres and re-warmed |
//! | `strata_tier_readthrough_misses_total` | counter: keys in neither tier |
//! | `strata_tier_writes_total` | counter: write-through commands committed and applied |
//! | `strata_tier_write_failures_total` | counter: refused because Postgres failed (nothing applied) |
//! | `strata_tier_write_ambiguous_total` | counter: Postgres commit outcome unknown (key invalidated) |
//! | `strata_tier_redis_apply_failures_total` | counter: committed in Postgres, refused by Redis (key invalidated) |
//! | `strata_tier_swept_rows_total` | counter: expired rows deleted from Postgres |
//! | `strata_tier_refused_commands_total` | counter: commands refused on mirrored keys |
//! | `strata_tier_postgres_up` | gauge: 1 when the last statement reached Postgres |

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use prometheus_client::encoding::EncodeMetric;

use super::Metrics;
use crate::tier::TierStats;

#[derive(Debug)]
struct TierCollector(Arc<TierStats>);

impl prometheus_client::collector::Collector for TierCollector {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::metrics::counter::ConstCounter;
        use prometheus_client::metrics::gauge::ConstGauge;
        let s = &self.0;
        let counters: [(&str, &str, &AtomicU64); 9] = [
            (
                "tier_readthrough_fetches",
                "Postgres lookups for mirrored keys Redis lacked",
                &s.fetches,
            ),
            (
                "tier_readthrough_hits",
                "Keys found in Postgres and re-warmed into Redis",
                &s.hits,
            ),
            (
                "tier_readthrough_misses",
                "Mirrored keys found in neither tier",
                &s.misses,
            ),
            (
                "tier_writes",
                "Write-through commands committed in Postgres and applied in Redis",
                &s.writes,
            ),
            (
                "tier_write_failures",
                "Write-through commands refused because Postgres failed",
                &s.write_failures,
            ),
            (
                "tier_write_ambiguous",
                "Write-through commands whose Postgres commit outcome is unknown",
                &s.write_ambiguous,
            ),
            (
                "tier_redis_apply_failures",
                "Changes committed in Postgres that Redis did not apply",
                &s.redis_apply_failures,
            ),
            (
                "tier_swept_rows",
                "Expired rows deleted from Postgres",
                &s.swept,
            ),
            (
                "tier_refused_commands",
                "Commands refused on mirrored keys",
                &s.refused,
            ),
        ];
        for (name, help, v) in counters {
            let c = ConstCounter::new(TierStats::get(v));
            c.encode(encoder.encode_descriptor(name, help, None, c.metric_type())?)?;
        }
        let up = ConstGauge::new(TierStats::get(&s.postgres_up) as i64);
        up.encode(encoder.encode_descriptor(
            "tier_postgres_up",
            "1 when the last statement reached Postgres",
            None,
            up.metric_type(),
        )?)?;
        Ok(())
    }
}

impl Metrics {
    /// Exports the tier counters. Call it once at startup, before sharing
    /// the `Metrics`.
    pub fn register_tier_stats(&mut self, stats: Arc<TierStats>) {
        self.registry
            .register_collector(Box::new(TierCollector(stats)));
    }
}
