//! Postgres tiers in cluster mode: the tier's own Redis commands go to each
//! key's primary (MSET and DEL across slots), and a flushed cluster is
//! refilled from Postgres. A real 3-primary/3-replica Redis Cluster and a
//! real PostgreSQL, started by the harness.

mod support;

use std::time::{Duration, Instant};

use sqlx::postgres::PgPoolOptions;
use strata::config::ReadFrom;
use support::clients::{show, RawConn};
use support::cluster::Cluster;
use support::postgres::Postgres;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_mode_mirrors_and_refills_across_slots() {
    let cluster = tokio::task::spawn_blocking(Cluster::start)
        .await
        .expect("cluster");
    let pg = tokio::task::spawn_blocking(Postgres::start)
        .await
        .expect("postgres");
    let mut config = support::cluster_strata::config(&cluster, ReadFrom::Primary);
    let tiers = support::tier_env::config("127.0.0.1:1", &pg.url(), 100);
    config.postgres = tiers.postgres;
    config.tier = tiers.tier;
    let running = support::cluster_strata::start_with(config).await;
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(&pg.url())
        .await
        .expect("pool");
    let mut c = RawConn::connect(&running.addr.to_string()).await;

    // Three keys in three slots.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = c.cmd("MSET durable:a 1 durable:b 2 durable:c 3").await;
        if r == b"+OK\r\n" {
            break;
        }
        // The schema is applied in the background at startup.
        assert!(Instant::now() < deadline, "{}", show(&r));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    c.expect("SET durable:a x EX 1000", b"+OK\r\n").await;
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM strata_entries")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(rows, 3);

    for primary in cluster.primaries() {
        cluster.must(&primary, &["FLUSHALL"]);
    }
    c.expect(
        "MGET durable:a durable:b durable:c",
        b"*3\r\n$1\r\nx\r\n$1\r\n2\r\n$1\r\n3\r\n",
    )
    .await;
    let ttl = c.cmd("TTL durable:a").await;
    let ttl: i64 = String::from_utf8_lossy(&ttl[1..])
        .trim()
        .parse()
        .expect("ttl");
    assert!((900..=1000).contains(&ttl), "TTL after re-warm: {ttl}");

    for primary in cluster.primaries() {
        cluster.must(&primary, &["FLUSHALL"]);
    }
    c.expect("DEL durable:a durable:b durable:c durable:none", b":3\r\n")
        .await;
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM strata_entries")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(rows, 0);
    c.expect("GET durable:b", b"$-1\r\n").await;
}

/// The value of `key` in Postgres (None: no live row).
async fn pg_value(pool: &sqlx::PgPool, key: &str) -> Option<Vec<u8>> {
    support::tier_env::entry_row(pool, key).await.map(|r| r.1)
}

/// Waits (generous deadline) until every `(key, value)` has that value in
/// Postgres (`None`: no row).
async fn wait_rows(pool: &sqlx::PgPool, want: &[(String, Option<Vec<u8>>)], what: &str) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let mut wrong = Vec::new();
        for (k, v) in want {
            let got = pg_value(pool, k).await;
            if &got != v {
                wrong.push(format!(
                    "{k}: {:?} (want {:?})",
                    got.map(|g| String::from_utf8_lossy(&g).to_string()),
                    v.as_ref().map(|g| String::from_utf8_lossy(g).to_string())
                ));
            }
        }
        if wrong.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {} keys wrong in postgres, e.g. {:?}",
            wrong.len(),
            &wrong[..wrong.len().min(5)]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Write-behind in cluster mode: every primary captures into its slots'
/// outboxes and the drain empties them all, each key's changes in order
/// (SET, SET, DEL leaves no row), MSET and DEL across slots included; an
/// outbox whose slot moves to another primary while Postgres is down is
/// drained from there once Postgres is back; after a failover the
/// promoted replica's outboxes go on; a FLUSHALL keeps every primary's
/// outboxes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_write_behind_drains_every_primary_in_order() {
    let cluster = tokio::task::spawn_blocking(Cluster::start)
        .await
        .expect("cluster");
    let mut pg = tokio::task::spawn_blocking(Postgres::start)
        .await
        .expect("postgres");
    let mut config = support::cluster_strata::config(&cluster, ReadFrom::Primary);
    let tiers: strata::config::Config =
        toml::from_str(&support::behind_env::tier_toml(&pg.url(), "batch_ms = 20"))
            .expect("tier config");
    strata::tier::migrate(tiers.postgres.as_ref().expect("postgres"))
        .await
        .expect("migrate");
    config.postgres = tiers.postgres;
    config.tier = tiers.tier;
    let running = support::cluster_strata::start_with(config).await;
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(&pg.url())
        .await
        .expect("pool");
    let mut c = RawConn::connect(&running.addr.to_string()).await;

    // 300 keys over every primary: SET v1, SET v2; every third deleted.
    let mut want = Vec::new();
    for i in 0..300 {
        let k = format!("durable:k{i}");
        c.expect(&format!("SET {k} v1-{i}"), b"+OK\r\n").await;
        c.expect(&format!("SET {k} v2-{i}"), b"+OK\r\n").await;
        if i % 3 == 0 {
            c.expect(&format!("DEL {k}"), b":1\r\n").await;
            want.push((k, None));
        } else {
            want.push((k, Some(format!("v2-{i}").into_bytes())));
        }
    }
    // Across slots: one MSET, one DEL (a key of each slot, and a missing one).
    c.expect(
        "MSET durable:a 1 durable:b 2 durable:c 3 other:x 4",
        b"+OK\r\n",
    )
    .await;
    c.expect("DEL durable:a durable:c durable:none other:x", b":3\r\n")
        .await;
    want.push(("durable:a".into(), None));
    want.push(("durable:b".into(), Some(b"2".to_vec())));
    want.push(("durable:c".into(), None));
    want.push(("other:x".into(), None));
    wait_rows(&pool, &want, "after the first writes").await;
    assert!(
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM strata_tombstones")
            .fetch_one(&pool)
            .await
            .expect("tombstones")
            >= 100
    );

    // Postgres down: changes wait in their slots' outboxes. One of those
    // slots moves to another primary with its outbox; Postgres comes back.
    pg.stop();
    let moved_key = "durable:k1";
    let slot = strata::command::slot::hash_slot(moved_key.as_bytes());
    c.expect(&format!("SET {moved_key} while-down"), b"+OK\r\n")
        .await;
    let mut want2 = vec![(moved_key.to_string(), Some(b"while-down".to_vec()))];
    for i in 300..340 {
        let k = format!("durable:k{i}");
        c.expect(&format!("SET {k} down-{i}"), b"+OK\r\n").await;
        want2.push((k, Some(format!("down-{i}").into_bytes())));
    }
    let from = cluster.primary_for_slot(slot);
    let to = cluster
        .primaries()
        .into_iter()
        .find(|p| *p != from)
        .expect("another primary");
    // The slot's outbox stream: the slot's key named `strata:outbox:{…}`.
    let stream_len = |addr: &str| -> i64 {
        let keys = cluster.must(
            addr,
            &["CLUSTER", "GETKEYSINSLOT", &slot.to_string(), "100"],
        );
        let stream = keys
            .items()
            .iter()
            .filter_map(|k| k.str())
            .find(|k| k.starts_with("strata:outbox:{") && k.ends_with('}'))
            .map(str::to_string);
        let Some(stream) = stream else { return 0 };
        match cluster.must(addr, &["XLEN", &stream]) {
            support::sentinel::Resp::Int(n) => n,
            other => panic!("XLEN: {other:?}"),
        }
    };
    let before = stream_len(&from);
    assert!(before >= 1, "the slot's outbox holds the change");
    cluster.migrate_slot(slot, &to);
    assert_eq!(stream_len(&to), before, "the outbox moved with its slot");
    c.expect(&format!("GET {moved_key}"), b"$10\r\nwhile-down\r\n")
        .await;
    pg.restart();
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(&pg.url())
        .await
        .expect("pool");
    wait_rows(&pool, &want2, "after the slot moved and postgres came back").await;

    // A failover: the promoted replica's outboxes are drained.
    let owner = cluster.primary_for_slot(slot);
    let replica = cluster.replica_of(&owner);
    cluster.failover(&replica, None);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = c.cmd(&format!("SET {moved_key} after-failover")).await;
        if r == b"+OK\r\n" {
            break;
        }
        assert!(Instant::now() < deadline, "{}", show(&r));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait_rows(
        &pool,
        &[(moved_key.to_string(), Some(b"after-failover".to_vec()))],
        "after the failover",
    )
    .await;

    // FLUSHALL through strata keeps every primary's outboxes: writes
    // acknowledged before it still reach Postgres.
    pg.stop();
    let mut want3 = Vec::new();
    for i in 0..60 {
        let k = format!("durable:fl{i}");
        c.expect(&format!("SET {k} f{i}"), b"+OK\r\n").await;
        want3.push((k, Some(format!("f{i}").into_bytes())));
    }
    c.expect("FLUSHALL", b"+OK\r\n").await;
    c.expect("GET durable:fl1", b"$-1\r\n").await;
    pg.restart();
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(&pg.url())
        .await
        .expect("pool");
    wait_rows(&pool, &want3, "writes acknowledged before a FLUSHALL").await;
}

/// The outbox bound in cluster mode: with Postgres down, writes spread over
/// every primary are refused with `-ERR tier backlog full` once the slots'
/// outboxes together hold `outbox_max_bytes` (counted every second, so a
/// second of writes past it at most), not applied; once Postgres is back
/// every acknowledged write lands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_write_behind_outbox_is_bounded_over_every_primary() {
    let cluster = tokio::task::spawn_blocking(Cluster::start)
        .await
        .expect("cluster");
    let mut pg = tokio::task::spawn_blocking(Postgres::start)
        .await
        .expect("postgres");
    let mut config = support::cluster_strata::config(&cluster, ReadFrom::Primary);
    let tiers: strata::config::Config = toml::from_str(&support::behind_env::tier_toml(
        &pg.url(),
        "outbox_max_bytes = 65536",
    ))
    .expect("tier config");
    strata::tier::migrate(tiers.postgres.as_ref().expect("postgres"))
        .await
        .expect("migrate");
    config.postgres = tiers.postgres;
    config.tier = tiers.tier;
    let running = support::cluster_strata::start_with(config).await;
    pg.stop();
    let mut c = RawConn::connect(&running.addr.to_string()).await;
    let value = "x".repeat(200);
    let mut acked = Vec::new();
    let mut refused = None;
    for i in 0..5_000 {
        let key = format!("durable:bp{i}");
        let r = c.cmd(&format!("SET {key} {value}")).await;
        if r == b"+OK\r\n" {
            acked.push(key);
        } else {
            refused = Some((key, show(&r)));
            break;
        }
        if i % 50 == 0 {
            // Let the drain's count (every second) see the backlog.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let (refused_key, text) = refused.expect("the outboxes never filled");
    assert!(text.starts_with("-ERR tier backlog full"), "{text}");
    // ~290 bytes per change: 65536 bytes is ~225 changes, plus what the
    // last second's count had not seen yet.
    assert!(acked.len() > 150 && acked.len() < 1_000, "{}", acked.len());
    c.expect(&format!("EXISTS {refused_key}"), b":0\r\n").await;

    pg.restart();
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(&pg.url())
        .await
        .expect("pool");
    let want: Vec<(String, Option<Vec<u8>>)> = acked
        .iter()
        .map(|k| (k.clone(), Some(value.clone().into_bytes())))
        .collect();
    wait_rows(
        &pool,
        &want,
        "every acknowledged write after postgres came back",
    )
    .await;
    // Writes are taken again once the drain caught up.
    let deadline = Instant::now() + Duration::from_secs(30);
    while c.cmd(&format!("SET {refused_key} v")).await != b"+OK\r\n" {
        assert!(Instant::now() < deadline, "writes still refused");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
