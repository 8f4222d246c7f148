//! `PROXY BACKENDS` and `PROXY TOPOLOGY`: the nodes strata talks to, and
//! how it routes to them.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::backend::breaker::BreakerState;
use crate::backend::node::Node;
use crate::protocol::{Protocol, ReplyBuf};
use crate::server::Shared;

/// A node and its role, in the order an operator reads them: primaries
/// first (by shard in cluster mode), then their replicas.
pub(super) fn nodes(shared: &Shared) -> Vec<(Arc<Node>, &'static str)> {
    if let Some(cluster) = &shared.cluster {
        let view = cluster.view();
        let mut out = Vec::new();
        for shard in view.map.shards() {
            if let Some(n) = view.node(&shard.primary.addr) {
                out.push((n.clone(), "primary"));
            }
            for r in &shard.replicas {
                if let Some(n) = view.node(&r.addr) {
                    out.push((n.clone(), "replica"));
                }
            }
        }
        return out;
    }
    let topology = shared.backend.topology();
    let mut out = vec![(topology.primary.clone(), "primary")];
    out.extend(topology.replicas.iter().map(|r| (r.clone(), "replica")));
    out
}

/// The breaker state as a word.
pub(super) fn breaker_word(node: &Node) -> &'static str {
    match node.breaker().state() {
        BreakerState::Closed => "closed",
        BreakerState::Open => "open",
        BreakerState::HalfOpen => "half-open",
    }
}

fn micros(d: Option<Duration>) -> i64 {
    d.map_or(-1, |d| d.as_micros() as i64)
}

/// `PROXY BACKENDS`: one map per node.
pub fn backends(shared: &Shared, proto: Protocol) -> Bytes {
    let nodes = nodes(shared);
    let mut r = ReplyBuf::new(proto);
    r.array(nodes.len());
    for (node, role) in &nodes {
        let ping = node.ping_latency();
        r.map(9);
        r.bulk(b"addr").bulk(node.addr().as_bytes());
        r.bulk(b"role").bulk(role.as_bytes());
        r.bulk(b"state").bulk(if node.is_healthy() {
            b"up" as &[u8]
        } else {
            b"down"
        });
        r.bulk(b"breaker").bulk(breaker_word(node).as_bytes());
        r.bulk(b"connections_up")
            .integer(node.connections_up() as i64);
        r.bulk(b"connections_total")
            .integer(node.connections_total() as i64);
        r.bulk(b"in_flight").integer(node.in_flight() as i64);
        r.bulk(b"latency_p50_us")
            .integer(micros(ping.quantile(0.5)));
        r.bulk(b"latency_p99_us")
            .integer(micros(ping.quantile(0.99)));
    }
    r.freeze()
}

/// `PROXY TOPOLOGY`: the slot map (cluster), or the primary and replicas
/// strata follows (Sentinel) or talks to (standalone).
pub fn topology(shared: &Shared, proto: Protocol) -> Bytes {
    let mut r = ReplyBuf::new(proto);
    if let Some(cluster) = &shared.cluster {
        let view = cluster.view();
        let ranges = view.map.ranges();
        r.map(2);
        r.bulk(b"mode").bulk(b"cluster");
        r.bulk(b"slots").array(ranges.len());
        for range in ranges {
            let shard = &view.map.shards()[range.shard];
            r.array(4);
            r.integer(i64::from(range.start))
                .integer(i64::from(range.end));
            r.bulk(shard.primary.addr.as_bytes());
            r.array(shard.replicas.len());
            for rep in &shard.replicas {
                r.bulk(rep.addr.as_bytes());
            }
        }
        return r.freeze();
    }
    let topology = shared.backend.topology();
    r.map(if shared.sentinel.is_some() { 6 } else { 4 });
    r.bulk(b"mode").bulk(shared.backend.mode().as_bytes());
    r.bulk(b"primary").bulk(topology.primary.addr().as_bytes());
    r.bulk(b"replicas").array(topology.replicas.len());
    for rep in &topology.replicas {
        r.bulk(rep.addr().as_bytes());
    }
    let (failovers, last_ms) = shared.backend.failover_stats();
    r.bulk(b"failovers")
        .bulk(format!("{failovers} (last took {last_ms} ms)").as_bytes());
    if let Some((master, sentinels)) = shared.sentinel.as_ref().map(|s| s.describe()) {
        r.bulk(b"master_name").bulk(master.as_bytes());
        r.bulk(b"sentinels").array(sentinels.len());
        for s in sentinels {
            r.bulk(s.as_bytes());
        }
    }
    r.freeze()
}
