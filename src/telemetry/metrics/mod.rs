//! The process-wide metrics registry and the typed handles the data path uses.
//!
//! There is one [`Metrics`] per process. `app` creates it at startup, lets the
//! modules that own extra series register them through [`Metrics::registry_mut`],
//! and then shares it as `Arc<Metrics>`; there is no global registry, so tests
//! can build as many independent ones as they like.
//!
//! Label sets are typed structs and enums rather than string pairs, so a label
//! can't be misspelt at one call site, and a label value is never formatted on the
//! hot path. Handles are looked up when a session, a backend connection or a
//! command first shows up, and kept: after that, recording is a couple of
//! atomic operations (see [`CommandMetrics::record`] for the measured cost).
//!
//! Series (as they appear in the OpenMetrics text; counters get the `_total`
//! suffix from the encoder):
//!
//! | series | type | labels |
//! |---|---|---|
//! | `strata_commands_total` | counter | `command` |
//! | `strata_command_duration_seconds` | histogram | `command` |
//! | `strata_client_connections` | gauge | |
//! | `strata_client_connections_accepted_total` | counter | |
//! | `strata_client_connections_rejected_total` | counter | `reason` |
//! | `strata_backend_connections` | gauge | `backend`, `kind`, `state` |
//! | `strata_errors_total` | counter | `kind` |
//! | `strata_client_bytes_received_total` | counter | |
//! | `strata_client_bytes_sent_total` | counter | |
//! | `strata_build_info` | info | `version` |
//! | `strata_uptime_seconds` | gauge | |
//! | `strata_backend_breaker_state` | gauge (0 closed, 1 open, 2 half-open) | `backend` |
//! | `strata_failovers_total` | counter | |
//! | `strata_last_failover_duration_seconds` | gauge | |
//! | `strata_discovery_up` | gauge (1 ok, 0 degraded) | |
//! | `strata_transform_*` | counters, one gauge | value transforms, see `TransformCollector` |
//! | `strata_tier_*` | counters, one gauge | Postgres tiers, see `TierCollector` |

mod handles;
mod labels;
mod latency;
mod registry;
mod tier;
mod transform;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;

pub use handles::{
    record_batch, BackendConnMetrics, ClientConnection, CommandMetrics, CommandMetricsCache,
};
pub use labels::{ConnKind, ConnState, ErrorKind, RejectReason, TlsFailure};
pub use latency::LatencyHistogram;
pub use registry::{Metrics, COMMAND_DURATION_BUCKETS};
