//! Real clients through strata: every data type with redis-rs, binary-safe
//! and large values.
//!
//! Most checks are differential: the same command goes to strata and to a
//! second, independent redis-server (the "reference"), and the two replies
//! must be identical, as well as equal to the value the test expects. That
//! pins strata to Redis's exact replies, errors included.
//!
//! The other client suites: `clients_pipeline.rs` (pipelines,
//! transactions), `clients_conn.rs` (HELLO, local commands, INFO,
//! metrics), `clients_pubsub.rs` (pub/sub, MONITOR), `clients_blocking.rs`
//! and `clients_cli.rs` (redis-cli).
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::{BTreeSet, HashSet};
use std::fmt::Debug;

use redis::aio::MultiplexedConnection;
use redis::{cmd, FromRedisValue, Value};
use support::clients::{connect_rs, show, Env};
use support::RedisServer;

/// strata (in front of its own redis-server) and an independent reference
/// redis-server that sees the same commands directly.
struct Twin {
    env: Env,
    _reference: RedisServer,
    s: MultiplexedConnection,
    r: MultiplexedConnection,
}

impl Twin {
    async fn start() -> Twin {
        let env = Env::start().await;
        let reference = RedisServer::start();
        let s = env.con().await;
        let r = connect_rs(&reference.url()).await;
        Twin {
            env,
            _reference: reference,
            s,
            r,
        }
    }

    /// Runs `c` on both; the replies (or errors) must be identical. Returns strata's.
    async fn run(&mut self, c: &redis::Cmd) -> redis::RedisResult<Value> {
        let s: redis::RedisResult<Value> = c.query_async(&mut self.s).await;
        let r: redis::RedisResult<Value> = c.query_async(&mut self.r).await;
        assert_eq!(
            format!("{s:?}"),
            format!("{r:?}"),
            "strata and redis disagree on {:?}",
            show_cmd(c)
        );
        s
    }

    /// Runs `c` on both, asserts identical replies, and that strata's reply is `expected`.
    async fn check<T: FromRedisValue + PartialEq + Debug>(&mut self, c: &redis::Cmd, expected: T) {
        let v = self
            .run(c)
            .await
            .unwrap_or_else(|e| panic!("{:?} failed: {e}", show_cmd(c)));
        let got: T =
            redis::from_redis_value(v).unwrap_or_else(|e| panic!("{:?}: {e}", show_cmd(c)));
        assert_eq!(got, expected, "{:?}", show_cmd(c));
    }

    /// Runs `c` on both and asserts both fail with the same error, whose text starts with `prefix`.
    async fn check_err(&mut self, c: &redis::Cmd, prefix: &str) {
        match self.run(c).await {
            Ok(v) => panic!("{:?} should fail, got {v:?}", show_cmd(c)),
            Err(e) => {
                let text = format!("{}: {}", e.code().unwrap_or("?"), e.detail().unwrap_or(""));
                assert!(text.starts_with(prefix), "{:?}: {text}", show_cmd(c));
            }
        }
    }
}

/// XREAD/XREADGROUP in RESP2: [(stream, [(id, [field, value, …])])].
type StreamsReply = Vec<(String, Vec<(String, Vec<String>)>)>;

fn show_cmd(c: &redis::Cmd) -> String {
    show(&c.get_packed_command())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strings() {
    let mut t = Twin::start().await;
    t.check(
        cmd("SET").arg("s").arg("v").arg("EX").arg(100),
        "OK".to_string(),
    )
    .await;
    t.check(cmd("SET").arg("s").arg("v2").arg("NX"), None::<String>)
        .await;
    t.check(
        cmd("SET").arg("n").arg("v").arg("NX"),
        Some("OK".to_string()),
    )
    .await;
    t.check(cmd("SET").arg("s").arg("v3").arg("GET"), "v".to_string())
        .await;
    t.check(cmd("GET").arg("s"), "v3".to_string()).await;
    t.check(cmd("GETEX").arg("s").arg("EX").arg(50), "v3".to_string())
        .await;
    let ttl: i64 = cmd("TTL").arg("s").query_async(&mut t.s).await.unwrap();
    assert!((45..=50).contains(&ttl), "TTL after GETEX EX 50: {ttl}");
    t.check(cmd("GETEX").arg("s").arg("PERSIST"), "v3".to_string())
        .await;
    t.check(cmd("TTL").arg("s"), -1i64).await;
    t.check(cmd("INCR").arg("c"), 1i64).await;
    t.check(cmd("INCRBY").arg("c").arg(41), 42i64).await;
    t.check(cmd("DECR").arg("c"), 41i64).await;
    t.check(cmd("INCRBYFLOAT").arg("f").arg("1.5"), "1.5".to_string())
        .await;
    t.check(cmd("INCRBYFLOAT").arg("f").arg("0.25"), "1.75".to_string())
        .await;
    t.check_err(cmd("INCR").arg("s"), "ERR: value is not an integer")
        .await;
    t.check(cmd("APPEND").arg("a").arg("hello"), 5i64).await;
    t.check(cmd("APPEND").arg("a").arg(" world"), 11i64).await;
    t.check(cmd("GETRANGE").arg("a").arg(0).arg(4), "hello".to_string())
        .await;
    t.check(
        cmd("GETRANGE").arg("a").arg(-5).arg(-1),
        "world".to_string(),
    )
    .await;
    t.check(cmd("STRLEN").arg("a"), 11i64).await;
    t.check(
        cmd("MSET")
            .arg("m1")
            .arg("1")
            .arg("m2")
            .arg("2")
            .arg("m3")
            .arg("3"),
        "OK".to_string(),
    )
    .await;
    t.check(cmd("MGET").arg("m1").arg("m2").arg("m3"), vec![1i64, 2, 3])
        .await;
    t.check(cmd("MSETNX").arg("m1").arg("x").arg("m9").arg("y"), 0i64)
        .await;
    t.check(cmd("GETDEL").arg("m1"), Some("1".to_string()))
        .await;
    t.check(cmd("EXISTS").arg("m1"), 0i64).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists() {
    let mut t = Twin::start().await;
    t.check(cmd("LPUSH").arg("l").arg("a").arg("b").arg("c"), 3i64)
        .await;
    t.check(cmd("RPUSH").arg("l").arg("d").arg("e"), 5i64).await;
    t.check(
        cmd("LRANGE").arg("l").arg(0).arg(-1),
        ["c", "b", "a", "d", "e"]
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>(),
    )
    .await;
    t.check(
        cmd("LPOP").arg("l").arg(2),
        vec!["c".to_string(), "b".to_string()],
    )
    .await;
    t.check(
        cmd("LMOVE").arg("l").arg("l2").arg("RIGHT").arg("LEFT"),
        "e".to_string(),
    )
    .await;
    t.check(
        cmd("LRANGE").arg("l2").arg(0).arg(-1),
        vec!["e".to_string()],
    )
    .await;
    t.check(cmd("RPUSH").arg("l").arg("a").arg("x").arg("a"), 5i64)
        .await;
    // l = a d a x a
    t.check(cmd("LPOS").arg("l").arg("d"), Some(1i64)).await;
    t.check(cmd("LPOS").arg("l").arg("zz"), None::<i64>).await;
    t.check(
        cmd("LPOS").arg("l").arg("a").arg("COUNT").arg(0),
        vec![0i64, 2, 4],
    )
    .await;
    t.check(
        cmd("LPOS").arg("l").arg("a").arg("RANK").arg(-1),
        Some(4i64),
    )
    .await;
    t.check(cmd("LLEN").arg("l"), 5i64).await;
    t.check(cmd("LINDEX").arg("l").arg(3), "x".to_string())
        .await;
    t.check_err(cmd("LPUSH").arg("l"), "ERR: wrong number of arguments")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hashes() {
    let mut t = Twin::start().await;
    t.check(
        cmd("HSET")
            .arg("h")
            .arg("f1")
            .arg("v1")
            .arg("f2")
            .arg("v2")
            .arg("f3")
            .arg("v3"),
        3i64,
    )
    .await;
    t.check(cmd("HSET").arg("h").arg("f1").arg("v1b"), 0i64)
        .await;
    t.check(
        cmd("HGETALL").arg("h"),
        vec![
            ("f1".to_string(), "v1b".to_string()),
            ("f2".to_string(), "v2".to_string()),
            ("f3".to_string(), "v3".to_string()),
        ],
    )
    .await;
    t.check(cmd("HINCRBY").arg("h").arg("n").arg(5), 5i64).await;
    t.check(cmd("HINCRBY").arg("h").arg("n").arg(-7), -2i64)
        .await;
    t.check_err(
        cmd("HINCRBY").arg("h").arg("f2").arg(1),
        "ERR: hash value is not an integer",
    )
    .await;
    t.check(
        cmd("HMGET").arg("h").arg("f2").arg("f3"),
        vec!["v2".to_string(), "v3".to_string()],
    )
    .await;
    t.check(cmd("HLEN").arg("h"), 4i64).await;
    // Small hash: one HSCAN call returns everything, cursor 0; identical on both.
    t.run(cmd("HSCAN").arg("h").arg(0)).await.unwrap();
    // A large hash (over hash-max-listpack-entries 512): iterate the cursor through strata.
    let mut fill = cmd("HSET");
    fill.arg("big");
    for i in 0..600 {
        fill.arg(format!("field:{i}")).arg(i);
    }
    t.check(&fill, 600i64).await;
    let mut seen = BTreeSet::new();
    let mut cursor = 0u64;
    let mut calls = 0;
    loop {
        let (next, items): (u64, Vec<(String, i64)>) = cmd("HSCAN")
            .arg("big")
            .arg(cursor)
            .arg("COUNT")
            .arg(50)
            .query_async(&mut t.s)
            .await
            .unwrap();
        for (f, v) in items {
            assert_eq!(f, format!("field:{v}"));
            seen.insert(v);
        }
        calls += 1;
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    assert!(
        calls > 1,
        "HSCAN of 600 fields (hashtable encoding) with COUNT 50 should take several calls"
    );
    assert_eq!(seen, (0..600).collect::<BTreeSet<i64>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sets() {
    let mut t = Twin::start().await;
    t.check(
        cmd("SADD").arg("s1").arg("a").arg("b").arg("c").arg("d"),
        4i64,
    )
    .await;
    t.check(
        cmd("SADD").arg("s2").arg("c").arg("d").arg("e").arg("c"),
        3i64,
    )
    .await;
    let inter: HashSet<String> = cmd("SINTER")
        .arg("s1")
        .arg("s2")
        .query_async(&mut t.s)
        .await
        .unwrap();
    assert_eq!(inter, HashSet::from(["c".to_string(), "d".to_string()]));
    let members: HashSet<String> = cmd("SMEMBERS")
        .arg("s1")
        .query_async(&mut t.s)
        .await
        .unwrap();
    assert_eq!(
        members,
        ["a", "b", "c", "d"].iter().map(|s| s.to_string()).collect()
    );
    t.check(cmd("SISMEMBER").arg("s1").arg("a"), 1i64).await;
    t.check(cmd("SMISMEMBER").arg("s1").arg("a").arg("z"), vec![1i64, 0])
        .await;
    t.check(cmd("SCARD").arg("s2"), 3i64).await;
    t.check(cmd("SINTERCARD").arg(2).arg("s1").arg("s2"), 2i64)
        .await;
    t.check(cmd("SREM").arg("s1").arg("a").arg("zz"), 1i64)
        .await;
    let mut fill = cmd("SADD");
    fill.arg("big");
    for i in 0..500 {
        fill.arg(format!("m{i}"));
    }
    t.check(&fill, 500i64).await;
    let mut seen = HashSet::new();
    let mut cursor = 0u64;
    loop {
        let (next, items): (u64, Vec<String>) = cmd("SSCAN")
            .arg("big")
            .arg(cursor)
            .arg("COUNT")
            .arg(100)
            .query_async(&mut t.s)
            .await
            .unwrap();
        seen.extend(items);
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    assert_eq!(
        seen,
        (0..500).map(|i| format!("m{i}")).collect::<HashSet<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sorted_sets() {
    let mut t = Twin::start().await;
    t.check(
        cmd("ZADD")
            .arg("z")
            .arg(1)
            .arg("a")
            .arg(2)
            .arg("b")
            .arg(3)
            .arg("c")
            .arg(2.5)
            .arg("d"),
        4i64,
    )
    .await;
    t.check(
        cmd("ZRANGE").arg("z").arg(0).arg(-1).arg("WITHSCORES"),
        vec![
            ("a".to_string(), 1.0f64),
            ("b".to_string(), 2.0),
            ("d".to_string(), 2.5),
            ("c".to_string(), 3.0),
        ],
    )
    .await;
    t.check(
        cmd("ZRANGEBYSCORE").arg("z").arg(2).arg(3),
        vec!["b".to_string(), "d".to_string(), "c".to_string()],
    )
    .await;
    t.check(
        cmd("ZRANGEBYSCORE")
            .arg("z")
            .arg("(2")
            .arg("+inf")
            .arg("LIMIT")
            .arg(0)
            .arg(1),
        vec!["d".to_string()],
    )
    .await;
    t.check(cmd("ZSCORE").arg("z").arg("d"), Some(2.5f64)).await;
    t.check(cmd("ZSCORE").arg("z").arg("nope"), None::<f64>)
        .await;
    t.check(cmd("ZINCRBY").arg("z").arg(0.5).arg("a"), 1.5f64)
        .await;
    t.check(cmd("ZRANK").arg("z").arg("c"), Some(3i64)).await;
    t.check(cmd("ZPOPMIN").arg("z"), vec![("a".to_string(), 1.5f64)])
        .await;
    t.check(
        cmd("ZPOPMIN").arg("z").arg(2),
        vec![("b".to_string(), 2.0f64), ("d".to_string(), 2.5)],
    )
    .await;
    t.check(cmd("ZCARD").arg("z"), 1i64).await;
    t.check_err(
        cmd("ZADD").arg("z").arg("notanumber").arg("x"),
        "ERR: value is not a valid float",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams() {
    let mut t = Twin::start().await;
    t.check(
        cmd("XADD").arg("st").arg("1-1").arg("f").arg("v1"),
        "1-1".to_string(),
    )
    .await;
    t.check(
        cmd("XADD").arg("st").arg("2-1").arg("f").arg("v2"),
        "2-1".to_string(),
    )
    .await;
    t.check(
        cmd("XADD")
            .arg("st")
            .arg("3-1")
            .arg("f")
            .arg("v3")
            .arg("g")
            .arg("w"),
        "3-1".to_string(),
    )
    .await;
    t.check_err(
        cmd("XADD").arg("st").arg("1-0").arg("f").arg("v"),
        "ERR: The ID specified in XADD is equal or smaller",
    )
    .await;
    let range = t
        .run(cmd("XRANGE").arg("st").arg("-").arg("+"))
        .await
        .unwrap();
    let entries: Vec<(String, Vec<String>)> = redis::from_redis_value(range).unwrap();
    assert_eq!(
        entries,
        vec![
            ("1-1".to_string(), vec!["f".to_string(), "v1".to_string()]),
            ("2-1".to_string(), vec!["f".to_string(), "v2".to_string()]),
            (
                "3-1".to_string(),
                vec![
                    "f".to_string(),
                    "v3".to_string(),
                    "g".to_string(),
                    "w".to_string()
                ]
            ),
        ]
    );
    // XREAD without BLOCK stays on the shared connection.
    let read = t
        .run(
            cmd("XREAD")
                .arg("COUNT")
                .arg(2)
                .arg("STREAMS")
                .arg("st")
                .arg("1-1"),
        )
        .await
        .unwrap();
    let read: StreamsReply = redis::from_redis_value(read).unwrap();
    assert_eq!(read.len(), 1);
    assert_eq!(read[0].0, "st");
    assert_eq!(
        read[0].1.iter().map(|e| e.0.as_str()).collect::<Vec<_>>(),
        ["2-1", "3-1"]
    );
    t.check(
        cmd("XGROUP").arg("CREATE").arg("st").arg("g").arg(0),
        "OK".to_string(),
    )
    .await;
    t.check_err(
        cmd("XGROUP").arg("CREATE").arg("st").arg("g").arg(0),
        "BUSYGROUP",
    )
    .await;
    let group = t
        .run(
            cmd("XREADGROUP")
                .arg("GROUP")
                .arg("g")
                .arg("c1")
                .arg("COUNT")
                .arg(10)
                .arg("STREAMS")
                .arg("st")
                .arg(">"),
        )
        .await
        .unwrap();
    let group: StreamsReply = redis::from_redis_value(group).unwrap();
    assert_eq!(group[0].1.len(), 3);
    t.check(
        cmd("XACK")
            .arg("st")
            .arg("g")
            .arg("1-1")
            .arg("2-1")
            .arg("9-9"),
        2i64,
    )
    .await;
    let pending = t.run(cmd("XPENDING").arg("st").arg("g")).await.unwrap();
    let (count, first, last, _consumers): (i64, String, String, Vec<(String, String)>) =
        redis::from_redis_value(pending).unwrap();
    assert_eq!((count, first.as_str(), last.as_str()), (1, "3-1", "3-1"));
    t.check(cmd("XLEN").arg("st"), 3i64).await;
    // An auto-generated id through strata (not comparable with the reference).
    let id: String = cmd("XADD")
        .arg("st")
        .arg("*")
        .arg("f")
        .arg("auto")
        .query_async(&mut t.s)
        .await
        .unwrap();
    assert!(
        id.contains('-') && id.split('-').all(|p| p.parse::<u64>().is_ok()),
        "{id}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hyperloglog_geo_bitmaps() {
    let mut t = Twin::start().await;
    t.check(
        cmd("PFADD").arg("hll").arg("a").arg("b").arg("c").arg("d"),
        1i64,
    )
    .await;
    t.check(cmd("PFADD").arg("hll").arg("a"), 0i64).await;
    t.check(cmd("PFCOUNT").arg("hll"), 4i64).await;
    t.check(cmd("PFADD").arg("hll2").arg("e").arg("a"), 1i64)
        .await;
    t.check(cmd("PFCOUNT").arg("hll").arg("hll2"), 5i64).await;
    t.check(
        cmd("PFMERGE").arg("hll3").arg("hll").arg("hll2"),
        "OK".to_string(),
    )
    .await;
    t.check(cmd("PFCOUNT").arg("hll3"), 5i64).await;

    t.check(
        cmd("GEOADD")
            .arg("g")
            .arg(13.361389)
            .arg(38.115556)
            .arg("Palermo")
            .arg(15.087269)
            .arg(37.502669)
            .arg("Catania"),
        2i64,
    )
    .await;
    t.check(
        cmd("GEODIST")
            .arg("g")
            .arg("Palermo")
            .arg("Catania")
            .arg("km"),
        "166.2742".to_string(),
    )
    .await;
    t.check(
        cmd("GEOSEARCH")
            .arg("g")
            .arg("FROMLONLAT")
            .arg(15)
            .arg(37)
            .arg("BYRADIUS")
            .arg(200)
            .arg("km")
            .arg("ASC"),
        vec!["Catania".to_string(), "Palermo".to_string()],
    )
    .await;
    t.check(
        cmd("GEOSEARCH")
            .arg("g")
            .arg("FROMMEMBER")
            .arg("Palermo")
            .arg("BYBOX")
            .arg(400)
            .arg("400")
            .arg("km")
            .arg("ASC")
            .arg("WITHDIST"),
        vec![
            ("Palermo".to_string(), "0.0000".to_string()),
            ("Catania".to_string(), "166.2742".to_string()),
        ],
    )
    .await;
    t.run(cmd("GEOPOS").arg("g").arg("Palermo").arg("Catania"))
        .await
        .unwrap();

    t.check(cmd("SETBIT").arg("b").arg(7).arg(1), 0i64).await;
    t.check(cmd("SETBIT").arg("b").arg(7).arg(0), 1i64).await;
    t.check(cmd("SETBIT").arg("b").arg(100).arg(1), 0i64).await;
    t.check(cmd("GETBIT").arg("b").arg(100), 1i64).await;
    t.check(cmd("BITCOUNT").arg("b"), 1i64).await;
    t.check(cmd("SET").arg("fb").arg("foobar"), "OK".to_string())
        .await;
    t.check(cmd("BITCOUNT").arg("fb"), 26i64).await;
    t.check(cmd("BITCOUNT").arg("fb").arg(1).arg(1), 6i64).await;
    t.check(cmd("BITCOUNT").arg("fb").arg(5).arg(30).arg("BIT"), 17i64)
        .await;
    t.check(cmd("BITPOS").arg("fb").arg(1), 1i64).await;
    t.check(
        cmd("BITFIELD")
            .arg("bf")
            .arg("SET")
            .arg("u8")
            .arg(0)
            .arg(255)
            .arg("GET")
            .arg("u8")
            .arg(0)
            .arg("OVERFLOW")
            .arg("SAT")
            .arg("INCRBY")
            .arg("u8")
            .arg(0)
            .arg(10)
            .arg("INCRBY")
            .arg("i5")
            .arg(100)
            .arg(1),
        vec![0i64, 255, 255, 1],
    )
    .await;
    t.check(
        cmd("BITFIELD_RO").arg("bf").arg("GET").arg("u8").arg(0),
        vec![255i64],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys() {
    let mut t = Twin::start().await;
    t.check(cmd("SET").arg("k1").arg("v"), "OK".to_string())
        .await;
    t.check(cmd("RPUSH").arg("k2").arg("v"), 1i64).await;
    t.check(cmd("HSET").arg("k3").arg("f").arg("v"), 1i64).await;
    t.check(cmd("TYPE").arg("k1"), "string".to_string()).await;
    t.check(cmd("TYPE").arg("k2"), "list".to_string()).await;
    t.check(cmd("TYPE").arg("k3"), "hash".to_string()).await;
    t.check(cmd("TYPE").arg("nope"), "none".to_string()).await;
    t.check(cmd("EXPIRE").arg("k1").arg(100), 1i64).await;
    t.check(cmd("EXPIRE").arg("nope").arg(100), 0i64).await;
    let ttl: i64 = cmd("TTL").arg("k1").query_async(&mut t.s).await.unwrap();
    assert!((99..=100).contains(&ttl), "TTL {ttl}");
    let pttl: i64 = cmd("PTTL").arg("k1").query_async(&mut t.s).await.unwrap();
    assert!((90_000..=100_000).contains(&pttl), "PTTL {pttl}");
    t.check(cmd("TTL").arg("k2"), -1i64).await;
    t.check(cmd("TTL").arg("nope"), -2i64).await;
    t.check(cmd("PERSIST").arg("k1"), 1i64).await;
    t.check(
        cmd("EXISTS").arg("k1").arg("k2").arg("nope").arg("k1"),
        3i64,
    )
    .await;
    t.check(cmd("RENAME").arg("k1").arg("k1b"), "OK".to_string())
        .await;
    t.check_err(cmd("RENAME").arg("nope").arg("x"), "ERR: no such key")
        .await;
    t.check(cmd("GET").arg("k1b"), "v".to_string()).await;
    t.check(cmd("DEL").arg("k1b").arg("k2").arg("nope"), 2i64)
        .await;
    t.check(cmd("EXISTS").arg("k1b"), 0i64).await;
    // SCAN iterates every key through strata.
    let mut mset = cmd("MSET");
    for i in 0..200 {
        mset.arg(format!("scan:{i}")).arg(i);
    }
    t.check(&mset, "OK".to_string()).await;
    let mut seen = HashSet::new();
    let mut cursor = 0u64;
    loop {
        let (next, keys): (u64, Vec<String>) = cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg("scan:*")
            .arg("COUNT")
            .arg(50)
            .query_async(&mut t.s)
            .await
            .unwrap();
        seen.extend(keys);
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    assert_eq!(
        seen,
        (0..200)
            .map(|i| format!("scan:{i}"))
            .collect::<HashSet<_>>()
    );
    t.check(&cmd("DBSIZE"), 201i64).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripting() {
    let mut t = Twin::start().await;
    let script = "return {KEYS[1], ARGV[1], redis.call('INCRBY', KEYS[1], ARGV[1])}";
    t.check(
        cmd("EVAL").arg(script).arg(1).arg("counter").arg(5),
        ("counter".to_string(), "5".to_string(), 5i64),
    )
    .await;
    let body = "return redis.call('GET', KEYS[1])";
    let sha_v = t.run(cmd("SCRIPT").arg("LOAD").arg(body)).await.unwrap();
    let sha: String = redis::from_redis_value(sha_v).unwrap();
    assert_eq!(sha.len(), 40, "{sha}");
    t.check(
        cmd("EVALSHA").arg(&sha).arg(1).arg("counter"),
        "5".to_string(),
    )
    .await;
    t.check(
        cmd("SCRIPT")
            .arg("EXISTS")
            .arg(&sha)
            .arg("0000000000000000000000000000000000000000"),
        vec![1i64, 0],
    )
    .await;
    t.check_err(
        cmd("EVALSHA")
            .arg("0000000000000000000000000000000000000000")
            .arg(0),
        "NOSCRIPT",
    )
    .await;
    t.check_err(cmd("EVAL").arg("return redis.call('NOPE')").arg(0), "ERR")
        .await;
    t.check(
        cmd("EVAL").arg("return redis.status_reply('FINE')").arg(0),
        "FINE".to_string(),
    )
    .await;
    t.check(
        cmd("EVAL_RO").arg(body).arg(1).arg("counter"),
        "5".to_string(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_safe_and_large_values() {
    let mut t = Twin::start().await;
    let all: Vec<u8> = (0..=255u8).collect();
    let mut key = b"bin\r\n\0key".to_vec();
    key.extend_from_slice(&all);
    t.check(cmd("SET").arg(&key[..]).arg(&all[..]), "OK".to_string())
        .await;
    t.check(cmd("GET").arg(&key[..]), all.clone()).await;
    t.check(cmd("STRLEN").arg(&key[..]), 256i64).await;
    t.check(
        cmd("GETRANGE").arg(&key[..]).arg(10).arg(15),
        all[10..=15].to_vec(),
    )
    .await;
    t.check(cmd("HSET").arg("binh").arg(&all[..]).arg(&all[..]), 1i64)
        .await;
    t.check(cmd("HGET").arg("binh").arg(&all[..]), all.clone())
        .await;
    // 1 MiB, every byte value, not a repeating short period.
    let big: Vec<u8> = (0..1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let _: () = cmd("SET")
        .arg("big")
        .arg(&big[..])
        .query_async(&mut t.s)
        .await
        .unwrap();
    let back: Vec<u8> = cmd("GET").arg("big").query_async(&mut t.s).await.unwrap();
    assert!(
        back == big,
        "1 MiB value came back different (len {})",
        back.len()
    );
    let direct: Vec<u8> = cmd("GET")
        .arg("big")
        .query_async(&mut t.env.backend_con().await)
        .await
        .unwrap();
    assert!(
        direct == big,
        "1 MiB value stored differently in the backend"
    );
    let n: i64 = cmd("APPEND")
        .arg("big")
        .arg(&all[..])
        .query_async(&mut t.s)
        .await
        .unwrap();
    assert_eq!(n, 1024 * 1024 + 256);
    // Several large values in one pipeline, interleaved with small ones.
    let mut p = redis::pipe();
    for i in 0..4 {
        p.cmd("SET").arg(format!("big{i}")).arg(&big[..]).ignore();
        p.cmd("INCR").arg("ctr");
        p.cmd("GET").arg(format!("big{i}"));
    }
    let out: Vec<Value> = p.query_async(&mut t.s).await.unwrap();
    for (i, v) in out.chunks(2).enumerate() {
        assert_eq!(v[0], Value::Int(i as i64 + 1));
        assert!(v[1] == Value::BulkString(big.clone()), "big{i} differs");
    }
}

/// Nil inside an array, and nil arrays: RESP2's `$-1` and `*-1`, which are
/// not valid RESP3, so a RESP3-only framer rejects them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// Regression guard; before 007b4ac: RESP2 null bulk ($-1) nested in an array, and a top-level
// RESP2 null array (*-1), are rejected as 'malformed reply from backend' (protocol/reply.rs
// frame_len uses a RESP3-only decoder); the shared backend connection is dropped and every client
// on it gets an error
async fn resp2_nil_in_and_as_arrays() {
    let mut t = Twin::start().await;
    t.check(
        cmd("MSET").arg("m1").arg("1").arg("m3").arg("3"),
        "OK".to_string(),
    )
    .await;
    t.check(
        cmd("MGET").arg("m1").arg("nope").arg("m3"),
        vec![Some(1i64), None, Some(3)],
    )
    .await;
    t.check(cmd("HSET").arg("h").arg("f").arg("v"), 1i64).await;
    t.check(
        cmd("HMGET").arg("h").arg("f").arg("zz"),
        vec![Some("v".to_string()), None],
    )
    .await;
    t.check(cmd("LPOP").arg("nolist").arg(2), None::<Vec<String>>)
        .await;
    t.check(
        cmd("XADD").arg("st").arg("1-1").arg("f").arg("v"),
        "1-1".to_string(),
    )
    .await;
    t.check(
        cmd("XREAD").arg("STREAMS").arg("st").arg("1-1"),
        None::<Vec<String>>,
    )
    .await;
    t.check(
        cmd("GEOADD")
            .arg("g")
            .arg(13.361389)
            .arg(38.115556)
            .arg("Palermo"),
        1i64,
    )
    .await;
    let pos = t
        .run(cmd("GEOPOS").arg("g").arg("nope").arg("Palermo"))
        .await
        .unwrap();
    assert!(
        matches!(&pos, Value::Array(a) if a[0] == Value::Nil),
        "{pos:?}"
    );
    t.check(
        cmd("BITFIELD")
            .arg("bf")
            .arg("OVERFLOW")
            .arg("FAIL")
            .arg("INCRBY")
            .arg("u2")
            .arg(0)
            .arg(4),
        vec![None::<i64>],
    )
    .await;
    // The same as raw bytes, and the connection survives.
    let mut raw = t.env.raw().await;
    raw.expect("MGET m1 nope", b"*2\r\n$1\r\n1\r\n$-1\r\n")
        .await;
    raw.expect("LPOP nolist 2", b"*-1\r\n").await;
    raw.expect("GET m1", b"$1\r\n1\r\n").await;
    // Other clients are not affected by one client's nil reply.
    let mut other = t.env.con().await;
    let v: i64 = cmd("GET").arg("m3").query_async(&mut other).await.unwrap();
    assert_eq!(v, 3);
}
