//! `PROXY INFO [section …]`: what /metrics knows, in Redis's INFO format
//! (`# Section` then `key:value` lines, CRLF), so that an operator with
//! redis-cli alone sees it.
//!
//! Sections: server, clients, backends, commands, latency, and, only when
//! the feature is configured, transforms and tiers (cache and coordination
//! have no feature behind them yet, so they are never printed). Without an
//! argument, or with `default`, `all` or `everything`, every section is
//! printed, as Redis's INFO does; unknown section names print nothing.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use bytes::Bytes;

use crate::protocol::{Protocol, ReplyBuf};
use crate::server::Shared;

/// Every section, in order.
pub const SECTIONS: &[&str] = &[
    "server",
    "clients",
    "backends",
    "commands",
    "latency",
    "transforms",
    "tiers",
    "cache",
    "coordination",
];

/// The sections `args` asks for (lowercased; every one for none or for
/// `all`/`everything`/`default`).
pub fn wanted(args: &[Bytes]) -> Vec<&'static str> {
    if args.is_empty()
        || args.iter().any(|a| {
            a.eq_ignore_ascii_case(b"all")
                || a.eq_ignore_ascii_case(b"everything")
                || a.eq_ignore_ascii_case(b"default")
        })
    {
        return SECTIONS.to_vec();
    }
    SECTIONS
        .iter()
        .copied()
        .filter(|s| args.iter().any(|a| a.eq_ignore_ascii_case(s.as_bytes())))
        .collect()
}

/// The reply: INFO's verbatim string.
pub fn info(shared: &Shared, sections: &[&str], proto: Protocol) -> Bytes {
    let mut text = String::new();
    for s in sections {
        let body = section(shared, s);
        let Some(body) = body else { continue };
        if !text.is_empty() {
            text.push_str("\r\n");
        }
        let mut title = s.to_string();
        title[..1].make_ascii_uppercase();
        let _ = write!(text, "# {title}\r\n{body}");
    }
    let mut r = ReplyBuf::new(proto);
    r.verbatim(text.as_bytes());
    r.freeze()
}

/// One section's lines; `None` when its feature is not configured.
fn section(shared: &Shared, name: &str) -> Option<String> {
    let mut out = String::new();
    match name {
        "server" => {
            let _ = write!(
                out,
                "proxy_name:strata\r\nproxy_version:{}\r\nuptime_in_seconds:{}\r\nlisten:{}\r\n\
                 worker_threads:{}\r\ndraining:{}\r\nslowlog_log_slower_than_us:{}\r\nslowlog_len:{}\r\n",
                env!("CARGO_PKG_VERSION"),
                shared.started.elapsed().as_secs(),
                shared.server.load().listen,
                shared.server.load().worker_threads,
                u8::from(shared.drain.is_on()),
                shared.server.load().slowlog_log_slower_than_us,
                shared.slowlog.len(),
            );
        }
        "clients" => {
            let clients = shared.clients.snapshot();
            let dedicated = clients
                .iter()
                .filter(|c| c.dedicated_on().is_some())
                .count();
            let pubsub = clients.iter().filter(|c| c.is_pubsub()).count();
            let inflight: usize = clients.iter().map(|c| c.inflight()).sum();
            let _ = write!(
                out,
                "connected_clients:{}\r\nmaxclients:{}\r\nmax_clients_per_address:{}\r\n\
                 max_inflight_per_client:{}\r\nclients_on_dedicated_connections:{}\r\n\
                 pubsub_clients:{}\r\nclients_inflight_commands:{}\r\n",
                clients.len(),
                shared.server.load().maxclients,
                shared.server.load().max_clients_per_address,
                shared.server.load().max_inflight_per_client,
                dedicated,
                pubsub,
                inflight,
            );
        }
        "backends" => {
            let (failovers, last_ms) = shared.backend.failover_stats();
            let nodes = super::backends::nodes(shared);
            let _ = write!(
                out,
                "backend_mode:{}\r\nbackend_nodes:{}\r\nbackend_nodes_down:{}\r\ndiscovery_state:{}\r\n\
                 failovers:{}\r\nlast_failover_ms:{}\r\n",
                shared.backend.mode(),
                nodes.len(),
                nodes.iter().filter(|(n, _)| !n.is_healthy()).count(),
                if shared.backend.discovery_ok() { "ok" } else { "degraded" },
                failovers,
                last_ms,
            );
            if let Some(cluster) = &shared.cluster {
                let view = cluster.view();
                let _ = write!(
                    out,
                    "cluster_state:{}\r\ncluster_shards:{}\r\ncluster_slots_unserved:{}\r\n\
                     cluster_topology_changes:{}\r\n",
                    if cluster.is_healthy() { "ok" } else { "fail" },
                    view.map.shards().len(),
                    view.map.unassigned(),
                    cluster.changes(),
                );
            }
            for (i, (node, role)) in nodes.iter().enumerate() {
                let _ = write!(
                    out,
                    "node{i}:addr={},role={role},state={},breaker={},connections_up={},\
                     connections_total={},in_flight={}\r\n",
                    node.addr(),
                    if node.is_healthy() { "up" } else { "down" },
                    super::backends::breaker_word(node),
                    node.connections_up(),
                    node.connections_total(),
                    node.in_flight(),
                );
            }
        }
        "commands" => out = super::latency::commandstats(&shared.metrics),
        "latency" => out = super::latency::lines(&shared.metrics),
        "transforms" => {
            if shared.transforms.is_empty() {
                return None;
            }
            let s = shared.transforms.load().stats().snapshot();
            let _ = write!(
                out,
                "transform_rules:{}\r\nsealed_values:{}\r\nopened_values:{}\r\nplain_values:{}\r\n\
                 refused_commands:{}\r\n",
                shared.transforms.load().rules().len(),
                s.sealed_values,
                s.opened_values,
                s.plain_values,
                s.refused_commands,
            );
        }
        "tiers" => {
            let tiers = shared.tiers.as_ref()?;
            let s = tiers.stats();
            let get = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
            let _ = write!(
                out,
                "postgres_up:{}\r\ntier_writes:{}\r\ntier_write_failures:{}\r\ntier_fetches:{}\r\n\
                 tier_hits:{}\r\ntier_misses:{}\r\n",
                u8::from(tiers.postgres_up()),
                get(&s.writes),
                get(&s.write_failures),
                get(&s.fetches),
                get(&s.hits),
                get(&s.misses),
            );
        }
        "coordination" => {
            let coord = shared.coord.as_ref()?;
            let s = coord.stats();
            let _ = write!(
                out,
                "coord_commands:{}\r\nlock_acquisitions:{}\r\nlock_releases:{}\r\n\
                 lock_extensions:{}\r\nlock_timeouts:{}\r\nlock_busy:{}\r\n\
                 lock_lost_leases:{}\r\nlock_fencing_rejections:{}\r\n\
                 lock_replica_acks:{}\r\nlock_replica_acks_missing:{}\r\nlock_waiters:{}\r\n",
                crate::coord::registry::count(),
                s.acquisitions.get(),
                s.releases.get(),
                s.extensions.get(),
                s.timeouts.get(),
                s.busy.get(),
                s.lost_leases.get(),
                s.fencing_rejections.get(),
                s.replica_acks.get(),
                s.replica_acks_missing.get(),
                s.waiting.get(),
            );
        }
        // No cache feature exists yet: never configured.
        _ => return None,
    }
    Some(out)
}
