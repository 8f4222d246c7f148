//! Configuration: serde structs with defaults, and an explicit `validate()`.
//!
//! Unknown keys are rejected (`deny_unknown_fields`), and a parse error from
//! the `toml` crate names the key, the line and the column, so an operator
//! sees exactly what to fix. Command-line flags override the file for the
//! common options (see `main.rs`).

use std::net::SocketAddr;
use std::path::Path;

use serde::Deserialize;

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize, serde::Serialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The client-facing listener and its limits.
    pub server: ServerConfig,
    /// What strata proxies to.
    pub backend: BackendConfig,
    /// The HTTP endpoint for metrics and health, and logging.
    pub telemetry: TelemetryConfig,
    /// `[[transform]]` rules: values compressed and/or encrypted per key
    /// pattern (see `transform::config`). The first matching rule wins.
    #[serde(rename = "transform")]
    pub transform: Vec<crate::transform::RuleConfig>,
    /// `[transform_keys]`: where encryption keys come from (never the keys
    /// themselves).
    pub transform_keys: crate::transform::KeysConfig,
    /// `[postgres]`: the database the tiers use (see `tier::config`).
    pub postgres: Option<crate::tier::PostgresConfig>,
    /// `[[tier]]` rules: keys kept in Postgres too, per key pattern. The
    /// first matching rule wins.
    #[serde(rename = "tier")]
    pub tier: Vec<crate::tier::TierRuleConfig>,
    /// `[audit]`: the audit log (see `auth/audit`).
    pub audit: crate::auth::audit::AuditConfig,
    /// `[tls]`: TLS for clients and to the backends (see `tls::config`).
    pub tls: crate::tls::TlsConfig,
    /// `[auth]`: strata's own users and ACL rules, the deny list, limits
    /// (see `auth::config`).
    pub auth: crate::auth::AuthConfig,
    /// `[coord]`: the coordination commands (see `coord::config`).
    pub coord: crate::coord::CoordConfig,
}

/// The client-facing side.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Where clients connect.
    pub listen: SocketAddr,
    /// Redis's `maxclients`: connections past this get
    /// "ERR max number of clients reached" and are closed.
    pub maxclients: usize,
    /// Connections from one client IP address past this get "ERR max
    /// number of clients reached for this address" and are closed (0: no
    /// limit). Keeps one misbehaving pod or host from taking every slot.
    pub max_clients_per_address: usize,
    /// Redis's `proto-max-bulk-len`: the longest bulk string a client may send.
    pub proto_max_bulk_len: usize,
    /// Requests one client may have in flight before strata stops reading
    /// from it (backpressure to the client's TCP window).
    pub max_inflight_per_client: usize,
    /// Closes a client idle this long (0 = never), like Redis's `timeout`.
    pub client_idle_timeout_secs: u64,
    /// On SIGTERM, how long in-flight replies may take before strata exits anyway.
    pub shutdown_grace_ms: u64,
    /// Runtime worker threads; 0 means one per core. Default 1: a sidecar
    /// shares its pod's cores with the application and Redis, and one
    /// thread avoids cross-thread wakeups (measured: ~25% less CPU per
    /// request than two threads on a 2-core machine; docs/PERFORMANCE.md).
    /// With 1, `main` builds tokio's current-thread runtime.
    pub worker_threads: usize,
    /// Scripts and functions (EVAL, EVALSHA, FCALL, …) run on a backend
    /// connection of the client's own, so a long script leaves the shared
    /// connections free: other clients get Redis's `BUSY` and SCRIPT KILL
    /// reaches Redis at once, as they would directly. `false` sends them on
    /// the shared connections instead: cheaper for script-heavy load
    /// (docs/PERFORMANCE.md), but a long script then holds back the
    /// commands of every client sharing its connection.
    pub scripts_on_own_connection: bool,
    /// Redis's `client-output-buffer-limit`, per client class (`normal`,
    /// `pubsub`): `["normal 0 0 0", "pubsub 32mb 8mb 60"]` by default, as
    /// in Redis. See `server/writer/limit.rs`.
    #[serde(serialize_with = "output_limits")]
    pub client_output_buffer_limit: crate::server::writer::OutputLimits,
    /// Redis's `slowlog-log-slower-than`, in microseconds: commands whose
    /// reply took at least this long (parse to reply) go to `PROXY
    /// SLOWLOG`. Negative: off; 0: every command.
    pub slowlog_log_slower_than_us: i64,
    /// Redis's `slowlog-max-len`: entries kept (the oldest go first).
    pub slowlog_max_len: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 6379)),
            maxclients: 10_000,
            max_clients_per_address: 0,
            proto_max_bulk_len: crate::protocol::DEFAULT_MAX_BULK_LEN,
            max_inflight_per_client: 1024,
            client_idle_timeout_secs: 0,
            shutdown_grace_ms: 10_000,
            worker_threads: 1,
            scripts_on_own_connection: true,
            client_output_buffer_limit: crate::server::writer::OutputLimits::default(),
            slowlog_log_slower_than_us: 10_000,
            slowlog_max_len: 128,
        }
    }
}

/// Where read-only commands go.
#[derive(Debug, Clone, Copy, Deserialize, serde::Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ReadFrom {
    /// Everything to the primary.
    #[default]
    Primary,
    /// Reads to a replica (the same one for a client) when one is healthy.
    PreferReplica,
    /// Reads spread over healthy replicas in turn.
    ReplicaRoundRobin,
}

/// Circuit breaker thresholds (`[backend.breaker]`).
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerConfig {
    /// Consecutive failures that open the breaker.
    pub failure_threshold: u32,
    /// Consecutive successes, while half-open, that close it.
    pub success_threshold: u32,
    /// How long it stays open before letting probes through.
    pub open_ms: u64,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failure_threshold: 5,
            success_threshold: 2,
            open_ms: 2_000,
        }
    }
}

/// How strata reaches its backend.
#[derive(Debug, Clone, Copy, Deserialize, serde::Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum BackendMode {
    /// One Redis server.
    #[default]
    Standalone,
    /// The current primary of a master that Redis Sentinel manages
    /// (`[backend.sentinel]`), followed across failovers.
    Sentinel,
    /// A Redis Cluster (`[backend.cluster]`): slot routing, redirections
    /// and multi-key commands split and merged inside strata.
    Cluster,
}

/// Redis Cluster (`[backend.cluster]`, used when `backend.mode = "cluster"`).
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// `host:port` of some cluster nodes. The topology is read from the
    /// first that answers; the rest are fallbacks.
    pub seeds: Vec<String>,
    /// How often the slot map is re-read even without a MOVED or a lost
    /// connection (which refresh it at once).
    pub refresh_interval_ms: u64,
    /// Most MOVED/ASK redirections followed for one request.
    pub max_redirects: u8,
    /// Most retries, with backoff, of a request answered TRYAGAIN or
    /// CLUSTERDOWN (or sent to a node that is down while the slot map is
    /// refreshed) before the client gets the error.
    pub retry_limit: u32,
    /// At startup, how long strata keeps asking the seeds for a complete
    /// slot map before it gives up and exits.
    pub discovery_timeout_ms: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            seeds: Vec::new(),
            refresh_interval_ms: 5_000,
            max_redirects: 5,
            retry_limit: 8,
            discovery_timeout_ms: 10_000,
        }
    }
}

/// Sentinel discovery (`[backend.sentinel]`, used when `backend.mode = "sentinel"`).
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SentinelConfig {
    /// `host:port` of each sentinel. All are asked, and all are subscribed
    /// to, so any one of them reachable is enough.
    pub sentinels: Vec<String>,
    /// The master's name in the sentinels' `sentinel monitor <name> …`.
    pub master_name: String,
    /// ACL user for the sentinels (None: the default user).
    pub username: Option<String>,
    /// Name of an environment variable holding the sentinels' password
    /// (their `requirepass`; Redis's own password is `backend.password_env`).
    pub password_env: Option<String>,
    /// How often the sentinels are asked for the primary and its replicas,
    /// as a fallback to their `+switch-master` events and to refresh replicas.
    pub poll_interval_ms: u64,
    /// A replica whose acknowledged replication offset trails the primary's
    /// by more than this many bytes gets no reads (0 = no bound). Replicas
    /// acknowledge once a second, so set it above one second of the
    /// primary's replication traffic.
    pub max_replica_lag_bytes: u64,
    /// While a failover runs (from a sentinel's `+try-failover` until the
    /// new primary is confirmed), requests wait instead of going to the old
    /// primary, for at most this long (0 = never wait). Writes acknowledged
    /// by an old primary after the promotion would be lost; this is what
    /// keeps strata from sending any.
    pub failover_hold_ms: u64,
    /// At startup, how long strata keeps asking the sentinels for a primary
    /// that confirms its role before it gives up and exits.
    pub discovery_timeout_ms: u64,
}

impl SentinelConfig {
    /// The sentinels' password, read from `password_env` when set.
    pub fn resolved_password(&self) -> Option<String> {
        self.password_env
            .as_ref()
            .and_then(|var| std::env::var(var).ok())
    }
}

impl Default for SentinelConfig {
    fn default() -> Self {
        SentinelConfig {
            sentinels: Vec::new(),
            master_name: "mymaster".to_string(),
            username: None,
            password_env: None,
            poll_interval_ms: 1_000,
            max_replica_lag_bytes: 16 * 1024 * 1024,
            failover_hold_ms: 5_000,
            discovery_timeout_ms: 10_000,
        }
    }
}

/// The backend side.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackendConfig {
    /// Which kind of backend.
    pub mode: BackendMode,
    /// `host:port` of the Redis server (standalone mode; unused with Sentinel).
    pub address: String,
    /// Shared, pipelined connections per backend and protocol. All ordinary
    /// commands of all clients are multiplexed over these.
    pub connections: usize,
    /// Most dedicated connections (MULTI, blocking, pub/sub, …) held open at once.
    pub dedicated_pool_size: u32,
    /// Connecting gives up after this long.
    pub connect_timeout_ms: u64,
    /// A request with no reply after this long fails with an error, and the
    /// connection it was on is replaced (the backend stopped answering).
    pub request_timeout_ms: u64,
    /// First reconnect delay; doubles per failure up to `reconnect_max_ms`.
    pub reconnect_base_ms: u64,
    /// Longest reconnect delay.
    pub reconnect_max_ms: u64,
    /// How often the backend is PINGed for /health/ready.
    pub health_interval_ms: u64,
    /// ACL user strata authenticates as (None: the default user).
    pub username: Option<String>,
    /// Name of an environment variable holding the backend password. The
    /// password itself never goes in the config file. When set (outside
    /// cluster mode), strata's clients must AUTH before other commands, as
    /// on a Redis with `requirepass`.
    pub password_env: Option<String>,
    /// The per-node circuit breaker.
    pub breaker: BreakerConfig,
    /// Where read-only commands go (replicas come from Sentinel).
    pub read_from: ReadFrom,
    /// Sentinel discovery, for `mode = "sentinel"`.
    pub sentinel: SentinelConfig,
    /// Redis Cluster, for `mode = "cluster"`.
    pub cluster: ClusterConfig,
    /// Not read from the file: the TLS connectors `app.rs` builds from
    /// `[tls.backend]`/`[tls.sentinel]`, carried here to every place that
    /// opens backend connections from this section.
    #[serde(skip)]
    pub tls: crate::tls::BackendConnectors,
}

impl BackendConfig {
    /// The backend password, read from `password_env` when set.
    pub fn resolved_password(&self) -> Option<String> {
        self.password_env
            .as_ref()
            .and_then(|var| std::env::var(var).ok())
    }
}

impl Default for BackendConfig {
    fn default() -> Self {
        BackendConfig {
            mode: BackendMode::Standalone,
            address: "127.0.0.1:7000".to_string(),
            connections: 2,
            dedicated_pool_size: 256,
            connect_timeout_ms: 1_000,
            request_timeout_ms: 5_000,
            reconnect_base_ms: 50,
            reconnect_max_ms: 2_000,
            health_interval_ms: 1_000,
            username: None,
            password_env: None,
            breaker: BreakerConfig::default(),
            read_from: ReadFrom::Primary,
            sentinel: SentinelConfig::default(),
            cluster: ClusterConfig::default(),
            tls: crate::tls::BackendConnectors::default(),
        }
    }
}

/// Metrics, health and logs.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// The HTTP listener for /metrics and /health/*; empty string disables it.
    pub listen: String,
    /// A tracing filter, e.g. "info" or "strata=debug".
    pub log_level: String,
    /// Logs as JSON lines instead of text.
    pub log_json: bool,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            listen: "127.0.0.1:9121".to_string(),
            log_level: "info".to_string(),
            log_json: false,
        }
    }
}

/// A configuration that cannot be used, with a message for the operator.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The path given.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// TOML syntax, an unknown key or a wrong type (the text names key and line).
    #[error("invalid config {path}: {message}")]
    Parse {
        /// The path given.
        path: String,
        /// toml's message, which names the key, line and column.
        message: String,
    },
    /// A `[[transform]]` rule or `[transform_keys]` that cannot be used; the
    /// message names the rule (`transform[1] (pattern 'session:*'): …`).
    #[error("invalid config: {0}")]
    Transform(String),
    /// `[postgres]` or a `[[tier]]` rule that cannot be used; the message
    /// names the rule (`tier[0] (pattern 'durable:*'): …`).
    #[error("invalid config: {0}")]
    Tier(String),
    /// `[tls]` that cannot be used; the message names the key.
    #[error("invalid config: {0}")]
    Tls(String),
    /// A value out of range.
    #[error("invalid config: {key}: {message}")]
    Invalid {
        /// The dotted key, e.g. `server.maxclients`.
        key: &'static str,
        /// What is wrong.
        message: String,
    },
}

impl Config {
    /// Reads and validates a file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let mut config = Config::parse(&text).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.display().to_string(),
                message,
            },
            other => other,
        })?;
        config.auth.file = Some(path.to_path_buf());
        Ok(config)
    }

    /// Parses and validates TOML text.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: "<text>".to_string(),
            message: e.to_string(),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks values that serde cannot: ranges and addresses.
    pub fn validate(&self) -> Result<(), ConfigError> {
        fn invalid(key: &'static str, message: impl Into<String>) -> Result<(), ConfigError> {
            Err(ConfigError::Invalid {
                key,
                message: message.into(),
            })
        }
        if self.server.maxclients == 0 {
            return invalid("server.maxclients", "must be at least 1");
        }
        if self.server.max_inflight_per_client == 0 {
            return invalid("server.max_inflight_per_client", "must be at least 1");
        }
        if self.server.proto_max_bulk_len < 1024 * 1024 {
            // Redis refuses values below 1mb too.
            return invalid(
                "server.proto_max_bulk_len",
                "must be at least 1048576 (1mb), as in Redis",
            );
        }
        if self.backend.address.is_empty() {
            return invalid("backend.address", "must be host:port");
        }
        if !self.backend.address.contains(':') {
            return invalid(
                "backend.address",
                format!("'{}' is not host:port", self.backend.address),
            );
        }
        if self.backend.connections == 0 || self.backend.connections > 64 {
            return invalid("backend.connections", "must be between 1 and 64");
        }
        if self.backend.dedicated_pool_size == 0 {
            return invalid("backend.dedicated_pool_size", "must be at least 1");
        }
        if self.backend.request_timeout_ms == 0 {
            return invalid("backend.request_timeout_ms", "must be at least 1");
        }
        if self.backend.connect_timeout_ms == 0 {
            return invalid("backend.connect_timeout_ms", "must be at least 1");
        }
        if self.backend.reconnect_base_ms == 0
            || self.backend.reconnect_max_ms < self.backend.reconnect_base_ms
        {
            return invalid(
                "backend.reconnect_max_ms",
                "needs reconnect_base_ms >= 1 and reconnect_max_ms >= reconnect_base_ms",
            );
        }
        if let Some(var) = &self.backend.password_env {
            if std::env::var_os(var).is_none() {
                return invalid(
                    "backend.password_env",
                    format!("environment variable '{var}' is not set"),
                );
            }
        }
        let b = &self.backend.breaker;
        if b.failure_threshold == 0 || b.success_threshold == 0 {
            return invalid(
                "backend.breaker",
                "failure_threshold and success_threshold must be at least 1",
            );
        }
        match self.backend.mode {
            BackendMode::Sentinel => self.validate_sentinel()?,
            BackendMode::Cluster => self.validate_cluster()?,
            BackendMode::Standalone => {}
        }
        self.transform_config()
            .validate()
            .map_err(ConfigError::Transform)?;
        crate::tier::config::validate(self.postgres.as_ref(), &self.tier)
            .map_err(ConfigError::Tier)?;
        if let Err(message) = self.audit.validate(self.postgres.is_some()) {
            return invalid("audit", message);
        }
        self.tls
            .validate()
            .map_err(|e| ConfigError::Tls(e.to_string()))?;
        if let Err(message) = self.auth.validate() {
            return invalid("auth", message);
        }
        if let Err(message) = self.coord.validate() {
            return invalid("coord", message);
        }
        if !self.telemetry.listen.is_empty() && self.telemetry.listen.parse::<SocketAddr>().is_err()
        {
            return invalid(
                "telemetry.listen",
                format!("'{}' is not ip:port", self.telemetry.listen),
            );
        }
        Ok(())
    }

    /// The transform rules and key sources, as the transform module takes them.
    pub fn transform_config(&self) -> crate::transform::TransformConfig {
        crate::transform::TransformConfig {
            rules: self.transform.clone(),
            keys: self.transform_keys.clone(),
        }
    }

    fn validate_cluster(&self) -> Result<(), ConfigError> {
        let invalid =
            |key: &'static str, message: String| Err(ConfigError::Invalid { key, message });
        let c = &self.backend.cluster;
        if c.seeds.is_empty() {
            return invalid(
                "backend.cluster.seeds",
                "mode = \"cluster\" needs at least one seed node, e.g. seeds = [\"10.0.0.1:7000\"]"
                    .into(),
            );
        }
        for addr in &c.seeds {
            if !is_host_port(addr) {
                return invalid(
                    "backend.cluster.seeds",
                    format!("'{addr}' is not host:port"),
                );
            }
        }
        if c.refresh_interval_ms < 100 {
            return invalid(
                "backend.cluster.refresh_interval_ms",
                "must be at least 100".into(),
            );
        }
        if c.max_redirects == 0 {
            return invalid("backend.cluster.max_redirects", "must be at least 1".into());
        }
        Ok(())
    }

    fn validate_sentinel(&self) -> Result<(), ConfigError> {
        fn invalid(key: &'static str, message: impl Into<String>) -> Result<(), ConfigError> {
            Err(ConfigError::Invalid {
                key,
                message: message.into(),
            })
        }
        let s = &self.backend.sentinel;
        if s.sentinels.is_empty() {
            return invalid(
                "backend.sentinel.sentinels",
                "mode = \"sentinel\" needs at least one sentinel, e.g. sentinels = [\"10.0.0.1:26379\"]",
            );
        }
        for addr in &s.sentinels {
            if !is_host_port(addr) {
                return invalid(
                    "backend.sentinel.sentinels",
                    format!("'{addr}' is not host:port"),
                );
            }
        }
        if s.master_name.is_empty() || s.master_name.contains(char::is_whitespace) {
            return invalid(
                "backend.sentinel.master_name",
                "must be the master's name as the sentinels monitor it (no spaces)",
            );
        }
        if s.poll_interval_ms < 10 {
            return invalid("backend.sentinel.poll_interval_ms", "must be at least 10");
        }
        if s.discovery_timeout_ms == 0 {
            return invalid(
                "backend.sentinel.discovery_timeout_ms",
                "must be at least 1",
            );
        }
        if let Some(var) = &s.password_env {
            if std::env::var_os(var).is_none() {
                return invalid(
                    "backend.sentinel.password_env",
                    format!("environment variable '{var}' is not set"),
                );
            }
        }
        Ok(())
    }
}

/// `host:port` with a non-empty host and a port from 1 to 65535.
fn is_host_port(addr: &str) -> bool {
    addr.rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p != 0))
}

/// `client_output_buffer_limit` as the file writes it (for `PROXY CONFIG
/// GET`): one `<class> <hard> <soft> <soft seconds>` line per class.
fn output_limits<S: serde::Serializer>(
    limits: &crate::server::writer::OutputLimits,
    s: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeSeq;
    let mut seq = s.serialize_seq(Some(2))?;
    for (class, l) in [("normal", limits.normal), ("pubsub", limits.pubsub)] {
        seq.serialize_element(&format!("{class} {} {} {}", l.hard, l.soft, l.soft_secs))?;
    }
    seq.end()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        Config::default().validate().unwrap();
        let c = Config::parse("").unwrap();
        assert_eq!(c.server.listen.port(), 6379);
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let err = Config::parse("[server]\nmaxclients = 5\nmax_clients = 6\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("max_clients"), "{err}");
        assert!(err.contains("line 3"), "{err}");
    }

    #[test]
    fn wrong_type_names_line() {
        let err = Config::parse("[backend]\n\nconnections = \"two\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 3"), "{err}");
    }

    #[test]
    fn invalid_values() {
        let err = Config::parse("[server]\nmaxclients = 0\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("server.maxclients"), "{err}");
        let err = Config::parse("[backend]\naddress = \"nohost\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("backend.address"), "{err}");
    }

    #[test]
    fn transform_rules_are_validated_and_named() {
        let c = Config::parse(
            "[[transform]]\npattern = \"session:*\"\ncompress = \"lz4\"\nencrypt = true\n\
             [transform_keys]\nactive_key = \"k1\"\n\
             [transform_keys.keys]\nk1 = { env = \"STRATA_KEY_K1\" }\n",
        )
        .unwrap();
        assert_eq!(c.transform.len(), 1);
        assert_eq!(c.transform_config().rules[0].pattern, "session:*");
        let err = Config::parse(
            "[[transform]]\npattern = \"cache:*\"\ncompress = \"lz4\"\n\
             [[transform]]\npattern = \"session:*\"\nencrypt = true\nkey_id = \"k9\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("transform[1] (pattern 'session:*'): key_id 'k9' is not loaded"),
            "{err}"
        );
        let err = Config::parse("[[transform]]\npattern = \"a\"\ncompres = \"lz4\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("compres"), "{err}");
    }

    #[test]
    fn sentinel_mode() {
        let c = Config::parse(
            "[backend]\nmode = \"sentinel\"\nread_from = \"replica-round-robin\"\n\
             [backend.sentinel]\nsentinels = [\"127.0.0.1:26379\", \"sentinel-b:26379\"]\nmaster_name = \"cache\"\n",
        )
        .unwrap();
        assert_eq!(c.backend.mode, BackendMode::Sentinel);
        assert_eq!(c.backend.sentinel.sentinels.len(), 2);
        assert_eq!(c.backend.sentinel.master_name, "cache");
        assert_eq!(c.backend.sentinel.poll_interval_ms, 1_000);

        let err = Config::parse("[backend]\nmode = \"sentinel\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("backend.sentinel.sentinels"), "{err}");
        let err = Config::parse(
            "[backend]\nmode = \"sentinel\"\n[backend.sentinel]\nsentinels = [\"nohost\"]\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("'nohost' is not host:port"), "{err}");
        let err = Config::parse("[backend]\nmode = \"sentinel\"\n[backend.sentinel]\nsentinels = [\"a:1\"]\nmaster_name = \"\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("backend.sentinel.master_name"), "{err}");
        let err = Config::parse("[backend.sentinel]\nsentinel = [\"a:1\"]\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("sentinel"), "{err}");
    }
}
