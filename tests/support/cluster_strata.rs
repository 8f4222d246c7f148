//! strata in cluster mode in front of a real cluster (`support::cluster`),
//! and what the cluster test binaries (`tests/cluster_*.rs`) share: where
//! keys land, bounded waits (nothing may hang), node statistics, and a
//! write load through strata that records every acknowledgement.
//!
//! Clients here are plain (non-cluster) clients: redis-rs's
//! `MultiplexedConnection` and the raw RESP [`RawConn`]. Slots are computed
//! with strata's `hash_slot`; `cluster_proxy.rs` checks it against the
//! nodes' own `CLUSTER KEYSLOT`.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::{FromRedisValue, Value};
use strata::app::Running;
use strata::command::slot::hash_slot;
use strata::config::{Config, ReadFrom};

use super::clients::{connect_rs, encode, show, RawConn};
use super::cluster::{Cluster, SlotsView};
use super::sentinel::{info_field, query, Resp};

/// The longest any single request through strata may take before the test
/// calls it a hang.
pub const CALL: Duration = Duration::from_secs(15);

/// The cluster config for `c` (every node a seed), reading from `read_from`.
pub fn config(c: &Cluster, read_from: ReadFrom) -> Config {
    let mut config = super::strata::cluster_config(&c.addrs());
    config.backend.read_from = read_from;
    config
}

/// strata in cluster mode in front of `c`, reading from primaries; ready.
pub async fn start(c: &Cluster) -> Running {
    start_with(config(c, ReadFrom::Primary)).await
}

/// strata with `config`, once it reports ready.
pub async fn start_with(config: Config) -> Running {
    let running = super::strata::start_with(config).await;
    super::strata::wait_ready(&running).await;
    running
}

/// Empty primaries ([`reset`]), strata in front of them reading from
/// primaries, and where keys land: how most cluster tests begin.
pub async fn fresh(c: &Cluster) -> (Running, Placement) {
    blocking(|| reset(c));
    let strata = start(c).await;
    (strata, Placement::of(c))
}

/// A plain redis-rs connection to `addr` (strata or a node).
pub async fn con(addr: impl std::fmt::Display) -> MultiplexedConnection {
    connect_rs(&format!("redis://{addr}/")).await
}

/// Awaits `fut`, panicking if it takes longer than [`CALL`].
pub async fn within<F: Future>(what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(CALL, fut).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: no answer within {CALL:?} (hangs)"),
    }
}

/// Runs blocking cluster administration (the harness is synchronous) without
/// stalling the runtime's other tasks (strata and clients). Needs a
/// multi-thread runtime.
pub fn blocking<R>(f: impl FnOnce() -> R) -> R {
    tokio::task::block_in_place(f)
}

/// A command given as words, with redis-rs, that must succeed (bounded).
pub async fn rs<T: FromRedisValue>(con: &mut MultiplexedConnection, words: &[&str]) -> T {
    let mut c = redis::cmd(words[0]);
    for a in &words[1..] {
        c.arg(*a);
    }
    match within(&words.join(" "), c.query_async::<T>(con)).await {
        Ok(v) => v,
        Err(e) => panic!("{}: {e}", words.join(" ")),
    }
}

/// The error text of a command that must fail, with redis-rs.
pub async fn rs_err(con: &mut MultiplexedConnection, words: &[&str]) -> String {
    let mut c = redis::cmd(words[0]);
    for a in &words[1..] {
        c.arg(*a);
    }
    match within(&words.join(" "), c.query_async::<Value>(con)).await {
        Ok(v) => panic!("{}: expected an error, got {v:?}", words.join(" ")),
        Err(e) => e.to_string(),
    }
}

/// One command on a raw connection, decoded (bounded by the raw client).
pub async fn raw(conn: &mut RawConn, words: &[&str]) -> Resp {
    let args: Vec<&[u8]> = words.iter().map(|w| w.as_bytes()).collect();
    Resp::parse(&conn.call(&args).await)
}

/// A command with binary arguments straight on node `addr`, on a fresh
/// connection, that must succeed (bounded).
pub async fn on_node<T: FromRedisValue>(addr: &str, args: &[&[u8]]) -> T {
    let mut n = con(addr).await;
    let mut c = redis::cmd(std::str::from_utf8(args[0]).unwrap());
    for a in &args[1..] {
        c.arg(*a);
    }
    let what = format!("{} on {addr}", show(&args.join(&b' ')));
    match within(&what, c.query_async(&mut n)).await {
        Ok(v) => v,
        Err(e) => panic!("{what}: {e}"),
    }
}

/// The stored bytes of string `key`, read straight from its owner.
pub async fn stored(place: &Placement, key: &str) -> Vec<u8> {
    let v: Option<Vec<u8>> = on_node(place.owner(key), &[b"GET", key.as_bytes()]).await;
    v.unwrap_or_else(|| panic!("{key} missing on {}", place.owner(key)))
}

/// A string reply, as [`Resp`] decodes simple and bulk strings.
pub fn s(v: &str) -> Resp {
    Resp::Str(v.to_string())
}

/// Sends `verb channel` (`SUBSCRIBE`, `PSUBSCRIBE`, `SSUBSCRIBE`) on `conn`
/// and asserts the confirmation: `[verb in lower case, channel, 1]`.
pub async fn subscribe(conn: &mut RawConn, verb: &str, channel: &str) {
    assert_eq!(
        raw(conn, &[verb, channel]).await,
        Resp::Array(vec![s(&verb.to_lowercase()), s(channel), Resp::Int(1)])
    );
}

/// Clears every primary: keys, scripts, functions (directly, not through strata).
pub fn reset(c: &Cluster) {
    for p in c.primaries() {
        c.must(&p, &["FLUSHALL"]);
        c.must(&p, &["SCRIPT", "FLUSH"]);
        c.must(&p, &["FUNCTION", "FLUSH"]);
    }
}

/// Sets a config parameter on every running node.
pub fn config_set_all(c: &Cluster, name: &str, value: &str) {
    for a in c.live_addrs() {
        c.must(&a, &["CONFIG", "SET", name, value]);
    }
}

/// Sets `cluster-replica-no-failover` of `replica` to `value`: with `yes`
/// it does not take over from its failed primary.
pub fn replica_no_failover(c: &Cluster, replica: &str, value: &str) {
    c.must(
        replica,
        &["CONFIG", "SET", "cluster-replica-no-failover", value],
    );
}

/// Restarts a stopped `node` and waits until the cluster is healthy.
pub fn restart_healthy(c: &mut Cluster, node: &str) {
    c.restart(node);
    c.wait_healthy(Duration::from_secs(60));
}

/// Fails over (`CLUSTER FAILOVER`) to `replica` and waits until the
/// cluster is healthy.
pub fn failover_healthy(c: &Cluster, replica: &str) {
    c.failover(replica, None);
    c.wait_healthy(Duration::from_secs(60));
}

/// `calls` of `cmdstat_<command>` in `INFO commandstats` of `addr` (0 when
/// the command never ran there).
pub fn cmd_calls(addr: &str, command: &str) -> u64 {
    let text = match query(addr, &["INFO", "commandstats"]) {
        Ok(Resp::Str(s)) => s,
        other => panic!("INFO commandstats on {addr}: {other:?}"),
    };
    info_field(&text, &format!("cmdstat_{command}"))
        .and_then(|v| {
            v.split(',')
                .find_map(|kv| kv.strip_prefix("calls="))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

/// `blocked_clients` of `addr`.
pub fn blocked_clients(addr: &str) -> u64 {
    let text = match query(addr, &["INFO", "clients"]) {
        Ok(Resp::Str(s)) => s,
        other => panic!("INFO clients on {addr}: {other:?}"),
    };
    info_field(&text, "blocked_clients")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Where keys land: the cluster's slot ranges at one moment.
pub struct Placement {
    view: SlotsView,
}

impl Placement {
    /// The layout as the first live node of `c` sees it now.
    pub fn of(c: &Cluster) -> Placement {
        Placement {
            view: c.slots_view(&c.live_addrs()[0]),
        }
    }

    /// The primary owning `slot`.
    pub fn owner_of_slot(&self, slot: u16) -> &str {
        self.view
            .iter()
            .find(|(s, e, _, _)| (*s..=*e).contains(&slot))
            .map(|(_, _, p, _)| p.as_str())
            .unwrap_or_else(|| panic!("slot {slot} has no owner"))
    }

    /// The primary owning `key`.
    pub fn owner(&self, key: &str) -> &str {
        self.owner_of_slot(hash_slot(key.as_bytes()))
    }

    /// The replica of the primary owning `key`.
    pub fn replica(&self, key: &str) -> &str {
        let owner = self.owner(key);
        self.view
            .iter()
            .find(|(_, _, p, _)| p == owner)
            .and_then(|(_, _, _, r)| r.first())
            .map(String::as_str)
            .unwrap_or_else(|| panic!("{owner} has no replica"))
    }

    /// The primaries, in slot order.
    pub fn primaries(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for (_, _, p, _) in &self.view {
            if !out.contains(p) {
                out.push(p.clone());
            }
        }
        out
    }

    /// The first `n` keys `{prefix}{i}` that `primary` owns.
    pub fn keys_on(&self, primary: &str, prefix: &str, n: usize) -> Vec<String> {
        (0..)
            .map(|i| format!("{prefix}{i}"))
            .filter(|k| self.owner(k) == primary)
            .take(n)
            .collect()
    }

    /// A key `{prefix}{i}` that `primary` owns.
    pub fn key_on(&self, primary: &str, prefix: &str) -> String {
        self.keys_on(primary, prefix, 1).remove(0)
    }

    /// One key per primary: `(primary, key)`, in slot order.
    pub fn key_per_primary(&self, prefix: &str) -> Vec<(String, String)> {
        self.primaries()
            .into_iter()
            .map(|p| {
                let k = self.key_on(&p, prefix);
                (p, k)
            })
            .collect()
    }

    /// A hash tag `{prefix-i}` (braces included) whose slot `primary` owns.
    pub fn tag_on(&self, primary: &str, prefix: &str) -> String {
        (0..)
            .map(|i| format!("{{{prefix}-{i}}}"))
            .find(|t| self.owner(t) == primary)
            .expect("a tag")
    }
}

/// What one writer of a [`Load`] saw.
#[derive(Debug, Default)]
pub struct WriterLog {
    /// The writer's name (what its keys are about).
    pub name: String,
    /// Every acknowledged SET: (key, value, when it was answered).
    pub acked: Vec<(String, String, Instant)>,
    /// (sent, answered) of every successful request.
    pub ok: Vec<(Instant, Instant)>,
    /// (when, what) of every error reply, wrong read, timeout or lost connection.
    pub errors: Vec<(Instant, String)>,
}

impl WriterLog {
    /// The first request sent after `t` that succeeded: when it was answered.
    pub fn first_ok_sent_after(&self, t: Instant) -> Option<Instant> {
        self.ok.iter().find(|(s, _)| *s > t).map(|(_, d)| *d)
    }

    /// Successful requests answered in `[from, to]`.
    pub fn oks_between(&self, from: Instant, to: Instant) -> usize {
        self.ok
            .iter()
            .filter(|(_, d)| *d >= from && *d <= to)
            .count()
    }

    /// The longest time between two successes: the unavailability it saw.
    pub fn longest_gap(&self) -> Duration {
        self.ok
            .windows(2)
            .map(|w| w[1].1 - w[0].1)
            .max()
            .unwrap_or_default()
    }
}

/// Writers through strata, each on its own raw connection: `SET
/// <prefix><n> v<n>`, and when `verify_reads`, after every third SET a GET
/// of an earlier acknowledged key that must return its value. A 1 ms pause
/// between requests keeps the machine responsive. Logs can be read while
/// the writers run.
pub struct Load {
    stop: Arc<AtomicBool>,
    logs: Vec<Arc<Mutex<WriterLog>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    /// One writer per `(name, key prefix)`.
    pub fn start(strata: SocketAddr, writers: &[(String, String)], verify_reads: bool) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let mut logs = Vec::new();
        let mut tasks = Vec::new();
        for (name, prefix) in writers {
            let log = Arc::new(Mutex::new(WriterLog {
                name: name.clone(),
                ..WriterLog::default()
            }));
            logs.push(log.clone());
            tasks.push(tokio::spawn(write_loop(
                strata,
                prefix.clone(),
                verify_reads,
                stop.clone(),
                log,
            )));
        }
        Load { stop, logs, tasks }
    }

    /// When writer `i`'s first request sent after `t` that succeeded was answered.
    pub fn first_ok_sent_after(&self, i: usize, t: Instant) -> Option<Instant> {
        self.logs[i].lock().unwrap().first_ok_sent_after(t)
    }

    /// Successful requests of writer `i` so far.
    pub fn oks(&self, i: usize) -> usize {
        self.logs[i].lock().unwrap().ok.len()
    }

    /// Stops the writers and returns their logs, in the order given.
    pub async fn stop(self) -> Vec<WriterLog> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            within("writer stops", t).await.expect("writer task");
        }
        self.logs
            .iter()
            .map(|l| std::mem::take(&mut *l.lock().unwrap()))
            .collect()
    }
}

async fn write_loop(
    strata: SocketAddr,
    prefix: String,
    verify_reads: bool,
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<WriterLog>>,
) {
    let mut conn = RawConn::connect(&strata.to_string()).await;
    let mut acked: Vec<(String, String)> = Vec::new();
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let key = format!("{prefix}{n}");
        let value = format!("v{n}");
        // (frame, for a GET: the key and the value it must return)
        type Request = (Vec<u8>, Option<(String, String)>);
        let mut requests: Vec<Request> =
            vec![(encode(&[b"SET", key.as_bytes(), value.as_bytes()]), None)];
        if verify_reads && n % 3 == 0 && !acked.is_empty() {
            let (k, v) = acked[(n as usize * 7919) % acked.len()].clone();
            requests.push((encode(&[b"GET", k.as_bytes()]), Some((k, v))));
        }
        for (frame, read) in requests {
            let sent = Instant::now();
            conn.send(&frame).await;
            let reply = conn.read_frame_within(CALL).await;
            let done = Instant::now();
            let Some(reply) = reply else {
                log.lock().unwrap().errors.push((
                    done,
                    format!("no reply within {CALL:?} or connection closed"),
                ));
                conn = RawConn::connect(&strata.to_string()).await;
                break;
            };
            let error = match (Resp::parse(&reply), read) {
                (Resp::Str(ok), None) if ok == "OK" => {
                    acked.push((key.clone(), value.clone()));
                    let mut log = log.lock().unwrap();
                    log.acked.push((key.clone(), value.clone(), done));
                    log.ok.push((sent, done));
                    None
                }
                (Resp::Str(got), Some((_, want))) if got == want => {
                    log.lock().unwrap().ok.push((sent, done));
                    None
                }
                (Resp::Err(e), _) => Some(e),
                (other, Some((k, want))) => {
                    Some(format!("GET {k}: {other:?}, acknowledged {want:?}"))
                }
                (other, None) => Some(format!("SET {key}: {other:?}")),
            };
            if let Some(e) = error {
                log.lock().unwrap().errors.push((done, e));
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// A one-line account of the logs, for messages.
pub fn summarize(logs: &[WriterLog]) -> String {
    let mut out = Vec::new();
    for l in logs {
        let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
        for (_, e) in &l.errors {
            *kinds.entry(e.chars().take(90).collect()).or_default() += 1;
        }
        out.push(format!(
            "{}: {} ok, {} acked SETs, {} errors {kinds:?}, longest gap {:?}",
            l.name,
            l.ok.len(),
            l.acked.len(),
            l.errors.len(),
            l.longest_gap()
        ));
    }
    out.join("; ")
}

/// Keys of `acked` that do not read back with their acknowledged value,
/// read with redis-rs's cluster client straight from the nodes (an
/// independent reference, not strata).
pub async fn unreadable(c: &Cluster, acked: &[(String, String)]) -> Vec<String> {
    let client = redis::cluster::ClusterClient::new(
        c.live_addrs()
            .iter()
            .map(|a| format!("redis://{a}/"))
            .collect::<Vec<_>>(),
    )
    .expect("cluster client");
    let mut reference = within("cluster client", client.get_async_connection())
        .await
        .expect("cluster connection");
    let mut missing = Vec::new();
    for chunk in acked.chunks(200) {
        let keys: Vec<&str> = chunk.iter().map(|(k, _)| k.as_str()).collect();
        let mut mget = redis::cmd("MGET");
        mget.arg(&keys);
        let got: Vec<Option<String>> = within("reference MGET", mget.query_async(&mut reference))
            .await
            .expect("reference MGET");
        for ((k, want), got) in chunk.iter().zip(got) {
            if got.as_deref() != Some(want.as_str()) {
                missing.push(format!("{k} (acked {want:?}, found {got:?})"));
            }
        }
    }
    missing
}

/// The port of a `host:port` address.
pub fn port_of(addr: &str) -> u16 {
    addr.rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .unwrap_or_else(|| panic!("{addr} has no port"))
}
