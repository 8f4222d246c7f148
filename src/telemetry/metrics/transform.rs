//! The `strata_transform_*` series: the value-transform counters, read from
//! `TransformStats` at scrape time by a collector.

use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;

use super::Metrics;

/// `kind` label of `strata_transform_failures_total`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct TransformFailureLabels {
    kind: &'static str,
}

/// `op` label of the transform byte counters: `seal` (a client's value
/// written under a rule) or `open` (a stored value read back).
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct TransformOpLabels {
    op: &'static str,
}

/// Exports the value-transform counters (`src/transform/stats.rs`, plain
/// atomics updated on the data path) when scraped, so recording them costs
/// the data path nothing beyond those atomics.
///
/// | series | type | labels |
/// |---|---|---|
/// | `strata_transform_values_total` | counter | `op` (seal, open) |
/// | `strata_transform_plain_bytes_total` | counter | `op`: bytes as the client sees them (before sealing, after opening) |
/// | `strata_transform_stored_bytes_total` | counter | `op`: bytes as Redis stores them |
/// | `strata_transform_compression_ratio` | gauge | written plain bytes / stored bytes (1 before any write) |
/// | `strata_transform_encryptions_total` | counter | |
/// | `strata_transform_plain_values_total` | counter | values without an envelope read under an encrypting rule |
/// | `strata_transform_refused_commands_total` | counter | |
/// | `strata_transform_failures_total` | counter | `kind` (auth_failed, unknown_key_id, …) |
#[derive(Debug)]
struct TransformCollector(std::sync::Arc<crate::transform::TransformStats>);

impl prometheus_client::collector::Collector for TransformCollector {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::metrics::counter::ConstCounter;
        use prometheus_client::metrics::gauge::ConstGauge;
        let s = self.0.snapshot();
        let by_op = |encoder: &mut prometheus_client::encoding::DescriptorEncoder,
                     name: &str,
                     help: &str,
                     seal: u64,
                     open: u64|
         -> Result<(), std::fmt::Error> {
            let mut m = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (op, v) in [("seal", seal), ("open", open)] {
                ConstCounter::new(v).encode(m.encode_family(&TransformOpLabels { op })?)?;
            }
            Ok(())
        };
        by_op(
            &mut encoder,
            "transform_values",
            "Values transformed: sealed on write, opened on read",
            s.sealed_values,
            s.opened_values,
        )?;
        by_op(
            &mut encoder,
            "transform_plain_bytes",
            "Value bytes as the client sees them: before sealing, after opening",
            s.sealed_bytes_in,
            s.opened_bytes_out,
        )?;
        by_op(
            &mut encoder,
            "transform_stored_bytes",
            "Value bytes as Redis stores them: after sealing, before opening",
            s.sealed_bytes_out,
            s.opened_bytes_in,
        )?;
        let ratio = if s.sealed_bytes_out == 0 {
            1.0
        } else {
            s.sealed_bytes_in as f64 / s.sealed_bytes_out as f64
        };
        let gauge = ConstGauge::new(ratio);
        gauge.encode(encoder.encode_descriptor(
            "transform_compression_ratio",
            "Bytes written by clients under transform rules per byte stored (above 1: compression saves space)",
            None,
            gauge.metric_type(),
        )?)?;
        for (name, help, v) in [
            (
                "transform_encryptions",
                "Values encrypted (rotate keys well before 2^32 per key)",
                s.encryptions,
            ),
            (
                "transform_plain_values",
                "Values without an envelope read under an encrypting rule (left for PROXY REWRAP)",
                s.plain_values,
            ),
            (
                "transform_refused_commands",
                "Commands refused because they would break on a transformed key",
                s.refused_commands,
            ),
        ] {
            let c = ConstCounter::new(v);
            c.encode(encoder.encode_descriptor(name, help, None, c.metric_type())?)?;
        }
        let mut m = encoder.encode_descriptor(
            "transform_failures",
            "Values that could not be transformed, by kind",
            None,
            MetricType::Counter,
        )?;
        for kind in crate::transform::FailureKind::ALL {
            let labels = TransformFailureLabels {
                kind: kind.as_str(),
            };
            ConstCounter::new(s.failures(kind)).encode(m.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

impl Metrics {
    /// Exports the value-transform counters (see `TransformCollector` for
    /// the series). Call it once at startup, before sharing the `Metrics`.
    pub fn register_transform_stats(
        &mut self,
        stats: std::sync::Arc<crate::transform::TransformStats>,
    ) {
        self.registry
            .register_collector(Box::new(TransformCollector(stats)));
    }
}
