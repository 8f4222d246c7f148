//! Value transforms through strata, against a real redis-server: round trips
//! with redis-rs (RESP2 and RESP3) for every command that carries values
//! (strings, hashes, lists with blocking pops), the stored form seen directly
//! on the backend, refusals, MULTI. The stored form under rules that compress
//! and encrypt, tampering, copying, a value that does not open inside a
//! pipeline, plain (pre-rule) values, key rotation with `PROXY REWRAP` and the
//! config checks are in `tests/transforms_rotation.rs`.
//!
//! Keys come from files in a temp dir per test (`file = …` key sources), so
//! tests run in parallel without touching the process environment; the
//! environment, the rules, the command helpers and the envelope readers are
//! in `support::transform_env`.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::Value;
use support::clients::{metric, show};
use support::transform_env::{
    assert_sealed, err, flags, pairs, q, raw_get, secret, start, text, w, MAGIC,
};

async fn wait_blocked(backend: &mut MultiplexedConnection, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let info: String = w(backend, "INFO clients").await;
        let blocked: usize = info
            .lines()
            .find_map(|l| l.strip_prefix("blocked_clients:"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        if blocked >= n {
            return;
        }
        assert!(Instant::now() < deadline, "{blocked} of {n} blocked");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strings_round_trip_and_are_sealed_on_the_backend() {
    let env = start("k1", &["k1", "k2"]).await;
    let mut b = env.backend().await;
    for (mut con, p) in env.both().await {
        let k = |name: &str| format!("s:{p}:{name}");
        // SET and GET.
        let _: () = q(&mut con, &[b"SET", k("a").as_bytes(), secret(1).as_bytes()]).await;
        let got: String = q(&mut con, &[b"GET", k("a").as_bytes()]).await;
        assert_eq!(got, secret(1));
        assert_sealed(&raw_get(&mut b, &k("a")).await, &secret(1), "SET");
        // SET with options, and SET … GET returns the old plaintext.
        let old: String = w(
            &mut con,
            &format!("SET {} {} EX 100 GET", k("a"), secret(2)),
        )
        .await;
        assert_eq!(old, secret(1));
        let ttl: i64 = w(&mut b, &format!("TTL {}", k("a"))).await;
        assert!(ttl > 0 && ttl <= 100, "{ttl}");
        let nx: Option<String> = w(&mut con, &format!("SET {} x NX", k("a"))).await;
        assert_eq!(nx, None);
        let old: Option<String> = w(
            &mut con,
            &format!("SET {} {} XX KEEPTTL GET", k("a"), secret(3)),
        )
        .await;
        assert_eq!(old.as_deref(), Some(secret(2).as_str()));
        let none: Option<String> =
            w(&mut con, &format!("SET {} {} GET", k("new"), secret(4))).await;
        assert_eq!(none, None);
        // GETSET, GETEX, GETDEL.
        let old: String = w(&mut con, &format!("GETSET {} {}", k("a"), secret(5))).await;
        assert_eq!(old, secret(3));
        let v: String = w(&mut con, &format!("GETEX {} EX 50", k("a"))).await;
        assert_eq!(v, secret(5));
        let ttl: i64 = w(&mut b, &format!("TTL {}", k("a"))).await;
        assert!(ttl > 0 && ttl <= 50, "{ttl}");
        let v: String = w(&mut con, &format!("GETEX {} PERSIST", k("a"))).await;
        assert_eq!(v, secret(5));
        let v: String = w(&mut con, &format!("GETDEL {}", k("a"))).await;
        assert_eq!(v, secret(5));
        let gone: Option<String> = w(&mut con, &format!("GET {}", k("a"))).await;
        assert_eq!(gone, None);
        // MSET and MGET across rules, keys without a rule, and missing keys.
        let _: () = w(
            &mut con,
            &format!(
                "MSET {} {} plain:{p}:1 {} c:{p}:m {} e:{p}:m {}",
                k("m1"),
                secret(6),
                secret(7),
                secret(8).repeat(4),
                secret(9)
            ),
        )
        .await;
        let got: Vec<Option<String>> = w(
            &mut con,
            &format!(
                "MGET {} plain:{p}:1 {} c:{p}:m e:{p}:m",
                k("m1"),
                k("missing")
            ),
        )
        .await;
        assert_eq!(
            got,
            vec![
                Some(secret(6)),
                Some(secret(7)),
                None,
                Some(secret(8).repeat(4)),
                Some(secret(9))
            ]
        );
        assert_sealed(&raw_get(&mut b, &k("m1")).await, &secret(6), "MSET");
        assert_eq!(
            raw_get(&mut b, &format!("plain:{p}:1")).await,
            secret(7).as_bytes()
        );
        assert_eq!(
            flags(&raw_get(&mut b, &format!("c:{p}:m")).await, "MSET c:"),
            0x01,
            "MSET c:"
        );
        assert_sealed(
            &raw_get(&mut b, &format!("e:{p}:m")).await,
            &secret(9),
            "MSET e:",
        );
        // MSETNX, SETNX, SETEX, PSETEX.
        let n: i64 = w(
            &mut con,
            &format!(
                "MSETNX {} {} {} {}",
                k("n1"),
                secret(10),
                k("n2"),
                secret(11)
            ),
        )
        .await;
        assert_eq!(n, 1);
        let n: i64 = w(&mut con, &format!("MSETNX {} x {} y", k("n1"), k("n3"))).await;
        assert_eq!(n, 0);
        let v: Vec<String> = w(&mut con, &format!("MGET {} {}", k("n1"), k("n2"))).await;
        assert_eq!(v, vec![secret(10), secret(11)]);
        assert_sealed(&raw_get(&mut b, &k("n2")).await, &secret(11), "MSETNX");
        let n: i64 = w(&mut con, &format!("SETNX {} {}", k("nx"), secret(12))).await;
        assert_eq!(n, 1);
        let n: i64 = w(&mut con, &format!("SETNX {} {}", k("nx"), secret(13))).await;
        assert_eq!(n, 0);
        let _: () = w(&mut con, &format!("SETEX {} 100 {}", k("ex"), secret(14))).await;
        let _: () = w(
            &mut con,
            &format!("PSETEX {} 100000 {}", k("px"), secret(15)),
        )
        .await;
        for (key, n) in [("nx", 12), ("ex", 14), ("px", 15)] {
            let v: String = w(&mut con, &format!("GET {}", k(key))).await;
            assert_eq!(v, secret(n), "{key}");
            assert_sealed(&raw_get(&mut b, &k(key)).await, &secret(n), key);
        }
        let pttl: i64 = w(&mut b, &format!("PTTL {}", k("px"))).await;
        assert!(pttl > 0, "{pttl}");
        // STRLEN is emulated: the plaintext's length, not the envelope's.
        let n: i64 = w(&mut con, &format!("STRLEN {}", k("ex"))).await;
        assert_eq!(n, secret(14).len() as i64);
        let stored: i64 = w(&mut b, &format!("STRLEN {}", k("ex"))).await;
        assert!(stored > n, "stored {stored}");
        let n: i64 = w(&mut con, &format!("STRLEN {}", k("missing"))).await;
        assert_eq!(n, 0);
        // Binary values, and a value that starts with the envelope's magic.
        let mut binary = MAGIC.to_vec();
        binary.extend((0..=255u8).cycle().take(3000));
        for key in [k("bin"), format!("c:{p}:bin"), format!("e:{p}:bin")] {
            let _: () = q(&mut con, &[b"SET", key.as_bytes(), &binary]).await;
            let got: Vec<u8> = q(&mut con, &[b"GET", key.as_bytes()]).await;
            assert_eq!(got, binary, "{key}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hashes_round_trip_in_resp2_and_resp3() {
    let env = start("k1", &["k1", "k2"]).await;
    let mut b = env.backend().await;
    for (mut con, p) in env.both().await {
        let resp3 = p == "p3";
        let h = format!("s:{p}:h");
        let n: i64 = w(
            &mut con,
            &format!("HSET {h} f1 {} f2 {}", secret(1), secret(2)),
        )
        .await;
        assert_eq!(n, 2);
        let _: () = w(&mut con, &format!("HMSET {h} f3 {}", secret(3))).await;
        let n: i64 = w(&mut con, &format!("HSETNX {h} f4 {}", secret(4))).await;
        assert_eq!(n, 1);
        let n: i64 = w(&mut con, &format!("HSETNX {h} f4 {}", secret(5))).await;
        assert_eq!(n, 0);
        let v: String = w(&mut con, &format!("HGET {h} f1")).await;
        assert_eq!(v, secret(1));
        let none: Option<String> = w(&mut con, &format!("HGET {h} nope")).await;
        assert_eq!(none, None);
        let v: Vec<Option<String>> = w(&mut con, &format!("HMGET {h} f1 nope f4")).await;
        assert_eq!(v, vec![Some(secret(1)), None, Some(secret(4))]);
        let expected: BTreeMap<String, String> =
            (1..=4).map(|i| (format!("f{i}"), secret(i))).collect();
        let all: Value = w(&mut con, &format!("HGETALL {h}")).await;
        assert_eq!(pairs(&all, resp3), expected, "HGETALL");
        let mut vals: Vec<String> = w(&mut con, &format!("HVALS {h}")).await;
        vals.sort();
        assert_eq!(vals, expected.values().cloned().collect::<Vec<_>>());
        // HRANDFIELD WITHVALUES: flat pairs in RESP2, an array of pairs in RESP3.
        for count in ["3", "-6"] {
            let v: Value = w(&mut con, &format!("HRANDFIELD {h} {count} WITHVALUES")).await;
            let Value::Array(items) = &v else {
                panic!("HRANDFIELD: {v:?}")
            };
            let got: Vec<(String, String)> = if resp3 {
                items
                    .iter()
                    .map(|pair| match pair {
                        Value::Array(p) => (text(&p[0]), text(&p[1])),
                        other => panic!("HRANDFIELD RESP3 element: {other:?}"),
                    })
                    .collect()
            } else {
                items
                    .chunks(2)
                    .map(|p| (text(&p[0]), text(&p[1])))
                    .collect()
            };
            assert_eq!(
                got.len(),
                count.trim_start_matches('-').parse::<usize>().unwrap()
            );
            for (f, v) in got {
                assert_eq!(expected.get(&f), Some(&v), "HRANDFIELD {f}");
            }
        }
        // HSCAN: [cursor, [field, value, …]].
        let (cursor, flat): (String, Vec<String>) =
            w(&mut con, &format!("HSCAN {h} 0 COUNT 100")).await;
        assert_eq!(cursor, "0");
        let scanned: BTreeMap<String, String> = flat
            .chunks(2)
            .map(|p| (p[0].clone(), p[1].clone()))
            .collect();
        assert_eq!(scanned, expected, "HSCAN");
        let fields: Vec<String> = w(&mut con, &format!("HRANDFIELD {h} 2")).await;
        assert!(
            fields.iter().all(|f| expected.contains_key(f)),
            "{fields:?}"
        );
        // Fields are stored as they are; values sealed, bound to their field.
        let stored: HashMap<String, Vec<u8>> = w(&mut b, &format!("HGETALL {h}")).await;
        assert_eq!(stored.len(), 4);
        for (f, v) in &stored {
            assert_sealed(v, &expected[f], &format!("{h} {f}"));
        }
        // A compress-only hash, with a small value left as is.
        let c = format!("c:{p}:h");
        let big = secret(9).repeat(20);
        let _: i64 = w(&mut con, &format!("HSET {c} big {big} small x")).await;
        let all: Value = w(&mut con, &format!("HGETALL {c}")).await;
        let got = pairs(&all, resp3);
        assert_eq!(got["big"], big);
        assert_eq!(got["small"], "x");
        let stored: HashMap<String, Vec<u8>> = w(&mut b, &format!("HGETALL {c}")).await;
        assert_eq!(flags(&stored["big"], &c), 0x01, "compressed only");
        assert!(stored["big"].len() < big.len() / 2);
        assert_eq!(stored["small"], b"x");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_round_trip_including_blocking_pops() {
    let env = start("k1", &["k1", "k2"]).await;
    let mut b = env.backend().await;
    for (mut con, p) in env.both().await {
        let l = format!("s:{p}:l");
        let l2 = format!("s:{p}:l2");
        let n: i64 = w(&mut con, &format!("RPUSH {l} {} {}", secret(1), secret(2))).await;
        assert_eq!(n, 2);
        let n: i64 = w(&mut con, &format!("LPUSH {l} {}", secret(0))).await;
        assert_eq!(n, 3);
        let n: i64 = w(&mut con, &format!("RPUSHX {l} {}", secret(3))).await;
        assert_eq!(n, 4);
        let n: i64 = w(&mut con, &format!("LPUSHX {l} {}", secret(99))).await;
        assert_eq!(n, 5);
        let n: i64 = w(&mut con, &format!("LPUSHX s:{p}:none {}", secret(1))).await;
        assert_eq!(n, 0);
        let _: () = w(&mut con, &format!("LSET {l} 0 {}", secret(100))).await;
        let all: Vec<String> = w(&mut con, &format!("LRANGE {l} 0 -1")).await;
        assert_eq!(
            all,
            vec![secret(100), secret(0), secret(1), secret(2), secret(3)]
        );
        let stored: Vec<Vec<u8>> = w(&mut b, &format!("LRANGE {l} 0 -1")).await;
        for (s, plain) in stored.iter().zip(&all) {
            assert_sealed(s, plain, "list element");
        }
        let v: String = w(&mut con, &format!("LINDEX {l} 1")).await;
        assert_eq!(v, secret(0));
        let v: String = w(&mut con, &format!("LPOP {l}")).await;
        assert_eq!(v, secret(100));
        let v: String = w(&mut con, &format!("RPOP {l}")).await;
        assert_eq!(v, secret(3));
        let v: Vec<String> = w(&mut con, &format!("LPOP {l} 2")).await;
        assert_eq!(v, vec![secret(0), secret(1)]);
        let _: i64 = w(
            &mut con,
            &format!(
                "RPUSH {l} {} {} {} {} {}",
                secret(4),
                secret(5),
                secret(6),
                secret(7),
                secret(8)
            ),
        )
        .await;
        let v: Vec<String> = w(&mut con, &format!("RPOP {l} 1")).await;
        assert_eq!(v, vec![secret(8)]);
        // Moves between lists of the same rule; elements stay readable.
        let v: String = w(&mut con, &format!("LMOVE {l} {l2} LEFT RIGHT")).await;
        assert_eq!(v, secret(2));
        let v: Vec<String> = w(&mut con, &format!("LRANGE {l2} 0 -1")).await;
        assert_eq!(v, vec![secret(2)]);
        // RPOPLPUSH and BRPOPLPUSH too.
        let v: String = w(&mut con, &format!("RPOPLPUSH {l2} {l2}")).await;
        assert_eq!(v, secret(2));
        let v: String = w(&mut con, &format!("BRPOPLPUSH {l2} {l2} 1")).await;
        assert_eq!(v, secret(2));
        // [l: 4 5 6 7] [l2: 2]
        let v: (String, String) = w(&mut con, &format!("BLPOP s:{p}:empty {l2} 1")).await;
        assert_eq!(v, (l2.clone(), secret(2)));
        let v: (String, String) = w(&mut con, &format!("BRPOP {l} 1")).await;
        assert_eq!(v, (l.clone(), secret(7)));
        let v: String = w(&mut con, &format!("BLMOVE {l} {l2} LEFT LEFT 1")).await;
        assert_eq!(v, secret(4));
        // [l: 5 6] [l2: 4]
        let v: (String, Vec<String>) =
            w(&mut con, &format!("LMPOP 2 s:{p}:empty {l} LEFT COUNT 5")).await;
        assert_eq!(v, (l.clone(), vec![secret(5), secret(6)]));
        let v: (String, Vec<String>) = w(&mut con, &format!("BLMPOP 1 1 {l2} RIGHT")).await;
        assert_eq!(v, (l2.clone(), vec![secret(4)]));
        let none: Option<Value> = w(&mut con, &format!("LMPOP 1 {l} LEFT")).await;
        assert_eq!(none, None);
        // Blocking for real: the pushed element reaches the blocked client in plaintext.
        let q = format!("s:{p}:q");
        let mut waiter = if p == "p3" {
            env.con3().await
        } else {
            env.con().await
        };
        let key = q.clone();
        let blocked = tokio::spawn(async move {
            let v: (String, String) = w(&mut waiter, &format!("BLPOP {key} 10")).await;
            let m: String = w(&mut waiter, &format!("BLMOVE {key} {key}:to LEFT LEFT 10")).await;
            let r: (String, Vec<String>) = w(&mut waiter, &format!("BLMPOP 10 1 {key} LEFT")).await;
            (v, m, r)
        });
        for n in 50..53 {
            wait_blocked(&mut b, 1).await;
            let _: i64 = w(&mut con, &format!("RPUSH {q} {}", secret(n))).await;
        }
        let (v, m, r) = blocked.await.unwrap();
        assert_eq!(v, (q.clone(), secret(50)));
        assert_eq!(m, secret(51));
        assert_eq!(r, (q.clone(), vec![secret(52)]));
        // LINSERT compares stored elements: fine with compression alone
        // (deterministic), refused under encryption.
        let c = format!("c:{p}:l");
        let big = |n: usize| secret(n).repeat(5);
        let _: i64 = w(&mut con, &format!("RPUSH {c} {} {}", big(1), big(3))).await;
        let n: i64 = w(
            &mut con,
            &format!("LINSERT {c} BEFORE {} {}", big(3), big(2)),
        )
        .await;
        assert_eq!(n, 3);
        let v: Vec<String> = w(&mut con, &format!("LRANGE {c} 0 -1")).await;
        assert_eq!(v, vec![big(1), big(2), big(3)]);
        let stored: Vec<Vec<u8>> = w(&mut b, &format!("LRANGE {c} 0 -1")).await;
        assert!(stored.iter().all(|s| flags(s, &c) == 0x01));
        let e = err(&mut con, &format!("LINSERT {l} BEFORE x y")).await;
        assert!(
            e.contains(&format!(
                "LINSERT not supported on transformed key '{l}' (rule 's:*')"
            )),
            "{e}"
        );
        // Moving an element to a key of another rule is refused.
        let e = err(&mut con, &format!("LMOVE {l} {c} LEFT LEFT")).await;
        assert!(e.contains("LMOVE not supported"), "{e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_commands_get_a_clear_error_and_sets_are_untouched() {
    let env = start("k1", &["k1"]).await;
    let mut raw = env.raw().await;
    let mut con = env.con().await;
    let _: () = w(&mut con, "SET s:str some-value").await;
    let _: i64 = w(&mut con, "HSET s:hash f 1").await;
    let _: i64 = w(&mut con, "RPUSH s:list 3 1 2").await;
    let refused = [
        ("APPEND s:str x", "APPEND", "s:str"),
        ("SETRANGE s:str 0 x", "SETRANGE", "s:str"),
        ("GETRANGE s:str 0 2", "GETRANGE", "s:str"),
        ("SUBSTR s:str 0 2", "SUBSTR", "s:str"),
        ("INCR s:str", "INCR", "s:str"),
        ("DECR s:str", "DECR", "s:str"),
        ("INCRBY s:str 2", "INCRBY", "s:str"),
        ("DECRBY s:str 2", "DECRBY", "s:str"),
        ("INCRBYFLOAT s:str 1.5", "INCRBYFLOAT", "s:str"),
        ("SETBIT s:str 1 1", "SETBIT", "s:str"),
        ("GETBIT s:str 1", "GETBIT", "s:str"),
        ("BITCOUNT s:str", "BITCOUNT", "s:str"),
        ("BITPOS s:str 1", "BITPOS", "s:str"),
        ("BITFIELD s:str GET u8 0", "BITFIELD", "s:str"),
        ("BITFIELD_RO s:str GET u8 0", "BITFIELD_RO", "s:str"),
        ("BITOP AND plain:dst s:str plain:src", "BITOP", "s:str"),
        ("LCS plain:a s:str", "LCS", "s:str"),
        ("HINCRBY s:hash f 1", "HINCRBY", "s:hash"),
        ("HINCRBYFLOAT s:hash f 1.5", "HINCRBYFLOAT", "s:hash"),
        ("HSTRLEN s:hash f", "HSTRLEN", "s:hash"),
        ("SORT s:list BY nosort GET plain:*", "SORT", "s:list"),
        ("SORT s:list STORE plain:dst", "SORT", "s:list"),
        ("LPOS s:list 1", "LPOS", "s:list"),
        ("LREM s:list 0 1", "LREM", "s:list"),
        ("EVAL return(1) 1 s:str", "EVAL", "s:str"),
        (
            "EVALSHA e0e1f9fabfc9d4800c877a703b823ac0578ff8db 1 s:str",
            "EVALSHA",
            "s:str",
        ),
        ("EVAL_RO return(1) 1 s:str", "EVAL_RO", "s:str"),
        ("FCALL f 1 s:str", "FCALL", "s:str"),
        ("FCALL_RO f 1 s:str", "FCALL_RO", "s:str"),
        ("RENAME s:str s:other", "RENAME", "s:str"),
        ("COPY s:str plain:copy", "COPY", "s:str"),
    ];
    for (line, name, key) in refused {
        let expected =
            format!("-ERR {name} not supported on transformed key '{key}' (rule 's:*')\r\n");
        let got = raw.cmd(line).await;
        assert_eq!(show(&got), show(expected.as_bytes()), "{line}");
    }
    // Nothing refused reached Redis.
    let v: String = w(&mut con, "GET s:str").await;
    assert_eq!(v, "some-value");
    // STRLEN is emulated: the plaintext's length.
    let n: i64 = w(&mut con, "STRLEN s:str").await;
    assert_eq!(n, 10);
    // Scripts are allowed where the rule says so; they see stored bytes.
    let _: () = w(&mut con, &format!("SET script:1 {}", secret(1))).await;
    let stored: Vec<u8> = w(
        &mut con,
        "EVAL return(redis.call('GET',KEYS[1])) 1 script:1",
    )
    .await;
    assert_sealed(&stored, &secret(1), "EVAL result");
    let v: i64 = w(&mut con, "EVAL return(1) 1 plain:key").await;
    assert_eq!(v, 1);
    // Keys without a rule keep every command.
    let n: i64 = w(&mut con, "APPEND plain:x abc").await;
    assert_eq!(n, 3);
    let n: i64 = w(&mut con, "INCR plain:n").await;
    assert_eq!(n, 1);
    // Sets and sorted sets hold members, not values: never transformed.
    let _: i64 = w(&mut con, "SADD s:set member-one").await;
    let _: i64 = w(&mut con, "ZADD s:zset 1 member-two").await;
    let mut b = env.backend().await;
    let m: Vec<String> = w(&mut b, "SMEMBERS s:set").await;
    assert_eq!(m, vec!["member-one"]);
    let z: Vec<String> = w(&mut b, "ZRANGE s:zset 0 -1").await;
    assert_eq!(z, vec!["member-two"]);
    let m = env.metrics().await;
    let refused_n = metric(&m, "strata_transform_refused_commands_total").unwrap();
    assert!(refused_n >= refused.len() as f64, "{refused_n}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_exec_opens_each_queued_reply() {
    let env = start("k1", &["k1"]).await;
    let mut raw = env.raw().await;
    raw.expect("SET plain:tx plain-value", b"+OK\r\n").await;
    raw.expect("MULTI", b"+OK\r\n").await;
    for line in [
        "SET s:tx:1 v1-secret-value",
        "GET s:tx:1",
        "HSET s:tx:h f hv-secret-value",
        "HGETALL s:tx:h",
        "RPUSH s:tx:l e1-secret-value",
        "LRANGE s:tx:l 0 -1",
        "GET plain:tx",
        "MGET plain:tx s:tx:1",
        "STRLEN s:tx:1",
    ] {
        raw.expect(line, b"+QUEUED\r\n").await;
    }
    raw.expect(
        "EXEC",
        b"*9\r\n+OK\r\n$15\r\nv1-secret-value\r\n:1\r\n*2\r\n$1\r\nf\r\n$15\r\nhv-secret-value\r\n\
          :1\r\n*1\r\n$15\r\ne1-secret-value\r\n$11\r\nplain-value\r\n\
          *2\r\n$11\r\nplain-value\r\n$15\r\nv1-secret-value\r\n:15\r\n",
    )
    .await;
    // DISCARD drops the queued plans.
    raw.expect("MULTI", b"+OK\r\n").await;
    raw.expect("GET s:tx:1", b"+QUEUED\r\n").await;
    raw.expect("DISCARD", b"+OK\r\n").await;
    raw.expect("MULTI", b"+OK\r\n").await;
    raw.expect("SET plain:tx x", b"+QUEUED\r\n").await;
    raw.expect("GET s:tx:1", b"+QUEUED\r\n").await;
    raw.expect("EXEC", b"*2\r\n+OK\r\n$15\r\nv1-secret-value\r\n")
        .await;
    // A refused command inside MULTI aborts the transaction, as a queueing
    // error does in Redis: nothing of it runs.
    raw.expect("MULTI", b"+OK\r\n").await;
    raw.expect("SET plain:tx changed", b"+QUEUED\r\n").await;
    raw.expect(
        "APPEND s:tx:1 x",
        b"-ERR APPEND not supported on transformed key 's:tx:1' (rule 's:*')\r\n",
    )
    .await;
    raw.expect(
        "EXEC",
        b"-EXECABORT Transaction discarded because of previous errors.\r\n",
    )
    .await;
    raw.expect("GET plain:tx", b"$1\r\nx\r\n").await;
    // WATCH: an aborted EXEC is a null reply, passed through.
    raw.expect("WATCH s:tx:1", b"+OK\r\n").await;
    let mut other = env.con().await;
    let _: () = w(&mut other, "SET s:tx:1 changed-by-other").await;
    raw.expect("MULTI", b"+OK\r\n").await;
    raw.expect("GET s:tx:1", b"+QUEUED\r\n").await;
    raw.expect("EXEC", b"*-1\r\n").await;
    // redis-rs transactions, RESP3: the map inside EXEC's reply is opened.
    let mut con = env.con3().await;
    let (v, h, l): (String, HashMap<String, String>, Vec<String>) = redis::pipe()
        .atomic()
        .cmd("SET")
        .arg("s:tx:2")
        .arg(secret(2))
        .ignore()
        .cmd("GET")
        .arg("s:tx:2")
        .cmd("HGETALL")
        .arg("s:tx:h")
        .cmd("LRANGE")
        .arg("s:tx:l")
        .arg(0)
        .arg(-1)
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(v, secret(2));
    assert_eq!(h["f"], "hv-secret-value");
    assert_eq!(l, vec!["e1-secret-value"]);
}
