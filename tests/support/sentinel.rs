//! A real Sentinel topology on free ports: one primary, two replicas
//! (`--replicaof`) and three `redis-sentinel` processes with quorum 2,
//! `down-after-milliseconds 1000` and `failover-timeout 5000`. Everything is
//! killed on drop. Nothing here mocks Redis or Sentinel.

use std::io::Write;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use strata::config::{BackendMode, Config};

use super::raw::{self, cmd, escape};
use super::{free_port, require_binary, RedisServer};

/// The master name the sentinels monitor.
pub const MASTER: &str = "mymaster";

/// Every server gets these: no delay before a (diskless) full sync, so a
/// replica reconfigured during a failover syncs at once.
const REDIS_ARGS: &[&str] = &["--repl-diskless-sync-delay", "0"];

/// A decoded reply, parsed independently of strata's own code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resp {
    Str(String),
    Int(i64),
    Err(String),
    Array(Vec<Resp>),
    Nil,
}

impl Resp {
    /// Parses one complete RESP2 frame.
    pub fn parse(frame: &[u8]) -> Resp {
        fn at(buf: &[u8], pos: usize) -> (Resp, usize) {
            let end = pos
                + buf[pos..]
                    .windows(2)
                    .position(|w| w == b"\r\n")
                    .expect("CRLF");
            let line = String::from_utf8_lossy(&buf[pos + 1..end]).into_owned();
            let next = end + 2;
            match buf[pos] {
                b'+' => (Resp::Str(line), next),
                b'-' => (Resp::Err(line), next),
                b':' => (Resp::Int(line.parse().expect("int")), next),
                b'$' => {
                    let n: i64 = line.parse().expect("len");
                    if n < 0 {
                        return (Resp::Nil, next);
                    }
                    let s = String::from_utf8_lossy(&buf[next..next + n as usize]).into_owned();
                    (Resp::Str(s), next + n as usize + 2)
                }
                b'*' => {
                    let n: i64 = line.parse().expect("len");
                    if n < 0 {
                        return (Resp::Nil, next);
                    }
                    let mut items = Vec::new();
                    let mut p = next;
                    for _ in 0..n {
                        let (v, q) = at(buf, p);
                        items.push(v);
                        p = q;
                    }
                    (Resp::Array(items), p)
                }
                other => panic!("unexpected frame type {:?}", other as char),
            }
        }
        at(frame, 0).0
    }

    pub fn str(&self) -> Option<&str> {
        match self {
            Resp::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn items(&self) -> &[Resp] {
        match self {
            Resp::Array(a) => a,
            _ => &[],
        }
    }

    /// A flat field/value array as pairs.
    pub fn fields(&self) -> Vec<(String, String)> {
        self.items()
            .chunks(2)
            .filter_map(|p| match p {
                [Resp::Str(k), Resp::Str(v)] => Some((k.clone(), v.clone())),
                [Resp::Str(k), Resp::Int(v)] => Some((k.clone(), v.to_string())),
                _ => None,
            })
            .collect()
    }

    pub fn field(&self, name: &str) -> Option<String> {
        self.fields()
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }
}

/// One command on a fresh connection to `addr`, decoded.
pub fn query(addr: &str, args: &[&str]) -> Result<Resp, String> {
    query_auth(addr, None, args)
}

/// Like [`query`], after `AUTH <password>` when one is given.
pub fn query_auth(addr: &str, password: Option<&str>, args: &[&str]) -> Result<Resp, String> {
    let mut s = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    let _ = s.set_nodelay(true);
    if let Some(pw) = password {
        let frame = raw::call(
            &mut s,
            &cmd(&[b"AUTH", pw.as_bytes()]),
            Duration::from_secs(5),
        )?;
        if frame != b"+OK\r\n" {
            return Err(format!("AUTH on {addr}: {}", escape(&frame)));
        }
    }
    let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    let frame = raw::call(&mut s, &cmd(&args), Duration::from_secs(5))?;
    Ok(Resp::parse(&frame))
}

/// `INFO <section>` of `addr` as text.
pub fn info(addr: &str, section: &str) -> String {
    match query(addr, &["INFO", section]) {
        Ok(Resp::Str(s)) => s,
        other => panic!("INFO {section} on {addr}: {other:?}"),
    }
}

/// A field of an INFO text (`name:value`).
pub fn info_field(info: &str, name: &str) -> Option<String> {
    info.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(':')))
        .map(|v| v.trim().to_string())
}

/// A `redis-sentinel` child process, killed on drop.
pub struct SentinelProc {
    pub port: u16,
    child: Option<Child>,
    _dir: tempfile::TempDir,
}

impl SentinelProc {
    /// Starts a sentinel monitoring `MASTER` at `master_port`.
    pub fn start(master_port: u16) -> SentinelProc {
        Self::start_with(master_port, "")
    }

    /// Like [`SentinelProc::start`], with extra lines in sentinel.conf.
    pub fn start_with(master_port: u16, extra_conf: &str) -> SentinelProc {
        let bin = require_binary("redis-sentinel", "redis-sentinel");
        let dir = tempfile::tempdir().expect("tempdir");
        for _ in 0..5 {
            let port = free_port();
            let conf: PathBuf = dir.path().join("sentinel.conf");
            let text = format!(
                "port {port}\nbind 127.0.0.1\ndir {dir}\nlogfile \"\"\n\
                 sentinel monitor {MASTER} 127.0.0.1 {master_port} 2\n\
                 sentinel down-after-milliseconds {MASTER} 1000\n\
                 sentinel failover-timeout {MASTER} 5000\n\
                 sentinel parallel-syncs {MASTER} 1\n{extra_conf}",
                dir = dir.path().display()
            );
            std::fs::write(&conf, text).expect("write sentinel.conf");
            let log = std::fs::File::create(dir.path().join("sentinel.log")).expect("log file");
            let mut child = Command::new(&bin)
                .arg(&conf)
                .stdout(Stdio::from(log))
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn redis-sentinel");
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                if let Ok(Some(_)) = child.try_wait() {
                    break; // could not bind: another port
                }
                // PONG, or NOAUTH from a sentinel with requirepass: it is up.
                let reply = query(&format!("127.0.0.1:{port}"), &["PING"]);
                let up = match &reply {
                    Ok(Resp::Str(p)) => p == "PONG",
                    Ok(Resp::Err(e)) => e.starts_with("NOAUTH"),
                    _ => false,
                };
                if up {
                    return SentinelProc {
                        port,
                        child: Some(child),
                        _dir: dir,
                    };
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    panic!("redis-sentinel on port {port} did not answer PING");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        panic!("redis-sentinel could not bind a free port after 5 tries");
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Kills the process (SIGKILL).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for SentinelProc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One primary, two replicas, three sentinels.
pub struct Topology {
    /// Every Redis server; `servers[0]` started as the primary.
    pub servers: Vec<RedisServer>,
    pub sentinels: Vec<SentinelProc>,
    /// `requirepass` of the Redis servers, when set.
    pub redis_password: Option<String>,
    /// `requirepass` of the sentinels, when set.
    pub sentinel_password: Option<String>,
}

impl Topology {
    /// Starts everything and waits until each sentinel sees both replicas
    /// (link up) and the two other sentinels, so a failover can happen.
    pub fn start() -> Topology {
        Self::start_with_passwords(None, None)
    }

    /// Like [`Topology::start`], with `requirepass` (and `masterauth`) on
    /// the Redis servers and/or `requirepass` on the sentinels.
    pub fn start_with_passwords(redis: Option<&str>, sentinel: Option<&str>) -> Topology {
        require_binary("redis-sentinel", "redis-sentinel");
        let primary = RedisServer::start_with(REDIS_ARGS);
        let port = primary.port.to_string();
        let mut servers = vec![primary];
        for _ in 0..2 {
            let mut args = vec!["--replicaof", "127.0.0.1", port.as_str()];
            args.extend_from_slice(REDIS_ARGS);
            servers.push(RedisServer::start_with(&args));
        }
        if let Some(pw) = redis {
            // Set after startup: the harness's readiness PING has no AUTH,
            // and the replication links are already up.
            for s in &servers {
                for (k, v) in [("masterauth", pw), ("requirepass", pw)] {
                    assert_eq!(
                        query(&s.addr(), &["CONFIG", "SET", k, v]),
                        Ok(Resp::Str("OK".into()))
                    );
                }
            }
        }
        let mut extra = String::new();
        if let Some(pw) = redis {
            extra.push_str(&format!("sentinel auth-pass {MASTER} {pw}\n"));
        }
        if let Some(pw) = sentinel {
            extra.push_str(&format!("requirepass {pw}\n"));
        }
        let master_port = servers[0].port;
        let sentinels = (0..3)
            .map(|_| SentinelProc::start_with(master_port, &extra))
            .collect();
        let topo = Topology {
            servers,
            sentinels,
            redis_password: redis.map(Into::into),
            sentinel_password: sentinel.map(Into::into),
        };
        // Generous: sentinels find each other by hello messages every 2 s,
        // and on a loaded 2-core machine that took over 30 s once.
        topo.wait_healthy(Duration::from_secs(90));
        topo
    }

    /// A query to a sentinel (with AUTH when they have a password).
    pub fn sq(&self, addr: &str, args: &[&str]) -> Result<Resp, String> {
        query_auth(addr, self.sentinel_password.as_deref(), args)
    }

    /// A query to a Redis server (with AUTH when they have a password).
    pub fn rq(&self, addr: &str, args: &[&str]) -> Result<Resp, String> {
        query_auth(addr, self.redis_password.as_deref(), args)
    }

    pub fn sentinel_addrs(&self) -> Vec<String> {
        self.sentinels.iter().map(|s| s.addr()).collect()
    }

    /// Waits until every sentinel agrees on the primary, sees two replicas
    /// with their link up and the two other sentinels.
    pub fn wait_healthy(&self, within: Duration) {
        super::wait_until_ok(
            "sentinel topology",
            within,
            Duration::from_millis(100),
            || self.health(),
        );
    }

    fn health(&self) -> Result<(), String> {
        let mut masters = Vec::new();
        for s in &self.sentinels {
            let m = self.sq(&s.addr(), &["SENTINEL", "MASTER", MASTER])?;
            let others = m.field("num-other-sentinels").unwrap_or_default();
            let slaves = m.field("num-slaves").unwrap_or_default();
            if others != "2" || slaves != "2" {
                return Err(format!(
                    "sentinel {} sees {others} sentinels, {slaves} replicas",
                    s.addr()
                ));
            }
            if m.field("flags").as_deref() != Some("master") {
                return Err(format!(
                    "sentinel {} master flags {:?}",
                    s.addr(),
                    m.field("flags")
                ));
            }
            masters.push(self.master_of(&s.addr())?);
            let replicas = self.sq(&s.addr(), &["SENTINEL", "REPLICAS", MASTER])?;
            for r in replicas.items() {
                let flags = r.field("flags").unwrap_or_default();
                let link = r.field("master-link-status").unwrap_or_default();
                if flags != "slave" || link != "ok" {
                    return Err(format!(
                        "sentinel {} sees replica {:?} {flags} link {link}",
                        s.addr(),
                        r.field("name")
                    ));
                }
            }
        }
        masters.sort();
        masters.dedup();
        if masters.len() != 1 {
            return Err(format!("sentinels disagree on the primary: {masters:?}"));
        }
        for server in &self.servers {
            if server.pid().is_none() {
                continue;
            }
            let text = match self.rq(&server.addr(), &["INFO", "replication"])? {
                Resp::Str(s) => s,
                other => return Err(format!("INFO replication: {other:?}")),
            };
            let role = info_field(&text, "role").unwrap_or_default();
            if role == "slave" && info_field(&text, "master_link_status").as_deref() != Some("up") {
                return Err(format!("replica {} link not up", server.addr()));
            }
        }
        Ok(())
    }

    /// The primary a sentinel names.
    pub fn master_of(&self, sentinel: &str) -> Result<String, String> {
        let r = self.sq(sentinel, &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER])?;
        match r.items() {
            [Resp::Str(h), Resp::Str(p)] => Ok(format!("{h}:{p}")),
            other => Err(format!("GET-MASTER-ADDR-BY-NAME: {other:?}")),
        }
    }

    /// The primary the first reachable sentinel names.
    pub fn current_primary(&self) -> String {
        for s in &self.sentinels {
            if let Ok(m) = self.master_of(&s.addr()) {
                return m;
            }
        }
        panic!("no sentinel answers");
    }

    /// The server listening on `addr`.
    pub fn server(&mut self, addr: &str) -> &mut RedisServer {
        self.servers
            .iter_mut()
            .find(|s| s.addr() == addr)
            .unwrap_or_else(|| panic!("no server at {addr}"))
    }

    /// The servers other than the one at `addr`.
    pub fn others(&self, addr: &str) -> Vec<String> {
        self.servers
            .iter()
            .map(|s| s.addr())
            .filter(|a| a != addr)
            .collect()
    }

    /// `SENTINEL FAILOVER` on the first sentinel (retrying while a previous
    /// failover is still in progress or no replica qualifies yet).
    pub fn force_failover(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match self.sq(&self.sentinels[0].addr(), &["SENTINEL", "FAILOVER", MASTER]) {
                Ok(Resp::Str(ok)) if ok == "OK" => return,
                other => {
                    assert!(
                        Instant::now() < deadline,
                        "SENTINEL FAILOVER kept failing: {other:?}"
                    );
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        }
    }

    /// A strata config in sentinel mode for this topology.
    pub fn strata_config(&self) -> Config {
        let mut c = super::strata::test_config("127.0.0.1:1");
        c.backend.mode = BackendMode::Sentinel;
        c.backend.sentinel.sentinels = self.sentinel_addrs();
        c.backend.sentinel.master_name = MASTER.to_string();
        c.backend.sentinel.poll_interval_ms = 250;
        c.backend.sentinel.failover_hold_ms = 5_000;
        c
    }
}

/// Sentinel events as the tests' own subscriptions see them.
pub struct EventWatcher {
    events: Arc<Mutex<Vec<(String, String, Instant)>>>,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl EventWatcher {
    /// Subscribes to `channels` on every sentinel in `addrs`; returns once
    /// every subscription is confirmed.
    pub fn start(addrs: &[String], channels: &[&str]) -> EventWatcher {
        let events = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for addr in addrs {
            let mut s = raw::connect(addr, Duration::from_secs(5));
            let mut args: Vec<&[u8]> = vec![b"SUBSCRIBE"];
            args.extend(channels.iter().map(|c| c.as_bytes()));
            s.write_all(&cmd(&args)).expect("SUBSCRIBE");
            raw::read_frames(&mut s, channels.len(), Duration::from_secs(5))
                .expect("SUBSCRIBE confirmations");
            let events = events.clone();
            let stop = stop.clone();
            threads.push(std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match raw::read_frames(&mut s, 1, Duration::from_millis(200)) {
                        Ok(frames) => {
                            let at = Instant::now();
                            let msg = Resp::parse(&frames[0]);
                            if let [Resp::Str(kind), Resp::Str(channel), Resp::Str(payload)] =
                                msg.items()
                            {
                                if kind == "message" {
                                    events.lock().expect("lock").push((
                                        channel.clone(),
                                        payload.clone(),
                                        at,
                                    ));
                                }
                            }
                        }
                        Err(e) if e.starts_with("timed out") => {}
                        Err(e) => {
                            if !stop.load(Ordering::Relaxed) {
                                eprintln!("event watcher: {e}: {}", escape(e.as_bytes()));
                            }
                            return;
                        }
                    }
                }
            }));
        }
        EventWatcher {
            events,
            stop,
            threads,
        }
    }

    /// When `channel` was first seen (by any sentinel subscription).
    pub fn first(&self, channel: &str) -> Option<Instant> {
        self.events
            .lock()
            .expect("lock")
            .iter()
            .filter(|(c, _, _)| c == channel)
            .map(|(_, _, t)| *t)
            .min()
    }

    /// Waits up to `within` for `channel`.
    pub fn wait_for(&self, channel: &str, within: Duration) -> Option<Instant> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(t) = self.first(channel) {
                return Some(t);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits up to `within` for `channel` seen after `after`.
    pub fn wait_for_after(
        &self,
        channel: &str,
        after: Instant,
        within: Duration,
    ) -> Option<Instant> {
        let deadline = Instant::now() + within;
        loop {
            let seen = self
                .events
                .lock()
                .expect("lock")
                .iter()
                .filter(|(c, _, t)| c == channel && *t > after)
                .map(|(_, _, t)| *t)
                .min();
            if seen.is_some() || Instant::now() > deadline {
                return seen;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Everything seen so far, for failure messages.
    pub fn dump(&self) -> Vec<String> {
        self.events
            .lock()
            .expect("lock")
            .iter()
            .map(|(c, p, _)| format!("{c} {p}"))
            .collect()
    }
}

impl Drop for EventWatcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// A request through strata never takes longer than this (the failover
/// hold is 5 s, the request timeout 2 s).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(12);

/// What one writer saw.
#[derive(Debug, Default)]
pub struct WriterLog {
    /// (key, value, when) of every acknowledged SET.
    pub sets: Vec<(String, String, Instant)>,
    /// Every value an acknowledged INCR of the writer's counter returned.
    pub incrs: Vec<i64>,
    /// Completion time of every acknowledged write.
    pub ok_at: Vec<Instant>,
    /// Error replies, with when.
    pub errors: Vec<(Instant, String)>,
    /// Times the connection to strata broke and had to be made again.
    pub reconnects: usize,
}

/// Writer threads doing SET (unique keys) and INCR (one counter each)
/// through strata, each on one connection, recording every acknowledgement.
pub struct Load {
    stop: Arc<AtomicBool>,
    logs: Vec<Arc<Mutex<WriterLog>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    pub fn start(strata: &str, writers: usize, tag: &str) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let mut logs = Vec::new();
        let mut threads = Vec::new();
        for w in 0..writers {
            let log = Arc::new(Mutex::new(WriterLog::default()));
            logs.push(log.clone());
            let stop = stop.clone();
            let addr = strata.to_string();
            let counter = format!("{tag}:ctr:{w}");
            let prefix = format!("{tag}:w{w}:");
            threads.push(std::thread::spawn(move || {
                let mut conn = raw::connect(&addr, CALL_TIMEOUT);
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let key = format!("{prefix}{n}");
                    let value = format!("v{n}");
                    let set = cmd(&[b"SET", key.as_bytes(), value.as_bytes()]);
                    let incr = cmd(&[b"INCR", counter.as_bytes()]);
                    for (i, req) in [set, incr].iter().enumerate() {
                        match raw::call(&mut conn, req, CALL_TIMEOUT) {
                            Ok(reply) => {
                                let now = Instant::now();
                                let mut log = log.lock().unwrap();
                                match (i, Resp::parse(&reply)) {
                                    (0, Resp::Str(ok)) if ok == "OK" => {
                                        log.sets.push((key.clone(), value.clone(), now));
                                        log.ok_at.push(now);
                                    }
                                    (1, Resp::Int(v)) => {
                                        log.incrs.push(v);
                                        log.ok_at.push(now);
                                    }
                                    (_, Resp::Err(e)) => {
                                        log.errors.push((now, e));
                                        drop(log);
                                        // Errors come fast while the primary is down: don't spin.
                                        std::thread::sleep(Duration::from_millis(2));
                                    }
                                    (_, other) => panic!("unexpected reply {other:?}"),
                                }
                            }
                            Err(e) => {
                                let mut log = log.lock().unwrap();
                                log.errors
                                    .push((Instant::now(), format!("connection: {e}")));
                                log.reconnects += 1;
                                drop(log);
                                std::thread::sleep(Duration::from_millis(20));
                                conn = raw::connect(&addr, CALL_TIMEOUT);
                            }
                        }
                    }
                }
            }));
        }
        Load {
            stop,
            logs,
            threads,
        }
    }

    /// Acknowledged writes completed after `t`, over all writers.
    pub fn oks_after(&self, t: Instant) -> usize {
        self.logs
            .iter()
            .map(|l| l.lock().unwrap().ok_at.iter().filter(|a| **a > t).count())
            .sum()
    }

    /// The first acknowledged write completed after `t`.
    pub fn first_ok_after(&self, t: Instant) -> Option<Instant> {
        self.logs
            .iter()
            .filter_map(|l| l.lock().unwrap().ok_at.iter().copied().find(|a| *a > t))
            .min()
    }

    pub fn stop(mut self) -> Vec<WriterLog> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            t.join().expect("writer thread");
        }
        self.logs
            .drain(..)
            .map(|l| std::mem::take(&mut *l.lock().unwrap()))
            .collect()
    }
}

pub fn summarize(logs: &[WriterLog]) -> String {
    let sets: usize = logs.iter().map(|l| l.sets.len()).sum();
    let incrs: usize = logs.iter().map(|l| l.incrs.len()).sum();
    let errors: Vec<&str> = logs
        .iter()
        .flat_map(|l| l.errors.iter().map(|(_, e)| e.as_str()))
        .collect();
    let mut kinds: Vec<String> = errors
        .iter()
        .map(|e| e.chars().take(60).collect())
        .collect();
    kinds.sort();
    kinds.dedup();
    format!(
        "{sets} SETs and {incrs} INCRs acknowledged, {} errors {kinds:?}",
        errors.len()
    )
}

/// The longest time between two consecutive acknowledged writes of one
/// writer, over all writers: what a client saw as unavailability.
pub fn longest_gap(logs: &[WriterLog]) -> Duration {
    logs.iter()
        .flat_map(|l| {
            let mut t = l.ok_at.clone();
            t.sort();
            t.windows(2).map(|w| w[1] - w[0]).collect::<Vec<_>>()
        })
        .max()
        .unwrap_or_default()
}
