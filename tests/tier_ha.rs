//! Postgres high availability for the tiers (issue 14, item 9), against a
//! real primary and a real streaming replica (`pg_basebackup -R`) that the
//! harness starts: tier reads served by the replica under
//! `read_from = "replica"` (shown by pausing its replay: it then serves
//! an older value than the primary holds), a replica past the lag bound
//! not read, and strata following a promoted replica with no restart:
//! write-through refused meanwhile, then taken; write-behind changes
//! queued during the outage drained into the new primary.

mod support;

use std::time::{Duration, Instant};

use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use strata::app::Running;
use strata::config::Config;
use support::clients::{show, RawConn};
use support::postgres::Postgres;
use support::tier_env::entry_row;
use support::RedisServer;

fn bulk(s: &str) -> Vec<u8> {
    format!("${}\r\n{s}\r\n", s.len()).into_bytes()
}

/// A primary with the schema, its replica, Redis and strata.
struct HaEnv {
    primary: Postgres,
    replica: Postgres,
    redis: RedisServer,
    running: Running,
    primary_pool: PgPool,
    replica_pool: PgPool,
}

async fn pool(url: &str) -> PgPool {
    PgPoolOptions::new()
        .max_connections(2)
        .connect(url)
        .await
        .expect("test pool")
}

impl HaEnv {
    /// `postgres` is extra TOML for `[postgres]` (read_from, the bound).
    async fn start(postgres: &str) -> HaEnv {
        let primary = tokio::task::block_in_place(Postgres::start);
        let schema: Config =
            toml::from_str(&format!("[postgres]\nurl = \"{}\"\n", primary.url())).expect("config");
        strata::tier::migrate(schema.postgres.as_ref().expect("postgres"))
            .await
            .expect("migrate");
        let replica = tokio::task::block_in_place(|| Postgres::start_replica(&primary));
        let redis = RedisServer::start();
        let mut config = support::strata::test_config(&redis.addr());
        let tiers: Config = toml::from_str(&format!(
            "[postgres]\nurl = \"{}\"\nreplicas = [\"{}\"]\nconnect_timeout_ms = 1000\n\
             statement_timeout_ms = 3000\nsweep_interval_ms = 200\nprobe_interval_ms = 100\n{postgres}\n\
             [postgres.write_behind]\nretry_ms = 50\n\
             [[tier]]\npattern = \"durable:*\"\npolicy = \"mirror\"\nwrite = \"through\"\n\
             [[tier]]\npattern = \"events:*\"\npolicy = \"mirror\"\nwrite = \"behind\"\n",
            primary.url(),
            replica.url()
        ))
        .expect("tier config");
        config.postgres = tiers.postgres;
        config.tier = tiers.tier;
        let running = support::strata::start_with(config).await;
        support::strata::wait_ready(&running).await;
        let primary_pool = pool(&primary.url()).await;
        let replica_pool = pool(&replica.url()).await;
        HaEnv {
            primary,
            replica,
            redis,
            running,
            primary_pool,
            replica_pool,
        }
    }

    async fn raw(&self) -> RawConn {
        RawConn::connect(&self.running.addr.to_string()).await
    }

    async fn raw_redis(&self) -> RawConn {
        RawConn::connect(&self.redis.addr()).await
    }
}

/// Waits until `pool` holds `key` with `value`.
async fn wait_row(pool: &PgPool, key: &str, value: &[u8], what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if entry_row(pool, key).await.map(|r| r.1).as_deref() == Some(value) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {key} never held {value:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Evicts `key` from Redis directly, then reads it through strata (a
/// read-through: Postgres answers).
async fn read_through(env: &HaEnv, c: &mut RawConn, key: &str) -> Vec<u8> {
    let mut direct = env.raw_redis().await;
    let _ = direct.cmd(&format!("DEL {key}")).await;
    c.cmd(&format!("GET {key}")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_through_is_served_by_the_replica() {
    let env = HaEnv::start("read_from = \"replica\"\nmax_replica_lag_ms = 600000").await;
    let mut c = env.raw().await;
    c.expect("SET durable:a v1", b"+OK\r\n").await;
    wait_row(&env.replica_pool, "durable:a", b"v1", "replica").await;

    // The replica stops replaying: it keeps v1 while the primary gets v2.
    sqlx::query("SELECT pg_wal_replay_pause()")
        .execute(&env.replica_pool)
        .await
        .expect("pause replay");
    c.expect("SET durable:a v2", b"+OK\r\n").await;
    assert_eq!(
        entry_row(&env.primary_pool, "durable:a")
            .await
            .expect("row")
            .1,
        b"v2"
    );

    // A read-through answered v1: only the replica holds v1. (Until the
    // first probe has seen the replica, reads go to the primary: v2.)
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = read_through(&env, &mut c, "durable:a").await;
        if r == bulk("v1") {
            break;
        }
        assert_eq!(r, bulk("v2"), "{}", show(&r));
        assert!(Instant::now() < deadline, "reads never went to the replica");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // PROXY CHECKPOINT LIST and TIER STATS are answered too (the replica
    // is read-only: they must not write).
    let r = c.cmd("PROXY CHECKPOINT LIST").await;
    assert!(r.starts_with(b"*"), "{}", show(&r));
    let r = c.cmd("PROXY TIER STATS").await;
    let text = show(&r);
    assert!(text.contains("replica"), "{text}");

    // Replay resumes: the replica catches up and serves v2.
    sqlx::query("SELECT pg_wal_replay_resume()")
        .execute(&env.replica_pool)
        .await
        .expect("resume replay");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = read_through(&env, &mut c, "durable:a").await;
        if r == bulk("v2") {
            break;
        }
        assert!(Instant::now() < deadline, "{}", show(&r));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_past_the_lag_bound_is_not_read() {
    let env = HaEnv::start("read_from = \"least-lag\"\nmax_replica_lag_ms = 1000").await;
    let mut c = env.raw().await;
    c.expect("SET durable:warm v0", b"+OK\r\n").await;
    wait_row(&env.replica_pool, "durable:warm", b"v0", "replica").await;
    sqlx::query("SELECT pg_wal_replay_pause()")
        .execute(&env.replica_pool)
        .await
        .expect("pause replay");
    c.expect("SET durable:b v1", b"+OK\r\n").await;
    // Not a timed assertion: the replica's staleness only grows while its
    // replay is paused, so after 3 s it is past the 1 s bound whatever the
    // probe measured.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for _ in 0..5 {
        let r = read_through(&env, &mut c, "durable:b").await;
        assert_eq!(r, bulk("v1"), "the stale replica was read: {}", show(&r));
    }
    let resumed = sqlx::query("SELECT pg_wal_replay_resume()")
        .execute(&env.replica_pool)
        .await;
    resumed.expect("resume replay");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strata_follows_a_promoted_replica() {
    let mut env = HaEnv::start("").await;
    let mut c = env.raw().await;
    c.expect("SET durable:a v1", b"+OK\r\n").await;
    c.expect("SET events:e0 x", b"+OK\r\n").await;
    wait_row(&env.primary_pool, "events:e0", b"x", "primary").await;
    wait_row(&env.replica_pool, "durable:a", b"v1", "replica").await;
    wait_row(&env.replica_pool, "events:e0", b"x", "replica").await;

    tokio::task::block_in_place(|| env.primary.stop());

    // Write-through: refused, nothing applied in Redis.
    let r = c.cmd("SET durable:b v1").await;
    assert!(
        show(&r).starts_with("-ERR tier unavailable: "),
        "write-through with the primary down: {}",
        show(&r)
    );
    let mut direct = env.raw_redis().await;
    direct.expect("EXISTS durable:b", b":0\r\n").await;
    // Write-behind: acknowledged, waiting in the outbox.
    for i in 1..=20 {
        c.expect(&format!("SET events:e{i} v{i}"), b"+OK\r\n").await;
    }
    // Resident keys are still served.
    c.expect("GET durable:a", &bulk("v1")).await;

    tokio::task::block_in_place(|| env.replica.promote());

    // strata finds the new primary by itself: writes are taken again.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = c.cmd("SET durable:b v2").await;
        if r == b"+OK\r\n" {
            break;
        }
        assert!(
            show(&r).starts_with("-ERR tier unavailable: "),
            "{}",
            show(&r)
        );
        assert!(
            Instant::now() < deadline,
            "writes never reached the promoted replica: {}",
            show(&r)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let new_primary = &env.replica_pool;
    wait_row(new_primary, "durable:b", b"v2", "new primary").await;
    assert_eq!(
        entry_row(new_primary, "durable:a").await.expect("a").1,
        b"v1"
    );
    // The outage's write-behind changes drain into the new primary.
    for i in 1..=20 {
        wait_row(
            new_primary,
            &format!("events:e{i}"),
            format!("v{i}").as_bytes(),
            "new primary",
        )
        .await;
    }
    c.expect("GET durable:b", &bulk("v2")).await;
    let r = c.cmd("PROXY TIER STATS").await;
    assert!(show(&r).contains("primary"), "{}", show(&r));
}
