//! Spill's series, `strata_tier_spill_*`: prometheus-client handles
//! registered once at startup (as write-behind's), also read by
//! `PROXY TIER STATS`.
//!
//! | series | type |
//! |---|---|
//! | `strata_tier_spill_spilled_total` | counter: keys moved to Postgres (now stubs) |
//! | `strata_tier_spill_raced_total` | counter: spills given up because the key changed meanwhile (the write won) |
//! | `strata_tier_spill_restores_total` | counter: spilled keys fetched back from Postgres (one per key however many clients touched it) |
//! | `strata_tier_spill_examined_total` | counter: keys the scanner examined (IDLETIME and MEMORY USAGE) |
//! | `strata_tier_spill_scan_passes_total` | counter: scanner passes over every primary |

use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;

/// The handles (cheap to clone: each is an `Arc`).
#[derive(Debug, Clone, Default)]
pub struct SpillStats {
    pub spilled: Counter,
    pub raced: Counter,
    pub restores: Counter,
    pub examined: Counter,
    pub scan_passes: Counter,
}

impl SpillStats {
    /// Registers the series under `strata_tier_spill_*`.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("tier_spill");
        r.register(
            "spilled",
            "Keys moved to Postgres behind a stub",
            self.spilled.clone(),
        );
        r.register(
            "raced",
            "Spills given up because the key changed while being spilled",
            self.raced.clone(),
        );
        r.register(
            "restores",
            "Spilled keys fetched back from Postgres on touch",
            self.restores.clone(),
        );
        r.register(
            "examined",
            "Keys the spill scanner examined",
            self.examined.clone(),
        );
        r.register(
            "scan_passes",
            "Spill scanner passes over every primary",
            self.scan_passes.clone(),
        );
    }
}
