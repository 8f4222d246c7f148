//! `[postgres]`'s high-availability options: where tier reads go and how
//! stale a replica may be.
//!
//! ```toml
//! [postgres]
//! url = "postgres://strata@db-a:5432/app"        # the primary at startup
//! replicas = ["postgres://strata@db-b:5432/app"]  # streaming replicas (and failover candidates)
//! read_from = "least-lag"       # "primary" (default) | "replica" | "least-lag"
//! max_replica_lag_ms = 1000     # a replica further behind than this is not read
//! probe_interval_ms = 500       # how often every host is asked its role and lag
//! ```
//!
//! The fields live in `PostgresConfig` (flat, as the issue names them);
//! their type and checks are here.

use serde::Deserialize;

/// Where tier reads (read-through, `PROXY TIER STATS | VERIFY | WARM`,
/// `PROXY CHECKPOINT LIST`) go. Writes always go to the primary.
#[derive(Debug, Clone, Copy, Default, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum ReadFrom {
    /// Every read on the primary (no staleness).
    #[default]
    Primary,
    /// Any replica whose lag is within the bound, in turn (spreads the
    /// load); the primary when none is.
    Replica,
    /// The replica with the least lag, if within the bound; else the primary.
    LeastLag,
}

pub(crate) fn default_max_replica_lag_ms() -> u64 {
    1_000
}

pub(crate) fn default_probe_interval_ms() -> u64 {
    500
}

/// Checks the options against the replicas configured.
pub fn validate(
    replicas: &[String],
    read_from: ReadFrom,
    max_lag_ms: u64,
    probe_ms: u64,
) -> Result<(), String> {
    if read_from != ReadFrom::Primary && replicas.is_empty() {
        return Err(
            "postgres.read_from = \"replica\" or \"least-lag\" needs postgres.replicas".into(),
        );
    }
    if max_lag_ms == 0 {
        return Err("postgres.max_replica_lag_ms must be at least 1".into());
    }
    if probe_ms < 10 {
        return Err("postgres.probe_interval_ms must be at least 10".into());
    }
    if probe_ms > max_lag_ms && read_from != ReadFrom::Primary {
        // Lag is measured once per probe: a bound shorter than the probe
        // interval cannot be kept.
        return Err(format!(
            "postgres.probe_interval_ms ({probe_ms}) must not exceed max_replica_lag_ms ({max_lag_ms})"
        ));
    }
    Ok(())
}
