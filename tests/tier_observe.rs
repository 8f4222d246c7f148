//! Tier observability (issue 14, item 10) against a real PostgreSQL and
//! redis-server: `/health/ready` not ready while Postgres is stopped (with
//! `ready_needs_postgres`), the write-behind backlog and its oldest
//! change's wait in `PROXY TIER STATS` and in the metrics, growing during
//! the outage and back to zero after it, read-through hits and misses, and
//! the Postgres pool's state.

mod support;

use std::time::{Duration, Instant};

use strata::app::Running;
use strata::config::Config;
use support::clients::{metric, metrics_text, show, RawConn};
use support::postgres::Postgres;
use support::RedisServer;

struct Env {
    pg: Postgres,
    redis: RedisServer,
    running: Running,
}

impl Env {
    async fn start() -> Env {
        let pg = tokio::task::block_in_place(Postgres::start);
        let redis = RedisServer::start();
        let mut config = support::strata::test_config(&redis.addr());
        let tiers: Config = toml::from_str(&format!(
            "[postgres]\nurl = \"{}\"\nconnect_timeout_ms = 1000\nstatement_timeout_ms = 3000\n\
             sweep_interval_ms = 100\nready_needs_postgres = true\n\
             [postgres.write_behind]\nretry_ms = 50\n\
             [[tier]]\npattern = \"durable:*\"\npolicy = \"mirror\"\nwrite = \"through\"\n\
             [[tier]]\npattern = \"events:*\"\npolicy = \"mirror\"\nwrite = \"behind\"\n",
            pg.url()
        ))
        .expect("tier config");
        config.postgres = tiers.postgres;
        config.tier = tiers.tier;
        let running = support::strata::start_with(config).await;
        Env { pg, redis, running }
    }

    async fn raw(&self) -> RawConn {
        RawConn::connect(&self.running.addr.to_string()).await
    }

    async fn metrics(&self) -> String {
        metrics_text(self.running.http_addr.expect("http")).await
    }

    async fn ready(&self) -> (u16, String) {
        support::strata::http_get(self.running.http_addr.expect("http"), "/health/ready")
            .await
            .expect("GET /health/ready")
    }

    /// Waits until `/health/ready` answers `status`.
    async fn wait_ready(&self, status: u16) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (s, body) = self.ready().await;
            if s == status {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "/health/ready never answered {status}: {s} {body}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the metric satisfies `ok`; returns its value.
    async fn wait_metric(&self, series: &str, ok: impl Fn(f64) -> bool) -> f64 {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let text = self.metrics().await;
            if let Some(v) = metric(&text, series) {
                if ok(v) {
                    return v;
                }
            }
            assert!(
                Instant::now() < deadline,
                "{series} never reached the expected value: {:?}",
                metric(&text, series)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A top-level integer field of a RESP2 `PROXY TIER STATS` reply.
fn stats_field(reply: &[u8], field: &str) -> i64 {
    let text = String::from_utf8_lossy(reply);
    let needle = format!("${}\r\n{field}\r\n:", field.len());
    let at = text
        .find(&needle)
        .unwrap_or_else(|| panic!("{field} in {text}"))
        + needle.len();
    text[at..]
        .split("\r\n")
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{field} in {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_backlog_lag_and_pool_state_follow_postgres() {
    let mut env = Env::start().await;
    assert_eq!(env.wait_ready(200).await, "ready\n");
    let mut c = env.raw().await;

    // Read-through hits and misses move.
    c.expect("SET durable:a v", b"+OK\r\n").await;
    let mut direct = RawConn::connect(&env.redis.addr()).await;
    direct.expect("DEL durable:a", b":1\r\n").await;
    c.expect("GET durable:a", b"$1\r\nv\r\n").await;
    c.expect("GET durable:none", b"$-1\r\n").await;
    let text = env.metrics().await;
    assert_eq!(
        metric(&text, "strata_tier_readthrough_hits_total"),
        Some(1.0)
    );
    assert_eq!(
        metric(&text, "strata_tier_readthrough_misses_total"),
        Some(1.0)
    );

    // The pool's state, per host.
    let host = env
        .pg
        .url()
        .split('@')
        .nth(1)
        .expect("host")
        .split('/')
        .next()
        .expect("host")
        .to_string();
    let idle = format!("strata_tier_postgres_pool_connections{{host=\"{host}\",state=\"idle\"}}");
    let in_use =
        format!("strata_tier_postgres_pool_connections{{host=\"{host}\",state=\"in_use\"}}");
    let open = metric(&text, &idle).expect(&idle) + metric(&text, &in_use).expect(&in_use);
    assert!(open >= 1.0, "connections were opened: {text}");
    assert_eq!(
        metric(&text, "strata_tier_postgres_pool_max_connections"),
        Some(8.0)
    );
    assert_eq!(
        metric(
            &text,
            &format!("strata_tier_postgres_primary{{host=\"{host}\"}}")
        ),
        Some(1.0)
    );

    // Write-behind drains; the backlog is empty again.
    c.expect("SET events:0 x", b"+OK\r\n").await;
    env.wait_metric("strata_tier_behind_drained_total", |v| v >= 1.0)
        .await;

    // Postgres stops: not ready; the backlog and its wait grow.
    tokio::task::block_in_place(|| env.pg.stop());
    let body = env.wait_ready(503).await;
    assert!(body.contains("tier: postgres unreachable"), "{body}");
    for i in 1..=10 {
        c.expect(&format!("SET events:{i} v{i}"), b"+OK\r\n").await;
    }
    env.wait_metric("strata_tier_behind_backlog_entries", |v| v >= 10.0)
        .await;
    env.wait_metric("strata_tier_behind_backlog_bytes", |v| v > 0.0)
        .await;
    env.wait_metric("strata_tier_behind_oldest_pending_seconds", |v| v > 0.0)
        .await;
    let r = c.cmd("PROXY TIER STATS").await;
    // STATS reads the table in Postgres: it reports Postgres down.
    assert!(
        show(&r).starts_with("-ERR tier unavailable"),
        "{}",
        show(&r)
    );

    // Postgres returns: ready again, everything drains, the gauges fall.
    tokio::task::block_in_place(|| env.pg.restart());
    assert_eq!(env.wait_ready(200).await, "ready\n");
    env.wait_metric("strata_tier_behind_drained_total", |v| v >= 11.0)
        .await;
    env.wait_metric("strata_tier_behind_backlog_entries", |v| v == 0.0)
        .await;
    env.wait_metric("strata_tier_behind_oldest_pending_seconds", |v| v == 0.0)
        .await;
    let r = c.cmd("PROXY TIER STATS").await;
    assert_eq!(stats_field(&r, "backlog"), 0, "{}", show(&r));
    assert_eq!(stats_field(&r, "lag_ms"), 0, "{}", show(&r));
    assert_eq!(stats_field(&r, "readthrough_hits"), 1, "{}", show(&r));
    assert!(show(&r).contains("behind"), "{}", show(&r));
}

/// The backlog in `PROXY TIER STATS` while changes wait: a test session
/// holds `strata_entries` in SHARE mode (reads go on, writes wait), so the
/// drain's batches wait and retry while STATS still reads the table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_shows_the_waiting_backlog_and_its_age() {
    let env = Env::start().await;
    env.wait_ready(200).await;
    let mut c = env.raw().await;
    c.expect("SET events:first x", b"+OK\r\n").await;
    env.wait_metric("strata_tier_behind_drained_total", |v| v >= 1.0)
        .await;
    let r = c.cmd("PROXY TIER STATS").await;
    assert_eq!(stats_field(&r, "backlog"), 0, "{}", show(&r));

    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&env.pg.url())
        .await
        .expect("pool");
    let mut tx = pool.begin().await.expect("begin");
    sqlx::query("LOCK TABLE strata_entries IN SHARE MODE")
        .execute(&mut *tx)
        .await
        .expect("lock");
    for i in 1..=10 {
        c.expect(&format!("SET events:{i} v{i}"), b"+OK\r\n").await;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = c.cmd("PROXY TIER STATS").await;
        let (backlog, lag) = (stats_field(&r, "backlog"), stats_field(&r, "lag_ms"));
        if backlog == 10 && lag > 0 {
            assert!(stats_field(&r, "backlog_bytes") > 0, "{}", show(&r));
            break;
        }
        assert!(Instant::now() < deadline, "{}", show(&r));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tx.commit().await.expect("unlock");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = c.cmd("PROXY TIER STATS").await;
        if stats_field(&r, "backlog") == 0 {
            assert_eq!(stats_field(&r, "lag_ms"), 0, "{}", show(&r));
            break;
        }
        assert!(Instant::now() < deadline, "{}", show(&r));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
