//! Configuration of the Postgres tiers: `[postgres]` and `[[tier]]` rules.
//!
//! ```toml
//! [postgres]
//! url_env = "STRATA_PG_URL"          # or url = "postgres://user@host:5432/db"
//! pool_size = 8
//!
//! [[tier]]
//! pattern = "durable:*"              # Redis glob; the first matching rule wins
//! policy = "mirror"
//! write = "through"                  # or "behind"
//!
//! [[tier]]
//! pattern = "blob:*"
//! policy = "spill"
//! min_size = 65536                   # and/or idle_ms = 3600000
//! ```
//!
//! `validate` refuses, with the rule named, what cannot work: a rule
//! without `[postgres]`, a mirror without `write`, a spill without a
//! threshold, an option of one policy on another.

use serde::Deserialize;

/// `[postgres]`.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PostgresConfig {
    /// `postgres://user[:password]@host:port/db[?…]`. Prefer `url_env`
    /// when the URL holds a password.
    #[serde(default)]
    pub url: Option<String>,
    /// The environment variable holding the URL.
    #[serde(default)]
    pub url_env: Option<String>,
    /// Streaming replicas (URLs): tier reads may go to them (`read_from`),
    /// and one of them is written to once promoted (`tier/ha/`).
    #[serde(default)]
    pub replicas: Vec<String>,
    /// Where tier reads go: `primary`, `replica` or `least-lag`.
    #[serde(default)]
    pub read_from: super::ha::ReadFrom,
    /// A replica further behind than this (ms) is not read.
    #[serde(default = "super::ha::config::default_max_replica_lag_ms")]
    pub max_replica_lag_ms: u64,
    /// `/health/ready` answers 503 (not ready) while Postgres is
    /// unreachable, instead of 200 "degraded" (the default: strata still
    /// serves every key no rule names, and resident mirrored keys).
    #[serde(default)]
    pub ready_needs_postgres: bool,
    /// How often every host is asked its role and replay lag (ms).
    #[serde(default = "super::ha::config::default_probe_interval_ms")]
    pub probe_interval_ms: u64,
    /// Most connections strata opens to Postgres.
    #[serde(default = "default_pool_size")]
    pub pool_size: u32,
    /// How long a write waits for a connection before it fails as
    /// `tier unavailable`.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// How long one statement may take; past it a write's outcome is
    /// unknown and reported so.
    #[serde(default = "default_statement_timeout_ms")]
    pub statement_timeout_ms: u64,
    /// How often expired rows are swept (in batches of `sweep_batch`).
    #[serde(default = "default_sweep_interval_ms")]
    pub sweep_interval_ms: u64,
    /// Rows deleted per sweep statement.
    #[serde(default = "default_sweep_batch")]
    pub sweep_batch: i64,
    /// How long a delete's tombstone is kept (it stops an older put that
    /// arrives late from bringing the key back).
    #[serde(default = "default_tombstone_retention_secs")]
    pub tombstone_retention_secs: u64,
    /// `[postgres.write_behind]`: the outbox and its drain
    /// (`tier/behind/config.rs`).
    #[serde(default)]
    pub write_behind: super::behind::BehindConfig,
    /// `[postgres.spill]`: the spill scanner (`tier/spill/config.rs`).
    #[serde(default)]
    pub spill: super::spill::SpillConfig,
}

fn default_pool_size() -> u32 {
    8
}
fn default_connect_timeout_ms() -> u64 {
    2_000
}
fn default_statement_timeout_ms() -> u64 {
    5_000
}
fn default_sweep_interval_ms() -> u64 {
    1_000
}
fn default_sweep_batch() -> i64 {
    1_000
}
fn default_tombstone_retention_secs() -> u64 {
    86_400
}

impl PostgresConfig {
    /// The URL, from `url` or the `url_env` variable.
    pub fn resolved_url(&self) -> Result<String, String> {
        match (&self.url, &self.url_env) {
            (Some(url), None) => Ok(url.clone()),
            (None, Some(var)) => std::env::var(var)
                .map_err(|_| format!("postgres.url_env: environment variable '{var}' is not set")),
            (Some(_), Some(_)) => Err("postgres: give url or url_env, not both".into()),
            (None, None) => Err("postgres: url or url_env is required".into()),
        }
    }
}

/// How a rule keeps its keys.
#[derive(Debug, Clone, Copy, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// Every key lives in Redis and in Postgres.
    Mirror,
    /// Large or cold keys move to Postgres and leave Redis.
    Spill,
}

/// When a mirrored change reaches Postgres.
#[derive(Debug, Clone, Copy, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum WriteMode {
    /// Committed in Postgres before the client is answered.
    Through,
    /// Captured with the Redis write, drained to Postgres in batches.
    Behind,
}

/// One `[[tier]]` rule.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TierRuleConfig {
    /// Redis glob over key names.
    pub pattern: String,
    /// `mirror` or `spill`.
    pub policy: Policy,
    /// Mirror only: `through` or `behind`.
    #[serde(default)]
    pub write: Option<WriteMode>,
    /// Spill only: values larger than this many bytes move to Postgres.
    #[serde(default)]
    pub min_size: Option<u64>,
    /// Spill only: keys idle longer than this move to Postgres.
    #[serde(default)]
    pub idle_ms: Option<u64>,
    /// Spill only: a key touched within this long is never spilled (the
    /// second threshold: a restored key stays until it is cold again).
    #[serde(default)]
    pub hold_ms: Option<u64>,
}

/// Checks `[postgres]` and `[[tier]]` together. `implemented` says which
/// policies this build can run: the others are refused by name.
pub fn validate(postgres: Option<&PostgresConfig>, rules: &[TierRuleConfig]) -> Result<(), String> {
    if let Some(pg) = postgres {
        if pg.pool_size == 0 {
            return Err("postgres.pool_size must be at least 1".into());
        }
        if pg.connect_timeout_ms == 0 || pg.statement_timeout_ms == 0 {
            return Err(
                "postgres.connect_timeout_ms and statement_timeout_ms must be at least 1".into(),
            );
        }
        if pg.sweep_interval_ms == 0 || pg.sweep_batch <= 0 {
            return Err("postgres.sweep_interval_ms and sweep_batch must be at least 1".into());
        }
        pg.write_behind.validate()?;
        pg.spill.validate()?;
        let url = pg.resolved_url()?;
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err("postgres.url must start with postgres:// or postgresql://".into());
        }
        for (i, r) in pg.replicas.iter().enumerate() {
            if !(r.starts_with("postgres://") || r.starts_with("postgresql://")) {
                return Err(format!(
                    "postgres.replicas[{i}] must start with postgres:// or postgresql://"
                ));
            }
            if *r == url || pg.replicas[..i].contains(r) {
                return Err(format!("postgres.replicas[{i}] is listed twice"));
            }
        }
        super::ha::config::validate(
            &pg.replicas,
            pg.read_from,
            pg.max_replica_lag_ms,
            pg.probe_interval_ms,
        )?;
    }
    for (i, rule) in rules.iter().enumerate() {
        let name = format!("tier[{i}] (pattern '{}')", rule.pattern);
        if rule.pattern.is_empty() {
            return Err(format!("{name}: pattern must not be empty"));
        }
        if postgres.is_none() {
            return Err(format!("{name}: needs a [postgres] section"));
        }
        match rule.policy {
            Policy::Mirror => {
                if rule.min_size.is_some() || rule.idle_ms.is_some() || rule.hold_ms.is_some() {
                    return Err(format!(
                        "{name}: min_size, idle_ms and hold_ms are spill options, not mirror's"
                    ));
                }
                match rule.write {
                    None => {
                        return Err(format!(
                            "{name}: policy = \"mirror\" needs write = \"through\" or \"behind\""
                        ))
                    }
                    Some(WriteMode::Behind) | Some(WriteMode::Through) => {}
                }
            }
            Policy::Spill => super::spill::config::validate_rule(&name, rule)?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pg() -> PostgresConfig {
        toml::from_str("url = \"postgres://u@h/db\"").unwrap_or_else(|e| panic!("{e}"))
    }

    fn rule(text: &str) -> TierRuleConfig {
        toml::from_str(text).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn mirror_through_is_valid() {
        let r = rule("pattern = \"durable:*\"\npolicy = \"mirror\"\nwrite = \"through\"");
        assert_eq!(validate(Some(&pg()), &[r]), Ok(()));
    }

    #[test]
    fn mirror_behind_is_valid() {
        let r = rule("pattern = \"q:*\"\npolicy = \"mirror\"\nwrite = \"behind\"");
        assert_eq!(validate(Some(&pg()), &[r]), Ok(()));
        let mut p = pg();
        p.write_behind.batch_rows = 0;
        assert!(validate(Some(&p), &[])
            .expect_err("invalid")
            .contains("batch_rows"));
    }

    #[test]
    fn spill_rules_are_valid_and_checked() {
        let r = rule("pattern = \"a\"\npolicy = \"spill\"\nmin_size = 1000\nhold_ms = 5");
        assert_eq!(validate(Some(&pg()), &[r]), Ok(()));
        let cases = [
            (
                "pattern = \"a\"\npolicy = \"spill\"\nmin_size = 0",
                "min_size must be at least 1",
            ),
            (
                "pattern = \"a\"\npolicy = \"spill\"\nidle_ms = 10\nhold_ms = 20",
                "hold_ms (20) must not exceed idle_ms (10)",
            ),
            (
                "pattern = \"a\"\npolicy = \"mirror\"\nwrite = \"through\"\nhold_ms = 1",
                "spill options",
            ),
        ];
        for (text, expected) in cases {
            let err = validate(Some(&pg()), &[rule(text)]).expect_err(text);
            assert!(
                err.contains("tier[0] (pattern 'a')") && err.contains(expected),
                "{err}"
            );
        }
        let mut p = pg();
        p.spill.keys_per_sec = 0;
        assert!(validate(Some(&p), &[])
            .expect_err("invalid")
            .contains("keys_per_sec"));
    }

    #[test]
    fn invalid_rules_are_named() {
        let cases = [
            ("pattern = \"a\"\npolicy = \"mirror\"", "needs write"),
            (
                "pattern = \"a\"\npolicy = \"mirror\"\nwrite = \"through\"\nmin_size = 1",
                "spill options",
            ),
            ("pattern = \"a\"\npolicy = \"spill\"", "needs min_size"),
            (
                "pattern = \"a\"\npolicy = \"spill\"\nwrite = \"through\"",
                "mirror option",
            ),
        ];
        for (text, expected) in cases {
            let err = validate(Some(&pg()), &[rule(text)]).expect_err(text);
            assert!(err.contains("tier[0] (pattern 'a')"), "{err}");
            assert!(err.contains(expected), "{text}: {err}");
        }
        let r = rule("pattern = \"a\"\npolicy = \"mirror\"\nwrite = \"through\"");
        let err = validate(None, &[r]).expect_err("no postgres");
        assert!(err.contains("needs a [postgres] section"), "{err}");
        assert!(toml::from_str::<TierRuleConfig>("pattern = \"a\"\npolicy = \"copy\"").is_err());
    }

    #[test]
    fn replica_options_are_checked() {
        let p: PostgresConfig = toml::from_str(
            "url = \"postgres://u@a/db\"\nreplicas = [\"postgres://u@b/db\"]\nread_from = \"least-lag\"",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(validate(Some(&p), &[]), Ok(()));
        assert_eq!(p.read_from, crate::tier::ha::ReadFrom::LeastLag);
        let mut q = p.clone();
        q.replicas.clear();
        assert!(validate(Some(&q), &[])
            .expect_err("no replicas")
            .contains("needs postgres.replicas"));
        let mut q = p.clone();
        q.replicas.push("postgres://u@a/db".into());
        assert!(validate(Some(&q), &[])
            .expect_err("twice")
            .contains("listed twice"));
        let mut q = p.clone();
        q.max_replica_lag_ms = 100;
        assert!(validate(Some(&q), &[])
            .expect_err("bound")
            .contains("probe_interval_ms"));
        assert!(toml::from_str::<PostgresConfig>(
            "url = \"postgres://u@a/db\"\nread_from = \"nearest\""
        )
        .is_err());
    }

    #[test]
    fn postgres_url_is_checked() {
        let mut p = pg();
        p.url = Some("mysql://x".into());
        assert!(validate(Some(&p), &[]).is_err());
        p.url = None;
        assert!(validate(Some(&p), &[])
            .expect_err("invalid")
            .contains("url or url_env"));
        p.url_env = Some("STRATA_TEST_SURELY_UNSET_PG_URL".into());
        assert!(validate(Some(&p), &[])
            .expect_err("invalid")
            .contains("is not set"));
    }
}
