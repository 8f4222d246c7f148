//! Postgres tiers, `mirror` with `write = "behind"`: order per key
//! (deletes included), expiry, idempotent replay, dead letters, and the
//! bounded outbox while Postgres is down. Real PostgreSQL and
//! redis-server, started by the harness. (The SIGKILL test is in
//! tier_behind_crash.rs.)

mod support;

use std::time::Duration;

use support::behind_env::BehindEnv;
use support::clients::{metric, show};

const DRAIN_WAIT: Duration = Duration::from_secs(60);

/// SET, SET, DEL leaves no row (and a tombstone newer than both puts);
/// DEL then SET leaves the last value; the client is answered as Redis
/// answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_set_del_leaves_no_row_and_each_key_keeps_its_order() {
    let env = BehindEnv::start("").await;
    let mut c = env.raw().await;
    c.pipeline(
        b"*3\r\n$3\r\nSET\r\n$9\r\ndurable:a\r\n$2\r\nv1\r\n\
          *3\r\n$3\r\nSET\r\n$9\r\ndurable:a\r\n$2\r\nv2\r\n\
          *2\r\n$3\r\nDEL\r\n$9\r\ndurable:a\r\n\
          *2\r\n$3\r\nDEL\r\n$9\r\ndurable:b\r\n\
          *3\r\n$3\r\nSET\r\n$9\r\ndurable:b\r\n$2\r\nb1\r\n",
        &[b"+OK\r\n", b"+OK\r\n", b":1\r\n", b":0\r\n", b"+OK\r\n"],
    )
    .await;
    // The same, one batch at a time: SET, drained, SET, drained, DEL.
    c.expect("SET durable:c c1", b"+OK\r\n").await;
    env.wait_drained(DRAIN_WAIT).await;
    assert_eq!(
        env.row("durable:c").await.map(|r| r.1),
        Some(b"c1".to_vec())
    );
    c.expect("SET durable:c c2", b"+OK\r\n").await;
    c.expect("DEL durable:c", b":1\r\n").await;
    env.wait_drained(DRAIN_WAIT).await;

    assert_eq!(
        env.row("durable:a").await,
        None,
        "SET, SET, DEL leaves no row"
    );
    assert_eq!(env.row("durable:c").await, None);
    let b = env.row("durable:b").await.expect("durable:b");
    assert_eq!((b.0.as_str(), b.1.as_slice()), ("string", &b"b1"[..]));
    let tomb: i64 = sqlx::query_scalar("SELECT version FROM strata_tombstones WHERE key = $1")
        .bind(&b"durable:a"[..])
        .fetch_one(&env.pool)
        .await
        .expect("tombstone of durable:a");
    assert!(tomb > 0);
    // Keys no rule names never reach the outbox.
    c.expect("SET other:x 1", b"+OK\r\n").await;
    assert_eq!(env.outbox_len().await, 0);
    let m = env.metrics().await;
    // Eight changes, each applied once.
    assert_eq!(
        metric(&m, "strata_tier_behind_drained_total"),
        Some(8.0),
        "{m}"
    );
}

/// TTLs reach `expires_at`; EXPIRE, PERSIST, GETDEL, UNLINK, MSET and SET's
/// options go through the outbox too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_and_other_writes_go_through_the_outbox() {
    let env = BehindEnv::start("").await;
    let mut c = env.raw().await;
    let before = support::tier_env::now_ms();
    c.expect("SET durable:ttl v EX 100", b"+OK\r\n").await;
    c.expect("SET durable:p v", b"+OK\r\n").await;
    c.expect("PEXPIRE durable:p 500000", b":1\r\n").await;
    c.expect("SET durable:q v PX 500000", b"+OK\r\n").await;
    c.expect("PERSIST durable:q", b":1\r\n").await;
    c.expect("PERSIST durable:q", b":0\r\n").await;
    c.expect("EXPIRE durable:none 10", b":0\r\n").await;
    c.expect("SET durable:g gv", b"+OK\r\n").await;
    c.expect("GETDEL durable:g", b"$2\r\ngv\r\n").await;
    c.expect("MSET durable:m1 a other:m b durable:m2 c", b"+OK\r\n")
        .await;
    c.expect("UNLINK durable:m2", b":1\r\n").await;
    c.expect("SET durable:m1 z NX", b"$-1\r\n").await;
    c.expect("SET durable:m1 z2 XX GET", b"$1\r\na\r\n").await;
    c.expect("SET durable:k kv EX 1000", b"+OK\r\n").await;
    c.expect("SET durable:k kv2 KEEPTTL", b"+OK\r\n").await;
    c.expect("EXPIRE durable:k 0", b":1\r\n").await;
    c.expect("GET durable:k", b"$-1\r\n").await;
    env.wait_drained(DRAIN_WAIT).await;

    let ttl = env.row("durable:ttl").await.expect("durable:ttl");
    let at = ttl.3.expect("expires_at");
    assert!(
        at >= before + 99_000 && at <= support::tier_env::now_ms() + 101_000,
        "{at}"
    );
    assert!(env.row("durable:p").await.expect("p").3.is_some());
    assert_eq!(env.row("durable:q").await.expect("q").3, None, "PERSIST");
    assert_eq!(env.row("durable:none").await, None);
    assert_eq!(env.row("durable:g").await, None, "GETDEL");
    assert_eq!(env.row("durable:m2").await, None, "UNLINK");
    assert_eq!(env.row("other:m").await, None);
    assert_eq!(env.row("durable:m1").await.expect("m1").1, b"z2".to_vec());
    assert_eq!(
        env.row("durable:k").await,
        None,
        "EXPIRE in the past deletes"
    );
}

/// At least once, idempotent: applying the whole outbox again, twice,
/// leaves every tier table byte-identical (versions make redeliveries
/// no-ops, tombstones keep deletes deleted).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaying_the_whole_outbox_twice_leaves_the_tables_byte_identical() {
    let mut env = BehindEnv::start("").await;
    // Postgres down: the entries stay in the outbox, where we copy them.
    env.pg.stop();
    let mut c = env.raw().await;
    for i in 0..300 {
        let k = format!("durable:r{}", i % 100);
        match i % 7 {
            3 => {
                let r = c.cmd(&format!("DEL {k}")).await;
                assert!(r.starts_with(b":"), "{}", show(&r));
            }
            5 => c.expect(&format!("SET {k} v{i} EX 1000"), b"+OK\r\n").await,
            _ => c.expect(&format!("SET {k} v{i}"), b"+OK\r\n").await,
        }
    }
    let mut r = env.raw_redis().await;
    let all = r.cmd("XRANGE strata:outbox - +").await;
    let entries = parse_entries(&all);
    assert_eq!(entries.len(), 300, "every change is in the outbox");

    env.pg.restart();
    env.reconnect_pool().await;
    env.wait_drained(DRAIN_WAIT).await;
    let first = env.dump().await;
    assert!(first.contains(&hex("durable:r0")), "{first}");

    for _ in 0..2 {
        for fields in &entries {
            let mut args: Vec<&[u8]> = vec![b"XADD", b"strata:outbox", b"*"];
            args.extend(fields.iter().map(Vec::as_slice));
            let reply = r.call(&args).await;
            assert!(reply.starts_with(b"$"), "{}", show(&reply));
            // What the capture would have counted against the bound.
            let size = entry_size(fields);
            r.cmd(&format!("HINCRBY strata:outbox:meta bytes {size}"))
                .await;
        }
        env.wait_drained(DRAIN_WAIT).await;
        assert_eq!(env.dump().await, first, "a replay changed the tables");
    }
}

/// A change Postgres refuses for good goes to strata_dead_letters with the
/// reason, is counted, and the rest of its batch still lands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_postgres_refuses_is_dead_lettered_and_the_rest_drains() {
    let env = BehindEnv::start("").await;
    sqlx::query(
        "ALTER TABLE strata_entries ADD CONSTRAINT test_no_poison \
         CHECK (key <> convert_to('durable:poison', 'UTF8'))",
    )
    .execute(&env.pool)
    .await
    .expect("constraint");
    let mut c = env.raw().await;
    c.pipeline(
        b"*3\r\n$3\r\nSET\r\n$11\r\ndurable:ok1\r\n$1\r\n1\r\n\
          *3\r\n$3\r\nSET\r\n$14\r\ndurable:poison\r\n$1\r\nx\r\n\
          *3\r\n$3\r\nSET\r\n$11\r\ndurable:ok2\r\n$1\r\n2\r\n",
        &[b"+OK\r\n", b"+OK\r\n", b"+OK\r\n"],
    )
    .await;
    env.wait_drained(DRAIN_WAIT).await;
    assert_eq!(env.row("durable:ok1").await.expect("ok1").1, b"1".to_vec());
    assert_eq!(env.row("durable:ok2").await.expect("ok2").1, b"2".to_vec());
    assert_eq!(env.row("durable:poison").await, None);
    let (value, reason): (Vec<u8>, String) = sqlx::query_as(
        "SELECT value, reason FROM strata_dead_letters WHERE key = convert_to('durable:poison', 'UTF8')",
    )
    .fetch_one(&env.pool)
    .await
    .expect("dead letter");
    assert_eq!(value, b"x".to_vec());
    assert!(reason.contains("test_no_poison"), "{reason}");
    let m = env.metrics().await;
    assert_eq!(
        metric(&m, "strata_tier_behind_dead_letters_total"),
        Some(1.0),
        "{m}"
    );
    // The key stays served from Redis.
    c.expect("GET durable:poison", b"$1\r\nx\r\n").await;
}

/// Postgres stopped: writes are acknowledged until the outbox reaches its
/// bound, then refused with `-ERR tier backlog full` (nothing applied);
/// reads keep working; when Postgres returns, everything acknowledged
/// drains with no operator action and writes are taken again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_down_fills_the_bounded_outbox_then_everything_drains() {
    let mut env = BehindEnv::start("outbox_max_bytes = 65536").await;
    env.pg.stop();
    let mut c = env.raw().await;
    let value = "x".repeat(200);
    let mut acked = Vec::new();
    let mut refused = None;
    for i in 0..2_000 {
        let key = format!("durable:bp{i}");
        let r = c.cmd(&format!("SET {key} {value}")).await;
        if r == b"+OK\r\n" {
            acked.push(key);
        } else {
            refused = Some((key, show(&r)));
            break;
        }
    }
    let (refused_key, text) = refused.expect("the outbox never filled");
    assert!(text.starts_with("-ERR tier backlog full"), "{text}");
    // 65536 bytes at ~290 bytes per change.
    assert!(acked.len() > 150 && acked.len() < 260, "{}", acked.len());
    // Refused means not applied, and the bound holds.
    c.expect(&format!("EXISTS {refused_key}"), b":0\r\n").await;
    let mut r = env.raw_redis().await;
    let held = r.cmd("HGET strata:outbox:meta bytes").await;
    let held: i64 = String::from_utf8_lossy(&held)
        .lines()
        .nth(1)
        .and_then(|l| l.parse().ok())
        .expect("bytes");
    assert!(held <= 65536, "{held}");
    // Reads and keys no rule names keep working.
    c.expect("EXISTS durable:bp0", b":1\r\n").await;
    c.expect("SET other:k v", b"+OK\r\n").await;
    let refusals = metric(
        &env.metrics().await,
        "strata_tier_behind_backlog_full_total",
    );
    assert_eq!(refusals, Some(1.0));

    env.pg.restart();
    env.reconnect_pool().await;
    env.wait_drained(DRAIN_WAIT).await;
    let rows: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM strata_entries WHERE key = ANY($1) AND value = convert_to($2, 'UTF8')",
    )
    .bind(acked.iter().map(|k| k.as_bytes()).collect::<Vec<_>>())
    .bind(&value)
    .fetch_one(&env.pool)
    .await
    .expect("count");
    assert_eq!(
        rows as usize,
        acked.len(),
        "every acknowledged write reached Postgres"
    );
    c.expect(&format!("SET {refused_key} v"), b"+OK\r\n").await;
    env.wait_drained(DRAIN_WAIT).await;
    assert!(env.row(&refused_key).await.is_some());
}

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

/// XRANGE's reply: each entry's field/value list.
fn parse_entries(reply: &[u8]) -> Vec<Vec<Vec<u8>>> {
    // *N ( *2 $id *2k ($f $v)... )
    let mut pos = 0;
    let n = header(reply, &mut pos, b'*');
    let mut out = Vec::new();
    for _ in 0..n {
        assert_eq!(header(reply, &mut pos, b'*'), 2);
        let _id = bulk(reply, &mut pos);
        let k = header(reply, &mut pos, b'*');
        out.push((0..k).map(|_| bulk(reply, &mut pos)).collect());
    }
    out
}

fn header(b: &[u8], pos: &mut usize, kind: u8) -> usize {
    assert_eq!(b[*pos], kind, "at {pos}: {}", show(&b[*pos..]));
    let end = *pos
        + b[*pos..]
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("crlf");
    let n = std::str::from_utf8(&b[*pos + 1..end])
        .expect("utf8")
        .parse()
        .expect("len");
    *pos = end + 2;
    n
}

fn bulk(b: &[u8], pos: &mut usize) -> Vec<u8> {
    let n = header(b, pos, b'$');
    let v = b[*pos..*pos + n].to_vec();
    *pos += n + 2;
    v
}

fn entry_size(fields: &[Vec<u8>]) -> usize {
    let get = |name: &[u8]| {
        fields
            .chunks(2)
            .find(|p| p[0] == name)
            .map_or(0, |p| p[1].len())
    };
    get(b"k") + get(b"v") + 64
}

/// Cluster mode gives every slot its own outbox (`<outbox_key>:{tag}`,
/// tests/tier_cluster.rs drains them): an `outbox_key` with a hash tag of
/// its own would put them all in one slot, so it is refused at startup
/// with the field named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_mode_refuses_an_outbox_key_with_a_hash_tag() {
    let cluster = support::redis_server::one_node_cluster();
    let mut config = support::strata::cluster_config(&[cluster.addr()]);
    let tiers: strata::config::Config = toml::from_str(&support::behind_env::tier_toml(
        "postgres://postgres@127.0.0.1:1/postgres",
        "outbox_key = \"{strata}:outbox\"",
    ))
    .expect("config");
    config.postgres = tiers.postgres;
    config.tier = tiers.tier;
    config.validate().expect("valid config");
    let err = match strata::app::start(config).await {
        Ok(_) => panic!("strata started with a hash-tagged outbox key in cluster mode"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("postgres.write_behind.outbox_key"), "{err}");
}

/// RENAME, RENAMENX and COPY of write-behind keys go through the outbox:
/// the destination's put and the source's delete, captured with the
/// command.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rename_and_copy_go_through_the_outbox() {
    let env = BehindEnv::start("").await;
    let mut c = env.raw().await;
    c.expect("SET durable:a v1 PX 500000", b"+OK\r\n").await;
    c.expect("RENAME durable:a durable:b", b"+OK\r\n").await;
    c.expect("COPY durable:b durable:c", b":1\r\n").await;
    c.expect("RENAMENX durable:c durable:b", b":0\r\n").await;
    c.expect("SET durable:d d", b"+OK\r\n").await;
    c.expect("RENAME durable:d other:d", b"+OK\r\n").await;
    c.expect("RENAME durable:none durable:z", b"-ERR no such key\r\n")
        .await;
    env.wait_drained(DRAIN_WAIT).await;
    assert_eq!(env.row("durable:a").await, None);
    let b = env.row("durable:b").await.expect("b");
    assert_eq!(b.1, b"v1".to_vec());
    assert!(b.3.is_some(), "the TTL moved with the key");
    assert_eq!(env.row("durable:c").await.expect("c").1, b"v1".to_vec());
    assert_eq!(env.row("durable:d").await, None);
    assert_eq!(env.row("other:d").await, None);
    assert_eq!(env.row("durable:z").await, None);
}

/// FLUSHALL and FLUSHDB through strata empty Redis but keep the outbox:
/// writes acknowledged before the flush still reach Postgres (a flush never
/// erases Postgres). Inside MULTI the flush is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flushall_keeps_the_outbox_so_acknowledged_writes_reach_postgres() {
    let mut env = BehindEnv::start("").await;
    env.pg.stop();
    let mut c = env.raw().await;
    for i in 0..50 {
        c.expect(&format!("SET durable:f{i} v{i}"), b"+OK\r\n")
            .await;
    }
    c.expect("DEL durable:f0", b":1\r\n").await;
    c.expect("SET other:x 1", b"+OK\r\n").await;
    c.expect("FLUSHALL", b"+OK\r\n").await;
    c.expect("GET durable:f1", b"$-1\r\n").await;
    c.expect("EXISTS other:x", b":0\r\n").await;
    assert_eq!(env.outbox_len().await, 51, "the flush kept the outbox");
    c.expect("SET durable:g1 g", b"+OK\r\n").await;
    c.expect("FLUSHDB ASYNC", b"+OK\r\n").await;
    c.expect("FLUSHALL BOGUS", b"-ERR syntax error\r\n").await;
    c.expect("MULTI", b"+OK\r\n").await;
    let r = c.cmd("FLUSHALL").await;
    assert!(
        String::from_utf8_lossy(&r)
            .starts_with("-ERR tier: 'flushall' is not supported inside MULTI"),
        "{}",
        show(&r)
    );
    c.expect("DISCARD", b"+OK\r\n").await;

    env.pg.restart();
    env.reconnect_pool().await;
    env.wait_drained(DRAIN_WAIT).await;
    assert_eq!(
        env.row("durable:f0").await,
        None,
        "the DEL before the flush"
    );
    for i in 1..50 {
        assert_eq!(
            env.row(&format!("durable:f{i}")).await.map(|r| r.1),
            Some(format!("v{i}").into_bytes()),
            "durable:f{i}"
        );
    }
    assert_eq!(
        env.row("durable:g1").await.map(|r| r.1),
        Some(b"g".to_vec())
    );
    // The drain still works on the kept outbox and group.
    c.expect("SET durable:h h", b"+OK\r\n").await;
    env.wait_drained(DRAIN_WAIT).await;
    assert_eq!(env.row("durable:h").await.map(|r| r.1), Some(b"h".to_vec()));
}
