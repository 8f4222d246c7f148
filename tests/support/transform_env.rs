//! What the value-transform test binaries (`tests/transforms.rs`,
//! `tests/transforms_rotation.rs`, `tests/cluster_transforms.rs`,
//! `tests/cluster_transforms_rotation.rs`) share: the `[[transform]]` rules
//! they pick from, strata started with them and with keys from files in a
//! temp dir (standalone in front of its own redis-server, or in cluster
//! mode), commands given as words, readers of the stored envelope,
//! `PROXY REWRAP` walks and the transform metrics.
//!
//! Keys come from files (`file = …` key sources), so tests run in parallel
//! without touching the process environment.

use std::collections::{BTreeMap, HashMap};

use redis::aio::MultiplexedConnection;
use redis::{cmd, Value};
use strata::app::Running;
use strata::config::{Config, ReadFrom};
use strata::transform::TransformConfig;

use super::clients::{connect_rs, metric, metrics_text, show, RawConn};
use super::cluster::Cluster;
use super::cluster_strata::{self, rs, within};
use super::RedisServer;

/// The envelope's first bytes (src/transform/envelope/header.rs).
pub const MAGIC: [u8; 4] = [0x00, b'S', b'T', 0xA1];

/// `s:*`: lz4 (from 16 bytes), then AES-GCM: the common case.
pub const RULE_S: &str = r#"
[[transform]]
pattern = "s:*"
compress = "lz4"
min_size = 16
encrypt = true
"#;

/// `c:*`: lz4 only (from 16 bytes).
pub const RULE_C: &str = r#"
[[transform]]
pattern = "c:*"
compress = "lz4"
min_size = 16
"#;

/// `e:*`: AES-GCM only.
pub const RULE_E: &str = r#"
[[transform]]
pattern = "e:*"
encrypt = true
"#;

/// `script:*`: AES-GCM, EVAL allowed.
pub const RULE_SCRIPT: &str = r#"
[[transform]]
pattern = "script:*"
encrypt = true
allow_scripts = true
"#;

/// `strict:*`: AES-GCM, plain values refused.
pub const RULE_STRICT: &str = r#"
[[transform]]
pattern = "strict:*"
encrypt = true
accept_plain = false
"#;

/// The keys on disk in every environment: id and the byte their 32 bytes
/// of material repeat.
pub const KEY_FILES: [(&str, u8); 2] = [("k1", 0x11), ("k2", 0x22)];

/// The rules of the standalone binaries (`tests/transforms.rs`,
/// `tests/transforms_rotation.rs`), for every test:
/// * `s:*` — lz4 (from 16 bytes) and AES-GCM: the common case;
/// * `c:*` — lz4 only;
/// * `e:*` — AES-GCM only;
/// * `script:*` — AES-GCM, EVAL allowed;
/// * `strict:*` — AES-GCM, plain values refused.
pub const RULES: [&str; 5] = [RULE_S, RULE_C, RULE_E, RULE_SCRIPT, RULE_STRICT];

/// A redis-server and strata in front of it with [`RULES`]; keys k1 and k2
/// on disk, `active` the write key, `loaded` the keys strata reads.
pub async fn start(active: &str, loaded: &[&str]) -> TransformEnv {
    TransformEnv::standalone(&RULES, active, loaded).await
}

/// strata with some of the rules above and keys from files ([`KEY_FILES`]);
/// standalone in front of a redis-server of its own, or in cluster mode.
/// Restarts (in process) with other keys loaded keep the backend.
pub struct TransformEnv {
    running: Option<Running>,
    /// The config without rules and keys, for every (re)start.
    base: Config,
    rules: String,
    dir: tempfile::TempDir,
    /// The backend in standalone mode.
    redis: Option<RedisServer>,
}

impl TransformEnv {
    /// A redis-server and strata in front of it with `rules`; `active` is
    /// the write key, `loaded` the keys strata reads.
    pub async fn standalone(rules: &[&str], active: &str, loaded: &[&str]) -> TransformEnv {
        let redis = RedisServer::start();
        let base = super::strata::test_config(&redis.addr());
        TransformEnv::start(base, Some(redis), rules, active, loaded).await
    }

    /// strata in cluster mode in front of `c` (reading from primaries) with
    /// `rules`; `active` is the write key, `loaded` the keys strata reads.
    pub async fn cluster(
        c: &Cluster,
        rules: &[&str],
        active: &str,
        loaded: &[&str],
    ) -> TransformEnv {
        let base = cluster_strata::config(c, ReadFrom::Primary);
        TransformEnv::start(base, None, rules, active, loaded).await
    }

    async fn start(
        base: Config,
        redis: Option<RedisServer>,
        rules: &[&str],
        active: &str,
        loaded: &[&str],
    ) -> TransformEnv {
        use base64::Engine;
        let dir = tempfile::tempdir().unwrap();
        for (id, byte) in KEY_FILES {
            let text = base64::engine::general_purpose::STANDARD.encode([byte; 32]);
            std::fs::write(dir.path().join(id), format!("{text}\n")).unwrap();
        }
        let mut env = TransformEnv {
            running: None,
            base,
            rules: rules.concat(),
            dir,
            redis,
        };
        env.run(active, loaded).await;
        env
    }

    async fn run(&mut self, active: &str, loaded: &[&str]) {
        let mut text = format!(
            "{}\n[transform_keys]\nactive_key = \"{active}\"\n[transform_keys.keys]\n",
            self.rules
        );
        for id in loaded {
            let path = self.dir.path().join(id);
            text.push_str(&format!("{id} = {{ file = \"{}\" }}\n", path.display()));
        }
        let t = TransformConfig::parse(&text).unwrap();
        let mut config = self.base.clone();
        config.transform = t.rules;
        config.transform_keys = t.keys;
        self.running = Some(cluster_strata::start_with(config).await);
    }

    /// Stops strata and starts it again with other keys (the backend stays).
    pub async fn restart(&mut self, active: &str, loaded: &[&str]) {
        if let Some(r) = self.running.take() {
            within("strata shuts down", r.shutdown()).await;
        }
        self.run(active, loaded).await;
    }

    pub fn running(&self) -> &Running {
        self.running.as_ref().unwrap()
    }

    /// strata's client address.
    pub fn addr(&self) -> String {
        self.running().addr.to_string()
    }

    pub async fn con(&self) -> MultiplexedConnection {
        connect_rs(&format!("redis://{}/", self.addr())).await
    }

    pub async fn con3(&self) -> MultiplexedConnection {
        connect_rs(&format!("redis://{}/?protocol=resp3", self.addr())).await
    }

    /// Both protocols, with a key prefix per protocol (`p2`, `p3`).
    pub async fn both(&self) -> [(MultiplexedConnection, &'static str); 2] {
        [(self.con().await, "p2"), (self.con3().await, "p3")]
    }

    pub async fn raw(&self) -> RawConn {
        RawConn::connect(&self.addr()).await
    }

    /// A connection straight to the standalone backend.
    pub async fn backend(&self) -> MultiplexedConnection {
        let redis = self.redis.as_ref().expect("a standalone backend");
        connect_rs(&redis.url()).await
    }

    pub async fn metrics(&self) -> String {
        metrics_text(self.running().http_addr.unwrap()).await
    }
}

/// A JSON document (60 user records, about 6 KB) that compresses well.
pub fn json_doc() -> String {
    let records: Vec<String> = (0..60)
        .map(|i| format!(r#"{{"id":{i},"name":"user {i}","email":"user{i}@example.com","roles":["reader","writer"],"active":true}}"#))
        .collect();
    format!("[{}]", records.join(","))
}

/// A value worth hiding, numbered.
pub fn secret(n: usize) -> String {
    format!("secret-value-{n}-do-not-show")
}

pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
}

/// A stored value is an envelope and does not show the plaintext.
pub fn assert_sealed(stored: &[u8], plain: &str, what: &str) {
    assert!(
        stored.starts_with(&MAGIC),
        "{what}: not an envelope: {}",
        show(stored)
    );
    assert!(
        !contains(stored, plain.as_bytes()),
        "{what}: plaintext visible: {}",
        show(stored)
    );
}

/// An envelope's flags byte (0x01 compressed, 0x02 encrypted, 0x04 origin).
pub fn flags(stored: &[u8], what: &str) -> u8 {
    assert!(
        stored.starts_with(&MAGIC),
        "{what}: not an envelope: {}",
        show(stored)
    );
    stored[5]
}

/// The key id in an encrypted envelope's header.
pub fn key_id(stored: &[u8]) -> Option<String> {
    if !stored.starts_with(&MAGIC) || stored[5] & 0x02 == 0 {
        return None;
    }
    let len = stored[7] as usize;
    Some(String::from_utf8_lossy(&stored[8..8 + len]).into_owned())
}

/// A reply that is a single value, as text.
pub fn text(v: &Value) -> String {
    match v {
        Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        Value::SimpleString(s) => s.clone(),
        Value::Okay => "OK".into(),
        Value::Nil => "(nil)".into(),
        Value::Int(n) => n.to_string(),
        other => panic!("not a string: {other:?}"),
    }
}

/// Field/value pairs from a RESP2 flat array or a RESP3 map.
pub fn pairs(v: &Value, resp3: bool) -> BTreeMap<String, String> {
    match v {
        Value::Map(m) if resp3 => m.iter().map(|(k, v)| (text(k), text(v))).collect(),
        Value::Array(a) if !resp3 => a.chunks(2).map(|p| (text(&p[0]), text(&p[1]))).collect(),
        other => panic!("not pairs (resp3: {resp3}): {other:?}"),
    }
}

/// A command with binary arguments, with redis-rs, that must succeed.
pub async fn q<T: redis::FromRedisValue>(con: &mut MultiplexedConnection, args: &[&[u8]]) -> T {
    let mut c = cmd(std::str::from_utf8(args[0]).unwrap());
    for a in &args[1..] {
        c.arg(*a);
    }
    match c.query_async(con).await {
        Ok(v) => v,
        Err(e) => panic!("{}: {e}", show(&args.join(&b' '))),
    }
}

/// A command given as words.
pub async fn w<T: redis::FromRedisValue>(con: &mut MultiplexedConnection, line: &str) -> T {
    let words: Vec<&[u8]> = line.split_whitespace().map(str::as_bytes).collect();
    q(con, &words).await
}

/// The error text of a command that must fail.
pub async fn err(con: &mut MultiplexedConnection, line: &str) -> String {
    let mut c = cmd(line.split_whitespace().next().unwrap());
    for a in line.split_whitespace().skip(1) {
        c.arg(a);
    }
    match c.query_async::<Value>(con).await {
        Ok(v) => panic!("{line}: expected an error, got {v:?}"),
        Err(e) => e.to_string(),
    }
}

/// The stored value of string `key`, read straight from `backend`.
pub async fn raw_get(backend: &mut MultiplexedConnection, key: &str) -> Vec<u8> {
    let v: Option<Vec<u8>> = w(backend, &format!("GET {key}")).await;
    v.unwrap_or_else(|| panic!("{key} missing on the backend"))
}

/// Every stored value of the keys matching `pattern` that `con` (a
/// backend or a node) holds, by key: strings; hash fields as `key/field`;
/// list elements as `key/index`.
pub async fn stored_values(
    con: &mut MultiplexedConnection,
    pattern: &str,
) -> BTreeMap<String, Vec<u8>> {
    let keys: Vec<String> = rs(con, &["KEYS", pattern]).await;
    let mut out = BTreeMap::new();
    for k in keys {
        let ty: String = rs(con, &["TYPE", &k]).await;
        match ty.as_str() {
            "string" => {
                let v: Vec<u8> = rs(con, &["GET", &k]).await;
                out.insert(k, v);
            }
            "hash" => {
                let h: HashMap<String, Vec<u8>> = rs(con, &["HGETALL", &k]).await;
                for (f, v) in h {
                    out.insert(format!("{k}/{f}"), v);
                }
            }
            "list" => {
                let l: Vec<Vec<u8>> = rs(con, &["LRANGE", &k, "0", "-1"]).await;
                for (i, v) in l.into_iter().enumerate() {
                    out.insert(format!("{k}/{i}"), v);
                }
            }
            _ => {}
        }
    }
    out
}

/// What the steps of a `PROXY REWRAP` walk did.
#[derive(Debug, Default)]
pub struct Walk {
    /// The cursor each step was given (`0` for a walk from the start).
    pub positions: Vec<String>,
    pub scanned: i64,
    pub rewrapped: i64,
    pub skipped: i64,
}

impl Walk {
    /// Counts one step given `cursor` that replied `(next cursor, scanned,
    /// rewrapped, skipped)`; returns the next cursor.
    pub fn add(&mut self, cursor: &str, reply: (String, i64, i64, i64)) -> String {
        let (next, s, r, k) = reply;
        self.positions.push(cursor.to_string());
        self.scanned += s;
        self.rewrapped += r;
        self.skipped += k;
        next
    }

    /// One `PROXY REWRAP pattern COUNT count RESUME cursor` step on a fresh
    /// connection, counted; returns the next cursor.
    pub async fn step(
        &mut self,
        env: &TransformEnv,
        pattern: &str,
        count: usize,
        cursor: &str,
    ) -> String {
        let mut con = env.con().await;
        let count = count.to_string();
        let words = [
            "PROXY", "REWRAP", pattern, "COUNT", &count, "RESUME", cursor,
        ];
        let reply: (String, i64, i64, i64) = rs(&mut con, &words).await;
        self.add(cursor, reply)
    }
}

/// Runs `PROXY REWRAP` from cursor `from` until the cursor is `0` again,
/// each step on a fresh connection.
pub async fn rewrap_all(env: &TransformEnv, pattern: &str, count: usize, from: &str) -> Walk {
    let mut walk = Walk::default();
    let mut cursor = from.to_string();
    loop {
        cursor = walk.step(env, pattern, count, &cursor).await;
        if cursor == "0" {
            return walk;
        }
        assert!(walk.positions.len() < 1000, "REWRAP does not finish");
    }
}

/// `strata_transform_failures_total` of `kind` in the metrics text `m`.
pub fn failures(m: &str, kind: &str) -> f64 {
    let series = format!("strata_transform_failures_total{{kind=\"{kind}\"}}");
    metric(m, &series).unwrap_or_else(|| panic!("no {series} in the metrics"))
}

/// The metrics text `m` counts at least `min_plain` plain (pre-rule)
/// values returned, and exactly `refused` refused by `accept_plain = false`.
pub fn assert_plain_counted(m: &str, min_plain: f64, refused: f64) {
    let plain = metric(m, "strata_transform_plain_values_total").unwrap();
    assert!(plain >= min_plain, "plain values counted: {plain}");
    assert_eq!(failures(m, "plain_refused"), refused);
}

/// Compression paid off in the metrics text `m`: a ratio above 1.2, and at
/// least `min_plain` bytes sealed into fewer stored bytes.
pub fn assert_compression(m: &str, min_plain: f64) {
    let ratio = metric(m, "strata_transform_compression_ratio").unwrap();
    assert!(ratio > 1.2, "ratio {ratio}");
    let before = metric(m, "strata_transform_plain_bytes_total{op=\"seal\"}").unwrap();
    let after = metric(m, "strata_transform_stored_bytes_total{op=\"seal\"}").unwrap();
    assert!(before >= min_plain && after < before, "{before} {after}");
}
