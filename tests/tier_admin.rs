//! `PROXY TIER …` and `PROXY CHECKPOINT …` (issue 14, items 5, 8 and 10)
//! through strata, against a real PostgreSQL and a real redis-server: each
//! command's effect is checked in both tiers, straight in Postgres and
//! straight in Redis.

mod support;

use redis::Value;
use support::clients::{connect_rs, show};
use support::tier_env::{now_ms, TierEnv};

async fn strata(env: &TierEnv) -> redis::aio::MultiplexedConnection {
    connect_rs(&format!("redis://{}/", env.running.addr)).await
}

async fn direct(env: &TierEnv) -> redis::aio::MultiplexedConnection {
    connect_rs(&env.redis.url()).await
}

async fn proxy(c: &mut redis::aio::MultiplexedConnection, words: &[&str]) -> Value {
    let mut cmd = redis::cmd("PROXY");
    for w in words {
        cmd.arg(*w);
    }
    cmd.query_async(c)
        .await
        .unwrap_or_else(|e| panic!("PROXY {words:?}: {e}"))
}

async fn proxy_err(c: &mut redis::aio::MultiplexedConnection, words: &[&str]) -> String {
    let mut cmd = redis::cmd("PROXY");
    for w in words {
        cmd.arg(*w);
    }
    match cmd.query_async::<Value>(c).await {
        Ok(v) => panic!("PROXY {words:?} answered {v:?}, not an error"),
        Err(e) => e.to_string(),
    }
}

/// A map reply's field (a RESP2 flat array of pairs, or a RESP3 map).
fn field<'a>(v: &'a Value, name: &str) -> &'a Value {
    let is = |k: &Value| matches!(k, Value::BulkString(b) if b == name.as_bytes());
    match v {
        Value::Array(items) => items
            .chunks(2)
            .find(|p| is(&p[0]))
            .map(|p| &p[1])
            .unwrap_or_else(|| panic!("no field {name} in {v:?}")),
        Value::Map(pairs) => pairs
            .iter()
            .find(|(k, _)| is(k))
            .map(|(_, x)| x)
            .unwrap_or_else(|| panic!("no field {name} in {v:?}")),
        other => panic!("not a map: {other:?}"),
    }
}

fn int(v: &Value) -> i64 {
    match v {
        Value::Int(n) => *n,
        other => panic!("not an integer: {other:?}"),
    }
}

async fn query<T: redis::FromRedisValue>(
    c: &mut redis::aio::MultiplexedConnection,
    args: &[&str],
) -> T {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query_async(c)
        .await
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flushall_leaves_postgres_and_tier_flush_erases_matching_rows() {
    let env = TierEnv::start().await;
    let mut c = strata(&env).await;
    for k in ["durable:a1", "durable:a2", "durable:b1"] {
        let _: () = query(&mut c, &["SET", k, "v"]).await;
    }
    let _: () = query(&mut c, &["FLUSHALL"]).await;
    assert_eq!(env.row_count().await, 3, "FLUSHALL does not erase Postgres");

    let n = int(&proxy(&mut c, &["TIER", "FLUSH", "durable:a*"]).await);
    assert_eq!(n, 2);
    assert!(env.row("durable:a1").await.is_none());
    assert!(env.row("durable:a2").await.is_none());
    assert!(
        env.row("durable:b1").await.is_some(),
        "non-matching rows stay"
    );
    // A flushed key is gone for read-through too (no resurrection).
    let got: Option<String> = query(&mut c, &["GET", "durable:a1"]).await;
    assert_eq!(got, None);
    let got: Option<String> = query(&mut c, &["GET", "durable:b1"]).await;
    assert_eq!(got.as_deref(), Some("v"));
    // Redis is not touched by TIER FLUSH.
    let _: () = query(&mut c, &["SET", "durable:a3", "x"]).await;
    assert_eq!(
        int(&proxy(&mut c, &["TIER", "FLUSH", "durable:a3"]).await),
        1
    );
    let mut d = direct(&env).await;
    let got: Option<String> = query(&mut d, &["GET", "durable:a3"]).await;
    assert_eq!(got.as_deref(), Some("x"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tier_warm_loads_rows_with_their_ttl_and_never_overwrites() {
    let env = TierEnv::start().await;
    let mut c = strata(&env).await;
    let _: () = query(&mut c, &["SET", "durable:w1", "one", "EX", "100"]).await;
    let _: () = query(&mut c, &["SET", "durable:w2", "two"]).await;
    let _: () = query(&mut c, &["SET", "durable:w3", "three"]).await;
    let _: () = query(&mut c, &["SET", "durable:other", "x"]).await;
    let mut d = direct(&env).await;
    let _: () = query(&mut d, &["FLUSHALL"]).await;
    // Newer than Postgres: WARM must leave it.
    let _: () = query(&mut d, &["SET", "durable:w3", "newer"]).await;

    let r = proxy(&mut c, &["TIER", "WARM", "durable:w*"]).await;
    assert_eq!(
        (int(field(&r, "loaded")), int(field(&r, "present"))),
        (2, 1)
    );

    let w1: Option<String> = query(&mut d, &["GET", "durable:w1"]).await;
    assert_eq!(w1.as_deref(), Some("one"));
    let at: i64 = query(&mut d, &["PEXPIRETIME", "durable:w1"]).await;
    let row_at = env.row("durable:w1").await.expect("row").3.expect("ttl");
    assert_eq!(at, row_at, "the row's absolute expiry");
    assert!(at > now_ms());
    let t2: i64 = query(&mut d, &["PTTL", "durable:w2"]).await;
    assert_eq!(t2, -1);
    let w3: Option<String> = query(&mut d, &["GET", "durable:w3"]).await;
    assert_eq!(w3.as_deref(), Some("newer"));
    let other: i64 = query(&mut d, &["EXISTS", "durable:other"]).await;
    assert_eq!(other, 0, "keys outside the pattern stay out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tier_verify_reports_every_diverged_key_within_its_limit() {
    let env = TierEnv::start().await;
    let mut c = strata(&env).await;
    for k in ["durable:v1", "durable:v2", "durable:v3", "durable:v4"] {
        let _: () = query(&mut c, &["SET", k, "same"]).await;
    }
    let r = proxy(&mut c, &["TIER", "VERIFY", "durable:v*"]).await;
    assert_eq!(int(field(&r, "disagreeing")), 0, "{r:?}");

    let mut d = direct(&env).await;
    let _: () = query(&mut d, &["SET", "durable:v2", "diverged"]).await;
    let _: () = query(&mut d, &["EXPIRE", "durable:v3", "1000"]).await;
    let _: () = query(&mut d, &["SET", "durable:v5", "only-in-redis"]).await;
    // Evicted from Redis: read-through serves it, not a disagreement.
    let _: () = query(&mut d, &["DEL", "durable:v4"]).await;

    let r = proxy(&mut c, &["TIER", "VERIFY", "durable:v*"]).await;
    assert_eq!(int(field(&r, "disagreeing")), 3, "{r:?}");
    let Value::Array(keys) = field(&r, "keys") else {
        panic!("{r:?}")
    };
    let mut found: Vec<(String, String)> = keys
        .iter()
        .map(|k| redis::from_redis_value::<(String, String)>(k.clone()).expect("pair"))
        .collect();
    found.sort();
    assert_eq!(
        found,
        vec![
            ("durable:v2".into(), "value differs".into()),
            (
                "durable:v3".into(),
                "ttl: redis has one, postgres none".into()
            ),
            ("durable:v5".into(), "missing in postgres".into()),
        ]
    );
    let r = proxy(&mut c, &["TIER", "VERIFY", "durable:v*", "LIMIT", "1"]).await;
    assert_eq!(int(field(&r, "disagreeing")), 3);
    assert!(
        matches!(field(&r, "keys"), Value::Array(k) if k.len() == 1),
        "{r:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tier_stats_counts_rows_bytes_and_read_through_per_rule() {
    let env = TierEnv::start().await;
    let mut c = strata(&env).await;
    let _: () = query(&mut c, &["SET", "durable:s1", "abc"]).await;
    let _: () = query(&mut c, &["SET", "durable:s2", "hello"]).await;
    let mut d = direct(&env).await;
    let _: () = query(&mut d, &["FLUSHALL"]).await;
    let _: Option<String> = query(&mut c, &["GET", "durable:s1"]).await; // hit
    let _: Option<String> = query(&mut c, &["GET", "durable:none"]).await; // miss

    for v in [
        proxy(&mut c, &["TIER", "STATS"]).await,
        proxy(
            &mut connect_rs(&format!("redis://{}/?protocol=resp3", env.running.addr)).await,
            &["TIER", "STATS"],
        )
        .await,
    ] {
        assert_eq!(int(field(&v, "rows")), 2, "{v:?}");
        assert_eq!(int(field(&v, "bytes")), (10 + 3) + (10 + 5));
        assert_eq!(int(field(&v, "backlog")), 0);
        assert_eq!(int(field(&v, "readthrough_hits")), 1);
        assert_eq!(int(field(&v, "readthrough_misses")), 1);
        let Value::Array(rules) = field(&v, "rules") else {
            panic!("{v:?}")
        };
        assert_eq!(rules.len(), 1);
        let rule = &rules[0];
        assert_eq!(
            redis::from_redis_value::<String>(field(rule, "pattern").clone()).expect("pattern"),
            "durable:*"
        );
        assert_eq!(int(field(rule, "rows")), 2);
        assert_eq!(int(field(rule, "readthrough_hits")), 1);
        assert_eq!(int(field(rule, "readthrough_misses")), 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoint_round_trip_restores_every_key_byte_for_byte() {
    let env = TierEnv::start().await;
    let mut c = strata(&env).await;
    let _: () = query(&mut c, &["SET", "cp:str", "value"]).await;
    let _: () = query(&mut c, &["HSET", "cp:hash", "f1", "a", "f2", "b"]).await;
    let _: () = query(&mut c, &["RPUSH", "cp:list", "x", "y", "z"]).await;
    // An intset: its DUMP is sorted, so byte for byte holds. (A hashtable
    // set's DUMP follows its dict's order, which a RESTORE may change.)
    let _: () = query(&mut c, &["SADD", "cp:set", "3", "1", "2"]).await;
    let _: () = query(&mut c, &["SET", "cp:ttl", "t", "EX", "1000"]).await;
    let _: () = query(&mut c, &["SET", "other:k", "not in the pattern"]).await;
    let keys = ["cp:str", "cp:hash", "cp:list", "cp:set", "cp:ttl"];
    let mut d = direct(&env).await;
    let mut before = Vec::new();
    for k in keys {
        let dump: Vec<u8> = query(&mut d, &["DUMP", k]).await;
        before.push(dump);
    }
    let ttl_before: i64 = query(&mut d, &["PEXPIRETIME", "cp:ttl"]).await;

    let id = int(&proxy(&mut c, &["CHECKPOINT", "CREATE", "cp:*"]).await);
    assert!(id > 0);
    let stored: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM strata_checkpoint_entries WHERE checkpoint_id = $1",
    )
    .bind(id)
    .fetch_one(&env.pool)
    .await
    .expect("count");
    assert_eq!(
        stored, 5,
        "the matching keys, and only them, are in Postgres"
    );
    let list = proxy(&mut c, &["CHECKPOINT", "LIST"]).await;
    let Value::Array(items) = &list else {
        panic!("{list:?}")
    };
    assert_eq!(items.len(), 1);
    assert_eq!(int(field(&items[0], "id")), id);
    assert_eq!(int(field(&items[0], "keys")), 5);
    assert!(matches!(field(&items[0], "state"), Value::BulkString(s) if s == b"complete"));

    // Change, delete, persist.
    let _: () = query(&mut c, &["SET", "cp:str", "changed"]).await;
    let _: () = query(&mut c, &["DEL", "cp:hash"]).await;
    let _: () = query(&mut c, &["RPUSH", "cp:list", "more"]).await;
    let _: () = query(&mut c, &["SREM", "cp:set", "1"]).await;
    let _: () = query(&mut c, &["PERSIST", "cp:ttl"]).await;

    let r = proxy(&mut c, &["CHECKPOINT", "RESTORE", &id.to_string()]).await;
    assert_eq!(
        (int(field(&r, "restored")), int(field(&r, "expired"))),
        (5, 0)
    );
    for (k, dump) in keys.iter().zip(&before) {
        let now: Vec<u8> = query(&mut d, &["DUMP", k]).await;
        assert_eq!(&now, dump, "{k} byte for byte");
    }
    let ttl_after: i64 = query(&mut d, &["PEXPIRETIME", "cp:ttl"]).await;
    assert!(
        (ttl_after - ttl_before).abs() <= 5,
        "the remaining TTL: {ttl_before} then {ttl_after}"
    );
    let other: String = query(&mut d, &["GET", "other:k"]).await;
    assert_eq!(other, "not in the pattern");

    assert_eq!(
        proxy(&mut c, &["CHECKPOINT", "DROP", &id.to_string()]).await,
        Value::Okay
    );
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM strata_checkpoint_entries")
        .fetch_one(&env.pool)
        .await
        .expect("count");
    assert_eq!(left, 0);
    let e = proxy_err(&mut c, &["CHECKPOINT", "RESTORE", &id.to_string()]).await;
    assert!(e.contains("no such checkpoint"), "{e}");
    let e = proxy_err(&mut c, &["CHECKPOINT", "DROP", &id.to_string()]).await;
    assert!(e.contains("no such checkpoint"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tier_commands_without_tiers_are_redis_style_errors() {
    let env = support::clients::Env::start().await;
    let mut raw = env.raw().await;
    for line in [
        "PROXY TIER STATS",
        "PROXY TIER FLUSH x*",
        "PROXY CHECKPOINT LIST",
        "PROXY CHECKPOINT CREATE x*",
    ] {
        let r = raw.cmd(line).await;
        assert!(
            show(&r).starts_with(
                "-ERR PROXY TIER/CHECKPOINT: no [postgres] and [[tier]] rules are configured"
            ),
            "{line}: {}",
            show(&r)
        );
    }
    let r = raw.cmd("PROXY TIER").await;
    assert!(show(&r).starts_with("-ERR syntax error"), "{}", show(&r));
    let r = raw.cmd("PROXY CHECKPOINT RESTORE abc").await;
    assert!(
        show(&r).starts_with("-ERR PROXY CHECKPOINT: the id must be"),
        "{}",
        show(&r)
    );
    let r = raw.cmd("PROXY HELP").await;
    assert!(
        show(&r).starts_with('*') && show(&r).contains("CHECKPOINT RESTORE"),
        "{}",
        show(&r)
    );
}

/// Cluster mode: CREATE scans every primary, RESTORE and WARM write each
/// key on its slot's primary, VERIFY reads every primary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_mode_checkpoints_and_warms_across_every_primary() {
    use std::time::{Duration, Instant};
    let cluster = tokio::task::spawn_blocking(support::cluster::Cluster::start)
        .await
        .expect("cluster");
    let pg = tokio::task::spawn_blocking(support::postgres::Postgres::start)
        .await
        .expect("postgres");
    let mut config = support::cluster_strata::config(&cluster, strata::config::ReadFrom::Primary);
    let tiers = support::tier_env::config("127.0.0.1:1", &pg.url(), 100);
    config.postgres = tiers.postgres;
    config.tier = tiers.tier;
    let running = support::cluster_strata::start_with(config).await;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&pg.url())
        .await
        .expect("pool");
    let mut c = support::clients::RawConn::connect(&running.addr.to_string()).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = c.cmd("SET durable:0 v0").await;
        if r == b"+OK\r\n" {
            break;
        }
        // The schema is applied in the background at startup.
        assert!(Instant::now() < deadline, "{}", show(&r));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for i in 1..20 {
        c.expect(&format!("SET durable:{i} v{i}"), b"+OK\r\n").await;
    }
    let mut dumps = Vec::new();
    for i in 0..30 {
        c.expect(&format!("RPUSH cp:{i} a{i} b{i}"), b":2\r\n")
            .await;
        dumps.push(c.cmd(&format!("DUMP cp:{i}")).await);
    }

    let r = c.cmd("PROXY CHECKPOINT CREATE cp:*").await;
    let id: i64 = String::from_utf8_lossy(&r[1..])
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("{}", show(&r)));
    let stored: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM strata_checkpoint_entries WHERE checkpoint_id = $1",
    )
    .bind(id)
    .fetch_one(&pool)
    .await
    .expect("count");
    assert_eq!(stored, 30, "keys on every primary");

    for primary in cluster.primaries() {
        cluster.must(&primary, &["FLUSHALL"]);
    }
    let r = c.cmd(&format!("PROXY CHECKPOINT RESTORE {id}")).await;
    assert_eq!(
        show(&r),
        show(b"*4\r\n$8\r\nrestored\r\n:30\r\n$7\r\nexpired\r\n:0\r\n")
    );
    for (i, dump) in dumps.iter().enumerate() {
        assert_eq!(&c.cmd(&format!("DUMP cp:{i}")).await, dump, "cp:{i}");
    }

    let r = c.cmd("PROXY TIER WARM durable:*").await;
    assert_eq!(
        show(&r),
        show(b"*4\r\n$6\r\nloaded\r\n:20\r\n$7\r\npresent\r\n:0\r\n")
    );
    let r = c.cmd("PROXY TIER VERIFY durable:*").await;
    assert!(show(&r).contains(r"disagreeing\r\n:0"), "{}", show(&r));
    let r = c.cmd("PROXY TIER STATS").await;
    assert!(show(&r).contains(r"rows\r\n:20"), "{}", show(&r));
}

/// RESTORE of keys a mirror rule covers writes Postgres too: the tiers
/// agree afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoint_restore_of_mirrored_keys_reaches_postgres() {
    let env = TierEnv::start().await;
    let mut c = strata(&env).await;
    let _: () = query(&mut c, &["SET", "durable:c1", "one"]).await;
    let _: () = query(&mut c, &["SET", "durable:c2", "two", "EX", "1000"]).await;
    let id = int(&proxy(&mut c, &["CHECKPOINT", "CREATE", "durable:c*"]).await);
    let _: () = query(&mut c, &["SET", "durable:c1", "changed"]).await;
    let _: () = query(&mut c, &["DEL", "durable:c2"]).await;
    assert!(env.row("durable:c2").await.is_none());

    let r = proxy(&mut c, &["CHECKPOINT", "RESTORE", &id.to_string()]).await;
    assert_eq!(int(field(&r, "restored")), 2);
    assert_eq!(env.row("durable:c1").await.expect("c1").1, b"one");
    let (_, value, _, at) = env.row("durable:c2").await.expect("c2 is back in Postgres");
    assert_eq!(value, b"two");
    let mut d = direct(&env).await;
    let redis_at: i64 = query(&mut d, &["PEXPIRETIME", "durable:c2"]).await;
    assert_eq!(at, Some(redis_at), "one expiry in both tiers");
    let v = proxy(&mut c, &["TIER", "VERIFY", "durable:c*"]).await;
    assert_eq!(int(field(&v, "disagreeing")), 0, "{v:?}");
}

/// Postgres stopped: every admin command answers `-ERR tier unavailable: …`
/// (no hang, no crash), and works again once Postgres is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_commands_say_tier_unavailable_while_postgres_is_down() {
    let mut env = TierEnv::start().await;
    let mut raw = env.raw().await;
    raw.expect("SET durable:p v", b"+OK\r\n").await;
    env.pg.stop();
    for line in [
        "PROXY TIER STATS",
        "PROXY TIER FLUSH durable:*",
        "PROXY TIER WARM durable:*",
        "PROXY TIER VERIFY durable:*",
        "PROXY CHECKPOINT CREATE durable:*",
        "PROXY CHECKPOINT LIST",
    ] {
        let r = raw.cmd(line).await;
        assert!(
            show(&r).starts_with("-ERR tier unavailable: "),
            "{line}: {}",
            show(&r)
        );
    }
    env.pg.restart();
    env.reconnect_pool().await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let r = raw.cmd("PROXY TIER FLUSH durable:*").await;
        if r == b":1\r\n" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{}", show(&r));
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(env.row_count().await, 0);
}

/// `PROXY TIER KEYS <pattern> [LIMIT n]` lists the keys Postgres holds,
/// also those Redis no longer has (SCAN, KEYS and DBSIZE see only the
/// resident ones), in key order, bounded by LIMIT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tier_keys_lists_what_postgres_holds() {
    let env = TierEnv::start().await;
    let mut s = strata(&env).await;
    let mut d = direct(&env).await;
    for k in ["durable:k3", "durable:k1", "durable:k2", "durable:x"] {
        let _: () = redis::cmd("SET")
            .arg(k)
            .arg("v")
            .query_async(&mut s)
            .await
            .expect("set");
    }
    let _: () = redis::cmd("SET")
        .arg("other:k")
        .arg("v")
        .query_async(&mut s)
        .await
        .expect("set");
    let _: () = redis::cmd("FLUSHALL")
        .query_async(&mut d)
        .await
        .expect("flushall");
    let scanned: Vec<String> = redis::cmd("KEYS")
        .arg("durable:*")
        .query_async(&mut s)
        .await
        .expect("keys");
    assert!(scanned.is_empty(), "{scanned:?}");
    let keys = |v: Value| -> Vec<String> {
        match v {
            Value::Array(items) => items
                .into_iter()
                .map(|i| match i {
                    Value::BulkString(b) => String::from_utf8(b).expect("utf8"),
                    other => panic!("{other:?}"),
                })
                .collect(),
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(
        keys(proxy(&mut s, &["TIER", "KEYS", "durable:k*"]).await),
        ["durable:k1", "durable:k2", "durable:k3"]
    );
    assert_eq!(
        keys(proxy(&mut s, &["TIER", "KEYS", "*", "LIMIT", "2"]).await),
        ["durable:k1", "durable:k2"]
    );
    assert!(keys(proxy(&mut s, &["TIER", "KEYS", "other:*"]).await).is_empty());
    let e = proxy_err(&mut s, &["TIER", "KEYS", "*", "LIMIT", "0"]).await;
    assert!(
        e.contains("LIMIT must be an integer from 1 to 100000"),
        "{e}"
    );
}
