//! A real Redis Cluster on free ports: six `redis-server --cluster-enabled
//! yes` (3 primaries, 3 replicas) formed with `redis-cli --cluster create
//! --cluster-replicas 1`, `cluster-node-timeout 2000`, persistence off.
//! Nothing here mocks Redis.
//!
//! # Sharing and cleanup
//!
//! Starting a cluster takes seconds, so a test binary starts one and shares
//! it: [`shared`] returns a guard of a process-wide (tokio) mutex, and
//! tests that hold it run one at a time (they may move slots or kill nodes, and must
//! leave the cluster healthy; [`shared`] waits for health on entry).
//!
//! A `static` is never dropped, and the test harness exits without running
//! destructors, so the servers cannot be stopped from a `Drop`. Instead
//! each redis-server runs under a small `sh` watchdog that holds the read
//! end of a pipe whose write end only the test process has: when the test
//! process ends, however it ends (success, panic, abort, SIGKILL), the
//! pipe closes, the watchdog's `read` returns, and it `kill -9`s its
//! server. A janitor watchdog removes the cluster's directory the same way.
//! A [`Cluster`] that is dropped (not shared) closes its pipes at once.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::sentinel::{query, Resp};
use super::{free_port, require_binary};

/// `cluster-node-timeout`, in milliseconds.
pub const NODE_TIMEOUT_MS: u64 = 2000;

/// One redis-server of the cluster.
pub struct ClusterNode {
    pub port: u16,
    /// The cluster bus port (`--cluster-port`), also chosen free.
    pub bus_port: u16,
    dir: PathBuf,
    proc: Option<Watched>,
}

/// A redis-server under its watchdog.
struct Watched {
    /// The server's pid (not the watchdog's).
    pid: u32,
    /// Closing this makes the watchdog kill the server.
    stdin: Option<ChildStdin>,
    watchdog: Child,
}

impl Watched {
    /// Closes the pipe and waits for the watchdog, which SIGKILLs the
    /// server and reaps it first.
    fn stop(mut self) {
        drop(self.stdin.take());
        let _ = self.watchdog.wait();
    }
}

impl ClusterNode {
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn is_running(&self) -> bool {
        self.proc.is_some()
    }

    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().map(|p| p.pid)
    }

    /// Starts the server (same ports, same directory, so a restarted node
    /// keeps its `nodes.conf` and rejoins under its old id). False when it
    /// could not start (port taken).
    fn spawn(&mut self) -> bool {
        let bin = require_binary("redis-server", "redis-server");
        let args: Vec<String> = vec![
            "--port".into(),
            self.port.to_string(),
            "--cluster-port".into(),
            self.bus_port.to_string(),
            "--bind".into(),
            "127.0.0.1".into(),
            "--cluster-enabled".into(),
            "yes".into(),
            "--cluster-config-file".into(),
            "nodes.conf".into(),
            "--cluster-node-timeout".into(),
            NODE_TIMEOUT_MS.to_string(),
            "--save".into(),
            "".into(),
            "--appendonly".into(),
            "no".into(),
            "--repl-diskless-sync".into(),
            "yes".into(),
            "--repl-diskless-sync-delay".into(),
            "0".into(),
            "--dir".into(),
            self.dir.display().to_string(),
            "--logfile".into(),
            self.dir.join("redis.log").display().to_string(),
        ];
        // The watchdog: start the server, print its pid, wait for EOF on
        // stdin (the test process closed the pipe or exited), kill it.
        let script = r#"bin="$1"; shift
"$bin" "$@" </dev/null >/dev/null 2>&1 &
pid=$!
echo "$pid"
read _unused
kill -9 "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
exit 0"#;
        let mut watchdog = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg("sh")
            .arg(&bin)
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn sh watchdog for redis-server");
        let stdout = watchdog.stdout.take().expect("watchdog stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read redis-server pid");
        let pid: u32 = line.trim().parse().expect("redis-server pid");
        let proc = Watched {
            pid,
            stdin: watchdog.stdin.take(),
            watchdog,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if matches!(query(&self.addr(), &["PING"]), Ok(Resp::Str(ref s)) if s == "PONG") {
                self.proc = Some(proc);
                return true;
            }
            if !process_alive(pid) || Instant::now() > deadline {
                proc.stop();
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILLs the server.
    pub fn kill(&mut self) {
        if let Some(p) = self.proc.take() {
            p.stop();
        }
    }
}

/// A `CLUSTER SLOTS` reply as `(start, end, primary, [replicas])` per
/// range, sorted.
pub type SlotsView = Vec<(u16, u16, String, Vec<String>)>;

/// `CLUSTER SLOTS` of `addr` as `(start, end, primary, replicas)`, sorted.
pub fn try_slots_view(addr: &str) -> Result<SlotsView, String> {
    let reply = match query(addr, &["CLUSTER", "SLOTS"])? {
        Resp::Err(e) => return Err(format!("CLUSTER SLOTS on {addr}: -{e}")),
        r => r,
    };
    let bad = || format!("CLUSTER SLOTS on {addr}: unexpected shape");
    let node_addr = |n: &Resp| -> Result<String, String> {
        match n.items() {
            [Resp::Str(host), Resp::Int(port), ..] => Ok(format!("{host}:{port}")),
            _ => Err(bad()),
        }
    };
    let mut out = Vec::new();
    for range in reply.items() {
        let items = range.items();
        let (Some(Resp::Int(start)), Some(Resp::Int(end)), Some(primary)) =
            (items.first(), items.get(1), items.get(2))
        else {
            return Err(bad());
        };
        let replicas = items[3..]
            .iter()
            .map(node_addr)
            .collect::<Result<Vec<_>, _>>()?;
        out.push((*start as u16, *end as u16, node_addr(primary)?, replicas));
    }
    out.sort();
    Ok(out)
}

/// True while `pid` exists and is not a zombie.
fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            // "pid (comm) S ...": the state follows the last ')'.
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next());
            !matches!(state, Some("Z") | Some("X"))
        }
        Err(_) => false,
    }
}

/// Three primaries and three replicas.
pub struct Cluster {
    pub nodes: Vec<ClusterNode>,
    root: PathBuf,
    _janitor: Option<(ChildStdin, Child)>,
}

impl Cluster {
    /// Starts six nodes, forms the cluster and waits until every node says
    /// `cluster_state:ok` and sees three shards with a replica each, with
    /// every replica's link to its primary up.
    pub fn start() -> Cluster {
        let cli = require_binary("redis-cli", "redis-tools");
        require_binary("redis-server", "redis-server");
        let root = std::env::temp_dir().join(format!(
            "strata-cluster-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&root).expect("cluster root dir");
        let janitor = spawn_janitor(&root);
        let mut nodes = Vec::new();
        for i in 0..6 {
            let dir = root.join(format!("node{i}"));
            std::fs::create_dir_all(&dir).expect("node dir");
            let mut started = None;
            for _ in 0..5 {
                let mut node = ClusterNode {
                    port: free_port(),
                    bus_port: free_port(),
                    dir: dir.clone(),
                    proc: None,
                };
                if node.port != node.bus_port && node.spawn() {
                    started = Some(node);
                    break;
                }
            }
            nodes.push(started.expect("redis-server (cluster mode) could not start on free ports"));
        }
        let mut create = Command::new(cli);
        create.arg("--cluster").arg("create");
        for n in &nodes {
            create.arg(n.addr());
        }
        let out = create
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("run redis-cli --cluster create");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let cluster = Cluster {
            nodes,
            root,
            _janitor: janitor,
        };
        cluster.wait_healthy(Duration::from_secs(60));
        cluster
    }

    /// Every node's address.
    pub fn addrs(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.addr()).collect()
    }

    /// Addresses of the nodes that are running.
    pub fn live_addrs(&self) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|n| n.is_running())
            .map(|n| n.addr())
            .collect()
    }

    /// `redis://` URLs of every node, for redis-rs's cluster client.
    pub fn urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("redis://127.0.0.1:{}/", n.port))
            .collect()
    }

    pub fn node(&self, addr: &str) -> &ClusterNode {
        self.nodes
            .iter()
            .find(|n| n.addr() == addr)
            .unwrap_or_else(|| panic!("{addr} is not a node of this cluster"))
    }

    fn node_mut(&mut self, addr: &str) -> &mut ClusterNode {
        self.nodes
            .iter_mut()
            .find(|n| n.addr() == addr)
            .unwrap_or_else(|| panic!("{addr} is not a node of this cluster"))
    }

    /// One command to `addr`, decoded (RESP2).
    pub fn query(&self, addr: &str, args: &[&str]) -> Result<Resp, String> {
        query(addr, args)
    }

    /// One command that must succeed.
    pub fn must(&self, addr: &str, args: &[&str]) -> Resp {
        match query(addr, args) {
            Ok(Resp::Err(e)) => panic!("{args:?} on {addr}: -{e}"),
            Ok(r) => r,
            Err(e) => panic!("{args:?} on {addr}: {e}"),
        }
    }

    /// `CLUSTER SLOTS` as `(start, end, primary, replicas)`, sorted, as
    /// `addr` sees it.
    pub fn slots_view(&self, addr: &str) -> SlotsView {
        try_slots_view(addr).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The primaries, in slot order, as the first live node sees them.
    pub fn primaries(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (_, _, p, _) in self.slots_view(&self.live_addrs()[0]) {
            if !out.contains(&p) {
                out.push(p);
            }
        }
        out
    }

    /// The primary that owns `slot`, as the first live node sees it.
    pub fn primary_for_slot(&self, slot: u16) -> String {
        self.slots_view(&self.live_addrs()[0])
            .into_iter()
            .find(|(s, e, _, _)| (*s..=*e).contains(&slot))
            .map(|(_, _, p, _)| p)
            .unwrap_or_else(|| panic!("slot {slot} has no owner"))
    }

    /// `CLUSTER MYID` of `addr`.
    pub fn node_id(&self, addr: &str) -> String {
        self.must(addr, &["CLUSTER", "MYID"])
            .str()
            .expect("node id")
            .to_string()
    }

    /// Waits until every running node reports `cluster_state:ok`, agrees on
    /// three ranges-owning primaries each with one replica, and every
    /// replica's link is up.
    pub fn wait_healthy(&self, within: Duration) {
        super::wait_until_ok("cluster", within, Duration::from_millis(50), || {
            self.health()
        });
    }

    fn health(&self) -> Result<(), String> {
        let mut views = Vec::new();
        for addr in self.live_addrs() {
            let info = match query(&addr, &["CLUSTER", "INFO"])? {
                Resp::Str(s) => s,
                other => return Err(format!("CLUSTER INFO on {addr}: {other:?}")),
            };
            if !info.contains("cluster_state:ok") {
                return Err(format!("{addr}: cluster_state not ok"));
            }
            let view = try_slots_view(&addr)?;
            let mut primaries: Vec<&String> = view.iter().map(|v| &v.2).collect();
            primaries.sort();
            primaries.dedup();
            if primaries.len() != 3 {
                return Err(format!("{addr} sees {} primaries", primaries.len()));
            }
            if view.iter().any(|v| v.3.len() != 1) {
                return Err(format!("{addr} sees a primary without exactly one replica"));
            }
            views.push(view);
        }
        if views.windows(2).any(|w| w[0] != w[1]) {
            return Err("nodes disagree on CLUSTER SLOTS".into());
        }
        for (_, _, _, replicas) in views.first().map(|v| v.as_slice()).unwrap_or(&[]) {
            for r in replicas {
                let info = match query(r, &["INFO", "replication"])? {
                    Resp::Str(s) => s,
                    other => return Err(format!("INFO on {r}: {other:?}")),
                };
                if !info.contains("master_link_status:up") {
                    return Err(format!("{r}: replication link not up"));
                }
            }
        }
        Ok(())
    }

    /// SIGKILLs the node at `addr`.
    pub fn kill(&mut self, addr: &str) {
        self.node_mut(addr).kill();
    }

    /// Starts the node at `addr` again (same ports, same `nodes.conf`).
    pub fn restart(&mut self, addr: &str) {
        let node = self.node_mut(addr);
        node.kill();
        assert!(node.spawn(), "redis-server {addr} could not restart");
    }

    /// The replica of `primary`, as the first live node sees it.
    pub fn replica_of(&self, primary: &str) -> String {
        self.slots_view(&self.live_addrs()[0])
            .into_iter()
            .find(|(_, _, p, _)| p == primary)
            .and_then(|(_, _, _, r)| r.into_iter().next())
            .unwrap_or_else(|| panic!("{primary} has no replica"))
    }

    /// Polls `check` every 20 ms until it gives `Ok`, or panics with its
    /// last error after `within`.
    pub fn wait_until<T>(
        &self,
        within: Duration,
        what: &str,
        mut check: impl FnMut(&Cluster) -> Result<T, String>,
    ) -> T {
        let deadline = Instant::now() + within;
        loop {
            match check(self) {
                Ok(v) => return v,
                Err(e) if Instant::now() > deadline => {
                    panic!("{what}: not within {within:?}: {e}")
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    /// `CLUSTER FAILOVER [FORCE|TAKEOVER]` on the replica `replica`, then
    /// waits until every live node sees it as a primary.
    pub fn failover(&self, replica: &str, mode: Option<&str>) {
        let mut args = vec!["CLUSTER", "FAILOVER"];
        args.extend(mode);
        // A manual failover that does not complete in Redis's own time
        // (the primary must pause its clients and the replica catch up;
        // on a loaded machine that can time out) leaves the replica a
        // replica: ask again, as an operator would, until it leads.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            self.must(replica, &args);
            let asked = Instant::now();
            while asked.elapsed() < Duration::from_secs(15) && !is_primary(replica) {
                std::thread::sleep(Duration::from_millis(20));
            }
            if is_primary(replica) || Instant::now() > deadline {
                break;
            }
        }
        self.wait_until(Duration::from_secs(90), "failover", |c| {
            for a in c.live_addrs() {
                if !try_slots_view(&a)?.iter().any(|(_, _, p, _)| p == replica) {
                    return Err(format!("{a} does not yet see {replica} as a primary"));
                }
            }
            Ok(())
        });
    }

    /// `cluster_state` from `CLUSTER INFO` of `addr` ("ok", "fail").
    pub fn cluster_state(&self, addr: &str) -> Result<String, String> {
        match query(addr, &["CLUSTER", "INFO"])? {
            Resp::Str(info) => info
                .lines()
                .find_map(|l| l.strip_prefix("cluster_state:"))
                .map(|s| s.trim().to_string())
                .ok_or_else(|| "no cluster_state".to_string()),
            other => Err(format!("CLUSTER INFO on {addr}: {other:?}")),
        }
    }

    /// Step 1 of moving `slot` from its owner `from` to `to` (both
    /// primaries): `to` IMPORTING, `from` MIGRATING. Keys not yet moved
    /// are still read on `from`; a key `from` no longer has gets `-ASK`.
    pub fn begin_migration(&self, slot: u16, from: &str, to: &str) {
        let slot = slot.to_string();
        let from_id = self.node_id(from);
        let to_id = self.node_id(to);
        self.must(to, &["CLUSTER", "SETSLOT", &slot, "IMPORTING", &from_id]);
        self.must(from, &["CLUSTER", "SETSLOT", &slot, "MIGRATING", &to_id]);
    }

    /// Step 2: MIGRATEs `keys` (all in `slot`) from `from` to `to`.
    pub fn migrate_keys(&self, from: &str, to: &str, keys: &[&str]) {
        if keys.is_empty() {
            return;
        }
        let port = to.rsplit_once(':').expect("port").1;
        let mut args = vec!["MIGRATE", "127.0.0.1", port, "", "0", "5000", "KEYS"];
        args.extend_from_slice(keys);
        let reply = self.must(from, &args);
        assert!(
            matches!(&reply, Resp::Str(s) if s == "OK" || s == "NOKEY"),
            "MIGRATE: {reply:?}"
        );
    }

    /// Step 2, all of it: MIGRATEs every key of `slot` still on `from`.
    pub fn migrate_all_keys(&self, slot: u16, from: &str, to: &str) {
        let slot = slot.to_string();
        loop {
            let keys = self.must(from, &["CLUSTER", "GETKEYSINSLOT", &slot, "100"]);
            let keys: Vec<&str> = keys.items().iter().filter_map(|k| k.str()).collect();
            if keys.is_empty() {
                return;
            }
            self.migrate_keys(from, to, &keys);
        }
    }

    /// Step 3: `SETSLOT slot NODE to` on every primary (`to` first, then
    /// `from`, then the others, as the Redis docs advise), then waits
    /// until every node sees the new owner.
    pub fn finish_migration(&self, slot: u16, from: &str, to: &str) {
        let to_id = self.node_id(to);
        let s = slot.to_string();
        let mut order = vec![to.to_string(), from.to_string()];
        for p in self.primaries() {
            if !order.contains(&p) {
                order.push(p);
            }
        }
        for p in &order {
            self.must(p, &["CLUSTER", "SETSLOT", &s, "NODE", &to_id]);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.live_addrs().iter().all(|a| {
            self.slots_view(a)
                .iter()
                .any(|(st, e, p, _)| (*st..=*e).contains(&slot) && p == to)
        }) {
            assert!(
                Instant::now() < deadline,
                "slot {slot} move to {to} did not propagate"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Moves `slot` with its keys to the primary `to`.
    pub fn migrate_slot(&self, slot: u16, to: &str) {
        let from = self.primary_for_slot(slot);
        if from == to {
            return;
        }
        self.begin_migration(slot, &from, to);
        self.migrate_all_keys(slot, &from, to);
        self.finish_migration(slot, &from, to);
    }

    /// Where the nodes keep their files.
    pub fn dir(&self) -> &Path {
        &self.root
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            n.kill();
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// Removes `root` once the test process is gone (see the module docs).
fn spawn_janitor(root: &Path) -> Option<(ChildStdin, Child)> {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(r#"read _unused; sleep 1; rm -rf "$1""#)
        .arg("sh")
        .arg(root)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let stdin = child.stdin.take()?;
    Some((stdin, child))
}

/// The shared cluster. A tokio mutex: async tests hold the guard across
/// awaits (that is the point: one test at a time), and it does not poison
/// when a test panics.
static SHARED: OnceLock<tokio::sync::Mutex<Cluster>> = OnceLock::new();

fn shared_mutex() -> &'static tokio::sync::Mutex<Cluster> {
    SHARED.get_or_init(|| tokio::sync::Mutex::new(Cluster::start()))
}

/// The test binary's one cluster, started on first use, locked for the
/// caller; healthy on return. The servers die with the test process.
pub async fn shared() -> tokio::sync::MutexGuard<'static, Cluster> {
    let guard = shared_mutex().lock().await;
    guard.wait_healthy(Duration::from_secs(60));
    guard
}

/// [`shared`] for code outside an async runtime (benches, sync tests).
pub fn shared_blocking() -> tokio::sync::MutexGuard<'static, Cluster> {
    let guard = shared_mutex().blocking_lock();
    guard.wait_healthy(Duration::from_secs(60));
    guard
}

/// [`shared`], after restarting any node an earlier test left stopped (one
/// that failed between killing a node and restarting it), so that one
/// failure does not make every later test of the binary fail too.
pub async fn shared_repaired() -> tokio::sync::MutexGuard<'static, Cluster> {
    let mut guard = shared_mutex().lock().await;
    let stopped: Vec<String> = guard
        .nodes
        .iter()
        .filter(|n| !n.is_running())
        .map(|n| n.addr())
        .collect();
    for addr in stopped {
        guard.restart(&addr);
    }
    guard.wait_healthy(Duration::from_secs(60));
    guard
}

/// True when `addr` answers ROLE as a primary.
fn is_primary(addr: &str) -> bool {
    matches!(query(addr, &["ROLE"]), Ok(Resp::Array(items)) if matches!(items.first(), Some(Resp::Str(r)) if r == "master"))
}
