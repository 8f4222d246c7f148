//! Write-behind test environment: a real PostgreSQL and redis-server, and
//! strata (in-process, or the binary as a child process for SIGKILL) with
//! a `durable:*` rule mirrored write-behind; helpers to look at the outbox
//! in Redis and the tables in Postgres as users would.

use std::time::{Duration, Instant};

use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use strata::app::Running;
use strata::config::Config;

use super::clients::RawConn;
use super::postgres::Postgres;
use super::RedisServer;

/// `[postgres]` with `[postgres.write_behind]` (`behind` is TOML added to
/// that section) and the `durable:*` write-behind rule.
pub fn tier_toml(pg_url: &str, behind: &str) -> String {
    format!(
        "[postgres]\nurl = \"{pg_url}\"\nconnect_timeout_ms = 1000\nstatement_timeout_ms = 3000\n\
         sweep_interval_ms = 200\n[postgres.write_behind]\nretry_ms = 50\n{behind}\n\
         [[tier]]\npattern = \"durable:*\"\npolicy = \"mirror\"\nwrite = \"behind\"\n"
    )
}

pub struct BehindEnv {
    pub pg: Postgres,
    pub redis: RedisServer,
    pub running: Option<Running>,
    pub pool: PgPool,
}

impl BehindEnv {
    /// Postgres, Redis and an in-process strata; `behind` is extra TOML
    /// for `[postgres.write_behind]`.
    pub async fn start(behind: &str) -> BehindEnv {
        let mut env = BehindEnv::servers().await;
        env.running = Some(env.start_strata(behind).await);
        env
    }

    /// Postgres and Redis only (the test starts strata processes itself).
    /// The schema is applied here, so that tests can query from the start.
    pub async fn servers() -> BehindEnv {
        let pg = Postgres::start();
        let redis = RedisServer::start();
        let pool = connect(&pg.url()).await;
        let pg_config: Config = toml::from_str(&tier_toml(&pg.url(), "")).expect("config");
        strata::tier::migrate(pg_config.postgres.as_ref().expect("postgres"))
            .await
            .expect("migrate");
        BehindEnv {
            pg,
            redis,
            running: None,
            pool,
        }
    }

    /// An in-process strata with this env's servers.
    pub async fn start_strata(&self, behind: &str) -> Running {
        let mut c = super::strata::test_config(&self.redis.addr());
        let tiers: Config = toml::from_str(&tier_toml(&self.pg.url(), behind)).expect("config");
        c.postgres = tiers.postgres;
        c.tier = tiers.tier;
        let running = super::strata::start_with(c).await;
        super::strata::wait_ready(&running).await;
        running
    }

    /// A config file for the strata binary (`--config`).
    pub fn config_file(&self, behind: &str) -> tempfile::NamedTempFile {
        use std::io::Write as _;
        let mut f = tempfile::NamedTempFile::new().expect("temp config");
        f.write_all(tier_toml(&self.pg.url(), behind).as_bytes())
            .expect("write config");
        f
    }

    /// A raw connection through the in-process strata.
    pub async fn raw(&self) -> RawConn {
        let r = self.running.as_ref().expect("strata running");
        RawConn::connect(&r.addr.to_string()).await
    }

    /// A raw connection straight to Redis.
    pub async fn raw_redis(&self) -> RawConn {
        RawConn::connect(&self.redis.addr()).await
    }

    /// The in-process strata's /metrics.
    pub async fn metrics(&self) -> String {
        let r = self.running.as_ref().expect("strata running");
        super::clients::metrics_text(r.http_addr.expect("http")).await
    }

    /// A fresh pool (after Postgres restarted).
    pub async fn reconnect_pool(&mut self) {
        self.pool = connect(&self.pg.url()).await;
    }

    /// Entries in the outbox stream (read from Redis directly).
    pub async fn outbox_len(&self) -> i64 {
        let mut r = self.raw_redis().await;
        let reply = r.cmd("XLEN strata:outbox").await;
        int(&reply)
    }

    /// Waits (generous deadline) until the outbox is empty: every captured
    /// change is committed in Postgres (entries leave the stream only
    /// after their commit).
    pub async fn wait_drained(&self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let n = self.outbox_len().await;
            if n == 0 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "outbox still holds {n} entries after {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The row of `key`: (type, value, version, expires_at as Unix ms).
    pub async fn row(&self, key: &str) -> Option<(String, Vec<u8>, i64, Option<i64>)> {
        super::tier_env::entry_row(&self.pool, key).await
    }

    /// Every tier table, rendered row by row (hex for bytes), in key order:
    /// two equal dumps mean byte-identical tables.
    pub async fn dump(&self) -> String {
        let mut out = String::new();
        for q in [
            "SELECT coalesce(string_agg(concat_ws('|', encode(key, 'hex'), type, encode(value, 'hex'), \
             expires_at::text, version::text, updated_at::text), E'\\n' ORDER BY key), '') FROM strata_entries",
            "SELECT coalesce(string_agg(concat_ws('|', encode(key, 'hex'), version::text, deleted_at::text), \
             E'\\n' ORDER BY key), '') FROM strata_tombstones",
            "SELECT coalesce(string_agg(concat_ws('|', id::text, encode(key, 'hex'), reason), E'\\n' ORDER BY id), '') \
             FROM strata_dead_letters",
        ] {
            let part: String = sqlx::query_scalar(q)
                .fetch_one(&self.pool)
                .await
                .expect("dump");
            out.push_str(&part);
            out.push_str("\n--\n");
        }
        out
    }
}

async fn connect(url: &str) -> PgPool {
    PgPoolOptions::new()
        .max_connections(2)
        .connect(url)
        .await
        .expect("test pool")
}

/// The integer of a `:n` reply.
pub fn int(reply: &[u8]) -> i64 {
    let text = String::from_utf8_lossy(reply);
    text.trim()
        .strip_prefix(':')
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not an integer reply: {text:?}"))
}
