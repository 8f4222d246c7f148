//! [`LatencyHistogram`]: the command latency histogram, lock-free and able
//! to record a run of equal observations at once.
//!
//! prometheus-client's `Histogram` takes a mutex per observation. The data
//! path records one latency per command, and a pipelined batch gives every
//! command in it the same latency (they were read together and answered
//! together), so a batch of 16 GETs would take that lock 16 times.
//! [`LatencyHistogram::observe_n`] records them with three atomic adds.
//! Exposition is the same as prometheus-client's histogram.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

use super::COMMAND_DURATION_BUCKETS;

const BUCKETS: usize = COMMAND_DURATION_BUCKETS.len();

/// The bucket bounds in nanoseconds, so an observation is compared as an
/// integer.
const BOUNDS_NANOS: [u64; BUCKETS] = {
    let mut out = [0u64; BUCKETS];
    let mut i = 0;
    while i < BUCKETS {
        // Every bound is a whole number of nanoseconds (≥ 50 µs).
        out[i] = (COMMAND_DURATION_BUCKETS[i] * 1e9 + 0.5) as u64;
        i += 1;
    }
    out
};

#[derive(Debug, Default)]
struct Inner {
    /// Observations per bucket (not cumulative); the last is `+Inf`.
    buckets: [AtomicU64; BUCKETS + 1],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

/// A latency histogram over [`COMMAND_DURATION_BUCKETS`]. Cloning shares it.
#[derive(Debug, Clone, Default)]
pub struct LatencyHistogram {
    inner: Arc<Inner>,
}

impl LatencyHistogram {
    /// Records `n` observations of `elapsed`.
    pub fn observe_n(&self, elapsed: Duration, n: u64) {
        if n == 0 {
            return;
        }
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let bucket = BOUNDS_NANOS
            .iter()
            .position(|&bound| nanos <= bound)
            .unwrap_or(BUCKETS);
        let inner = &*self.inner;
        inner.buckets[bucket].fetch_add(n, Ordering::Relaxed);
        inner.count.fetch_add(n, Ordering::Relaxed);
        inner
            .sum_nanos
            .fetch_add(nanos.saturating_mul(n), Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.inner
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .sum()
    }

    /// Sum of the observations.
    pub fn sum(&self) -> Duration {
        Duration::from_nanos(self.inner.sum_nanos.load(Ordering::Relaxed))
    }

    /// The `q` quantile (0..=1), as the upper bound of the bucket that
    /// reaches it: the histogram keeps buckets, not observations, so this
    /// is an upper estimate at the buckets' resolution (`PROXY LATENCY`).
    /// Past the last bound, the last bound. `None` before any observation.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let counts: Vec<u64> = self
            .inner
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                let bound = BOUNDS_NANOS
                    .get(i)
                    .copied()
                    .unwrap_or(BOUNDS_NANOS[BUCKETS - 1]);
                return Some(Duration::from_nanos(bound));
            }
        }
        Some(Duration::from_nanos(BOUNDS_NANOS[BUCKETS - 1]))
    }

    /// (sum in seconds, count, per-bucket counts with their upper bounds).
    fn snapshot(&self) -> (f64, u64, [(f64, u64); BUCKETS + 1]) {
        let inner = &*self.inner;
        let mut buckets = [(f64::INFINITY, 0u64); BUCKETS + 1];
        for (i, slot) in buckets.iter_mut().enumerate() {
            let bound = COMMAND_DURATION_BUCKETS
                .get(i)
                .copied()
                .unwrap_or(f64::INFINITY);
            *slot = (bound, inner.buckets[i].load(Ordering::Relaxed));
        }
        // Count as the buckets' total, so a scrape racing an observation
        // never shows `_count` disagreeing with the `+Inf` bucket.
        let count = buckets.iter().map(|(_, c)| c).sum();
        let sum = inner.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        (sum, count, buckets)
    }
}

impl TypedMetric for LatencyHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for LatencyHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let (sum, count, buckets) = self.snapshot();
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_bucket_bounds() {
        let h = LatencyHistogram::default();
        assert_eq!(h.quantile(0.5), None);
        h.observe_n(Duration::from_micros(40), 98);
        h.observe_n(Duration::from_millis(3), 2);
        assert_eq!(h.quantile(0.5), Some(Duration::from_micros(50)));
        assert_eq!(h.quantile(0.98), Some(Duration::from_micros(50)));
        assert!(h.quantile(0.99) >= Some(Duration::from_millis(3)));
        assert_eq!(h.count(), 100);
    }

    #[test]
    fn bounds_are_exact_nanoseconds() {
        assert_eq!(BOUNDS_NANOS[0], 50_000);
        assert_eq!(BOUNDS_NANOS[BUCKETS - 1], 2_500_000_000);
        assert!(BOUNDS_NANOS.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn observe_n_counts_a_run_once_per_observation() {
        let h = LatencyHistogram::default();
        h.observe_n(Duration::from_micros(50), 3); // on the first bound: `le` is inclusive
        h.observe_n(Duration::from_micros(51), 2);
        h.observe_n(Duration::from_secs(3), 1); // beyond the last bound: +Inf
        h.observe_n(Duration::from_micros(1), 0); // nothing
        let (sum, count, buckets) = h.snapshot();
        assert_eq!(count, 6);
        assert_eq!(buckets[0], (0.000_05, 3));
        assert_eq!(buckets[1], (0.000_1, 2));
        assert_eq!(buckets[BUCKETS], (f64::INFINITY, 1));
        assert!(
            (sum - (3.0 * 50e-6 + 2.0 * 51e-6 + 3.0)).abs() < 1e-9,
            "{sum}"
        );
    }
}
