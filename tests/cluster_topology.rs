//! strata in cluster mode and the cluster's shape, seen by plain clients:
//! a slot moved behind strata's back (MOVED), a slot half migrated (ASK,
//! TRYAGAIN), reads sent to replicas (`read_from = "replica-round-robin" |
//! "prefer-replica"`) with the replica killed, pub/sub reaching
//! subscribers from any node and shard channels on their slot's owner, and
//! the CLUSTER commands that make strata look like one node owning every
//! slot (so cluster-aware clients work through it too). Every change is
//! undone before the test ends: the cluster (`cluster::shared()`) serves
//! the whole binary.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use strata::command::slot::hash_slot;
use strata::config::ReadFrom;
use support::clients::{encode, redis_cli, show, RawConn};
use support::cluster;
use support::cluster_strata::{
    blocking, cmd_calls, con, config, fresh, raw, reset, restart_healthy, rs, s, start, start_with,
    subscribe, within, Placement, CALL,
};
use support::sentinel::Resp;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn moved_after_a_slot_moves_is_followed_transparently() {
    let c = cluster::shared().await;
    let (strata, place) = fresh(&c).await;
    let prims = place.primaries();
    let (from, to) = (prims[0].clone(), prims[1].clone());
    let t = place.tag_on(&from, "mv");
    let slot = hash_slot(t.as_bytes());
    let keys: Vec<String> = (0..20).map(|i| format!("{t}k{i}")).collect();
    let other = place.key_on(&prims[2], "mv-other:");
    let mut con = con(strata.addr).await;
    for k in &keys {
        let _: () = rs(&mut con, &["SET", k, "before"]).await;
    }
    let _: () = rs(&mut con, &["SET", &other, "o"]).await;

    // Moved straight on the cluster; strata still has the old map.
    blocking(|| c.migrate_slot(slot, &to));
    match blocking(|| c.query(&from, &["GET", &keys[0]])).unwrap() {
        Resp::Err(e) => assert!(e.starts_with("MOVED"), "{e}"),
        other => panic!("old owner still serves {}: {other:?}", keys[0]),
    }
    // A pipeline of reads of the moved slot: every one answered, in order.
    let mut r = RawConn::connect(&strata.addr.to_string()).await;
    let mut batch = Vec::new();
    for k in &keys {
        batch.extend(encode(&[b"GET", k.as_bytes()]));
    }
    r.send(&batch).await;
    for k in &keys {
        let reply = r.read_frame().await;
        assert_eq!(show(&reply), show(b"$6\r\nbefore\r\n"), "GET {k}");
    }
    let _: () = rs(&mut con, &["SET", &keys[0], "after"]).await;
    assert_eq!(c.must(&to, &["GET", &keys[0]]), s("after"));
    let got: Vec<String> = rs(&mut con, &["MGET", &keys[0], &other, &keys[1]]).await;
    assert_eq!(got, ["after", "o", "before"]);

    // And back, again without telling strata.
    blocking(|| c.migrate_slot(slot, &from));
    let got: Vec<String> = rs(&mut con, &["MGET", &keys[1], &keys[0]]).await;
    assert_eq!(got, ["before", "after"]);
    let n: i64 = rs(&mut con, &["DEL", &keys[2], &other]).await;
    assert_eq!(n, 2);
    assert_eq!(c.must(&from, &["EXISTS", &keys[2]]), Resp::Int(0));
    assert_eq!(c.primary_for_slot(slot), from);

    // The redirects and map changes are counted, and every node of the map
    // has its breaker series.
    let http = strata.http_addr.expect("metrics enabled in tests");
    let text = support::clients::metrics_text(http).await;
    let moved = support::clients::metric(&text, "strata_cluster_retries_total{kind=\"moved\"}");
    assert!(moved.is_some_and(|n| n >= 1.0), "{text}");
    let changes = support::clients::metric(&text, "strata_cluster_topology_changes_total");
    assert!(changes.is_some_and(|n| n >= 1.0), "{text}");
    for node in c.addrs() {
        let series = format!("strata_backend_breaker_state{{backend=\"{node}\"}}");
        assert_eq!(
            support::clients::metric(&text, &series),
            Some(0.0),
            "{node}: {text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ask_during_a_migration_is_followed_and_tryagain_retried() {
    let c = cluster::shared().await;
    blocking(|| reset(&c));
    let mut cfg = config(&c, ReadFrom::Primary);
    cfg.backend.cluster.retry_limit = 20;
    let strata = start_with(cfg).await;
    let place = Placement::of(&c);
    let prims = place.primaries();
    let (from, to) = (prims[1].clone(), prims[2].clone());
    let t = place.tag_on(&from, "ask");
    let slot = hash_slot(t.as_bytes());
    let moved: Vec<String> = (0..10).map(|i| format!("{t}m{i}")).collect();
    let stays: Vec<String> = (0..10).map(|i| format!("{t}s{i}")).collect();
    let mut con = con(strata.addr).await;
    for k in moved.iter().chain(&stays) {
        let _: () = rs(&mut con, &["SET", k, &format!("v-{k}")]).await;
    }
    let moved_refs: Vec<&str> = moved.iter().map(String::as_str).collect();
    blocking(|| {
        c.begin_migration(slot, &from, &to);
        c.migrate_keys(&from, &to, &moved_refs);
    });
    match blocking(|| c.query(&from, &["GET", &moved[0]])).unwrap() {
        Resp::Err(e) => assert!(e.starts_with("ASK"), "{e}"),
        other => panic!("{} not migrated: {other:?}", moved[0]),
    }
    // Reads of moved and unmoved keys, one by one and pipelined.
    for k in moved.iter().chain(&stays) {
        let v: String = rs(&mut con, &["GET", k]).await;
        assert_eq!(v, format!("v-{k}"));
    }
    let mut r = RawConn::connect(&strata.addr.to_string()).await;
    let mut batch = Vec::new();
    for (m, st) in moved.iter().zip(&stays) {
        batch.extend(encode(&[b"GET", m.as_bytes()]));
        batch.extend(encode(&[b"GET", st.as_bytes()]));
    }
    r.send(&batch).await;
    for (m, st) in moved.iter().zip(&stays) {
        for k in [m, st] {
            let want = format!("${}\r\nv-{k}\r\n", k.len() + 2);
            assert_eq!(show(&r.read_frame().await), show(want.as_bytes()), "{k}");
        }
    }
    // Writes: a moved key is overwritten on the target, a new key is
    // created there (the source does not have it).
    let _: () = rs(&mut con, &["SET", &moved[0], "rewritten"]).await;
    let new = format!("{t}new");
    let _: () = rs(&mut con, &["SET", &new, "created"]).await;
    let v: Vec<String> = rs(&mut con, &["MGET", &moved[0], &new]).await;
    assert_eq!(
        v,
        ["rewritten", "created"],
        "MGET of keys all on the target"
    );
    let count = |a: &str| c.must(a, &["CLUSTER", "COUNTKEYSINSLOT", &slot.to_string()]);
    assert_eq!(blocking(|| count(&to)), Resp::Int(11));
    assert_eq!(blocking(|| count(&from)), Resp::Int(10));
    let v: Vec<String> = rs(&mut con, &["MGET", &stays[0], &stays[1]]).await;
    assert_eq!(v, [format!("v-{}", stays[0]), format!("v-{}", stays[1])]);

    // A request on keys on both sides is TRYAGAIN for as long as the
    // migration lasts: retried, then a clear error.
    let mut short = config(&c, ReadFrom::Primary);
    short.backend.cluster.retry_limit = 2;
    let impatient = start_with(short).await;
    let mut ic = RawConn::connect(&impatient.addr.to_string()).await;
    let t0 = Instant::now();
    match raw(&mut ic, &["MGET", &moved[1], &stays[1]]).await {
        Resp::Err(e) => assert!(e.starts_with("TRYAGAIN"), "{e}"),
        other => panic!("MGET across a half-moved slot: {other:?}"),
    }
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    // Retried until the migration ends, then answered.
    let mut waiter = support::cluster_strata::con(strata.addr).await;
    let (m1, s1) = (moved[1].clone(), stays[1].clone());
    let pending = tokio::spawn(async move {
        let v: Vec<String> = rs(&mut waiter, &["MGET", &m1, &s1]).await;
        v
    });
    tokio::time::sleep(Duration::from_millis(30)).await;
    blocking(|| {
        c.migrate_all_keys(slot, &from, &to);
        c.finish_migration(slot, &from, &to);
    });
    let v = within("MGET across a migration", pending)
        .await
        .expect("MGET");
    assert_eq!(v, [format!("v-{}", moved[1]), format!("v-{}", stays[1])]);
    let n: i64 = rs(&mut con, &["EXISTS", &new, &stays[9], &moved[9]]).await;
    assert_eq!(n, 3);
    assert_eq!(blocking(|| count(&to)), Resp::Int(21));
    blocking(|| c.migrate_slot(slot, &from));
    assert_eq!(c.primary_for_slot(slot), from);
}

/// GETs of `key` through `strata` until one returns `want` (replicas are
/// eventually consistent).
async fn read_until(con: &mut redis::aio::MultiplexedConnection, key: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let v: Option<String> = rs(con, &["GET", key]).await;
        if v.as_deref() == Some(want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "GET {key}: {v:?}, never {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replica_reads_go_to_replicas_and_fall_back_to_the_primary() {
    let mut c = cluster::shared_repaired().await;
    blocking(|| reset(&c));
    let place = Placement::of(&c);
    let rr = start_with(config(&c, ReadFrom::ReplicaRoundRobin)).await;
    let prefer = start_with(config(&c, ReadFrom::PreferReplica)).await;
    let mut rrc = con(rr.addr).await;
    let mut pc = con(prefer.addr).await;
    let keys = place.key_per_primary("rr:");
    for (p, k) in &keys {
        let replica = place.replica(k).to_string();
        // Writes still go to the primary.
        let _: () = rs(&mut rrc, &["SET", k, "one"]).await;
        assert_eq!(c.must(p, &["GET", k]), s("one"));
        read_until(&mut rrc, k, "one").await;
        read_until(&mut pc, k, "one").await;
        // Reads are served by the replica.
        let (r0, p0) = blocking(|| (cmd_calls(&replica, "get"), cmd_calls(p, "get")));
        for con in [&mut rrc, &mut pc] {
            for _ in 0..25 {
                let v: String = rs(con, &["GET", k]).await;
                assert_eq!(v, "one");
            }
        }
        let (r1, p1) = blocking(|| (cmd_calls(&replica, "get"), cmd_calls(p, "get")));
        assert!(
            r1 - r0 >= 50,
            "{replica} served {} of 50 GETs, its primary {}",
            r1 - r0,
            p1 - p0
        );
        let v: Vec<String> = rs(&mut rrc, &["MGET", k, k]).await;
        assert_eq!(v, ["one", "one"]);
    }

    // The replica of one shard dies while reads of it are in flight
    // (pipelined, through both strata): those and every later read are
    // answered, by the primary.
    let (p, k) = keys[0].clone();
    let replica = place.replica(&k).to_string();
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = [rr.addr, prefer.addr]
        .into_iter()
        .map(|addr| {
            let (stop, k) = (stop.clone(), k.clone());
            tokio::spawn(async move {
                let mut conn = RawConn::connect(&addr.to_string()).await;
                let batch: Vec<u8> = (0..20)
                    .flat_map(|_| encode(&[b"GET", k.as_bytes()]))
                    .collect();
                let (mut ok, mut bad) = (0usize, Vec::new());
                while !stop.load(Ordering::Relaxed) {
                    conn.send(&batch).await;
                    for _ in 0..20 {
                        match conn.read_frame_within(CALL).await {
                            Some(f) if f == b"$3\r\none\r\n" => ok += 1,
                            Some(f) => bad.push(show(&f)),
                            None => {
                                bad.push(format!("no reply within {CALL:?}"));
                                return (ok, bad);
                            }
                        }
                    }
                }
                (ok, bad)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    blocking(|| c.kill(&replica));
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    for (reader, name) in readers
        .into_iter()
        .zip(["replica-round-robin", "prefer-replica"])
    {
        let (ok, bad) = within("reader", reader).await.expect("reader");
        assert!(ok > 100, "{name}: {ok} reads");
        assert!(
            bad.is_empty(),
            "{name}: {} of {} reads failed around the kill of {replica}: {:?}",
            bad.len(),
            ok + bad.len(),
            &bad[..bad.len().min(3)]
        );
    }
    let p0 = blocking(|| cmd_calls(&p, "get"));
    for con in [&mut rrc, &mut pc] {
        for _ in 0..10 {
            let v: String = rs(con, &["GET", &k]).await;
            assert_eq!(v, "one", "with {replica} down");
        }
    }
    let served = blocking(|| cmd_calls(&p, "get")) - p0;
    assert!(served >= 20, "{p} served {served} of 20 reads");
    // Back up: reads return to the replica.
    blocking(|| restart_healthy(&mut c, &replica));
    let deadline = Instant::now() + Duration::from_secs(15);
    let before = blocking(|| cmd_calls(&replica, "get"));
    loop {
        let v: String = rs(&mut rrc, &["GET", &k]).await;
        assert_eq!(v, "one");
        if blocking(|| cmd_calls(&replica, "get")) > before {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "reads never went back to {replica}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _: () = rs(&mut rrc, &["SET", &k, "two"]).await;
    read_until(&mut rrc, &k, "two").await;
}

/// The next frame on a subscribed connection, decoded.
async fn next(sub: &mut RawConn) -> Resp {
    Resp::parse(&sub.read_frame().await)
}

fn frame(items: &[&str]) -> Resp {
    Resp::Array(items.iter().map(|i| s(i)).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pubsub_reaches_subscribers_from_any_node_and_shard_channels_follow_their_slot() {
    let c = cluster::shared().await;
    let strata = start(&c).await;
    let place = Placement::of(&c);
    let addr = strata.addr.to_string();
    let mut con = con(strata.addr).await;
    let mut sub = RawConn::connect(&addr).await;
    let mut psub = RawConn::connect(&addr).await;
    subscribe(&mut sub, "SUBSCRIBE", "news").await;
    subscribe(&mut psub, "PSUBSCRIBE", "ne*").await;
    let _: i64 = rs(&mut con, &["PUBLISH", "news", "through-strata"]).await;
    assert_eq!(
        next(&mut sub).await,
        frame(&["message", "news", "through-strata"])
    );
    assert_eq!(
        next(&mut psub).await,
        frame(&["pmessage", "ne*", "news", "through-strata"])
    );
    // Published straight to any node, primary or replica.
    for node in c.addrs() {
        let payload = format!("from-{node}");
        blocking(|| c.must(&node, &["PUBLISH", "news", &payload]));
        assert_eq!(next(&mut sub).await, frame(&["message", "news", &payload]));
        assert_eq!(
            next(&mut psub).await,
            frame(&["pmessage", "ne*", "news", &payload])
        );
    }
    assert_eq!(
        raw(&mut sub, &["UNSUBSCRIBE", "news"]).await,
        Resp::Array(vec![s("unsubscribe"), s("news"), Resp::Int(0)])
    );
    let _: i64 = rs(&mut con, &["PUBLISH", "news", "after"]).await;
    sub.expect_silence(Duration::from_millis(300)).await;
    sub.expect("PING", b"+PONG\r\n").await;

    // Shard channels: subscribed on the channel's slot owner.
    for (owner, ch) in place.key_per_primary("orders:") {
        let mut ssub = RawConn::connect(&addr).await;
        subscribe(&mut ssub, "SSUBSCRIBE", &ch).await;
        let n: i64 = rs(&mut con, &["SPUBLISH", &ch, "sp-strata"]).await;
        assert_eq!(n, 1, "the subscription lives on {owner}");
        assert_eq!(
            next(&mut ssub).await,
            frame(&["smessage", &ch, "sp-strata"])
        );
        let direct = blocking(|| c.must(&owner, &["SPUBLISH", &ch, "sp-direct"]));
        assert_eq!(direct, Resp::Int(1));
        assert_eq!(
            next(&mut ssub).await,
            frame(&["smessage", &ch, "sp-direct"])
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cluster_commands_describe_strata_as_one_node_owning_every_slot() {
    let c = cluster::shared().await;
    let (strata, place) = fresh(&c).await;
    let port = strata.addr.port();
    let mut r = RawConn::connect(&strata.addr.to_string()).await;
    let slots = raw(&mut r, &["CLUSTER", "SLOTS"]).await;
    let [range] = slots.items() else {
        panic!("CLUSTER SLOTS: {slots:?}")
    };
    let [Resp::Int(0), Resp::Int(16383), node] = range.items() else {
        panic!("CLUSTER SLOTS range: {range:?}")
    };
    assert_eq!(node.items()[..2], [s("127.0.0.1"), Resp::Int(port as i64)]);
    let shards = raw(&mut r, &["CLUSTER", "SHARDS"]).await;
    let [shard] = shards.items() else {
        panic!("CLUSTER SHARDS: {shards:?}")
    };
    let field = |map: &Resp, name: &str| -> Resp {
        map.items()
            .chunks(2)
            .find(|p| p[0] == s(name))
            .map(|p| p[1].clone())
            .unwrap_or_else(|| panic!("no {name} in {map:?}"))
    };
    assert_eq!(
        field(shard, "slots"),
        Resp::Array(vec![Resp::Int(0), Resp::Int(16383)])
    );
    let nodes = field(shard, "nodes");
    let [node] = nodes.items() else {
        panic!("shard nodes: {nodes:?}")
    };
    assert_eq!(field(node, "port"), Resp::Int(port as i64));
    assert_eq!(field(node, "role"), s("master"));
    let text = match raw(&mut r, &["CLUSTER", "NODES"]).await {
        Resp::Str(t) => t,
        other => panic!("CLUSTER NODES: {other:?}"),
    };
    let lines: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), 1, "{text}");
    let f: Vec<&str> = lines[0].split(' ').collect();
    assert!(f[1].starts_with(&format!("127.0.0.1:{port}@")), "{text}");
    assert!(f[2].contains("myself") && f[2].contains("master"), "{text}");
    assert_eq!(
        (f[7], *f.last().unwrap()),
        ("connected", "0-16383"),
        "{text}"
    );
    let info = match raw(&mut r, &["CLUSTER", "INFO"]).await {
        Resp::Str(t) => t,
        other => panic!("CLUSTER INFO: {other:?}"),
    };
    for line in [
        "cluster_state:ok",
        "cluster_slots_assigned:16384",
        "cluster_known_nodes:1",
        "cluster_size:1",
    ] {
        assert!(info.lines().any(|l| l.trim() == line), "{line}: {info}");
    }
    for key in [
        "foo",
        "{user1000}.following",
        "user1000",
        "a{}b",
        "{}x",
        "x{y}z",
    ] {
        let node_says = blocking(|| c.must(&place.primaries()[0], &["CLUSTER", "KEYSLOT", key]));
        assert_eq!(raw(&mut r, &["CLUSTER", "KEYSLOT", key]).await, node_says);
        assert_eq!(node_says, Resp::Int(hash_slot(key.as_bytes()) as i64));
    }

    // Cluster-aware clients: redis-cli -c and redis-rs's cluster client.
    let keys = place.key_per_primary("aware:");
    for (p, k) in &keys {
        let out = redis_cli(port, &["-c", "SET", k, "via-cli-c"], None).await;
        assert_eq!(out.stdout.trim(), "OK", "{out:?}");
        let out = redis_cli(port, &["-c", "GET", k], None).await;
        assert_eq!(out.stdout.trim(), "via-cli-c", "{out:?}");
        assert_eq!(c.must(p, &["GET", k]), s("via-cli-c"));
    }
    let client = redis::cluster::ClusterClient::new(vec![format!("redis://{}/", strata.addr)])
        .expect("cluster client");
    let mut cc = within("cluster client connects", client.get_async_connection())
        .await
        .expect("cluster client connects to strata");
    for (i, (p, k)) in keys.iter().enumerate() {
        let mut set = redis::cmd("SET");
        set.arg(k).arg(format!("rs-{i}"));
        let () = within("SET", set.query_async(&mut cc)).await.expect("SET");
        let got: String = within("GET", redis::cmd("GET").arg(k).query_async(&mut cc))
            .await
            .expect("GET");
        assert_eq!(got, format!("rs-{i}"));
        assert_eq!(c.must(p, &["GET", k]), s(&got));
    }
    let names: Vec<&str> = keys.iter().map(|(_, k)| k.as_str()).collect();
    let got: Vec<Option<String>> = within(
        "MGET",
        redis::cmd("MGET")
            .arg(&names)
            .arg("aware:none")
            .query_async(&mut cc),
    )
    .await
    .expect("MGET");
    let want: Vec<Option<String>> = (0..3)
        .map(|i| Some(format!("rs-{i}")))
        .chain([None])
        .collect();
    assert_eq!(got, want);
}
