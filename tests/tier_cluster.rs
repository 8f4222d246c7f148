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
