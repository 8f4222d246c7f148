//! `[coord]`: the coordination commands' settings. Everything has a
//! default: the commands work with no `[coord]` section at all, on the
//! `redis` backend (the one strata proxies to).

use serde::Deserialize;

/// The `[coord]` section.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CoordConfig {
    /// The coordination commands answer (on by default). Off: strata does
    /// not know them, and Redis answers "unknown command".
    pub enabled: bool,
    /// The longest ttl a lock or lease may ask for, in ms (bounds how long
    /// a crashed holder can keep others out).
    pub max_ttl_ms: i64,
    /// Waiters (LOCK.ACQUIRE … WAIT) one strata queues at once, over every
    /// name; past that a waiter is refused at once with an error, so
    /// memory stays bounded whatever the clients do.
    pub max_waiters: usize,
    /// After an acquisition on a primary that has replicas, wait this long
    /// (ms) for one replica to acknowledge it (`WAIT 1`), so a failover to
    /// that replica keeps the token counter. 0: never wait.
    pub replica_ack_timeout_ms: u64,
    /// `[[coord.backend]]` rules: which backend serves the objects whose
    /// name matches a pattern (the first match wins; no match: `redis`).
    #[serde(rename = "backend")]
    pub backends: Vec<BackendRule>,
}

impl Default for CoordConfig {
    fn default() -> Self {
        CoordConfig {
            enabled: true,
            max_ttl_ms: 30 * 24 * 3600 * 1000,
            max_waiters: 100_000,
            replica_ack_timeout_ms: 100,
            backends: Vec::new(),
        }
    }
}

/// One `[[coord.backend]]` rule.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct BackendRule {
    /// A Redis glob over object names (`orders:*`).
    pub pattern: String,
    /// The backend: only `redis` today (`redlock` and `postgres` are
    /// refused by name until they exist).
    pub kind: BackendKind,
}

/// Where a coordination object lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// The Redis strata proxies to (standalone, Sentinel primary, or the
    /// cluster node owning the object's slot).
    Redis,
    /// Independent Redis instances, a quorum of them (not built yet).
    Redlock,
    /// Postgres advisory locks on a session strata keeps (not built yet).
    Postgres,
}

impl BackendKind {
    /// The `backend` label of the metrics.
    pub fn label(self) -> &'static str {
        match self {
            BackendKind::Redis => "redis",
            BackendKind::Redlock => "redlock",
            BackendKind::Postgres => "postgres",
        }
    }
}

impl CoordConfig {
    /// Checks the settings; the message names the key at fault.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_ttl_ms < 1 {
            return Err("coord.max_ttl_ms must be at least 1".into());
        }
        if self.max_waiters == 0 {
            return Err("coord.max_waiters must be at least 1".into());
        }
        for rule in &self.backends {
            if rule.pattern.is_empty() {
                return Err("coord.backend.pattern must not be empty".into());
            }
            if rule.kind != BackendKind::Redis {
                return Err(format!(
                    "coord.backend kind '{}' (pattern '{}') is not available yet; only 'redis' is",
                    rule.kind.label(),
                    rule.pattern
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<CoordConfig, String> {
        toml::from_str::<CoordConfig>(text)
            .map_err(|e| e.to_string())
            .and_then(|c| c.validate().map(|()| c))
    }

    #[test]
    fn defaults_need_no_section() {
        let c = parse("").expect("defaults");
        assert!(c.enabled);
        assert!(c.backends.is_empty());
    }

    #[test]
    fn refusals_name_the_key() {
        assert!(parse("max_ttl_ms = 0")
            .expect_err("an error")
            .contains("max_ttl_ms"));
        assert!(parse("max_waiters = 0")
            .expect_err("an error")
            .contains("max_waiters"));
        let err = parse("[[backend]]\npattern = \"a*\"\nkind = \"redlock\"").expect_err("an error");
        assert!(err.contains("redlock"), "{err}");
        assert!(parse("[[backend]]\npattern = \"a*\"\nkind = \"redis\"").is_ok());
        assert!(parse("bogus = 1").is_err());
    }
}
