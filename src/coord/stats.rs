//! The coordination series, `strata_coord_*`, labelled by backend: plain
//! prometheus-client counters (a relaxed atomic add on the command path)
//! and the wait histogram, registered once in the telemetry registry.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Buckets of the wait histogram, in seconds: waits last from a release's
/// round trip to the WAIT timeout.
pub const WAIT_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0,
];

/// The counters of one backend (only `redis` today).
#[derive(Debug)]
pub struct CoordStats {
    /// Locks taken (LOCK.ACQUIRE answered with a token).
    pub acquisitions: Counter,
    /// Locks given back (LOCK.RELEASE, and KEEPALIVE leases at disconnect).
    pub releases: Counter,
    /// LOCK.EXTEND and KEEPALIVE renewals that succeeded.
    pub extensions: Counter,
    /// LOCK.ACQUIRE … WAIT answered nil: the wait ran out.
    pub timeouts: Counter,
    /// LOCK.ACQUIRE without WAIT answered nil: someone held it.
    pub busy: Counter,
    /// KEEPALIVE leases lost (a renewal found the lock gone or taken).
    pub lost_leases: Counter,
    /// RELEASE/EXTEND refused because the token does not hold the lock.
    pub fencing_rejections: Counter,
    /// Acquisitions a replica acknowledged (`WAIT 1`, see `ack.rs`).
    pub replica_acks: Counter,
    /// Acquisitions on a primary with replicas that no replica
    /// acknowledged in time (or that ran without the wait: no pooled
    /// connection free, a redirect).
    pub replica_acks_missing: Counter,
    /// How long LOCK.ACQUIRE … WAIT waited (whether it got the lock or not).
    pub waits: Histogram,
    /// Waiters queued in this strata now (`wake.rs`).
    pub waiting: Gauge,
}

impl Default for CoordStats {
    fn default() -> Self {
        CoordStats {
            acquisitions: Counter::default(),
            releases: Counter::default(),
            extensions: Counter::default(),
            timeouts: Counter::default(),
            busy: Counter::default(),
            lost_leases: Counter::default(),
            fencing_rejections: Counter::default(),
            replica_acks: Counter::default(),
            replica_acks_missing: Counter::default(),
            waits: Histogram::new(WAIT_BUCKETS),
            waiting: Gauge::default(),
        }
    }
}

impl CoordStats {
    /// Adds one to `counter`.
    pub fn add(counter: &Counter) {
        counter.inc();
    }

    /// Registers the series as `strata_coord_*{backend="<backend>"}`.
    pub fn register(&self, registry: &mut Registry, backend: &'static str) {
        let r = registry
            .sub_registry_with_prefix("coord")
            .sub_registry_with_label(("backend".into(), backend.into()));
        let counters: [(&str, &str, &Counter); 9] = [
            (
                "replica_acks",
                "Acquisitions a replica acknowledged (WAIT 1)",
                &self.replica_acks,
            ),
            (
                "replica_acks_missing",
                "Acquisitions on a primary with replicas that no replica acknowledged",
                &self.replica_acks_missing,
            ),
            ("acquisitions", "Locks taken", &self.acquisitions),
            (
                "releases",
                "Locks released, by command or at disconnect",
                &self.releases,
            ),
            (
                "extensions",
                "LOCK.EXTEND and KEEPALIVE renewals that succeeded",
                &self.extensions,
            ),
            (
                "timeouts",
                "LOCK.ACQUIRE … WAIT answered nil",
                &self.timeouts,
            ),
            ("busy", "LOCK.ACQUIRE without WAIT answered nil", &self.busy),
            (
                "lost_leases",
                "KEEPALIVE leases lost by a failed renewal",
                &self.lost_leases,
            ),
            (
                "fencing_rejections",
                "RELEASE/EXTEND refused: the token does not hold the lock",
                &self.fencing_rejections,
            ),
        ];
        for (name, help, counter) in counters {
            r.register(name, help, counter.clone());
        }
        r.register(
            "waiters",
            "LOCK.ACQUIRE … WAIT callers queued in this strata now",
            self.waiting.clone(),
        );
        r.register(
            "wait_seconds",
            "How long LOCK.ACQUIRE … WAIT waited",
            self.waits.clone(),
        );
    }
}
