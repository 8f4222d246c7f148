//! A real PostgreSQL, a real redis-server and strata in front of the
//! latter with `[[tier]]` rules, for the tier tests; plus a Postgres pool
//! to look at the tables as users would.

use std::time::{Duration, Instant};

use sqlx::postgres::PgPoolOptions;
use sqlx::{PgPool, Row};
use strata::app::Running;
use strata::config::Config;

use super::clients::RawConn;
use super::postgres::Postgres;
use super::RedisServer;

/// The rule every tier test uses: `durable:*` mirrored write-through.
pub const RULES: &str =
    "[[tier]]\npattern = \"durable:*\"\npolicy = \"mirror\"\nwrite = \"through\"\n";

pub struct TierEnv {
    pub pg: Postgres,
    pub redis: RedisServer,
    pub running: Running,
    pub pool: PgPool,
}

/// The test config: [`super::strata::test_config`] with `[postgres]`
/// (short timeouts, sweeps every `sweep_interval_ms`) and [`RULES`].
pub fn config(redis: &str, pg_url: &str, sweep_interval_ms: u64) -> Config {
    let mut c = super::strata::test_config(redis);
    let tiers: Config = toml::from_str(&format!(
        "[postgres]\nurl = \"{pg_url}\"\nconnect_timeout_ms = 1000\nstatement_timeout_ms = 3000\n\
         sweep_interval_ms = {sweep_interval_ms}\n{RULES}"
    ))
    .expect("tier config");
    c.postgres = tiers.postgres;
    c.tier = tiers.tier;
    c
}

impl TierEnv {
    /// Starts Postgres, Redis and strata; returns once strata is ready and
    /// the schema is in place.
    pub async fn start() -> TierEnv {
        TierEnv::start_with(100).await
    }

    /// [`TierEnv::start`] with expired rows swept every `sweep_interval_ms`.
    pub async fn start_with(sweep_interval_ms: u64) -> TierEnv {
        TierEnv::start_custom(sweep_interval_ms, "").await
    }

    /// [`TierEnv::start_with`] plus `[[transform]]` rules and
    /// `[transform_keys]` from `extra` (TOML).
    pub async fn start_custom(sweep_interval_ms: u64, extra: &str) -> TierEnv {
        let pg = Postgres::start();
        let redis = RedisServer::start();
        let mut config = config(&redis.addr(), &pg.url(), sweep_interval_ms);
        let extra: Config = toml::from_str(extra).expect("extra config");
        config.transform = extra.transform;
        config.transform_keys = extra.transform_keys;
        let running = super::strata::start_with(config).await;
        super::strata::wait_ready(&running).await;
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .connect(&pg.url())
            .await
            .expect("test pool");
        let env = TierEnv {
            pg,
            redis,
            running,
            pool,
        };
        env.wait_for_schema().await;
        env
    }

    /// A raw connection through strata.
    pub async fn raw(&self) -> RawConn {
        RawConn::connect(&self.running.addr.to_string()).await
    }

    /// A raw connection straight to Redis.
    pub async fn raw_redis(&self) -> RawConn {
        RawConn::connect(&self.redis.addr()).await
    }

    /// strata's /metrics.
    pub async fn metrics(&self) -> String {
        super::clients::metrics_text(self.running.http_addr.expect("http")).await
    }

    /// A fresh pool (after Postgres restarted).
    pub async fn reconnect_pool(&mut self) {
        self.pool = PgPoolOptions::new()
            .max_connections(2)
            .connect(&self.pg.url())
            .await
            .expect("test pool");
    }

    async fn wait_for_schema(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let found: Option<i64> = sqlx::query_scalar(
                "SELECT count(*) FROM information_schema.tables WHERE table_name = 'strata_entries'",
            )
            .fetch_one(&self.pool)
            .await
            .ok();
            if found == Some(1) {
                return;
            }
            assert!(Instant::now() < deadline, "strata never created its schema");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The row of `key` as users see it: (type, value, version, expires_at
    /// as Unix ms).
    pub async fn row(&self, key: &str) -> Option<(String, Vec<u8>, i64, Option<i64>)> {
        entry_row(&self.pool, key).await
    }

    /// Rows in strata_entries.
    pub async fn row_count(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM strata_entries")
            .fetch_one(&self.pool)
            .await
            .expect("count")
    }
}

/// Unix time in ms.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
}

/// The `strata_entries` row of `key` as users see it: (type, value,
/// version, expires_at as Unix ms).
pub async fn entry_row(pool: &PgPool, key: &str) -> Option<(String, Vec<u8>, i64, Option<i64>)> {
    sqlx::query(
        "SELECT type, value, version, (extract(epoch FROM expires_at) * 1000)::int8 \
         FROM strata_entries WHERE key = $1",
    )
    .bind(key.as_bytes())
    .fetch_optional(pool)
    .await
    .expect("select row")
    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
}
