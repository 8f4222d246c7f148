//! `PROXY LATENCY`: p50/p99/p99.9 per command, as Redis's `INFO
//! latencystats` prints them (`latency_percentiles_usec_<cmd>:p50=…`).
//!
//! The figures come from the command latency histograms /metrics exports
//! (parse to reply, `telemetry/metrics/latency.rs`), so a percentile is the
//! upper bound of the bucket it falls in (50 µs … 2.5 s), not an exact
//! value as Redis's HDR histogram gives.

use std::fmt::Write as _;
use std::time::Duration;

use crate::telemetry::Metrics;

fn usec(d: Option<Duration>) -> String {
    let us = d.map_or(0.0, |d| d.as_secs_f64() * 1e6);
    format!("{us:.3}")
}

/// The `# Latencystats` lines, one per command that has run.
pub fn lines(metrics: &Metrics) -> String {
    let mut out = String::new();
    for (name, _, h) in metrics.command_stats() {
        if h.count() == 0 {
            continue;
        }
        let _ = write!(
            out,
            "latency_percentiles_usec_{}:p50={},p99={},p99.9={}\r\n",
            name,
            usec(h.quantile(0.5)),
            usec(h.quantile(0.99)),
            usec(h.quantile(0.999)),
        );
    }
    out
}

/// The `# Commandstats` lines (`cmdstat_<cmd>:calls=…,usec=…,usec_per_call=…`).
pub fn commandstats(metrics: &Metrics) -> String {
    let mut out = String::new();
    for (name, calls, h) in metrics.command_stats() {
        if calls == 0 {
            continue;
        }
        let usec = h.sum().as_micros() as u64;
        let _ = write!(
            out,
            "cmdstat_{}:calls={},usec={},usec_per_call={:.2}\r\n",
            name,
            calls,
            usec,
            usec as f64 / calls as f64
        );
    }
    out
}
