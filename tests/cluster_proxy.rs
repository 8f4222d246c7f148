//! strata in cluster mode (`backend.mode = "cluster"`) in front of a real
//! Redis Cluster (3 primaries, 3 replicas), used with PLAIN clients only:
//! redis-rs's non-cluster connection, redis-cli without `-c` and raw RESP.
//! What they send is routed by slot, split and merged, broadcast or pinned
//! inside strata; results are checked against the nodes themselves.
//!
//! One cluster serves every test of this binary; each test holds
//! `cluster::shared()` for its whole body, starts from empty primaries and
//! leaves the slot layout as it found it. Redirections, replica reads,
//! pub/sub and cluster-aware clients are in `cluster_topology.rs`;
//! failures in `cluster_failover.rs`; value transforms in
//! `cluster_transforms.rs`.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use strata::command::slot::hash_slot;
use support::clients::{redis_cli, RawConn};
use support::cluster;
use support::cluster_strata::{blocked_clients, blocking, con, fresh, raw, rs, rs_err, s, within};
use support::sentinel::Resp;

const CROSSSLOT: &str = "CROSSSLOT Keys in request don't hash to the same slot";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn single_key_commands_of_every_type_are_routed_by_slot() {
    let c = cluster::shared().await;
    let (strata, place) = fresh(&c).await;
    let mut con = con(strata.addr).await;
    for p in place.primaries() {
        let t = place.tag_on(&p, "types");
        let k = |name: &str| format!("{t}{name}");
        // Strings.
        let _: () = rs(&mut con, &["SET", &k("str"), "hello"]).await;
        let n: i64 = rs(&mut con, &["APPEND", &k("str"), " world"]).await;
        assert_eq!(n, 11);
        let v: String = rs(&mut con, &["GET", &k("str")]).await;
        assert_eq!(v, "hello world");
        let n: i64 = rs(&mut con, &["INCRBY", &k("ctr"), "5"]).await;
        assert_eq!(n, 5);
        let n: i64 = rs(&mut con, &["EXPIRE", &k("ctr"), "100"]).await;
        assert_eq!(n, 1);
        let ttl: i64 = rs(&mut con, &["TTL", &k("ctr")]).await;
        assert!((1..=100).contains(&ttl), "{ttl}");
        // Hashes.
        let n: i64 = rs(&mut con, &["HSET", &k("h"), "f1", "a", "f2", "b"]).await;
        assert_eq!(n, 2);
        let n: i64 = rs(&mut con, &["HINCRBY", &k("h"), "n", "3"]).await;
        assert_eq!(n, 3);
        let all: std::collections::BTreeMap<String, String> =
            rs(&mut con, &["HGETALL", &k("h")]).await;
        assert_eq!(format!("{all:?}"), r#"{"f1": "a", "f2": "b", "n": "3"}"#);
        // Lists.
        let n: i64 = rs(&mut con, &["RPUSH", &k("l"), "a", "b", "c"]).await;
        assert_eq!(n, 3);
        let n: i64 = rs(&mut con, &["LPUSH", &k("l"), "z"]).await;
        assert_eq!(n, 4);
        let v: Vec<String> = rs(&mut con, &["LRANGE", &k("l"), "0", "-1"]).await;
        assert_eq!(v, ["z", "a", "b", "c"]);
        let v: String = rs(&mut con, &["LPOP", &k("l")]).await;
        assert_eq!(v, "z");
        // Sets.
        let n: i64 = rs(&mut con, &["SADD", &k("s"), "a", "b", "c", "a"]).await;
        assert_eq!(n, 3);
        let n: i64 = rs(&mut con, &["SISMEMBER", &k("s"), "b"]).await;
        assert_eq!(n, 1);
        let m: BTreeSet<String> = rs(&mut con, &["SMEMBERS", &k("s")]).await;
        assert_eq!(m, ["a", "b", "c"].map(String::from).into());
        // Sorted sets.
        let n: i64 = rs(&mut con, &["ZADD", &k("z"), "1", "a", "3", "c", "2", "b"]).await;
        assert_eq!(n, 3);
        let v: Vec<String> = rs(&mut con, &["ZRANGE", &k("z"), "0", "-1", "WITHSCORES"]).await;
        assert_eq!(v, ["a", "1", "b", "2", "c", "3"]);
        let n: i64 = rs(&mut con, &["ZRANK", &k("z"), "c"]).await;
        assert_eq!(n, 2);
        // Streams.
        let id: String = rs(&mut con, &["XADD", &k("x"), "*", "f", "v1"]).await;
        let _: String = rs(&mut con, &["XADD", &k("x"), "*", "f", "v2"]).await;
        let n: i64 = rs(&mut con, &["XLEN", &k("x")]).await;
        assert_eq!(n, 2);
        let r: Vec<(String, Vec<String>)> = rs(&mut con, &["XRANGE", &k("x"), "-", &id]).await;
        assert_eq!(r, vec![(id.clone(), vec!["f".into(), "v1".into()])]);
        // Everything landed on the slot's owner, nowhere else.
        let types = [
            ("str", "string"),
            ("ctr", "string"),
            ("h", "hash"),
            ("l", "list"),
            ("s", "set"),
            ("z", "zset"),
            ("x", "stream"),
        ];
        for (name, ty) in types {
            assert_eq!(c.must(&p, &["TYPE", &k(name)]), s(ty), "{} on {p}", k(name));
        }
        assert_eq!(c.must(&p, &["DBSIZE"]), Resp::Int(types.len() as i64));
    }
    // redis-cli without -c and a raw connection, on a key of every primary.
    let mut rawc = RawConn::connect(&strata.addr.to_string()).await;
    for (p, k) in place.key_per_primary("plain:") {
        let out = redis_cli(strata.addr.port(), &["SET", &k, "from-cli"], None).await;
        assert_eq!(out.stdout.trim(), "OK", "{out:?}");
        let out = redis_cli(strata.addr.port(), &["GET", &k], None).await;
        assert_eq!(out.stdout.trim(), "from-cli", "{out:?}");
        assert_eq!(c.must(&p, &["GET", &k]), s("from-cli"));
        rawc.expect(&format!("SET {k} raw-value"), b"+OK\r\n").await;
        rawc.expect(&format!("GET {k}"), b"$9\r\nraw-value\r\n")
            .await;
        rawc.expect(&format!("STRLEN {k}"), b":9\r\n").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn multi_key_commands_are_split_per_slot_and_merged() {
    let c = cluster::shared().await;
    let (strata, place) = fresh(&c).await;
    let mut con = con(strata.addr).await;
    let keys = place.key_per_primary("mk:");
    let [(pa, a), (pb, b), (pc, k3)] = &keys[..] else {
        panic!("three primaries")
    };
    let missing = "mk:missing";
    let _: () = rs(&mut con, &["MSET", a, "1", b, "2", k3, "3"]).await;
    for (p, k, v) in [(pa, a, "1"), (pb, b, "2"), (pc, k3, "3")] {
        assert_eq!(c.must(p, &["GET", k]), s(v), "{k} on its owner {p}");
    }
    let got: Vec<Option<String>> = rs(&mut con, &["MGET", a, missing, b, k3, a]).await;
    let want = [Some("1"), None, Some("2"), Some("3"), Some("1")];
    assert_eq!(
        got,
        want.map(|v| v.map(String::from)),
        "order kept, nil kept"
    );
    let n: i64 = rs(&mut con, &["EXISTS", a, b, k3, missing, a]).await;
    assert_eq!(n, 4, "EXISTS counts a repeated key twice");
    let n: i64 = rs(&mut con, &["TOUCH", a, b, missing]).await;
    assert_eq!(n, 2);
    let n: i64 = rs(&mut con, &["UNLINK", a, missing]).await;
    assert_eq!(n, 1);
    let n: i64 = rs(&mut con, &["DEL", b, k3, missing]).await;
    assert_eq!(n, 2);
    let n: i64 = rs(&mut con, &["EXISTS", a, b, k3]).await;
    assert_eq!(n, 0);

    // A thousand keys, over nearly as many slots.
    let bulk: Vec<String> = (0..1000).map(|i| format!("bulk:{i}")).collect();
    let slots: BTreeSet<u16> = bulk.iter().map(|k| hash_slot(k.as_bytes())).collect();
    assert!(slots.len() > 900);
    let mut mset = vec!["MSET".to_string()];
    for (i, k) in bulk.iter().enumerate() {
        mset.extend([k.clone(), format!("v{i}")]);
    }
    let words: Vec<&str> = mset.iter().map(String::as_str).collect();
    let _: () = rs(&mut con, &words).await;
    let per_node: Vec<i64> = place
        .primaries()
        .iter()
        .map(|p| match c.must(p, &["DBSIZE"]) {
            Resp::Int(n) => n,
            other => panic!("{other:?}"),
        })
        .collect();
    assert!(per_node.iter().all(|n| *n > 200), "{per_node:?}");
    assert_eq!(per_node.iter().sum::<i64>(), 1000);
    // MGET of them with a missing key after every hundredth.
    let mut mget = vec!["MGET"];
    let mut want = Vec::new();
    for (i, k) in bulk.iter().enumerate() {
        mget.push(k);
        want.push(Some(format!("v{i}")));
        if i % 100 == 0 {
            mget.push(missing);
            want.push(None);
        }
    }
    let got: Vec<Option<String>> = rs(&mut con, &mget).await;
    assert_eq!(got.len(), 1010);
    assert_eq!(got, want);
    let mut del = vec!["DEL"];
    del.extend(bulk.iter().map(String::as_str));
    del.push(missing);
    let n: i64 = rs(&mut con, &del).await;
    assert_eq!(n, 1000);
    let n: i64 = rs(&mut con, &["DBSIZE"]).await;
    assert_eq!(n, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn same_slot_only_commands_and_scripts_get_crossslot_across_slots() {
    let c = cluster::shared().await;
    let (strata, place) = fresh(&c).await;
    let mut r = RawConn::connect(&strata.addr.to_string()).await;
    let keys = place.key_per_primary("ss:");
    let (a, b) = (&keys[0].1, &keys[1].1);
    let crossslot = Resp::Err(CROSSSLOT.into());
    // MSETNX: all or nothing, so one slot only.
    assert_eq!(raw(&mut r, &["MSETNX", a, "1", b, "2"]).await, crossslot);
    assert_eq!(raw(&mut r, &["EXISTS", a, b]).await, Resp::Int(0));
    let t = place.tag_on(&keys[2].0, "ss");
    let (t1, t2, t3) = (format!("{t}1"), format!("{t}2"), format!("{t}3"));
    assert_eq!(
        raw(&mut r, &["MSETNX", &t1, "1", &t2, "2"]).await,
        Resp::Int(1)
    );
    assert_eq!(
        raw(&mut r, &["MSETNX", &t1, "x", &t3, "3"]).await,
        Resp::Int(0)
    );
    assert_eq!(c.must(&keys[2].0, &["GET", &t2]), s("2"));

    // EVAL routed by its keys' slot, on every primary.
    let set = "return redis.call('SET', KEYS[1], ARGV[1])";
    for (p, k) in &keys {
        assert_eq!(
            raw(&mut r, &["EVAL", set, "1", k, "by-eval"]).await,
            s("OK")
        );
        assert_eq!(c.must(p, &["GET", k]), s("by-eval"));
    }
    let pair = "return {KEYS[1], KEYS[2]}";
    assert_eq!(
        raw(&mut r, &["EVAL", pair, "2", &t1, &t2]).await,
        Resp::Array(vec![s(&t1), s(&t2)])
    );
    assert_eq!(raw(&mut r, &["EVAL", pair, "2", a, b]).await, crossslot);
    assert_eq!(raw(&mut r, &["EVAL", "return 7", "0"]).await, Resp::Int(7));

    // SCRIPT LOAD is broadcast: EVALSHA works on keys of every node.
    let get = "return redis.call('GET', KEYS[1])";
    let sha = match raw(&mut r, &["SCRIPT", "LOAD", get]).await {
        Resp::Str(sha) => sha,
        other => panic!("SCRIPT LOAD: {other:?}"),
    };
    for (p, k) in &keys {
        let on_node = c.must(p, &["SCRIPT", "EXISTS", &sha]);
        assert_eq!(on_node, Resp::Array(vec![Resp::Int(1)]), "loaded on {p}");
        assert_eq!(raw(&mut r, &["EVALSHA", &sha, "1", k]).await, s("by-eval"));
    }
    assert_eq!(raw(&mut r, &["EVALSHA", &sha, "2", a, b]).await, crossslot);
    assert_eq!(
        raw(&mut r, &["SCRIPT", "EXISTS", &sha, "0000"]).await,
        Resp::Array(vec![Resp::Int(1), Resp::Int(0)])
    );
    assert_eq!(raw(&mut r, &["SCRIPT", "FLUSH"]).await, s("OK"));
    assert_eq!(
        raw(&mut r, &["SCRIPT", "EXISTS", &sha]).await,
        Resp::Array(vec![Resp::Int(0)])
    );
    for p in place.primaries() {
        let on_node = c.must(&p, &["SCRIPT", "EXISTS", &sha]);
        assert_eq!(on_node, Resp::Array(vec![Resp::Int(0)]), "flushed on {p}");
    }
    match raw(&mut r, &["EVALSHA", &sha, "1", a]).await {
        Resp::Err(e) => assert!(e.starts_with("NOSCRIPT"), "{e}"),
        other => panic!("EVALSHA after SCRIPT FLUSH: {other:?}"),
    }

    // FUNCTION LOAD/DELETE/FLUSH are broadcast; FCALL routed like EVAL.
    let lib = "#!lua name=stratalib\nredis.register_function('sget', \
               function(keys, args) return redis.call('GET', keys[1]) end)";
    let libs = |c: &cluster::Cluster, p: &str| c.must(p, &["FUNCTION", "LIST"]).items().len();
    for round in ["DELETE", "FLUSH"] {
        assert_eq!(
            raw(&mut r, &["FUNCTION", "LOAD", lib]).await,
            s("stratalib")
        );
        for (p, k) in &keys {
            assert_eq!(libs(&c, p), 1, "library on {p}");
            assert_eq!(raw(&mut r, &["FCALL", "sget", "1", k]).await, s("by-eval"));
        }
        assert_eq!(raw(&mut r, &["FCALL", "sget", "2", a, b]).await, crossslot);
        let reply = match round {
            "DELETE" => raw(&mut r, &["FUNCTION", "DELETE", "stratalib"]).await,
            _ => raw(&mut r, &["FUNCTION", "FLUSH"]).await,
        };
        assert_eq!(reply, s("OK"), "FUNCTION {round}");
        for p in place.primaries() {
            assert_eq!(libs(&c, &p), 0, "FUNCTION {round} reached {p}");
        }
        match raw(&mut r, &["FCALL", "sget", "1", a]).await {
            Resp::Err(e) => assert!(e.contains("Function not found"), "{e}"),
            other => panic!("FCALL after FUNCTION {round}: {other:?}"),
        }
    }
}

async fn mset_v(con: &mut redis::aio::MultiplexedConnection, keys: &BTreeSet<String>) {
    let mut mset = vec!["MSET"];
    for k in keys {
        mset.extend([k.as_str(), "v"]);
    }
    let _: () = rs(con, &mset).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keyspace_and_server_commands_cover_every_primary() {
    let c = cluster::shared().await;
    let (strata, place) = fresh(&c).await;
    let mut con = con(strata.addr).await;
    let none: Option<String> = rs(&mut con, &["RANDOMKEY"]).await;
    assert_eq!(none, None, "RANDOMKEY of an empty cluster");
    let n: i64 = rs(&mut con, &["DBSIZE"]).await;
    assert_eq!(n, 0);
    let keys: BTreeSet<String> = (0..60).map(|i| format!("ks:{i}")).collect();
    let sizes = |c: &cluster::Cluster| -> Vec<Resp> {
        place
            .primaries()
            .iter()
            .map(|p| c.must(p, &["DBSIZE"]))
            .collect()
    };
    mset_v(&mut con, &keys).await;
    let _: () = rs(&mut con, &["SET", "other:1", "v"]).await;
    let n: i64 = rs(&mut con, &["DBSIZE"]).await;
    assert_eq!(n, 61, "DBSIZE sums the primaries");
    // INFO sums the keyspace of every primary, as DBSIZE does.
    let keyspace: String = rs(&mut con, &["INFO", "keyspace"]).await;
    assert!(
        keyspace.contains("db0:keys=61,"),
        "INFO keyspace sums the primaries: {keyspace}"
    );
    let full: String = rs(&mut con, &["INFO"]).await;
    for p in place.primaries() {
        assert!(
            full.contains(&format!("primary:{p},")),
            "INFO lists {p}: {full}"
        );
    }
    assert_eq!(full.matches("# Server").count(), 1, "{full}");
    // Sizes and counters add up over the primaries: the whole cluster's
    // memory is more than the largest primary's.
    let field = |text: &str, name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .unwrap_or_else(|| panic!("no {name} in {text}"))
            .trim()
            .parse()
            .unwrap()
    };
    let largest = place
        .primaries()
        .iter()
        .map(|p| match c.must(p, &["INFO", "memory"]) {
            Resp::Str(text) => field(&text, "used_memory"),
            other => panic!("INFO memory on {p}: {other:?}"),
        })
        .max()
        .unwrap();
    let summed = field(
        &rs::<String>(&mut con, &["INFO", "memory"]).await,
        "used_memory",
    );
    assert!(
        summed > largest,
        "used_memory {summed} vs largest primary {largest}"
    );
    let found: BTreeSet<String> = rs(&mut con, &["KEYS", "ks:*"]).await;
    assert_eq!(found, keys, "KEYS merges every primary");
    let found: Vec<String> = rs(&mut con, &["KEYS", "nothing:*"]).await;
    assert!(found.is_empty());
    for _ in 0..20 {
        let k: String = rs(&mut con, &["RANDOMKEY"]).await;
        assert!(keys.contains(&k) || k == "other:1", "{k}");
    }
    let _: () = rs(&mut con, &["FLUSHDB"]).await;
    assert_eq!(sizes(&c), vec![Resp::Int(0); 3], "FLUSHDB on every primary");
    mset_v(&mut con, &keys).await;
    let _: () = rs(&mut con, &["FLUSHALL"]).await;
    assert_eq!(
        sizes(&c),
        vec![Resp::Int(0); 3],
        "FLUSHALL on every primary"
    );
    let n: i64 = rs(&mut con, &["DBSIZE"]).await;
    assert_eq!(n, 0);
    // PING, ECHO, INFO.
    let mut r = RawConn::connect(&strata.addr.to_string()).await;
    r.expect("PING", b"+PONG\r\n").await;
    r.expect("PING hello", b"$5\r\nhello\r\n").await;
    r.expect("ECHO hi", b"$2\r\nhi\r\n").await;
    for words in [&["INFO"][..], &["INFO", "server"]] {
        let info: String = rs(&mut con, words).await;
        assert!(info.contains("redis_version:"), "{words:?}: {info}");
        if words.len() == 1 {
            assert!(info.contains("# Proxy"), "{info}");
        }
    }
}

/// Every key of a full SCAN, with `extra` options, through strata.
async fn scan_all(r: &mut RawConn, extra: &[&str]) -> (Vec<String>, usize) {
    let mut cursor = "0".to_string();
    let mut keys = Vec::new();
    for step in 1.. {
        assert!(step < 20_000, "SCAN does not end");
        let mut words = vec!["SCAN", cursor.as_str()];
        words.extend_from_slice(extra);
        let reply = raw(r, &words).await;
        let [Resp::Str(next), Resp::Array(batch)] = reply.items() else {
            panic!("SCAN reply {reply:?}");
        };
        keys.extend(batch.iter().map(|k| k.str().expect("key").to_string()));
        if next == "0" {
            return (keys, step);
        }
        cursor = next.clone();
    }
    unreachable!()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scan_walks_every_primary_with_one_cursor_while_keys_are_added() {
    let c = cluster::shared().await;
    let (strata, _) = fresh(&c).await;
    let mut con = con(strata.addr).await;
    let strings: BTreeSet<String> = (0..1500).map(|i| format!("sc:{i}")).collect();
    let hashes: BTreeSet<String> = (0..100).map(|i| format!("sch:{i}")).collect();
    for chunk in strings.iter().collect::<Vec<_>>().chunks(500) {
        let mut mset = vec!["MSET"];
        for k in chunk {
            mset.extend([k.as_str(), "v"]);
        }
        let _: () = rs(&mut con, &mset).await;
    }
    for h in &hashes {
        let _: i64 = rs(&mut con, &["HSET", h, "f", "v"]).await;
    }
    // A writer keeps adding keys during the scan.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let mut con = support::cluster_strata::con(strata.addr).await;
        tokio::spawn(async move {
            let mut n = 0usize;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _: () = rs(&mut con, &["SET", &format!("sc:late:{n}"), "v"]).await;
                n += 1;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            n
        })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    let mut r = RawConn::connect(&strata.addr.to_string()).await;
    let (seen, steps) = scan_all(&mut r, &["MATCH", "sc:*", "COUNT", "20"]).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let late = within("writer", writer).await.expect("writer");
    assert!(late > 0, "keys were added during the scan");
    assert!(steps > 30, "a scan of {steps} steps is not interleaved");
    let seen: BTreeSet<String> = seen.into_iter().collect();
    let lost: Vec<&String> = strings.difference(&seen).collect();
    assert!(
        lost.is_empty(),
        "{} keys never returned: {lost:?}",
        lost.len()
    );
    assert!(
        seen.iter().all(|k| k.starts_with("sc:")),
        "MATCH passes through"
    );
    // TYPE passes through: only the hashes, all of them.
    let (typed, _) = scan_all(&mut r, &["TYPE", "hash", "COUNT", "100"]).await;
    let typed: BTreeSet<String> = typed.into_iter().collect();
    assert_eq!(typed, hashes);
    // COUNT passes through: a bigger COUNT gives bigger pages.
    let small = raw(&mut r, &["SCAN", "0", "COUNT", "5"]).await;
    let big = raw(&mut r, &["SCAN", "0", "COUNT", "5000"]).await;
    let (small, big) = (small.items()[1].items().len(), big.items()[1].items().len());
    assert!(
        small < 50 && big > 300,
        "COUNT 5 gave {small}, COUNT 5000 {big}"
    );
    // Without MATCH, every key; redis-cli --scan (no -c) too.
    let (all, _) = scan_all(&mut r, &["COUNT", "200"]).await;
    let all: BTreeSet<String> = all.into_iter().collect();
    assert!(strings.is_subset(&all) && hashes.is_subset(&all));
    assert_eq!(all.len(), strings.len() + hashes.len() + late);
    let out = redis_cli(strata.addr.port(), &["--scan", "--pattern", "sch:*"], None).await;
    let listed: BTreeSet<String> = out.stdout.lines().map(String::from).collect();
    assert_eq!(listed, hashes, "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn multi_exec_is_pinned_to_the_first_keys_node() {
    let c = cluster::shared().await;
    let (strata, place) = fresh(&c).await;
    let prims = place.primaries();
    let t = place.tag_on(&prims[0], "tx");
    let (a1, a2) = (format!("{t}1"), format!("{t}2"));
    let b = place.key_on(&prims[1], "tx-b:");
    let mut r = RawConn::connect(&strata.addr.to_string()).await;
    r.expect("MULTI", b"+OK\r\n").await;
    r.expect(&format!("SET {a1} x"), b"+QUEUED\r\n").await;
    r.expect(&format!("INCR {a2}"), b"+QUEUED\r\n").await;
    r.expect(&format!("GET {a1}"), b"+QUEUED\r\n").await;
    r.expect("EXEC", b"*3\r\n+OK\r\n:1\r\n$1\r\nx\r\n").await;
    assert_eq!(c.must(&prims[0], &["GET", &a1]), s("x"));
    // A transaction on another node's key runs there.
    r.expect("MULTI", b"+OK\r\n").await;
    r.expect(&format!("SET {b} q"), b"+QUEUED\r\n").await;
    r.expect(&format!("GET {b}"), b"+QUEUED\r\n").await;
    r.expect("EXEC", b"*2\r\n+OK\r\n$1\r\nq\r\n").await;
    assert_eq!(c.must(&prims[1], &["GET", &b]), s("q"));
    // A key of another slot: CROSSSLOT, and EXEC aborts; nothing ran.
    r.expect("MULTI", b"+OK\r\n").await;
    r.expect(&format!("SET {a1} y"), b"+QUEUED\r\n").await;
    let reply = r.cmd(&format!("SET {b} z")).await;
    assert!(
        reply.starts_with(b"-CROSSSLOT"),
        "{}",
        support::clients::show(&reply)
    );
    r.expect(
        "EXEC",
        b"-EXECABORT Transaction discarded because of previous errors.\r\n",
    )
    .await;
    r.expect(&format!("MGET {a1} {b}"), b"*2\r\n$1\r\nx\r\n$1\r\nq\r\n")
        .await;
    // DISCARD.
    r.expect("MULTI", b"+OK\r\n").await;
    r.expect(&format!("SET {a1} discarded"), b"+QUEUED\r\n")
        .await;
    r.expect("DISCARD", b"+OK\r\n").await;
    r.expect(&format!("GET {a1}"), b"$1\r\nx\r\n").await;
    // WATCH: a conflicting write makes EXEC return nil.
    let mut other = con(strata.addr).await;
    r.expect(&format!("WATCH {a1}"), b"+OK\r\n").await;
    let _: () = rs(&mut other, &["SET", &a1, "changed"]).await;
    r.expect("MULTI", b"+OK\r\n").await;
    r.expect(&format!("SET {a1} mine"), b"+QUEUED\r\n").await;
    r.expect("EXEC", b"*-1\r\n").await;
    r.expect(&format!("GET {a1}"), b"$7\r\nchanged\r\n").await;
    // Without a conflict it runs.
    r.expect(&format!("WATCH {a1} {a2}"), b"+OK\r\n").await;
    r.expect("MULTI", b"+OK\r\n").await;
    r.expect(&format!("SET {a1} mine"), b"+QUEUED\r\n").await;
    r.expect("EXEC", b"*1\r\n+OK\r\n").await;
    assert_eq!(c.must(&prims[0], &["GET", &a1]), s("mine"));
    // And the connection is an ordinary one again.
    r.expect(&format!("GET {b}"), b"$1\r\nq\r\n").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn blocking_pops_wait_on_the_keys_node_without_blocking_others() {
    let c = cluster::shared().await;
    let (strata, place) = fresh(&c).await;
    let mut pusher = con(strata.addr).await;
    for (p, k) in place.key_per_primary("bl:") {
        let mut waiter = con(strata.addr).await;
        let key = k.clone();
        let popped = tokio::spawn(async move {
            let v: Option<(String, String)> = rs(&mut waiter, &["BLPOP", &key, "10"]).await;
            v
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        while blocking(|| blocked_clients(&p)) == 0 {
            assert!(Instant::now() < deadline, "BLPOP never blocked on {p}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Other requests through strata are not held up meanwhile.
        let t = Instant::now();
        let _: () = rs(&mut pusher, &["SET", "bl:other", "x"]).await;
        assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
        let n: i64 = rs(&mut pusher, &["RPUSH", &k, "pushed"]).await;
        assert_eq!(n, 1);
        let got = within("BLPOP", popped).await.expect("waiter");
        assert_eq!(got, Some((k.clone(), "pushed".into())), "on {p}");
    }
    // A timeout is a nil reply, after the timeout.
    let mut waiter = con(strata.addr).await;
    let t = Instant::now();
    let v: Option<(String, String)> = rs(&mut waiter, &["BLPOP", "bl:empty", "1"]).await;
    assert_eq!(v, None);
    assert!(
        t.elapsed() >= Duration::from_millis(900),
        "{:?}",
        t.elapsed()
    );
    let e = rs_err(&mut waiter, &["BLPOP", "bl:x", "not-a-timeout"]).await;
    assert!(e.contains("timeout is not a float"), "{e}");

    // CLIENT UNBLOCK reaches the node the client is blocked on; a blocked
    // client that hangs up frees its node and pops nothing, also when it
    // pipelined a command behind the blocking one (that command never runs).
    let wait_blocked = async |p: &str, n: u64| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while blocking(|| blocked_clients(p)) != n {
            assert!(Instant::now() < deadline, "{p} never had {n} blocked");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    let mut admin = RawConn::connect(&strata.addr.to_string()).await;
    for (p, k) in place.key_per_primary("ub:") {
        let mut blocked = RawConn::connect(&strata.addr.to_string()).await;
        let id = String::from_utf8(blocked.cmd("CLIENT ID").await).unwrap();
        let id = id.trim_start_matches(':').trim().to_string();
        blocked
            .send(&support::clients::encode_line(&format!("BLPOP {k} 0")))
            .await;
        wait_blocked(&p, 1).await;
        admin
            .expect(&format!("CLIENT UNBLOCK {id}"), b":1\r\n")
            .await;
        assert_eq!(blocked.read_frame().await, b"*-1\r\n");
        let mut pipeline = support::clients::encode_line(&format!("BLPOP {k} 0"));
        pipeline.extend(support::clients::encode_line(&format!("SET {k}:behind 1")));
        blocked.send(&pipeline).await;
        wait_blocked(&p, 1).await;
        drop(blocked);
        wait_blocked(&p, 0).await;
        admin.expect(&format!("RPUSH {k} kept"), b":1\r\n").await;
        admin.expect(&format!("LLEN {k}"), b":1\r\n").await;
        admin.expect(&format!("EXISTS {k}:behind"), b":0\r\n").await;
    }
}
