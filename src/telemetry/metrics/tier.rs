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
//! | `strata_tier_postgres_pool_connections{host,state}` | gauge: a host's pooled connections, `state` = `idle` or `in_use` |
//! | `strata_tier_postgres_pool_max_connections` | gauge: the most connections each host's pool opens (`pool_size`) |
//! | `strata_tier_postgres_primary{host}` | gauge: 1 for the host writes go to, else 0 |
//! | `strata_tier_postgres_host_up{host}` | gauge: 1 when the host answered the last probe (only with replicas configured: a lone host is not probed) |
//! | `strata_tier_postgres_replica_lag_seconds{host}` | gauge: a replica's replay lag at the last probe (replicas that answered) |
//! | `strata_tier_postgres_failovers_total` | counter: times the primary changed to another host |

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use prometheus_client::encoding::EncodeMetric;

use super::Metrics;
use crate::tier::{Store, TierStats};

#[derive(Debug)]
struct TierCollector(Arc<TierStats>, Store);

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
        encode_pools(&self.1, &mut encoder)
    }
}

/// Pool state and roles per configured Postgres host (`tier::ha`).
fn encode_pools(
    store: &Store,
    encoder: &mut prometheus_client::encoding::DescriptorEncoder,
) -> Result<(), std::fmt::Error> {
    use crate::tier::ha::Role;
    use prometheus_client::metrics::counter::ConstCounter;
    use prometheus_client::metrics::gauge::ConstGauge;
    use prometheus_client::metrics::MetricType;
    let hosts = store.hosts();
    let mut m = encoder.encode_descriptor(
        "tier_postgres_pool_connections",
        "Pooled Postgres connections per host, idle or in use",
        None,
        MetricType::Gauge,
    )?;
    for h in hosts.all() {
        let size = i64::from(h.pool.size());
        let idle = i64::try_from(h.pool.num_idle()).unwrap_or(i64::MAX);
        for (state, v) in [("idle", idle), ("in_use", (size - idle).max(0))] {
            let labels = [("host", h.name.as_str()), ("state", state)];
            ConstGauge::new(v).encode(m.encode_family(&labels)?)?;
        }
    }
    let max = ConstGauge::new(
        hosts
            .all()
            .first()
            .map_or(0, |h| i64::from(h.pool.options().get_max_connections())),
    );
    max.encode(encoder.encode_descriptor(
        "tier_postgres_pool_max_connections",
        "Most connections each Postgres host's pool opens",
        None,
        max.metric_type(),
    )?)?;
    let primary = hosts.primary_index();
    let mut m = encoder.encode_descriptor(
        "tier_postgres_primary",
        "1 for the Postgres host writes go to",
        None,
        MetricType::Gauge,
    )?;
    for (i, h) in hosts.all().iter().enumerate() {
        ConstGauge::new(i64::from(i == primary))
            .encode(m.encode_family(&[("host", h.name.as_str())])?)?;
    }
    if hosts.all().len() < 2 {
        // One host: not probed (`tier_postgres_up` says whether it answers).
        let f = ConstCounter::new(hosts.failovers());
        return f.encode(encoder.encode_descriptor(
            "tier_postgres_failovers",
            "Times the Postgres primary changed to another host",
            None,
            f.metric_type(),
        )?);
    }
    let mut m = encoder.encode_descriptor(
        "tier_postgres_host_up",
        "1 when the Postgres host answered the last probe",
        None,
        MetricType::Gauge,
    )?;
    for h in hosts.all() {
        let up = matches!(h.role(), Role::Primary | Role::Replica);
        ConstGauge::new(i64::from(up)).encode(m.encode_family(&[("host", h.name.as_str())])?)?;
    }
    let mut m = encoder.encode_descriptor(
        "tier_postgres_replica_lag_seconds",
        "A replica's replay lag at the last probe",
        None,
        MetricType::Gauge,
    )?;
    for h in hosts.all() {
        if let (Role::Replica, Some(lag)) = (h.role(), h.lag_ms()) {
            ConstGauge::new(lag as f64 / 1000.0)
                .encode(m.encode_family(&[("host", h.name.as_str())])?)?;
        }
    }
    let f = ConstCounter::new(hosts.failovers());
    f.encode(encoder.encode_descriptor(
        "tier_postgres_failovers",
        "Times the Postgres primary changed to another host",
        None,
        f.metric_type(),
    )?)?;
    Ok(())
}

impl Metrics {
    /// Exports the tier counters. Call it once at startup, before sharing
    /// the `Metrics`.
    pub fn register_tier_stats(&mut self, stats: Arc<TierStats>, store: Store) {
        self.registry
            .register_collector(Box::new(TierCollector(stats, store)));
    }
}
