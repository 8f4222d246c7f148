//! Postgres tiers, `mirror` with `write = "through"` (issue 14), against a
//! real PostgreSQL and a real redis-server started by the harness: rows as
//! users see them, Postgres down and back, Redis emptied, expiry, delete
//! ordering, and one Postgres fetch for many concurrent misses.

mod support;

use std::time::{Duration, Instant};

use support::clients::{metric, show};
use support::tier_env::{now_ms, TierEnv};

fn bulk(s: &str) -> Vec<u8> {
    format!("${}\r\n{s}\r\n", s.len()).into_bytes()
}

async fn int_reply(conn: &mut support::clients::RawConn, line: &str) -> i64 {
    let r = conn.cmd(line).await;
    let text = String::from_utf8_lossy(&r);
    assert!(text.starts_with(':'), "{line}: {}", show(&r));
    text[1..].trim().parse().expect("integer")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_get_round_trip_shows_the_row_in_postgres() {
    let env = TierEnv::start().await;
    let mut c = env.raw().await;
    c.expect("SET durable:a hello", b"+OK\r\n").await;
    c.expect("GET durable:a", &bulk("hello")).await;
    let (kind, value, v1, expires) = env.row("durable:a").await.expect("row for durable:a");
    assert_eq!(
        (kind.as_str(), value.as_slice(), expires),
        ("string", &b"hello"[..], None)
    );
    assert!(v1 > 0);

    let before = now_ms();
    c.expect("SET durable:a again EX 100", b"+OK\r\n").await;
    let (_, value, v2, expires) = env.row("durable:a").await.expect("row");
    assert_eq!(value, b"again");
    assert!(v2 > v1, "the version grows: {v1} then {v2}");
    let at = expires.expect("expires_at set by EX");
    assert!(
        at >= before + 100_000 && at <= now_ms() + 100_000,
        "expires_at {at} is 100 s after the write ({before})"
    );
    // Redis got the same absolute expiry.
    let mut direct = env.raw_redis().await;
    assert_eq!(int_reply(&mut direct, "PEXPIRETIME durable:a").await, at);

    // Keys no rule names stay out of Postgres.
    c.expect("SET cache:a x", b"+OK\r\n").await;
    assert!(env.row("cache:a").await.is_none());
    assert_eq!(env.row_count().await, 1);

    // MSET, KEEPTTL, PERSIST, EXPIRE and GETDEL keep the row in step.
    c.expect(
        "MSET durable:m1 one durable:m2 two cache:m3 three",
        b"+OK\r\n",
    )
    .await;
    assert_eq!(env.row("durable:m2").await.expect("m2").1, b"two");
    assert!(env.row("cache:m3").await.is_none());
    c.expect("SET durable:a kept KEEPTTL", b"+OK\r\n").await;
    assert_eq!(env.row("durable:a").await.expect("a").3, Some(at));
    c.expect("PERSIST durable:a", b":1\r\n").await;
    assert_eq!(env.row("durable:a").await.expect("a").3, None);
    c.expect("EXPIRE durable:a 500 NX", b":1\r\n").await;
    assert!(env.row("durable:a").await.expect("a").3.is_some());
    c.expect("GETDEL durable:m1", &bulk("one")).await;
    assert!(env.row("durable:m1").await.is_none());

    // Writes the mirror does not implement are refused, not half-done.
    let r = c.cmd("INCR durable:counter").await;
    assert!(
        show(&r).starts_with("-ERR tier: 'incr' is not supported on mirrored keys"),
        "{}",
        show(&r)
    );
    direct.expect("EXISTS durable:counter", b":0\r\n").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_down_fails_writes_and_keeps_reads_until_it_returns() {
    let mut env = TierEnv::start().await;
    let mut c = env.raw().await;
    c.expect("SET durable:k v1", b"+OK\r\n").await;

    env.pg.stop();
    let r = c.cmd("SET durable:k v2").await;
    assert!(
        show(&r).starts_with("-ERR tier unavailable: "),
        "write-through with Postgres down: {}",
        show(&r)
    );
    let r = c.cmd("DEL durable:k").await;
    assert!(
        show(&r).starts_with("-ERR tier unavailable: "),
        "{}",
        show(&r)
    );
    // Nothing half-applied: Redis still holds the committed value …
    let mut direct = env.raw_redis().await;
    direct.expect("GET durable:k", &bulk("v1")).await;
    // … and resident keys, mirrored or not, are still served.
    c.expect("GET durable:k", &bulk("v1")).await;
    c.expect("SET cache:x y", b"+OK\r\n").await;
    // Readiness says so, and stays 200: strata still serves.
    let http = env.running.http_addr.expect("http");
    let ready = || async move {
        support::strata::http_get(http, "/health/ready")
            .await
            .expect("GET /health/ready")
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = ready().await;
        if body.contains("tier: postgres unreachable") {
            assert_eq!(status, 200, "{body}");
            break;
        }
        assert!(Instant::now() < deadline, "readiness never said: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    env.pg.restart();
    env.reconnect_pool().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = c.cmd("SET durable:k v3").await;
        if r == b"+OK\r\n" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "writes never worked again: {}",
            show(&r)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(env.row("durable:k").await.expect("row").1, b"v3");
    c.expect("GET durable:k", &bulk("v3")).await;
    let (status, body) = ready().await;
    assert_eq!(status, 200);
    assert!(!body.contains("postgres"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emptied_redis_is_refilled_from_postgres_with_ttls() {
    let mut env = TierEnv::start().await;
    let mut c = env.raw().await;
    c.expect("SET durable:t1 v1 EX 1000", b"+OK\r\n").await;
    c.expect("SET durable:p forever", b"+OK\r\n").await;
    let at = env.row("durable:t1").await.expect("row").3.expect("expiry");

    // Redis restarted with no persistence: every key is gone.
    env.redis.restart();
    let mut direct = env.raw_redis().await;
    direct.expect("DBSIZE", b":0\r\n").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = c.cmd("GET durable:t1").await;
        if r == bulk("v1") {
            break;
        }
        assert!(Instant::now() < deadline, "never re-warmed: {}", show(&r));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The same absolute expiry as before, in Redis too.
    assert_eq!(int_reply(&mut direct, "PEXPIRETIME durable:t1").await, at);
    c.expect("TTL durable:p", b":-1\r\n").await;
    c.expect("GET durable:p", &bulk("forever")).await;

    // FLUSHALL does not erase Postgres either.
    direct.expect("FLUSHALL", b"+OK\r\n").await;
    c.expect("EXISTS durable:p durable:t1 durable:none", b":2\r\n")
        .await;
    // A key evicted from Redis still counts for DEL.
    direct.expect("FLUSHALL", b"+OK\r\n").await;
    c.expect("DEL durable:p durable:none", b":1\r\n").await;
    assert!(env.row("durable:p").await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_key_is_not_served_from_postgres() {
    // No sweep during the test: the expired row stays, and must not be served.
    let env = TierEnv::start_with(3_600_000).await;
    let mut c = env.raw().await;
    c.expect("SET durable:e v EX 1", b"+OK\r\n").await;
    assert!(env.row("durable:e").await.is_some());
    let mut direct = env.raw_redis().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while direct.cmd("EXISTS durable:e").await != b":0\r\n" {
        assert!(Instant::now() < deadline, "redis never expired the key");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Redis lacks it; Postgres's row is still there, past its expiry.
    assert!(env.row("durable:e").await.is_some(), "not swept yet");
    let hits = "strata_tier_readthrough_hits_total";
    let before = metric(&env.metrics().await, hits).expect("hits");
    c.expect("GET durable:e", b"$-1\r\n").await;
    // Postgres did not return it (not even to re-warm it already expired).
    assert_eq!(metric(&env.metrics().await, hits), Some(before));
    c.expect("EXISTS durable:e", b":0\r\n").await;
    direct.expect("EXISTS durable:e", b":0\r\n").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_rows_are_swept() {
    let env = TierEnv::start_with(100).await;
    let mut c = env.raw().await;
    c.expect("SET durable:e v PX 200", b"+OK\r\n").await;
    c.expect("SET durable:kept v", b"+OK\r\n").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while env.row("durable:e").await.is_some() {
        assert!(Instant::now() < deadline, "expired row never swept");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(env.row("durable:kept").await.is_some());
    let swept = metric(&env.metrics().await, "strata_tier_swept_rows_total").expect("counter");
    assert!(swept >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_set_del_leaves_no_row() {
    let env = TierEnv::start().await;
    let mut c = env.raw().await;
    c.expect("SET durable:s 1", b"+OK\r\n").await;
    c.expect("SET durable:s 2", b"+OK\r\n").await;
    c.expect("DEL durable:s", b":1\r\n").await;
    assert!(env.row("durable:s").await.is_none());
    assert_eq!(env.row_count().await, 0);
    c.expect("GET durable:s", b"$-1\r\n").await;
    // The delete's tombstone outranks both puts: replaying them changes nothing.
    let tomb: i64 = sqlx::query_scalar("SELECT version FROM strata_tombstones WHERE key = $1")
        .bind(&b"durable:s"[..])
        .fetch_one(&env.pool)
        .await
        .expect("tombstone");
    let store = strata::tier::Store::connect(&strata::tier::StoreOptions {
        url: env.pg.url(),
        pool_size: 1,
        connect_timeout: Duration::from_secs(5),
        statement_timeout: Duration::from_secs(5),
    })
    .expect("store");
    let replay = |v: &'static str, version: i64| strata::tier::store::Put {
        key: bytes::Bytes::from_static(b"durable:s"),
        kind: "string",
        value: bytes::Bytes::from_static(v.as_bytes()),
        expires_at_ms: None,
        version: Some(version),
    };
    let applied = store
        .put(&[replay("1", tomb - 2)])
        .await
        .expect("replayed put");
    assert!(applied.is_empty(), "an older put came back: {applied:?}");
    assert_eq!(env.row_count().await, 0);
    // A newer one applies.
    let applied = store
        .put(&[replay("3", tomb + 1)])
        .await
        .expect("newer put");
    assert_eq!(applied.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_fetch_once() {
    let env = TierEnv::start().await;
    let mut c = env.raw().await;
    let value = "x".repeat(100);
    c.expect(&format!("SET durable:hot {value}"), b"+OK\r\n")
        .await;
    let mut direct = env.raw_redis().await;
    direct.expect("FLUSHALL", b"+OK\r\n").await;
    let series = "strata_tier_readthrough_fetches_total";
    let before = metric(&env.metrics().await, series).expect("fetch counter");

    let mut clients = Vec::new();
    for _ in 0..50 {
        clients.push(env.raw().await);
    }
    let gets = clients
        .into_iter()
        .map(|mut conn| tokio::spawn(async move { conn.cmd("GET durable:hot").await }));
    let replies: Vec<Vec<u8>> = futures_join(gets.collect()).await;
    for r in &replies {
        assert_eq!(show(r), show(&bulk(&value)));
    }
    let after = metric(&env.metrics().await, series).expect("fetch counter");
    assert_eq!(after - before, 1.0, "50 concurrent misses on one key");
    // A key in neither tier: one lookup, nil.
    c.expect("GET durable:nowhere", b"$-1\r\n").await;
    let last = metric(&env.metrics().await, series).expect("fetch counter");
    assert_eq!(last - after, 1.0);
}

async fn futures_join(handles: Vec<tokio::task::JoinHandle<Vec<u8>>>) -> Vec<Vec<u8>> {
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.expect("client task"));
    }
    out
}

/// Many clients writing the same few keys at once (SET, SET … EX, DEL,
/// MSET, PERSIST) through one strata: once they are done, Redis and
/// Postgres agree on every key, value and existence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_leave_both_tiers_agreeing() {
    let env = TierEnv::start_with(3_600_000).await;
    let mut clients = Vec::new();
    for _ in 0..16 {
        clients.push(env.raw().await);
    }
    let tasks: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(t, mut conn)| {
            tokio::spawn(async move {
                for i in 0..60 {
                    let k = (t * 7 + i) % 4;
                    let line = match (t + i) % 5 {
                        0 => format!("SET durable:c{k} v{t}x{i}"),
                        1 => format!("SET durable:c{k} w{t}x{i} EX 1000"),
                        2 => format!("DEL durable:c{k}"),
                        3 => format!(
                            "MSET durable:c{k} m{t}x{i} durable:c{} n{t}x{i}",
                            (k + 1) % 4
                        ),
                        _ => format!("PERSIST durable:c{k}"),
                    };
                    let r = conn.cmd(&line).await;
                    assert!(!r.starts_with(b"-"), "{line}: {}", show(&r));
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("writer");
    }
    let mut direct = env.raw_redis().await;
    for k in 0..4 {
        let key = format!("durable:c{k}");
        let in_redis = direct.cmd(&format!("GET {key}")).await;
        let row = env.row(&key).await;
        match row {
            None => assert_eq!(
                show(&in_redis),
                "$-1\\r\\n",
                "{key}: Redis has it, Postgres not"
            ),
            Some((_, value, _, expires)) => {
                assert_eq!(
                    show(&in_redis),
                    show(&bulk(&String::from_utf8_lossy(&value))),
                    "{key}: the tiers disagree"
                );
                let at = int_reply(&mut direct, &format!("PEXPIRETIME {key}")).await;
                assert_eq!(expires.unwrap_or(-1), at, "{key}: expiry");
            }
        }
    }
}

/// RENAME, RENAMENX and COPY on mirrored keys are mirrored: the
/// destination's row written (type, value, expiry) and, for the renames,
/// the source's row deleted, in one transaction with newer versions; an
/// evicted source or destination counts as existing. COPY into another
/// database leaves database 0's rows alone; MOVE and SWAPDB are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rename_and_copy_are_mirrored() {
    let env = TierEnv::start().await;
    let mut c = env.raw().await;
    let mut direct = env.raw_redis().await;
    c.expect("SET durable:a v1 EX 1000", b"+OK\r\n").await;
    let (_, _, va, at) = env.row("durable:a").await.expect("row a");
    c.expect("RENAME durable:a durable:b", b"+OK\r\n").await;
    assert_eq!(env.row("durable:a").await, None, "the source's row is gone");
    let (kind, value, vb, bt) = env.row("durable:b").await.expect("row b");
    assert_eq!(
        (kind.as_str(), value.as_slice(), bt),
        ("string", &b"v1"[..], at)
    );
    assert!(vb > va);
    let tomb: i64 = sqlx::query_scalar("SELECT version FROM strata_tombstones WHERE key = $1")
        .bind(&b"durable:a"[..])
        .fetch_one(&env.pool)
        .await
        .expect("tombstone of durable:a");
    assert!(tomb > vb, "the delete is newer than the put");
    c.expect("GET durable:b", &bulk("v1")).await;
    assert!(int_reply(&mut direct, "PEXPIRETIME durable:b").await == at.expect("ttl"));

    // An evicted source is re-warmed, then renamed.
    c.expect("SET durable:c x", b"+OK\r\n").await;
    direct.expect("DEL durable:c", b":1\r\n").await;
    c.expect("RENAME durable:c durable:d", b"+OK\r\n").await;
    assert_eq!(env.row("durable:c").await, None);
    assert_eq!(env.row("durable:d").await.expect("d").1, b"x");
    c.expect("EXISTS durable:c", b":0\r\n").await;
    c.expect("GET durable:d", &bulk("x")).await;

    // RENAMENX and COPY: an existing (even evicted) destination wins.
    c.expect("RENAMENX durable:b durable:d", b":0\r\n").await;
    direct.expect("DEL durable:d", b":1\r\n").await;
    c.expect("RENAMENX durable:b durable:d", b":0\r\n").await;
    c.expect("COPY durable:b durable:e", b":1\r\n").await;
    c.expect("COPY durable:b durable:e", b":0\r\n").await;
    c.expect("SET durable:b v2", b"+OK\r\n").await;
    c.expect("COPY durable:b durable:e REPLACE", b":1\r\n")
        .await;
    assert_eq!(env.row("durable:b").await.expect("b").1, b"v2");
    assert_eq!(env.row("durable:e").await.expect("e").1, b"v2");

    // Out of and into the rules.
    c.expect("RENAME durable:e cache:e", b"+OK\r\n").await;
    assert_eq!(env.row("durable:e").await, None);
    assert_eq!(env.row("cache:e").await, None);
    c.expect("GET cache:e", &bulk("v2")).await;
    direct.expect("HSET cache:h f1 a f2 b", b":2\r\n").await;
    c.expect("RENAME cache:h durable:h", b"+OK\r\n").await;
    assert_eq!(env.row("durable:h").await.expect("h").0, "hash");
    direct.expect("FLUSHALL", b"+OK\r\n").await;
    c.expect("HGET durable:h f2", &bulk("b")).await;

    // Redis's own answers where nothing changes.
    c.expect("RENAME durable:none durable:z", b"-ERR no such key\r\n")
        .await;
    c.expect("COPY durable:none durable:z", b":0\r\n").await;
    c.expect(
        "COPY durable:h durable:h",
        b"-ERR source and destination objects are the same\r\n",
    )
    .await;
    c.expect("COPY durable:h durable:z foo", b"-ERR syntax error\r\n")
        .await;
    assert_eq!(env.row("durable:z").await, None);

    // Another database: database 0's rows do not change.
    c.expect("COPY durable:h durable:k DB 1", b":1\r\n").await;
    assert_eq!(env.row("durable:k").await, None);
    let r = c.cmd("MOVE durable:h 1").await;
    assert!(
        String::from_utf8_lossy(&r).starts_with("-ERR tier: 'move' on a mirrored key"),
        "{}",
        show(&r)
    );
    let r = c.cmd("SWAPDB 0 1").await;
    assert!(
        String::from_utf8_lossy(&r).starts_with("-ERR tier: 'swapdb'"),
        "{}",
        show(&r)
    );
    c.expect("HGET durable:h f1", &bulk("a")).await;
}
