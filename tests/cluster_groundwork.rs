//! The cluster building blocks (`strata::backend::cluster`) against a real
//! Redis Cluster that `support::cluster` starts (3 primaries, 3 replicas).
//! The requests here go straight to the nodes the slot map names: this
//! checks the pure pieces on real replies, before any of it is wired into
//! strata's sessions. References are independent: `redis-cli` for the
//! topology, redis-rs's cluster client for MGET/DEL/SCAN results.
//!
//! One cluster serves every test of this binary (`support::cluster::shared`,
//! held for a whole test); its servers die with the test process.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use redis::AsyncCommands;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use strata::backend::cluster::redirect::{check_target, classify, Redirect};
use strata::backend::cluster::scan;
use strata::backend::cluster::split::{plan, Plan};
use strata::backend::cluster::topology::{read_from, read_topology};
use strata::backend::cluster::SlotMap;
use strata::backend::handshake::read_frame;
use strata::backend::ConnSettings;
use strata::command::lookup;
use strata::command::slot::hash_slot;
use strata::protocol::request::encode_command;

use support::cluster::{self, Cluster};
use support::require_binary;
use support::sentinel::Resp;

fn settings() -> ConnSettings {
    ConnSettings {
        tls: None,
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(5),
        reconnect_base: Duration::from_millis(50),
        reconnect_max: Duration::from_secs(1),
        username: None,
        password: None,
        readonly: false,
    }
}

fn args(words: &[&str]) -> Vec<Bytes> {
    words
        .iter()
        .map(|w| Bytes::copy_from_slice(w.as_bytes()))
        .collect()
}

/// Sends `frames` pipelined on one fresh connection to `addr`, returns the
/// replies in order.
async fn exchange(addr: &str, frames: &[Bytes]) -> Vec<Bytes> {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let mut out = BytesMut::new();
    for f in frames {
        out.extend_from_slice(f);
    }
    stream.write_all(&out).await.expect("write");
    let mut buf = BytesMut::new();
    let mut replies = Vec::with_capacity(frames.len());
    for _ in frames {
        let reply =
            tokio::time::timeout(Duration::from_secs(10), read_frame(&mut stream, &mut buf))
                .await
                .expect("reply in time")
                .expect("reply");
        replies.push(reply);
    }
    replies
}

/// Sends each `(slot, frame)` to the slot's primary per `map` (one
/// pipelined connection per node) and returns the replies in input order.
/// Asserts that no reply is a redirect: the map is fresh and nothing moves.
async fn send_by_slot(map: &SlotMap, frames: &[(u16, Bytes)]) -> Vec<Bytes> {
    let mut by_node: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, (slot, _)) in frames.iter().enumerate() {
        let node = map.primary(*slot).expect("slot has an owner");
        by_node.entry(node).or_default().push(i);
    }
    let mut replies: Vec<Option<Bytes>> = vec![None; frames.len()];
    for (node, indexes) in by_node {
        let batch: Vec<Bytes> = indexes.iter().map(|&i| frames[i].1.clone()).collect();
        for (&i, reply) in indexes.iter().zip(exchange(node, &batch).await) {
            assert_eq!(classify(&reply), Redirect::Other, "redirect from {node}");
            replies[i] = Some(reply);
        }
    }
    replies.into_iter().map(|r| r.expect("reply")).collect()
}

/// Runs a command the way the session will: plan by the table, send each
/// part (or the whole request) to its slot's owner, merge.
async fn run_planned(map: &SlotMap, words: &[&str]) -> Bytes {
    let a = args(words);
    let spec = lookup(&a).expect("known command");
    match plan(spec, &a).expect("plannable") {
        Plan::Slot(slot) => send_by_slot(map, &[(slot, encode_command(&a))])
            .await
            .remove(0),
        Plan::Split(split) => {
            let frames: Vec<(u16, Bytes)> = split
                .parts()
                .iter()
                .map(|p| (p.slot, p.frame.clone()))
                .collect();
            let replies = send_by_slot(map, &frames).await;
            split.merge(&replies)
        }
        other => panic!("unexpected plan {other:?}"),
    }
}

async fn reference(c: &Cluster) -> redis::cluster_async::ClusterConnection {
    redis::cluster::ClusterClient::new(c.urls())
        .expect("cluster client")
        .get_async_connection()
        .await
        .expect("cluster connection")
}

/// `redis-cli -p PORT CLUSTER SLOTS` (raw output: one leaf per line),
/// parsed into `(start, end, primary, replicas)`, sorted.
fn cli_cluster_slots(addr: &str) -> Vec<(u16, u16, String, Vec<String>)> {
    let cli = require_binary("redis-cli", "redis-tools");
    let port = addr.rsplit_once(':').expect("port").1;
    let out = Command::new(cli)
        .args(["-h", "127.0.0.1", "-p", port, "CLUSTER", "SLOTS"])
        .output()
        .expect("run redis-cli");
    assert!(out.status.success(), "redis-cli failed");
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    // Each range: start, end, then nodes as (host, port, id); a host is
    // never all digits, so the next all-digit line starts a new range.
    let numeric = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let start: u16 = lines[i].parse().expect("start slot");
        let end: u16 = lines[i + 1].parse().expect("end slot");
        i += 2;
        let mut nodes = Vec::new();
        while i + 3 <= lines.len() && !numeric(lines[i]) {
            nodes.push(format!("{}:{}", lines[i], lines[i + 1]));
            i += 3;
        }
        let (primary, replicas) = nodes.split_first().expect("range has a primary");
        out.push((start, end, primary.clone(), replicas.to_vec()));
    }
    out.sort();
    out
}

fn map_view(map: &SlotMap) -> Vec<(u16, u16, String, Vec<String>)> {
    let mut v: Vec<_> = map
        .ranges()
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
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn topology_matches_redis_cli() {
    let c = cluster::shared().await;
    let map = read_topology(&c.addrs(), &settings())
        .await
        .expect("topology");
    assert!(map.is_complete());
    assert_eq!(map.shards().len(), 3);
    for addr in c.addrs() {
        assert_eq!(
            map_view(&map),
            cli_cluster_slots(&addr),
            "as seen by {addr}"
        );
        // Every node gives the same map (SHARDS on Redis 7).
        let own = read_from(&addr, &settings()).await.expect("read_from");
        assert_eq!(own, map, "{addr}");
    }
    // The CLUSTER SLOTS parser agrees with the CLUSTER SHARDS one on live bytes.
    let first = &c.addrs()[0];
    let slots = exchange(first, &[encode_command(&args(&["CLUSTER", "SLOTS"]))]).await;
    let via_slots = SlotMap::from_cluster_slots(&slots[0], "127.0.0.1").expect("parse");
    assert_eq!(map_view(&via_slots), map_view(&map));
    assert_eq!(via_slots.ownership_digest(), map.ownership_digest());
    // And in RESP3.
    let replies = exchange(
        first,
        &[
            encode_command(&args(&["HELLO", "3"])),
            encode_command(&args(&["CLUSTER", "SHARDS"])),
            encode_command(&args(&["CLUSTER", "SLOTS"])),
        ],
    )
    .await;
    assert!(replies[1].starts_with(b"*3\r\n%"), "RESP3 shards are maps");
    let shards3 = SlotMap::from_cluster_shards(&replies[1], "127.0.0.1").expect("parse");
    let slots3 = SlotMap::from_cluster_slots(&replies[2], "127.0.0.1").expect("parse");
    assert_eq!(shards3, map);
    assert_eq!(map_view(&slots3), map_view(&map));
    // A dead seed first is skipped; no live seed is a clear error.
    let mut seeds = vec!["127.0.0.1:1".to_string()];
    seeds.extend(c.addrs());
    assert_eq!(
        read_topology(&seeds, &settings()).await.expect("topology"),
        map
    );
    let err = read_topology(&["127.0.0.1:1".to_string()], &settings())
        .await
        .expect_err("no seed");
    assert!(err.to_string().contains("127.0.0.1:1"), "{err}");
}

#[tokio::test]
async fn real_moved_ask_and_tryagain_are_classified() {
    let c = cluster::shared().await;
    let map = read_topology(&c.addrs(), &settings())
        .await
        .expect("topology");

    // MOVED: a key sent to a primary that does not own it.
    let key = "gw:moved:key";
    let slot = hash_slot(key.as_bytes());
    let owner = map.primary(slot).expect("owner").to_string();
    let wrong = map
        .primaries()
        .find(|p| *p != owner)
        .expect("another primary")
        .to_string();
    let reply = exchange(&wrong, &[encode_command(&args(&["GET", key]))]).await;
    let r = classify(&reply[0]);
    assert_eq!(r, Redirect::Moved { slot, addr: &owner }, "{:?}", reply[0]);
    assert_eq!(r.target(&wrong).as_deref(), Some(owner.as_str()));
    check_target(&map, &owner, slot).expect("owner is a known node");
    // The owner answers it.
    let reply = exchange(&owner, &[encode_command(&args(&["GET", key]))]).await;
    assert_eq!(classify(&reply[0]), Redirect::Other);

    // ASK: the slot of `{gw-ask}` mid-migration, one key moved, one not.
    let moved = "{gw-ask}moved";
    let stays = "{gw-ask}stays";
    let slot = hash_slot(moved.as_bytes());
    let from = c.primary_for_slot(slot);
    let to = map
        .primaries()
        .find(|p| *p != from)
        .expect("target")
        .to_string();
    c.must(&from, &["SET", moved, "m"]);
    c.must(&from, &["SET", stays, "s"]);
    c.begin_migration(slot, &from, &to);
    c.migrate_keys(&from, &to, &[moved]);
    let replies = exchange(
        &from,
        &[
            encode_command(&args(&["GET", moved])),
            encode_command(&args(&["GET", stays])),
        ],
    )
    .await;
    let r = classify(&replies[0]);
    assert_eq!(r, Redirect::Ask { slot, addr: &to }, "{:?}", replies[0]);
    assert_eq!(r.target(&from).as_deref(), Some(to.as_str()));
    check_target(&map, &to, slot).expect("known");
    assert_eq!(&replies[1][..], b"$1\r\ns\r\n", "unmoved key still served");
    // ASKING then the request, on the target: served there. Without
    // ASKING the target sends it back with MOVED. A multi-key request
    // spanning moved and unmoved keys gets TRYAGAIN.
    let replies = exchange(
        &to,
        &[
            encode_command(&args(&["ASKING"])),
            encode_command(&args(&["GET", moved])),
            encode_command(&args(&["GET", moved])),
            encode_command(&args(&["ASKING"])),
            encode_command(&args(&["MGET", moved, stays])),
        ],
    )
    .await;
    assert_eq!(&replies[1][..], b"$1\r\nm\r\n");
    assert_eq!(classify(&replies[2]), Redirect::Moved { slot, addr: &from });
    assert_eq!(
        classify(&replies[4]),
        Redirect::TryAgain,
        "{:?}",
        replies[4]
    );
    assert!(classify(&replies[4]).is_retry_later());

    // Finish: the slot belongs to `to`; `from` now answers MOVED to it,
    // and a refreshed map says so.
    c.migrate_all_keys(slot, &from, &to);
    c.finish_migration(slot, &from, &to);
    let reply = exchange(&from, &[encode_command(&args(&["GET", stays]))]).await;
    assert_eq!(classify(&reply[0]), Redirect::Moved { slot, addr: &to });
    let fresh = read_topology(&c.addrs(), &settings())
        .await
        .expect("topology");
    assert_eq!(fresh.primary(slot), Some(to.as_str()));
    assert_ne!(fresh.ownership_digest(), map.ownership_digest());
    // An unknown target is refused.
    assert!(check_target(&fresh, "127.0.0.1:1", slot).is_err());
    // Put the slot back so the cluster looks as it started.
    c.migrate_slot(slot, &from);
    c.must(&from, &["DEL", moved, stays]);
}

#[tokio::test]
async fn mget_mset_del_of_1000_keys_match_a_cluster_client() {
    let c = cluster::shared().await;
    let map = read_topology(&c.addrs(), &settings())
        .await
        .expect("topology");
    let mut reference = reference(&c).await;
    let keys: Vec<String> = (0..1000).map(|i| format!("gw:multi:{i}")).collect();
    let slots: BTreeSet<u16> = keys.iter().map(|k| hash_slot(k.as_bytes())).collect();
    assert!(slots.len() > 900, "keys spread over slots");

    // Every other key written by a split MSET.
    let mut mset = vec!["MSET".to_string()];
    for (i, k) in keys.iter().enumerate().filter(|(i, _)| i % 2 == 0) {
        mset.push(k.clone());
        mset.push(format!("value-{i}"));
    }
    let words: Vec<&str> = mset.iter().map(String::as_str).collect();
    assert_eq!(&run_planned(&map, &words).await[..], b"+OK\r\n");

    // MGET through split + merge equals the cluster client's MGET.
    let mut mget = vec!["MGET"];
    mget.extend(keys.iter().map(String::as_str));
    let merged = run_planned(&map, &mget).await;
    let ours: Vec<Option<String>> = Resp::parse(&merged)
        .items()
        .iter()
        .map(|v| v.str().map(str::to_string))
        .collect();
    let theirs: Vec<Option<String>> = reference.mget(&keys).await.expect("reference MGET");
    assert_eq!(ours.len(), 1000);
    assert_eq!(ours, theirs);
    for (i, v) in ours.iter().enumerate() {
        let expect = (i % 2 == 0).then(|| format!("value-{i}"));
        assert_eq!(v, &expect, "key {i}");
    }

    // EXISTS and DEL sum their parts' counts (a repeated key counts twice).
    let mut exists = vec!["EXISTS"];
    exists.extend(keys.iter().map(String::as_str));
    exists.push(keys[0].as_str());
    assert_eq!(&run_planned(&map, &exists).await[..], b":501\r\n");
    let mut del = vec!["DEL"];
    del.extend(keys.iter().map(String::as_str));
    assert_eq!(&run_planned(&map, &del).await[..], b":500\r\n");
    let left: usize = reference.exists(&keys).await.expect("reference EXISTS");
    assert_eq!(left, 0);

    // CROSSSLOT where Redis Cluster itself refuses: same text as a node's.
    let a = args(&["MSETNX", "gw:a", "1", "gw:b", "2"]);
    let err = plan(lookup(&a).expect("msetnx"), &a).expect_err("cross slot");
    let node_says = exchange(&c.addrs()[0], &[encode_command(&a)]).await;
    assert_eq!(err.to_reply(), node_says[0]);
}

#[tokio::test]
async fn scan_cursor_walks_every_primary() {
    let c = cluster::shared().await;
    let map = read_topology(&c.addrs(), &settings())
        .await
        .expect("topology");
    let mut reference = reference(&c).await;
    let keys: Vec<String> = (0..1000).map(|i| format!("gw:scan:{i}")).collect();
    let pairs: Vec<(String, String)> = keys.iter().map(|k| (k.clone(), "v".into())).collect();
    let _: () = reference.mset(&pairs).await.expect("reference MSET");

    let scan_args = args(&["SCAN", "0", "MATCH", "gw:scan:*", "COUNT", "50"]);
    let mut cursor = Bytes::from_static(b"0");
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut nodes_visited = BTreeSet::new();
    let mut added = Vec::new();
    for step in 0.. {
        assert!(step < 10_000, "scan does not end");
        let pos = scan::decode(&map, &cursor).expect("cursor").expect("nodes");
        nodes_visited.insert(pos.node);
        let node = &map.shards()[pos.node].primary.addr;
        let reply = exchange(node, &[scan::node_request(&scan_args, pos.cursor)]).await;
        let client = scan::client_reply(&map, pos, &reply[0]).expect("step");
        let parsed = Resp::parse(&client);
        let [Resp::Str(next), Resp::Array(batch)] = parsed.items() else {
            panic!("SCAN reply {parsed:?}");
        };
        for k in batch {
            seen.insert(k.str().expect("key").to_string());
        }
        // Keys added during the scan may or may not be returned; those
        // present throughout must be.
        if step == 3 {
            for i in 0..50 {
                let k = format!("gw:scan:late:{i}");
                let _: () = reference.set(&k, "v").await.expect("SET");
                added.push(k);
            }
        }
        if next == "0" {
            break;
        }
        cursor = Bytes::from(next.clone());
    }
    assert_eq!(nodes_visited.len(), 3, "every primary scanned");
    for k in &keys {
        assert!(seen.contains(k), "{k} missing from the scan");
    }
    assert!(seen.iter().all(|k| k.starts_with("gw:scan:")));
    // A cursor from another topology fails clearly, 0 always restarts.
    let mut other_ranges = Vec::new();
    for (i, r) in map.ranges().into_iter().enumerate() {
        let mut shard = map.shards()[r.shard].clone();
        if i == 0 {
            shard = map.shards()[(r.shard + 1) % 3].clone();
        }
        other_ranges.push((r.start, r.end, shard));
    }
    let other = SlotMap::from_ranges(other_ranges).expect("map");
    let c1 = scan::encode(&map, scan::Position { node: 1, cursor: 5 }).expect("encode");
    assert_eq!(
        scan::decode(&other, c1.to_string().as_bytes()),
        Err(scan::ScanError::TopologyChanged)
    );
    let mut all: Vec<String> = keys;
    all.extend(added);
    let _: usize = reference.del(&all).await.expect("DEL");
}

/// The harness's kill/restart/failover helpers, and what the building
/// blocks see through a failover: CLUSTERDOWN while a primary is down and
/// its replica may not take over, the promoted replica in a fresh map, the
/// old primary back as a replica, then a graceful failover back.
#[tokio::test]
async fn failover_kill_restart_and_clusterdown() {
    let mut c = cluster::shared().await;
    let map = read_topology(&c.addrs(), &settings())
        .await
        .expect("topology");
    let primary = map.shards()[0].primary.addr.clone();
    let replica = c.replica_of(&primary);
    let slot = 0u16;
    let other = map.shards()[1].primary.addr.clone();

    // Keep the replica from taking over on its own, so the cluster stays
    // down long enough to see CLUSTERDOWN for certain.
    c.must(
        &replica,
        &["CONFIG", "SET", "cluster-replica-no-failover", "yes"],
    );
    c.kill(&primary);
    assert!(!c.node(&primary).is_running());
    c.wait_until(Duration::from_secs(30), "cluster_state:fail", |c| {
        match c.cluster_state(&other)?.as_str() {
            "fail" => Ok(()),
            s => Err(format!("cluster_state:{s}")),
        }
    });
    let key = "gw:down"; // any key: the whole cluster is down
    let reply = exchange(&other, &[encode_command(&args(&["GET", key]))]).await;
    assert_eq!(classify(&reply[0]), Redirect::ClusterDown, "{:?}", reply[0]);
    assert!(classify(&reply[0]).is_retry_later());

    // The replica takes over (FORCE: its primary is unreachable).
    c.failover(&replica, Some("FORCE"));
    c.must(
        &replica,
        &["CONFIG", "SET", "cluster-replica-no-failover", "no"],
    );
    c.wait_until(Duration::from_secs(30), "cluster_state:ok", |c| {
        match c.cluster_state(&other)?.as_str() {
            "ok" => Ok(()),
            s => Err(format!("cluster_state:{s}")),
        }
    });
    // A dead seed first; the fresh map has the promoted replica.
    let mut seeds = vec![primary.clone()];
    seeds.extend(c.live_addrs());
    let after = read_topology(&seeds, &settings()).await.expect("topology");
    assert_eq!(after.primary(slot), Some(replica.as_str()));
    assert!(after.primaries().all(|p| p != primary));
    let reply = exchange(&other, &[encode_command(&args(&["GET", "{gw}x"]))]).await;
    let r = classify(&reply[0]);
    if let Some(target) = r.target(&other) {
        check_target(&after, &target, r.slot().unwrap_or(0)).expect("known target");
    }

    // The old primary comes back as the new primary's replica, then a
    // graceful failover restores the original layout.
    c.restart(&primary);
    c.wait_healthy(Duration::from_secs(60));
    assert_eq!(c.replica_of(&replica), primary);
    let map = read_topology(&c.addrs(), &settings())
        .await
        .expect("topology");
    let shard = map.shard(slot).expect("owner");
    assert_eq!(shard.primary.addr, replica);
    assert_eq!(shard.replicas.len(), 1);
    assert_eq!(shard.replicas[0].addr, primary);
    c.failover(&primary, None);
    c.wait_healthy(Duration::from_secs(60));
    let map = read_topology(&c.addrs(), &settings())
        .await
        .expect("topology");
    assert_eq!(map.primary(slot), Some(primary.as_str()));
}
