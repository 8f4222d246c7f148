//! Reading the cluster's topology, and the topology strata shows clients.
//!
//! [`read_topology`] asks the seed nodes, one after the other, for
//! `CLUSTER SHARDS` (Redis 7), falling back to `CLUSTER SLOTS` when a node
//! does not know it, and returns the first complete [`SlotMap`]. It is the
//! control plane: a raw connection per call, AUTH when configured, nothing
//! shared with the data path.
//!
//! [`SingleNode`] builds the replies strata gives a *cluster-aware* client
//! (redis-cli -c, redis-py's `RedisCluster`): strata itself as one primary
//! owning all 16384 slots, so such a client sends everything to strata and
//! never sees a redirect; strata routes behind it.

use bytes::{Bytes, BytesMut};

use crate::backend::{connect_authenticated, handshake, ConnSettings};
use crate::protocol::{Protocol, ReplyBuf};

use super::slots::{host_of, join_addr, SlotMap, TopologyError};

/// Reads the topology from `seeds` (`host:port`), trying each in order.
///
/// The first node whose answer covers every slot with primaries it
/// reports healthy wins. When none does (a cluster that is still forming,
/// slots that lost their primary, a failover in progress), the least stale
/// map is returned (see [`staleness`]), so the slots that are served keep
/// working; the caller can see `SlotMap::is_complete`. An error names
/// every seed and why it failed.
pub async fn read_topology(
    seeds: &[String],
    settings: &ConnSettings,
) -> Result<SlotMap, TopologyError> {
    let mut best: Option<SlotMap> = None;
    let mut failures = Vec::new();
    for seed in seeds {
        match read_from(seed, settings).await {
            Ok(map) if staleness(&map) == (0, 0) => return Ok(map),
            Ok(map) if map.shards().is_empty() => {
                failures.push(format!("{seed}: serves no slot"));
            }
            Ok(map) => {
                failures.push(format!(
                    "{seed}: {} slots unserved, {} failed primaries",
                    map.unassigned(),
                    map.failed_primaries()
                ));
                if best.as_ref().is_none_or(|b| staleness(&map) < staleness(b)) {
                    best = Some(map);
                }
            }
            Err(e) => failures.push(format!("{seed}: {e}")),
        }
    }
    match best {
        Some(map) => Ok(map),
        None if seeds.is_empty() => Err(TopologyError::NoSeed("no seed nodes configured".into())),
        None => Err(TopologyError::NoSeed(failures.join("; "))),
    }
}

/// How far a node's view is from a healthy, current one: slots nobody
/// serves first, then primaries reported failed. The first view at
/// `(0, 0)` is taken; otherwise the other nodes are asked too and the
/// least stale view wins. Under load, a node can lag a failover by a
/// second: taking its view (the dead primary, flagged failed, still
/// owning the slots) after the promoted replica was already serving
/// would send those slots back to the dead node.
fn staleness(map: &SlotMap) -> (usize, usize) {
    (map.unassigned(), map.failed_primaries())
}

/// Reads the topology from one node: `CLUSTER SHARDS`, or `CLUSTER SLOTS`
/// when the node answers SHARDS with an error (Redis before 7.0). The
/// error text says what failed (connect, AUTH, command, parse).
pub async fn read_from(addr: &str, settings: &ConnSettings) -> Result<SlotMap, String> {
    let mut stream = connect_authenticated(addr, settings)
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = BytesMut::new();
    let host = host_of(addr);
    let timeout = settings.request_timeout;
    match handshake::call(&mut stream, &mut buf, &[b"CLUSTER", b"SHARDS"], timeout).await {
        Ok(reply) => {
            return SlotMap::from_cluster_shards_over(&reply, host, settings.tls.is_some())
                .map_err(|e| e.to_string())
        }
        // An error reply: an older server. Anything else: the connection.
        Err(e) if e.kind() == std::io::ErrorKind::Other => {}
        Err(e) => return Err(e.to_string()),
    }
    let reply = handshake::call(&mut stream, &mut buf, &[b"CLUSTER", b"SLOTS"], timeout)
        .await
        .map_err(|e| format!("CLUSTER SLOTS: {e}"))?;
    SlotMap::from_cluster_slots(&reply, host).map_err(|e| e.to_string())
}

/// strata as a one-node cluster owning every slot, for cluster-aware
/// clients. `host` and `port` must be the address the client reached
/// strata at (the local address of its connection, not a wildcard
/// listen address), so the client's reconnects come back to strata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SingleNode {
    host: String,
    port: u16,
    id: String,
}

impl SingleNode {
    /// The node at `host:port`, with a node id derived from the address
    /// (stable across restarts, 40 hex characters like a Redis node id).
    pub fn new(host: &str, port: u16) -> SingleNode {
        let mut id = String::with_capacity(40);
        let mut seed = format!("strata {host}:{port}");
        while id.len() < 40 {
            let mut h: u64 = 0xcbf2_9ce4_8422_2325;
            for b in seed.bytes() {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0000_0100_0000_01b3);
            }
            id.push_str(&format!("{h:016x}"));
            seed.push('+');
        }
        id.truncate(40);
        SingleNode {
            host: host.to_string(),
            port,
            id,
        }
    }

    /// The node id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// `host:port`.
    pub fn addr(&self) -> String {
        join_addr(&self.host, self.port)
    }

    /// `CLUSTER SLOTS`: one range, 0-16383, this node as primary, no
    /// replica; Redis 7's four-field node entry (endpoint, port, id,
    /// metadata map).
    pub fn cluster_slots(&self, proto: Protocol) -> Bytes {
        let mut r = ReplyBuf::new(proto);
        r.array(1).array(3).integer(0).integer(16383);
        r.array(4)
            .bulk(self.host.as_bytes())
            .integer(i64::from(self.port))
            .bulk(self.id.as_bytes())
            .map(0);
        r.freeze()
    }

    /// `CLUSTER SHARDS`: one shard with every slot and this node as its
    /// online primary.
    pub fn cluster_shards(&self, proto: Protocol) -> Bytes {
        let mut r = ReplyBuf::new(proto);
        r.array(1).map(2);
        r.bulk(b"slots").array(2).integer(0).integer(16383);
        r.bulk(b"nodes").array(1).map(7);
        r.bulk(b"id").bulk(self.id.as_bytes());
        r.bulk(b"port").integer(i64::from(self.port));
        r.bulk(b"ip").bulk(self.host.as_bytes());
        r.bulk(b"endpoint").bulk(self.host.as_bytes());
        r.bulk(b"role").bulk(b"master");
        r.bulk(b"replication-offset").integer(0);
        r.bulk(b"health").bulk(b"online");
        r.freeze()
    }

    /// `CLUSTER NODES`: one line, `myself,master`, every slot. The bus
    /// port is 0: strata has no cluster bus.
    pub fn cluster_nodes(&self, proto: Protocol) -> Bytes {
        let line = format!(
            "{} {}@0 myself,master - 0 0 1 connected 0-16383\n",
            self.id,
            self.addr()
        );
        let mut r = ReplyBuf::new(proto);
        r.verbatim(line.as_bytes());
        r.freeze()
    }

    /// `CLUSTER MYID`.
    pub fn cluster_myid(&self, proto: Protocol) -> Bytes {
        let mut r = ReplyBuf::new(proto);
        r.bulk(self.id.as_bytes());
        r.freeze()
    }

    /// `CLUSTER INFO`, with `cluster_state` from `state_ok` (whether
    /// strata can serve every slot of the real cluster).
    pub fn cluster_info(&self, proto: Protocol, state_ok: bool) -> Bytes {
        let (state, ok, fail) = if state_ok {
            ("ok", 16384, 0)
        } else {
            ("fail", 0, 16384)
        };
        let text = format!(
            "cluster_state:{state}\r\n\
             cluster_slots_assigned:16384\r\n\
             cluster_slots_ok:{ok}\r\n\
             cluster_slots_pfail:0\r\n\
             cluster_slots_fail:{fail}\r\n\
             cluster_known_nodes:1\r\n\
             cluster_size:1\r\n\
             cluster_current_epoch:1\r\n\
             cluster_my_epoch:1\r\n\
             cluster_stats_messages_sent:0\r\n\
             cluster_stats_messages_received:0\r\n\
             total_cluster_links_buffer_limit_exceeded:0\r\n"
        );
        let mut r = ReplyBuf::new(proto);
        r.verbatim(text.as_bytes());
        r.freeze()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::protocol::reply::frame_len;

    fn me() -> SingleNode {
        SingleNode::new("127.0.0.1", 6379)
    }

    #[test]
    fn node_id_is_stable_hex() {
        let a = me();
        assert_eq!(a.id().len(), 40);
        assert!(a.id().bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(a, me());
        assert_ne!(a.id(), SingleNode::new("127.0.0.1", 6380).id());
        assert_eq!(a.addr(), "127.0.0.1:6379");
        assert_eq!(SingleNode::new("::1", 1).addr(), "[::1]:1");
    }

    #[test]
    fn fake_replies_parse_as_one_node_owning_everything() {
        for proto in [Protocol::Resp2, Protocol::Resp3] {
            let slots = me().cluster_slots(proto);
            let shards = me().cluster_shards(proto);
            for reply in [&slots, &shards] {
                assert_eq!(frame_len(reply).unwrap(), Some(reply.len()));
            }
            let a = SlotMap::from_cluster_slots(&slots, "x").unwrap();
            let b = SlotMap::from_cluster_shards(&shards, "x").unwrap();
            for map in [&a, &b] {
                assert!(map.is_complete());
                assert_eq!(map.shards().len(), 1);
                assert_eq!(map.primary(0), Some("127.0.0.1:6379"));
                assert_eq!(map.shards()[0].primary.id.as_deref(), Some(me().id()));
                assert!(map.shards()[0].replicas.is_empty());
            }
        }
        // Byte-exact with Redis 7's RESP2 shape.
        let mut expect =
            b"*1\r\n*3\r\n:0\r\n:16383\r\n*4\r\n$9\r\n127.0.0.1\r\n:6379\r\n$40\r\n".to_vec();
        expect.extend_from_slice(me().id().as_bytes());
        expect.extend_from_slice(b"\r\n*0\r\n");
        assert_eq!(me().cluster_slots(Protocol::Resp2).to_vec(), expect);
        assert!(me().cluster_slots(Protocol::Resp3).ends_with(b"%0\r\n"));
    }

    #[test]
    fn nodes_and_info_text() {
        let nodes = me().cluster_nodes(Protocol::Resp2);
        let text = String::from_utf8(nodes.to_vec()).unwrap();
        assert!(text.starts_with("$"));
        assert!(text.contains(" 127.0.0.1:6379@0 myself,master - 0 0 1 connected 0-16383\n"));
        let nodes3 = me().cluster_nodes(Protocol::Resp3);
        assert!(nodes3.starts_with(b"="));
        assert!(String::from_utf8_lossy(&nodes3).contains("txt:"));
        let info = me().cluster_info(Protocol::Resp2, true);
        let info = String::from_utf8(info.to_vec()).unwrap();
        assert!(info.contains("cluster_state:ok\r\n"));
        assert!(info.contains("cluster_slots_ok:16384\r\n"));
        assert!(info.contains("cluster_known_nodes:1\r\n"));
        let down = me().cluster_info(Protocol::Resp2, false);
        assert!(String::from_utf8_lossy(&down).contains("cluster_state:fail\r\n"));
        let myid = me().cluster_myid(Protocol::Resp3);
        assert_eq!(&myid[..5], b"$40\r\n");
    }
}
