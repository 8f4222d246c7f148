//! The slot map: which shard owns each of the 16384 hash slots.
//!
//! A [`SlotMap`] is an immutable snapshot. The router keeps the current one
//! behind an `ArcSwap` and replaces it whole after a refresh, so a request
//! looks a slot up with one load and one array index, never a lock.
//!
//! It is built from `CLUSTER SHARDS` (Redis 7: one entry per shard, with
//! each node's health) or, on older servers, `CLUSTER SLOTS` (one entry per
//! slot range; failed replicas are left out by the server). Both are read
//! in RESP2 and RESP3 shapes straight from the reply bytes.
//!
//! Addresses follow the Redis rules for the preferred endpoint: a null or
//! empty endpoint means "the host you asked, with this port"; `?` means the
//! node's endpoint is unknown, so the node cannot be used (a primary with an
//! unknown endpoint leaves its slots unserved rather than guessed).

use crate::command::slot::SLOT_COUNT;

use super::resp;

/// `owner` value of a slot that no known shard serves.
const UNASSIGNED: u16 = u16::MAX;

/// Why a topology reply could not be turned into a slot map.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopologyError {
    /// The reply does not have the shape Redis documents.
    #[error("malformed {command} reply: {reason}")]
    Malformed {
        /// `CLUSTER SHARDS` or `CLUSTER SLOTS`.
        command: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// Two shards claim the same slot.
    #[error("slot {slot} is claimed by both {first} and {second}")]
    Conflict {
        /// The slot.
        slot: u16,
        /// The primary that claimed it first.
        first: String,
        /// The other primary.
        second: String,
    },
    /// No seed node answered with a usable topology.
    #[error("no cluster seed node gave a topology: {0}")]
    NoSeed(String),
}

/// What the cluster reports about a node's health (`CLUSTER SHARDS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Serving.
    Online,
    /// Marked failed, or (`CLUSTER SHARDS`) anything but online/loading.
    Failed,
    /// Loading its dataset: not usable for reads yet.
    Loading,
}

/// One Redis node of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// `host:port` (`[v6]:port` for an IPv6 literal), where strata connects.
    pub addr: String,
    /// The 40-character node id, when the reply gave one.
    pub id: Option<String>,
    /// Health as the cluster reports it.
    pub health: Health,
}

/// A primary and its replicas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shard {
    /// The primary: writes, and reads with `read_from = "primary"`.
    pub primary: Node,
    /// The replicas the reply listed, failed ones included (see
    /// [`Shard::readable_replicas`]).
    pub replicas: Vec<Node>,
}

impl Shard {
    /// Replicas that are online: candidates for reads.
    pub fn readable_replicas(&self) -> impl Iterator<Item = &Node> {
        self.replicas.iter().filter(|n| n.health == Health::Online)
    }
}

/// A contiguous run of slots owned by one shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotRange {
    /// First slot.
    pub start: u16,
    /// Last slot (inclusive).
    pub end: u16,
    /// Index into [`SlotMap::shards`].
    pub shard: usize,
}

/// Who owns every slot: an immutable snapshot.
#[derive(Clone, PartialEq, Eq)]
pub struct SlotMap {
    /// Shards that own at least one slot, ordered by their lowest slot (a
    /// stable order: SCAN cursors carry an index into it).
    shards: Vec<Shard>,
    /// For each slot, an index into `shards`, or `UNASSIGNED`.
    owner: Box<[u16]>,
}

impl std::fmt::Debug for SlotMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlotMap")
            .field("shards", &self.shards)
            .field("ranges", &self.ranges())
            .finish()
    }
}

impl SlotMap {
    /// Builds a map from slot ranges and their shards. Ranges of the same
    /// primary (same address) are merged into one shard; the first range
    /// seen for a primary gives its replica list. Slots not covered stay
    /// unassigned.
    pub fn from_ranges(ranges: Vec<(u16, u16, Shard)>) -> Result<SlotMap, TopologyError> {
        let mut shards: Vec<Shard> = Vec::new();
        let mut owner = vec![UNASSIGNED; usize::from(SLOT_COUNT)].into_boxed_slice();
        for (start, end, shard) in ranges {
            if start > end || end >= SLOT_COUNT {
                return Err(TopologyError::Malformed {
                    command: "slot range",
                    reason: format!("bad slot range {start}-{end}"),
                });
            }
            let index = match shards
                .iter()
                .position(|s| s.primary.addr == shard.primary.addr)
            {
                Some(i) => i,
                None => {
                    shards.push(shard);
                    shards.len() - 1
                }
            };
            // At most 16384 shards can own a slot, so the index fits.
            let index = u16::try_from(index).map_err(|_| TopologyError::Malformed {
                command: "slot range",
                reason: "too many shards".into(),
            })?;
            for slot in start..=end {
                let cell = &mut owner[usize::from(slot)];
                if *cell != UNASSIGNED && *cell != index {
                    return Err(TopologyError::Conflict {
                        slot,
                        first: shards[usize::from(*cell)].primary.addr.clone(),
                        second: shards[usize::from(index)].primary.addr.clone(),
                    });
                }
                *cell = index;
            }
        }
        Ok(Self::normalized(shards, &owner))
    }

    /// Reorders shards by their lowest slot and drops those without slots.
    fn normalized(shards: Vec<Shard>, owner: &[u16]) -> SlotMap {
        let mut order: Vec<u16> = Vec::with_capacity(shards.len());
        let mut seen = vec![false; shards.len()];
        for &cell in owner {
            if let Some(s) = seen.get_mut(usize::from(cell)).filter(|s| !**s) {
                *s = true;
                order.push(cell);
            }
        }
        let mut remap = vec![UNASSIGNED; shards.len()];
        for (new, &old) in order.iter().enumerate() {
            // `order` has at most `shards.len()` entries, which fit in u16.
            remap[usize::from(old)] = new as u16;
        }
        let mut slots: Vec<Option<Shard>> = shards.into_iter().map(Some).collect();
        let shards = order
            .iter()
            .filter_map(|&old| slots.get_mut(usize::from(old)).and_then(Option::take))
            .collect();
        let owner = owner
            .iter()
            .map(|&cell| {
                if cell == UNASSIGNED {
                    UNASSIGNED
                } else {
                    remap[usize::from(cell)]
                }
            })
            .collect();
        SlotMap { shards, owner }
    }

    /// Parses a `CLUSTER SHARDS` reply (RESP2 or RESP3). `queried_host` is
    /// the host the command was sent to: nodes with an empty endpoint are
    /// reached there.
    pub fn from_cluster_shards(reply: &[u8], queried_host: &str) -> Result<SlotMap, TopologyError> {
        SlotMap::from_cluster_shards_over(reply, queried_host, false)
    }

    /// As [`SlotMap::from_cluster_shards`]; with `tls`, a node's
    /// `tls-port` is taken over its plain `port` (a node may listen on
    /// both; strata speaking TLS must dial the TLS one).
    pub fn from_cluster_shards_over(
        reply: &[u8],
        queried_host: &str,
        tls: bool,
    ) -> Result<SlotMap, TopologyError> {
        const CMD: &str = "CLUSTER SHARDS";
        let bad = |reason: &str| TopologyError::Malformed {
            command: CMD,
            reason: reason.to_string(),
        };
        let entries = resp::elements(reply).ok_or_else(|| bad("not an array"))?;
        let mut ranges = Vec::new();
        for entry in entries {
            let fields = resp::elements(entry).ok_or_else(|| bad("shard is not a map"))?;
            let mut slot_list: Option<Vec<&[u8]>> = None;
            let mut node_list: Option<Vec<&[u8]>> = None;
            for pair in fields.chunks(2) {
                let [name, value] = pair else {
                    return Err(bad("odd field list"));
                };
                match resp::text(name) {
                    Some(b"slots") => slot_list = resp::elements(value),
                    Some(b"nodes") => node_list = resp::elements(value),
                    _ => {}
                }
            }
            let slot_list = slot_list.ok_or_else(|| bad("shard without slots"))?;
            let node_list = node_list.ok_or_else(|| bad("shard without nodes"))?;
            let mut primary = None;
            let mut replicas = Vec::new();
            for node in node_list {
                let (node, is_primary) = shard_node(node, queried_host, tls)?;
                match node {
                    Some(node) if is_primary && primary.is_none() => primary = Some(node),
                    Some(node) => replicas.push(node),
                    None => {}
                }
            }
            if slot_list.len() % 2 != 0 {
                return Err(bad("odd slot list"));
            }
            // A shard without a usable primary serves nothing; its slots
            // stay unassigned so requests for them fail clearly.
            let Some(primary) = primary else { continue };
            let shard = Shard { primary, replicas };
            for pair in slot_list.chunks(2) {
                let start = slot_number(pair[0]).ok_or_else(|| bad("bad slot number"))?;
                let end = slot_number(pair[1]).ok_or_else(|| bad("bad slot number"))?;
                ranges.push((start, end, shard.clone()));
            }
        }
        Self::from_ranges(ranges).map_err(|e| relabel(e, CMD))
    }

    /// Parses a `CLUSTER SLOTS` reply (RESP2 or RESP3). `queried_host` as
    /// for [`SlotMap::from_cluster_shards`].
    pub fn from_cluster_slots(reply: &[u8], queried_host: &str) -> Result<SlotMap, TopologyError> {
        const CMD: &str = "CLUSTER SLOTS";
        let bad = |reason: &str| TopologyError::Malformed {
            command: CMD,
            reason: reason.to_string(),
        };
        let entries = resp::elements(reply).ok_or_else(|| bad("not an array"))?;
        let mut ranges = Vec::new();
        for entry in entries {
            let items = resp::elements(entry).ok_or_else(|| bad("range is not an array"))?;
            let [start, end, nodes @ ..] = items.as_slice() else {
                return Err(bad("range without start and end"));
            };
            let start = slot_number(start).ok_or_else(|| bad("bad slot number"))?;
            let end = slot_number(end).ok_or_else(|| bad("bad slot number"))?;
            let Some((primary, replicas)) = nodes.split_first() else {
                return Err(bad("range without a primary"));
            };
            let Some(primary) = slots_node(primary, queried_host)? else {
                continue;
            };
            let mut shard = Shard {
                primary,
                replicas: Vec::new(),
            };
            for replica in replicas {
                if let Some(node) = slots_node(replica, queried_host)? {
                    shard.replicas.push(node);
                }
            }
            ranges.push((start, end, shard));
        }
        Self::from_ranges(ranges).map_err(|e| relabel(e, CMD))
    }

    /// The shards that own slots, ordered by their lowest slot.
    pub fn shards(&self) -> &[Shard] {
        &self.shards
    }

    /// The index (into [`SlotMap::shards`]) of the shard owning `slot`.
    #[inline]
    pub fn shard_index(&self, slot: u16) -> Option<usize> {
        match self.owner.get(usize::from(slot)) {
            Some(&cell) if cell != UNASSIGNED => Some(usize::from(cell)),
            _ => None,
        }
    }

    /// The shard owning `slot`.
    #[inline]
    pub fn shard(&self, slot: u16) -> Option<&Shard> {
        self.shards.get(self.shard_index(slot)?)
    }

    /// The primary address owning `slot`.
    #[inline]
    pub fn primary(&self, slot: u16) -> Option<&str> {
        self.shard(slot).map(|s| s.primary.addr.as_str())
    }

    /// The primaries' addresses, in shard order.
    pub fn primaries(&self) -> impl Iterator<Item = &str> {
        self.shards.iter().map(|s| s.primary.addr.as_str())
    }

    /// Every node's address, primaries and replicas.
    pub fn nodes(&self) -> impl Iterator<Item = &Node> {
        self.shards
            .iter()
            .flat_map(|s| std::iter::once(&s.primary).chain(s.replicas.iter()))
    }

    /// True when `addr` is a primary or replica of this map.
    pub fn contains_node(&self, addr: &str) -> bool {
        self.nodes().any(|n| n.addr == addr)
    }

    /// The shard index of the primary at `addr`.
    pub fn primary_index(&self, addr: &str) -> Option<usize> {
        self.shards.iter().position(|s| s.primary.addr == addr)
    }

    /// Shards whose primary the queried node reports as failed. During a
    /// failover, a node that has not yet heard of the replica's promotion
    /// still names the dead primary, flagged failed: such a view is stale
    /// next to one from a node that has (see `topology::read_topology`).
    pub fn failed_primaries(&self) -> usize {
        self.shards
            .iter()
            .filter(|s| s.primary.health == Health::Failed)
            .count()
    }

    /// How many slots no shard serves (0 for a healthy cluster).
    pub fn unassigned(&self) -> usize {
        self.owner.iter().filter(|&&c| c == UNASSIGNED).count()
    }

    /// True when every slot has an owner.
    pub fn is_complete(&self) -> bool {
        self.unassigned() == 0
    }

    /// The slot ownership as maximal contiguous ranges, in slot order.
    pub fn ranges(&self) -> Vec<SlotRange> {
        let mut out: Vec<SlotRange> = Vec::new();
        for (slot, &cell) in self.owner.iter().enumerate() {
            if cell == UNASSIGNED {
                continue;
            }
            // `slot` < 16384.
            let slot = slot as u16;
            let shard = usize::from(cell);
            match out.last_mut() {
                Some(last) if last.shard == shard && last.end + 1 == slot => last.end = slot,
                _ => out.push(SlotRange {
                    start: slot,
                    end: slot,
                    shard,
                }),
            }
        }
        out
    }

    /// A 64-bit FNV-1a digest of the primaries (in shard order) and of the
    /// owner of every slot. Equal maps give equal digests; any change of
    /// primary or of slot ownership changes it (with overwhelming
    /// probability). Replicas do not count.
    pub fn ownership_digest(&self) -> u64 {
        let mut h = Fnv::new();
        for shard in &self.shards {
            h.write(shard.primary.addr.as_bytes());
            h.write(&[0]);
        }
        for range in self.ranges() {
            h.write(&range.start.to_le_bytes());
            h.write(&range.end.to_le_bytes());
            h.write(&(range.shard as u64).to_le_bytes());
        }
        h.0
    }
}

/// FNV-1a, 64 bits: tiny, deterministic across runs and builds.
struct Fnv(u64);

impl Fnv {
    fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

fn relabel(e: TopologyError, command: &'static str) -> TopologyError {
    match e {
        TopologyError::Malformed { reason, .. } => TopologyError::Malformed { command, reason },
        other => other,
    }
}

fn slot_number(frame: &[u8]) -> Option<u16> {
    let n = resp::int(frame)?;
    u16::try_from(n).ok().filter(|&s| s < SLOT_COUNT)
}

/// `host:port`, bracketing an IPv6 literal.
pub(crate) fn join_addr(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The host part of `host:port` / `[v6]:port` (the whole string when there
/// is no port).
pub(crate) fn host_of(addr: &str) -> &str {
    if let Some(rest) = addr.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match addr.rsplit_once(':') {
        Some((host, _)) => host,
        None => addr,
    }
}

/// The address for a reported endpoint: `None` for `?` (unknown), the
/// queried host for an empty or null endpoint.
fn endpoint_addr(endpoint: Option<&[u8]>, port: u16, queried_host: &str) -> Option<String> {
    match endpoint {
        Some(b"?") => None,
        None | Some(b"") => Some(join_addr(queried_host, port)),
        Some(host) => Some(join_addr(std::str::from_utf8(host).ok()?, port)),
    }
}

/// One node of a `CLUSTER SHARDS` shard: the node (`None` when its
/// endpoint is unknown) and whether it is the primary.
fn shard_node(
    frame: &[u8],
    queried_host: &str,
    tls: bool,
) -> Result<(Option<Node>, bool), TopologyError> {
    let bad = |reason: &str| TopologyError::Malformed {
        command: "CLUSTER SHARDS",
        reason: reason.to_string(),
    };
    let fields = resp::elements(frame).ok_or_else(|| bad("node is not a map"))?;
    let mut id = None;
    let mut port = None;
    let mut tls_port = None;
    let mut ip = None;
    let mut endpoint = None;
    let mut primary = false;
    let mut health = Health::Online;
    for pair in fields.chunks(2) {
        let [name, value] = pair else {
            return Err(bad("odd field list"));
        };
        match resp::text(name) {
            Some(b"id") => id = resp::text(value),
            Some(b"port") => port = resp::int(value),
            Some(b"tls-port") => tls_port = resp::int(value),
            Some(b"ip") => ip = resp::text(value),
            Some(b"endpoint") => endpoint = resp::text(value),
            Some(b"role") => primary = resp::text(value) == Some(b"master"),
            Some(b"health") => {
                health = match resp::text(value) {
                    Some(b"online") => Health::Online,
                    Some(b"loading") => Health::Loading,
                    _ => Health::Failed,
                }
            }
            _ => {}
        }
    }
    let port = if tls {
        tls_port.or(port)
    } else {
        port.or(tls_port)
    };
    let port = port
        .and_then(|p| u16::try_from(p).ok())
        .ok_or_else(|| bad("node without a port"))?;
    let addr = endpoint_addr(endpoint.or(ip), port, queried_host);
    let node = addr.map(|addr| Node {
        addr,
        id: id.map(|i| String::from_utf8_lossy(i).into_owned()),
        health,
    });
    Ok((node, primary))
}

/// One node of a `CLUSTER SLOTS` range: `[endpoint, port, id, metadata]`
/// (older servers send fewer fields). `None` when its endpoint is unknown.
fn slots_node(frame: &[u8], queried_host: &str) -> Result<Option<Node>, TopologyError> {
    let bad = |reason: &str| TopologyError::Malformed {
        command: "CLUSTER SLOTS",
        reason: reason.to_string(),
    };
    let items = resp::elements(frame).ok_or_else(|| bad("node is not an array"))?;
    let [endpoint, port, rest @ ..] = items.as_slice() else {
        return Err(bad("node without endpoint and port"));
    };
    let port = resp::int(port)
        .and_then(|p| u16::try_from(p).ok())
        .ok_or_else(|| bad("bad port"))?;
    let endpoint = if resp::is_null(endpoint) {
        None
    } else {
        Some(resp::text(endpoint).ok_or_else(|| bad("bad endpoint"))?)
    };
    let id = rest
        .first()
        .and_then(|f| resp::text(f))
        .map(|i| String::from_utf8_lossy(i).into_owned());
    Ok(
        endpoint_addr(endpoint, port, queried_host).map(|addr| Node {
            addr,
            id,
            health: Health::Online,
        }),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    // Captured from a real Redis 7.0.15 cluster (3 primaries on ports
    // 7201-7203, replicas 7204-7206), raw reply bytes. `_split`: slots
    // 100-101 moved to 7202. `_failed_replica`: 7206 (replica of 7201)
    // shut down and marked failed.
    const SHARDS2: &[u8] = include_bytes!("testdata/shards_resp2.resp");
    const SHARDS3: &[u8] = include_bytes!("testdata/shards_resp3.resp");
    const SLOTS2: &[u8] = include_bytes!("testdata/slots_resp2.resp");
    const SLOTS3: &[u8] = include_bytes!("testdata/slots_resp3.resp");
    const SHARDS2_SPLIT: &[u8] = include_bytes!("testdata/shards_resp2_split.resp");
    const SLOTS2_SPLIT: &[u8] = include_bytes!("testdata/slots_resp2_split.resp");
    const SHARDS2_FAILED: &[u8] = include_bytes!("testdata/shards_resp2_failed_replica.resp");
    const SHARDS3_FAILED: &[u8] = include_bytes!("testdata/shards_resp3_failed_replica.resp");
    const SLOTS2_FAILED: &[u8] = include_bytes!("testdata/slots_resp2_failed_replica.resp");
    const SLOTS3_FAILED: &[u8] = include_bytes!("testdata/slots_resp3_failed_replica.resp");

    fn summary(map: &SlotMap) -> Vec<(u16, u16, String, Vec<String>)> {
        map.ranges()
            .into_iter()
            .map(|r| {
                let s = &map.shards()[r.shard];
                (
                    r.start,
                    r.end,
                    s.primary.addr.clone(),
                    s.readable_replicas().map(|n| n.addr.clone()).collect(),
                )
            })
            .collect()
    }

    fn healthy_layout() -> Vec<(u16, u16, String, Vec<String>)> {
        vec![
            (
                0,
                5460,
                "127.0.0.1:7201".into(),
                vec!["127.0.0.1:7206".into()],
            ),
            (
                5461,
                10922,
                "127.0.0.1:7202".into(),
                vec!["127.0.0.1:7204".into()],
            ),
            (
                10923,
                16383,
                "127.0.0.1:7203".into(),
                vec!["127.0.0.1:7205".into()],
            ),
        ]
    }

    #[test]
    fn shards_and_slots_agree_in_both_protocols() {
        for (reply, shards) in [
            (SHARDS2, true),
            (SHARDS3, true),
            (SLOTS2, false),
            (SLOTS3, false),
        ] {
            let map = if shards {
                SlotMap::from_cluster_shards(reply, "127.0.0.1").unwrap()
            } else {
                SlotMap::from_cluster_slots(reply, "127.0.0.1").unwrap()
            };
            assert_eq!(summary(&map), healthy_layout());
            assert!(map.is_complete());
            assert_eq!(map.shards().len(), 3);
            assert_eq!(
                map.shards()[0].primary.id.as_deref(),
                Some("7b9f8a6cdd2912d56f3895baa6569b40db465a0a")
            );
        }
    }

    #[test]
    fn lookups() {
        let map = SlotMap::from_cluster_shards(SHARDS2, "127.0.0.1").unwrap();
        let foo = crate::command::slot::hash_slot(b"foo");
        assert_eq!(foo, 12182);
        // The captured cluster answered `-MOVED 12182 127.0.0.1:7203` for GET foo.
        assert_eq!(map.primary(foo), Some("127.0.0.1:7203"));
        assert_eq!(map.primary(0), Some("127.0.0.1:7201"));
        assert_eq!(map.primary(16383), Some("127.0.0.1:7203"));
        assert_eq!(map.primary(16384), None);
        assert!(map.contains_node("127.0.0.1:7205"));
        assert!(!map.contains_node("127.0.0.1:7207"));
        assert_eq!(map.primary_index("127.0.0.1:7202"), Some(1));
        assert_eq!(map.primary_index("127.0.0.1:7204"), None);
        assert_eq!(
            map.primaries().collect::<Vec<_>>(),
            ["127.0.0.1:7201", "127.0.0.1:7202", "127.0.0.1:7203"]
        );
    }

    #[test]
    fn split_ranges() {
        for map in [
            SlotMap::from_cluster_shards(SHARDS2_SPLIT, "127.0.0.1").unwrap(),
            SlotMap::from_cluster_slots(SLOTS2_SPLIT, "127.0.0.1").unwrap(),
        ] {
            let s = summary(&map);
            assert_eq!(s.len(), 5, "{s:?}");
            assert_eq!((s[0].0, s[0].1, s[0].2.as_str()), (0, 99, "127.0.0.1:7201"));
            assert_eq!(
                (s[1].0, s[1].1, s[1].2.as_str()),
                (100, 101, "127.0.0.1:7202")
            );
            assert_eq!(
                (s[2].0, s[2].1, s[2].2.as_str()),
                (102, 5460, "127.0.0.1:7201")
            );
            assert_eq!(map.shards().len(), 3);
            assert!(map.is_complete());
        }
    }

    #[test]
    fn failed_primaries_are_counted_failed_replicas_are_not() {
        let node = |addr: &str, health| Node {
            addr: addr.to_string(),
            id: None,
            health,
        };
        // A node that has not yet heard of a failover: the dead primary,
        // flagged failed, still owns its slots.
        let stale = SlotMap::from_ranges(vec![
            (
                0,
                8191,
                Shard {
                    primary: node("127.0.0.1:7201", Health::Failed),
                    replicas: vec![node("127.0.0.1:7204", Health::Online)],
                },
            ),
            (
                8192,
                16383,
                Shard {
                    primary: node("127.0.0.1:7202", Health::Online),
                    replicas: Vec::new(),
                },
            ),
        ])
        .unwrap();
        assert!(stale.is_complete());
        assert_eq!(stale.failed_primaries(), 1);
        for reply in [SHARDS2, SHARDS2_FAILED, SHARDS3_FAILED] {
            let map = SlotMap::from_cluster_shards(reply, "127.0.0.1").unwrap();
            assert_eq!(map.failed_primaries(), 0);
        }
    }

    #[test]
    fn failed_replica() {
        // SHARDS lists the failed replica with its health; SLOTS omits it.
        for reply in [SHARDS2_FAILED, SHARDS3_FAILED] {
            let map = SlotMap::from_cluster_shards(reply, "127.0.0.1").unwrap();
            let shard = map.shard(0).unwrap();
            assert_eq!(shard.primary.addr, "127.0.0.1:7201");
            assert_eq!(shard.replicas.len(), 1);
            assert_eq!(shard.replicas[0].health, Health::Failed);
            assert_eq!(shard.readable_replicas().count(), 0);
            assert!(map.contains_node("127.0.0.1:7206"));
        }
        for reply in [SLOTS2_FAILED, SLOTS3_FAILED] {
            let map = SlotMap::from_cluster_slots(reply, "127.0.0.1").unwrap();
            assert!(map.shard(0).unwrap().replicas.is_empty());
            assert_eq!(map.shard(5461).unwrap().replicas.len(), 1);
        }
    }

    #[test]
    fn endpoints() {
        // Null and empty endpoints mean the queried host; `?` is unusable.
        let reply = b"*3\r\n\
            *3\r\n:0\r\n:99\r\n*2\r\n$-1\r\n:7001\r\n\
            *3\r\n:100\r\n:199\r\n*2\r\n$0\r\n\r\n:7002\r\n\
            *4\r\n:200\r\n:299\r\n*2\r\n$1\r\n?\r\n:7003\r\n*2\r\n$3\r\n::1\r\n:7004\r\n";
        let map = SlotMap::from_cluster_slots(reply, "10.0.0.5").unwrap();
        assert_eq!(map.primary(0), Some("10.0.0.5:7001"));
        assert_eq!(map.primary(150), Some("10.0.0.5:7002"));
        assert_eq!(map.primary(250), None);
        assert_eq!(map.unassigned(), 16384 - 200);
        assert_eq!(host_of("[::1]:7004"), "::1");
        assert_eq!(host_of("10.0.0.5:1"), "10.0.0.5");
        assert_eq!(join_addr("::1", 7004), "[::1]:7004");
    }

    #[test]
    fn malformed_and_conflicting() {
        assert!(SlotMap::from_cluster_slots(b"+OK\r\n", "h").is_err());
        assert!(SlotMap::from_cluster_slots(b"*1\r\n*2\r\n:0\r\n:1\r\n", "h").is_err());
        assert!(
            SlotMap::from_cluster_slots(b"*1\r\n*3\r\n:5\r\n:1\r\n*2\r\n+h\r\n:1\r\n", "h")
                .is_err()
        );
        assert!(SlotMap::from_cluster_slots(
            b"*1\r\n*3\r\n:0\r\n:16384\r\n*2\r\n+h\r\n:1\r\n",
            "h"
        )
        .is_err());
        let conflict =
            b"*2\r\n*3\r\n:0\r\n:10\r\n*2\r\n+a\r\n:1\r\n*3\r\n:10\r\n:20\r\n*2\r\n+b\r\n:1\r\n";
        assert!(matches!(
            SlotMap::from_cluster_slots(conflict, "h"),
            Err(TopologyError::Conflict { slot: 10, .. })
        ));
        assert!(SlotMap::from_cluster_shards(b"*1\r\n*2\r\n+slots\r\n*0\r\n", "h").is_err());
        // Truncations of a real reply never panic.
        for n in 0..SHARDS3.len() {
            let _ = SlotMap::from_cluster_shards(&SHARDS3[..n], "h");
            let _ = SlotMap::from_cluster_slots(&SLOTS2[..n.min(SLOTS2.len())], "h");
        }
    }

    #[test]
    fn shard_order_and_digest() {
        let map = SlotMap::from_cluster_shards(SHARDS2, "127.0.0.1").unwrap();
        let same = SlotMap::from_cluster_slots(SLOTS3, "127.0.0.1").unwrap();
        assert_eq!(map.ownership_digest(), same.ownership_digest());
        let moved = SlotMap::from_cluster_shards(SHARDS2_SPLIT, "127.0.0.1").unwrap();
        assert_ne!(map.ownership_digest(), moved.ownership_digest());
        // Replica health does not change ownership.
        let failed = SlotMap::from_cluster_shards(SHARDS2_FAILED, "127.0.0.1").unwrap();
        assert_eq!(moved.ownership_digest(), failed.ownership_digest());
    }
}
