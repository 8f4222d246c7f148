//! Hot reload: SIGHUP, `PROXY RELOAD` and `PROXY CONFIG SET`.
//!
//! The running config is kept as the file's TOML document (`toml_edit`,
//! so `PROXY CONFIG REWRITE` writes it back with its comments and order).
//! A reload parses and validates the new document, works out which keys
//! changed, builds everything the change needs (transform keys read, a new
//! backend connected) and only then puts it in force: all or nothing. An
//! invalid file, a key that cannot be read or a backend that does not
//! answer leaves everything as it was, and the reload says why.
//!
//! What a reload changes, and how:
//! - `[server]` limits and timeouts: swapped whole (`Shared::server`); new
//!   clients get the new in-flight bound and idle timeout, every client's
//!   next write the new output-buffer limits; the slow log its threshold
//!   and length.
//! - `[[transform]]` rules and `[transform_keys]`: swapped
//!   (`LiveTransforms`); key files and variables are read again.
//! - `[[tier]]` rules (patterns, policies, write modes, spill
//!   thresholds): swapped (`Tiers::swap_rules`) for the commands planned
//!   from then on, connections untouched; unless the running tiers cannot
//!   take them (the first tier rule, none left, the first write-behind or
//!   spill rule: their machinery starts at startup), then named as needing
//!   a restart.
//! - `telemetry.log_level`: the log filter is replaced.
//! - `[backend]` in standalone mode (address, timeouts, connections): a
//!   new node is started and must connect before it takes new requests;
//!   the old one keeps answering what was sent to it and is retired after
//!   the request timeout.
//! - `[backend]` in sentinel mode (the sentinels, the master's name, their
//!   password, timeouts, connections): a whole discovery runs with the new
//!   settings while the old follower keeps following; once a primary is
//!   confirmed and connected the router swaps to it, the old nodes drain
//!   (`backend/sentinel/following.rs`). A discovery that fails refuses
//!   the reload.
//! - `backend.cluster.seeds` in cluster mode: the new seeds must answer a
//!   topology; seeds of another cluster move strata there, its primaries
//!   connected first (`backend/cluster/reseed.rs`).
//! - Everything else (`server.listen`, `server.worker_threads`,
//!   `server.proto_max_bulk_len`, `server.shutdown_grace_ms`,
//!   `telemetry.listen`, `backend.mode`, the backend's credentials and
//!   `read_from`, the other cluster settings, `[tls]` (its files reload
//!   by themselves), `auth.mode`, `[auth.deny]`, `[postgres]`,
//!   the first `[[tier]]` rule, `[audit]`) needs a restart: the reload applies the rest
//!   and names those keys.
//! - The client TLS certificate's paths and minimum version (with the TLS
//!   listener running): a new server configuration is built from the new
//!   files and swapped into the acceptor (`tls::Acceptor::prepare`,
//!   `install`).
//! - `audit.output` and `audit.include_keys` while the audit log runs:
//!   the new output is opened first, then the writer switches to it
//!   before its next batch.
//! - `[[auth.users]]` (users mode): every reload reads the users again,
//!   password files and variables included; when that differs from what
//!   they last read as, they replace strata's users as ACL LOAD does
//!   (`auth/users.rs` `Users::replace`): logged-in clients stay, a new
//!   password is asked at the next AUTH. `[auth.limits]`: the failed-AUTH
//!   hold-back and the CIDR lists, for what comes next.
//! - `[[tier]]` rules, when the running tiers can take them
//!   (`Tiers::check_rules`, then `swap_rules`).

use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;

use crate::config::{BackendMode, Config};
use crate::server::Shared;

/// Keys whose change needs a restart (a prefix matches the key and what
/// is under it).
const RESTART: &[&str] = &[
    "server.listen",
    "server.worker_threads",
    // Read once: by the request parser, and by the listener's drain.
    "server.proto_max_bulk_len",
    "server.shutdown_grace_ms",
    // Who strata is to the backend, and who clients log in as.
    "backend.username",
    "backend.password_env",
    "backend.read_from",
    "telemetry.listen",
    "telemetry.log_json",
    "backend.mode",
    "postgres",
    "audit",
    // The listeners and the backend connectors are built once; the client
    // certificate's paths and minimum version reload (`TLS_LIVE`).
    "tls",
    // Passthrough or users: what every client's check is built from.
    "auth.mode",
    // Checked inline for every command (a filter each client holds):
    // swapping it live would cost every command a load.
    "auth.deny",
    "auth.acllog_max_len",
    // The coordination service is built once (its wake subscription, the
    // replica-ack settings).
    "coord",
];

/// What a reload did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Keys that changed and are now in force.
    pub applied: Vec<String>,
    /// Keys that changed in the file but need a restart.
    pub restart_needed: Vec<String>,
}

impl Report {
    /// The reply's lines.
    pub fn lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.applied.is_empty() && self.restart_needed.is_empty() {
            out.push("no change".to_string());
        }
        out.extend(self.applied.iter().map(|k| format!("applied {k}")));
        out.extend(
            self.restart_needed
                .iter()
                .map(|k| format!("restart needed for {k}")),
        );
        out
    }
}

/// Settings from the command line, which a reload keeps (the file does
/// not override them, as it did not at startup).
#[derive(Debug, Clone, Default)]
pub struct Pinned {
    pub listen: Option<std::net::SocketAddr>,
    pub backend: Option<String>,
    pub metrics_listen: Option<String>,
    pub log_level: Option<String>,
    pub worker_threads: Option<usize>,
    pub maxclients: Option<usize>,
    /// `--no-deny-list`.
    pub no_deny_list: bool,
}

impl Pinned {
    /// Applies the command line over a config read from the file.
    pub fn apply(&self, config: &mut Config) {
        if let Some(v) = self.listen {
            config.server.listen = v;
        }
        if let Some(v) = &self.backend {
            config.backend.address = v.clone();
        }
        if let Some(v) = &self.metrics_listen {
            config.telemetry.listen = v.clone();
        }
        if let Some(v) = &self.log_level {
            config.telemetry.log_level = v.clone();
        }
        if let Some(v) = self.worker_threads {
            config.server.worker_threads = v;
        }
        if let Some(v) = self.maxclients {
            config.server.maxclients = v;
        }
        if self.no_deny_list {
            config.auth.deny.enabled = false;
        }
    }
}

/// Where the config came from.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    /// The file (`--config`); none: defaults and the command line only,
    /// and `PROXY RELOAD` has nothing to read.
    pub path: Option<PathBuf>,
    /// The command line's settings.
    pub pinned: Pinned,
}

/// The running config and what a reload changes.
pub struct Reloader {
    origin: Origin,
    state: tokio::sync::Mutex<State>,
    shared: std::sync::OnceLock<Weak<Shared>>,
    /// The TLS listener's acceptor, when it runs (its paths reload).
    tls: std::sync::OnceLock<Arc<crate::tls::Acceptor>>,
    reloads: Counter,
    failed: Counter,
}

struct State {
    doc: toml_edit::DocumentMut,
    config: Config,
}

impl std::fmt::Debug for Reloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloader")
            .field("path", &self.origin.path)
            .finish_non_exhaustive()
    }
}

impl Reloader {
    /// For a running config read from `origin`.
    pub fn new(
        origin: Origin,
        config: &Config,
        registry: &mut prometheus_client::registry::Registry,
    ) -> Reloader {
        let text = origin
            .path
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .unwrap_or_default();
        let doc = text.parse().unwrap_or_default();
        let reloads = Counter::default();
        let failed = Counter::default();
        let sub = registry.sub_registry_with_prefix("config");
        sub.register("reloads", "Config reloads put in force", reloads.clone());
        sub.register(
            "reload_failures",
            "Config reloads refused (invalid, or what they need failed)",
            failed.clone(),
        );
        Reloader {
            origin,
            state: tokio::sync::Mutex::new(State {
                doc,
                config: config.clone(),
            }),
            shared: std::sync::OnceLock::new(),
            tls: std::sync::OnceLock::new(),
            reloads,
            failed,
        }
    }

    /// The TLS listener's acceptor, whose certificate, key and CA paths a
    /// reload may change (once, at startup).
    pub fn attach_tls(&self, acceptor: Arc<crate::tls::Acceptor>) {
        let _ = self.tls.set(acceptor);
    }

    /// Connects the reloader to what it changes (once, at startup).
    pub fn attach(&self, shared: &Arc<Shared>) {
        let _ = self.shared.set(Arc::downgrade(shared));
    }

    /// SIGHUP and `PROXY RELOAD`: the file, read again.
    pub async fn reload_file(&self, source: &str) -> Result<Report, String> {
        let result = async {
            let path = self
                .origin
                .path
                .as_ref()
                .ok_or("strata was started without --config: there is no file to reload")?;
            let text =
                std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
            let doc: toml_edit::DocumentMut = text
                .parse()
                .map_err(|e| format!("{}: {e}", path.display()))?;
            self.apply(doc, source).await
        }
        .await;
        self.finish(source, result)
    }

    /// `PROXY CONFIG SET key value [key value …]`: the running document
    /// with those keys set, put in force all together or not at all.
    pub async fn set(&self, pairs: &[(String, String)]) -> Result<Report, String> {
        let result = async {
            let mut doc = self.state.lock().await.doc.clone();
            for (key, value) in pairs {
                set_key(&mut doc, key, value)?;
            }
            self.apply(doc, "config set").await
        }
        .await;
        self.finish("config set", result)
    }

    /// `PROXY CONFIG GET pattern`: every key of the running config that
    /// matches the glob, as (dotted key, value) pairs, defaults included
    /// (as Redis's CONFIG GET * lists every parameter): the config in
    /// force, serialized, so a key the file leaves out shows its default
    /// and one set on the command line its value. Options without a value
    /// (an unset `key_file`, say) have no key. A key only the file has
    /// (none should) is listed after them.
    pub async fn get(&self, pattern: &[u8]) -> Vec<(String, String)> {
        let state = self.state.lock().await;
        let mut out = Vec::new();
        if let Some(running) = toml::to_string(&state.config)
            .ok()
            .and_then(|t| t.parse::<toml_edit::DocumentMut>().ok())
        {
            flatten("", running.as_item(), &mut out);
        }
        let mut file = Vec::new();
        flatten("", state.doc.as_item(), &mut file);
        for (k, v) in file {
            if !out.iter().any(|(o, _)| *o == k) {
                out.push((k, v));
            }
        }
        let glob = crate::transform::glob::Glob::new(pattern);
        out.retain(|(k, _)| glob.matches(k.as_bytes()));
        out
    }

    /// `PROXY CONFIG REWRITE`: the running document back to the file,
    /// atomically (a temporary file renamed over it), comments and order
    /// kept.
    pub async fn rewrite(&self) -> Result<(), String> {
        let path = self
            .origin
            .path
            .as_ref()
            .ok_or("strata was started without --config: there is no file to rewrite")?;
        let state = self.state.lock().await;
        let tmp = path.with_extension("toml.strata-tmp");
        std::fs::write(&tmp, state.doc.to_string())
            .map_err(|e| format!("{}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))
    }

    fn finish(&self, source: &str, result: Result<Report, String>) -> Result<Report, String> {
        match &result {
            Ok(report) => {
                self.reloads.inc();
                tracing::info!(
                    source,
                    applied = ?report.applied,
                    restart_needed = ?report.restart_needed,
                    "config reloaded"
                );
            }
            Err(e) => {
                self.failed.inc();
                tracing::warn!(source, error = %e, "config reload refused; the running config is unchanged");
            }
        }
        if let Some(shared) = self.shared.get().and_then(Weak::upgrade) {
            if let Some(audit) = &shared.audit {
                audit.record(crate::auth::audit::Event::ConfigReload {
                    source: source.to_string(),
                    outcome: if result.is_ok() {
                        crate::auth::audit::Outcome::Ok
                    } else {
                        crate::auth::audit::Outcome::Failed
                    },
                    reason: result.as_ref().err().cloned(),
                });
            }
        }
        result
    }

    async fn apply(&self, doc: toml_edit::DocumentMut, _source: &str) -> Result<Report, String> {
        let shared = self
            .shared
            .get()
            .and_then(Weak::upgrade)
            .ok_or("strata is stopping")?;
        let mut state = self.state.lock().await;
        let mut next: Config = toml::from_str(&doc.to_string()).map_err(|e| e.to_string())?;
        self.origin.pinned.apply(&mut next);
        next.validate().map_err(|e| e.to_string())?;
        // TLS connectors are built once from `[tls]` (a change there needs
        // a restart; the certificate files reload by themselves).
        next.backend.tls = state.config.backend.tls.clone();

        let mut changed = Vec::new();
        diff("", state.doc.as_item(), doc.as_item(), &mut changed);
        let (mut restart_needed, mut applied): (Vec<String>, Vec<String>) =
            changed.into_iter().partition(|k| needs_restart(k, &next));

        // Build first; nothing is in force until everything is ready.
        let old = &state.config;
        let transforms = if format!("{:?}", next.transform_config())
            != format!("{:?}", old.transform_config())
            || next.server.proto_max_bulk_len != old.server.proto_max_bulk_len
        {
            let stats = shared.transforms.load().stats().clone();
            Some(crate::transform::Transforms::from_config(
                &next.transform_config(),
                next.server.proto_max_bulk_len,
                stats,
            )?)
        } else {
            None
        };
        // strata's users, their password files and variables read again:
        // put in force when what they read as changed (`auth/users.rs`).
        let users = match &shared.auth.users {
            Some(users) if next.auth.mode == old.auth.mode => {
                let loaded = crate::auth::users::Loaded::read(&next.auth)?;
                users.changed(&loaded).then(|| (users.clone(), loaded))
            }
            _ => None,
        };
        // The client TLS certificate's paths: built now, swapped below.
        let tls = match self.tls.get() {
            Some(acceptor) if applied.iter().any(|k| TLS_LIVE.contains(&k.as_str())) => {
                let prepared =
                    crate::tls::Acceptor::prepare(&next.tls).map_err(|e| e.to_string())?;
                Some((acceptor.clone(), prepared))
            }
            _ => None,
        };
        // The audit log's output (opened now) and include_keys.
        let audit = match &shared.audit {
            Some(audit) if next.audit.enabled => {
                let output = (next.audit.output != old.audit.output).then_some(&next.audit.output);
                Some((
                    audit.clone(),
                    crate::auth::audit::Audit::prepare(output, next.audit.include_keys)?,
                ))
            }
            _ => None,
        };
        // `[[tier]]` rules: swapped when the running tiers can take them
        // (`Tiers::check_rules`); else their keys need a restart.
        let tier_rules = if format!("{:?}", next.tier) != format!("{:?}", old.tier) {
            match shared.tiers.as_deref() {
                Some(tiers) => tiers.check_rules(&next.tier),
                None => Err("the first [[tier]] rule needs a restart".into()),
            }
            .map_err(|why| {
                tracing::warn!(reason = %why, "config reload: [[tier]] rules not applied");
                let (tier, rest): (Vec<String>, Vec<String>) =
                    applied.drain(..).partition(|k| is_tier_key(k));
                applied = rest;
                restart_needed.extend(tier);
            })
            .ok()
        } else {
            None
        };
        // Last of the steps that may fail, because it puts itself in force:
        // a new sentinel discovery, or a cluster's new seeds.
        if applied.iter().any(|k| k.starts_with("backend")) {
            if let Some(following) = &shared.sentinel {
                let grace = shared.backend.primary().request_timeout() + Duration::from_millis(500);
                following
                    .restart(&shared.backend, &next.backend, &shared.metrics, grace)
                    .await?;
            }
        }
        if let Some(cluster) = &shared.cluster {
            if next.backend.cluster.seeds != old.backend.cluster.seeds {
                cluster.reseed(&next.backend.cluster.seeds).await?;
            }
        }
        let backend = if next.backend.mode == BackendMode::Standalone
            && shared.cluster.is_none()
            && format!("{:?}", next.backend) != format!("{:?}", old.backend)
        {
            Some(start_backend(&next, &shared).await?)
        } else {
            None
        };

        // In force.
        shared.server.store(Arc::new(next.server.clone()));
        shared.slowlog.set(
            next.server.slowlog_log_slower_than_us,
            next.server.slowlog_max_len,
        );
        if let Some(t) = transforms {
            shared.transforms.replace(t);
        }
        if let Some((users, loaded)) = users {
            for name in users.replace(loaded) {
                // As ACL DELUSER: the removed user's clients are disconnected.
                let filter = crate::server::clients::KillFilter {
                    user: Some(bytes::Bytes::from(name)),
                    ..Default::default()
                };
                shared.clients.kill(&filter, 0);
            }
            if !applied.iter().any(|k| k == "auth.users") {
                applied.push("auth.users".to_string());
            }
        }
        if let Some((acceptor, prepared)) = tls {
            acceptor.install(prepared);
        }
        if let Some((audit, change)) = audit {
            audit.apply(change);
        }
        shared.auth.limiter.set(&next.auth.limits);
        shared.auth.cidrs.set(&next.auth.limits);
        if let (Some(rules), Some(tiers)) = (tier_rules, shared.tiers.as_deref()) {
            tiers.swap_rules(rules);
        }
        if next.telemetry.log_level != old.telemetry.log_level {
            crate::telemetry::reload_log_level(&next.telemetry.log_level)?;
        }
        if let Some((node, grace)) = backend {
            shared.backend.swap_draining(
                crate::backend::router::Topology {
                    primary: node,
                    replicas: Vec::new(),
                },
                "config reload: backend changed",
                grace,
            );
        }
        state.doc = doc;
        state.config = next;
        Ok(Report {
            applied,
            restart_needed,
        })
    }
}

/// A new standalone backend node, connected: `(node, how long the old one
/// keeps answering what was sent to it)`.
async fn start_backend(
    next: &Config,
    shared: &Shared,
) -> Result<(Arc<crate::backend::node::Node>, Duration), String> {
    let node =
        crate::backend::node::Node::start(&next.backend.address, &next.backend, &shared.metrics);
    let patience = Duration::from_millis(next.backend.connect_timeout_ms.max(100) * 4);
    let until = tokio::time::Instant::now() + patience;
    while node.connections_up() == 0 {
        if tokio::time::Instant::now() >= until {
            node.retire("config reload refused: the new backend did not answer".into());
            return Err(format!(
                "backend {} did not answer within {} ms; the running backend is kept",
                next.backend.address,
                patience.as_millis()
            ));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let old_timeout = shared.backend.primary().request_timeout();
    Ok((node, old_timeout + Duration::from_millis(500)))
}

/// `[tls]` keys a reload applies when the TLS listener runs: a new
/// server configuration is built from them (`tls::Acceptor::prepare`).
const TLS_LIVE: &[&str] = &[
    "tls.cert_file",
    "tls.key_file",
    "tls.key_env",
    "tls.client_ca_file",
    "tls.min_version",
];

/// `[audit]` keys a reload applies while the audit log runs.
const AUDIT_LIVE: &[&str] = &["audit.output", "audit.include_keys"];
/// A key of the `[[tier]]` rules.
fn is_tier_key(key: &str) -> bool {
    key == "tier" || key.starts_with("tier.") || key.starts_with("tier[")
}

fn needs_restart(key: &str, next: &Config) -> bool {
    if TLS_LIVE.contains(&key) && next.tls.listen.is_some() {
        return false;
    }
    if AUDIT_LIVE.contains(&key) && next.audit.enabled {
        return false;
    }
    if RESTART.iter().any(|p| {
        key == *p || key.starts_with(&format!("{p}.")) || key.starts_with(&format!("{p}["))
    }) {
        return true;
    }
    // A cluster's nodes are built with the backend settings; its seed
    // list alone is reloaded (`ClusterRouter::reseed`). In sentinel mode
    // the whole discovery restarts with the new settings
    // (`sentinel::Following::restart`), as a standalone node does.
    next.backend.mode == BackendMode::Cluster
        && key.starts_with("backend")
        && key != "backend.cluster.seeds"
}

/// Dotted keys whose values differ between two documents.
fn diff(prefix: &str, old: &toml_edit::Item, new: &toml_edit::Item, out: &mut Vec<String>) {
    match (old.as_table_like(), new.as_table_like()) {
        (Some(a), Some(b)) => {
            for (k, v) in b.iter() {
                let key = join(prefix, k);
                match a.get(k) {
                    Some(o) => diff(&key, o, v, out),
                    None => out.push(key),
                }
            }
            for (k, _) in a.iter() {
                if b.get(k).is_none() {
                    out.push(join(prefix, k));
                }
            }
        }
        _ => {
            if value_text(old) != value_text(new) {
                out.push(prefix.to_string());
            }
        }
    }
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

/// An item's value without its comments and spacing.
fn value_text(item: &toml_edit::Item) -> String {
    match item {
        toml_edit::Item::Value(v) => {
            let mut v = v.clone();
            v.decor_mut().clear();
            v.to_string()
        }
        toml_edit::Item::ArrayOfTables(a) => {
            let mut a = a.clone();
            for t in a.iter_mut() {
                t.decor_mut().clear();
            }
            a.to_string()
        }
        other => other.to_string(),
    }
}

/// Every leaf of a document as (dotted key, value).
fn flatten(prefix: &str, item: &toml_edit::Item, out: &mut Vec<(String, String)>) {
    match item.as_table_like() {
        Some(t) => {
            for (k, v) in t.iter() {
                flatten(&join(prefix, k), v, out);
            }
        }
        None => out.push((prefix.to_string(), value_text(item).trim().to_string())),
    }
}

/// Sets `a.b.c` to `value`: a TOML value when it parses as one (number,
/// boolean, array), else a string.
fn set_key(doc: &mut toml_edit::DocumentMut, key: &str, value: &str) -> Result<(), String> {
    let parsed: toml_edit::Value = value
        .parse()
        .unwrap_or_else(|_| toml_edit::Value::from(value));
    let mut parts: Vec<&str> = key.split('.').collect();
    let leaf = parts.pop().filter(|l| !l.is_empty()).ok_or("empty key")?;
    let mut table = doc.as_table_mut();
    for part in parts {
        let entry = table
            .entry(part)
            .or_insert_with(|| toml_edit::Item::Table(toml_edit::Table::new()));
        table = entry
            .as_table_mut()
            .ok_or_else(|| format!("{key}: '{part}' is not a table"))?;
    }
    match table.get_mut(leaf) {
        Some(item) if item.is_value() => {
            // Keep the line's comment.
            let decor = item.as_value().map(|v| v.decor().clone());
            let mut v = parsed;
            if let Some(d) = decor {
                *v.decor_mut() = d;
            }
            *item = toml_edit::Item::Value(v);
        }
        Some(_) => return Err(format!("{key} is a table, not a value")),
        None => {
            table.insert(leaf, toml_edit::value(parsed));
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn doc(text: &str) -> toml_edit::DocumentMut {
        text.parse().unwrap()
    }

    #[test]
    fn diff_names_changed_keys_and_ignores_comments() {
        let a = doc("# c\n[server]\nmaxclients = 5 # five\nlisten = \"127.0.0.1:1\"\n");
        let b = doc("[server]\nmaxclients = 6\nlisten = \"127.0.0.1:1\" # same\n[backend]\naddress = \"x:1\"\n");
        let mut out = Vec::new();
        diff("", a.as_item(), b.as_item(), &mut out);
        assert_eq!(
            out,
            vec!["server.maxclients".to_string(), "backend".to_string()]
        );
    }

    #[test]
    fn set_key_keeps_comments_and_types() {
        let mut d = doc("# top\n[server]\n# the bound\nmaxclients = 5 # five\n");
        set_key(&mut d, "server.maxclients", "7").unwrap();
        set_key(&mut d, "telemetry.log_level", "debug").unwrap();
        let text = d.to_string();
        assert!(
            text.contains("# top") && text.contains("# the bound"),
            "{text}"
        );
        assert!(text.contains("maxclients = 7 # five"), "{text}");
        let c: Config = toml::from_str(&text).unwrap();
        assert_eq!(c.server.maxclients, 7);
        assert_eq!(c.telemetry.log_level, "debug");
        assert!(set_key(&mut d, "server", "1").is_err());
    }

    #[test]
    fn restart_keys() {
        let c = Config::default();
        assert!(needs_restart("server.listen", &c));
        assert!(!needs_restart("tier", &c));
        assert!(needs_restart("postgres.url", &c));
        assert!(!needs_restart("server.maxclients", &c));
        assert!(!needs_restart("backend.address", &c));
        assert!(!needs_restart("transform", &c));
        let mut cluster = Config::default();
        cluster.backend.mode = BackendMode::Cluster;
        assert!(!needs_restart("backend.cluster.seeds", &cluster));
        assert!(needs_restart(
            "backend.cluster.refresh_interval_ms",
            &cluster
        ));
        assert!(needs_restart("backend.request_timeout_ms", &cluster));
        let mut sentinel = Config::default();
        sentinel.backend.mode = BackendMode::Sentinel;
        assert!(!needs_restart("backend.sentinel.sentinels", &sentinel));
        assert!(!needs_restart("backend.sentinel.master_name", &sentinel));
        assert!(!needs_restart("backend.request_timeout_ms", &sentinel));
        assert!(needs_restart("backend.read_from", &sentinel));
        assert!(needs_restart("backend.mode", &sentinel));
    }

    #[test]
    fn flatten_lists_leaves() {
        let d = doc("[server]\nmaxclients = 5\n[backend]\naddress = \"a:1\"\n");
        let mut out = Vec::new();
        flatten("", d.as_item(), &mut out);
        assert_eq!(
            out,
            vec![
                ("server.maxclients".to_string(), "5".to_string()),
                ("backend.address".to_string(), "\"a:1\"".to_string())
            ]
        );
    }
}
